"""usm_geo.scale: a partitioned Parquet dataset counted on Dask gives the single-machine results.

The reference is the single-machine path on the same data (every count and every ledger row equal),
plus a hand count on a dataset small enough to check by eye.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.cli_files import aggregate_points
from usm_geo.errors import InputFileError, UsmGeoError
from usm_geo.scale import partitions, read_dataset, read_part

X0, Y0 = 400_000.0, 5_800_000.0
CRS = "EPSG:32633"


def _write(table: pa.Table, folder, sizes, row_group_size):
    folder.mkdir()
    start = 0
    for i, n in enumerate(sizes):
        pq.write_table(table.slice(start, n), folder / f"part-{i:02d}.parquet", row_group_size=row_group_size)
        start += n


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """5,000 points over a 6 × 6 km square split into 36 square wards, in 4 files of 3 to 7 row groups,
    with 5 bad rows (missing/out-of-range coordinates, missing date, null island, outside every ward)
    and one exact duplicate inside a file."""
    tmp = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(7)
    n = 5000
    x = rng.uniform(X0, X0 + 6000, n)
    y = rng.uniform(Y0, Y0 + 6000, n)
    ll = gpd.GeoSeries(gpd.points_from_xy(x, y), crs=CRS).to_crs(4326)
    lon, lat = ll.x.to_numpy().copy(), ll.y.to_numpy().copy()
    when = (np.datetime64("2020-01-01") + rng.integers(0, 3 * 365 * 86400, n).astype("timedelta64[s]")).astype(object)
    when = np.array([str(t) for t in when], dtype=object)
    cat = rng.choice(["theft", "assault", "burglary"], n).astype(object)
    lon[10], lat[1200], when[2500], (lon[3000], lat[3000]) = np.nan, 95.0, "", (0.0, 0.0)
    far = gpd.GeoSeries(gpd.points_from_xy([X0 + 20_000], [Y0]), crs=CRS).to_crs(4326)
    lon[4100], lat[4100] = far.x[0], far.y[0]
    lon[1801], lat[1801], when[1801], cat[1801] = lon[1800], lat[1800], when[1800], cat[1800]  # duplicate
    table = pa.table({"lon": lon, "lat": lat, "when": when, "type": cat})
    folder = tmp / "points"
    _write(table, folder, [1500, 1000, 1700, 800], 300)
    wards = gpd.GeoDataFrame({"code": [f"W{i:02d}" for i in range(36)]},
                             geometry=[shapely.box(X0 + (i % 6) * 1000, Y0 + (i // 6) * 1000, X0 + (i % 6 + 1) * 1000,
                                                   Y0 + (i // 6 + 1) * 1000) for i in range(36)], crs=CRS)
    wards.to_file(tmp / "wards.gpkg")
    return folder, tmp / "wards.gpkg", table


def test_parts_are_planned_from_footers_and_numbered_across_files(synthetic):
    folder, _, table = synthetic
    parts = partitions(folder, max_rows=700)
    # whole row groups of 300 rows, at most 700 rows a part, never across files
    assert [p.rows for p in parts] == [600, 600, 300, 600, 400, 600, 600, 500, 600, 200]
    assert [p.offset for p in parts] == list(np.cumsum([0] + [p.rows for p in parts[:-1]]))
    raw = read_part(parts[3])  # the second file's first part: records 1501–2100
    assert raw.rows[0] == 1501 and raw.rows[-1] == 2100
    assert raw.frame["lon"].equals(table.slice(1500, 600).to_pandas()["lon"])
    whole = read_dataset(folder)
    assert whole.read == 5000 and (whole.rows == np.arange(1, 5001)).all()
    assert whole.frame.equals(table.to_pandas())


@pytest.mark.parametrize("units", ["h3:8", "wards"])
def test_aggregate_on_dask_equals_single_machine(synthetic, client, units):
    folder, wards, _ = synthetic
    units = f"{wards}:code" if units == "wards" else units
    kw = dict(lon="lon", lat="lat", time="when", period="quarter", category="type")
    one = aggregate_points(folder, units, **kw)
    many = aggregate_points(folder, units, **kw, scheduler=client)
    pd.testing.assert_frame_equal(one.table, many.table)
    pd.testing.assert_frame_equal(one.ledger.to_frame(), many.ledger.to_frame())
    assert one.ledger.totals() == many.ledger.totals()
    t = many.ledger.totals()["points"]
    ledger = many.ledger.to_frame()
    dropped = ledger[(ledger.source == "points") & (ledger.status == "dropped")]
    assert t["read"] == 5000 == t["used"] + len(dropped)
    # rows are numbered across files: the duplicate (row 1802) names row 1801, the far point is row 4101
    dup = ledger[ledger.reason == "duplicate"]
    assert dup[["row", "detail"]].values.tolist() == [[1802, "same as row 1801"]]
    if units != "h3:8":
        assert ledger.loc[ledger.reason == "outside_study_area", "row"].tolist() == [4101]
        assert many.table["count"].sum() == 4995


def test_hand_count(tmp_path, client):
    """Six points in three files; counts checked by hand."""
    wards = gpd.GeoDataFrame({"code": ["A", "B"]}, geometry=[shapely.box(X0, Y0, X0 + 1000, Y0 + 1000),
                                                             shapely.box(X0 + 1000, Y0, X0 + 2000, Y0 + 1000)], crs=CRS)
    wards.to_file(tmp_path / "w.gpkg")
    xy = [(X0 + 100, Y0 + 100), (X0 + 900, Y0 + 900), (X0 + 1500, Y0 + 500), (X0 + 1600, Y0 + 500),
          (X0 + 1700, Y0 + 500), (X0 + 5000, Y0 + 500)]
    ll = gpd.GeoSeries(gpd.points_from_xy(*zip(*xy)), crs=CRS).to_crs(4326)
    table = pa.table({"lon": ll.x.to_numpy(), "lat": ll.y.to_numpy()})
    _write(table, tmp_path / "pts", [2, 3, 1], 2)
    agg = aggregate_points(tmp_path / "pts", f"{tmp_path / 'w.gpkg'}:code", lon="lon", lat="lat", scheduler=client)
    # A holds points 1–2 (file 1), B points 3–5 (file 2); point 6 (file 3, row 6) is outside both
    assert dict(zip(agg.table.unit_id, agg.table["count"])) == {"A": 2, "B": 3}
    led = agg.ledger.to_frame()
    assert led[led.source == "points"][["row", "reason"]].values.tolist() == [[6, "outside_study_area"]]


def test_study_on_dask_equals_single_machine(tmp_path, client):
    """The Demo City's 198,246 incidents as a 4-file dataset: intake, units and measures (counts at
    the H3, neighbourhood, district and city levels × year × category) equal, ledger row for row."""
    from usm_geo.demo import DEMO_SEED, generate_demo_inputs
    from usm_geo.intake.files import read_text_table
    from usm_geo.intake.ledger import Ledger
    from usm_geo.pipeline import run_intake, run_measures, run_units
    from usm_geo.study import load_study

    study = load_study(generate_demo_inputs(tmp_path / "demo", seed=DEMO_SEED))
    raw = read_text_table(study.incidents.path, "incidents", Ledger())  # every column as text, as in the CSV
    table = pa.Table.from_pandas(raw.frame, preserve_index=False)
    n = table.num_rows
    _write(table, tmp_path / "incidents", [n // 4, n // 4, n // 4, n - 3 * (n // 4)], 20_000)
    study = dataclasses.replace(study, incidents=dataclasses.replace(study.incidents, path=tmp_path / "incidents"))
    one = run_intake(study)
    many = run_intake(study, scheduler=client)
    assert many.incidents is None and many.counted is not None
    m1 = run_measures(one, run_units(one))
    m2 = run_measures(many, run_units(many))
    assert set(m1["level"]) == {"h3_9", "neighbourhood", "district", "city"}
    pd.testing.assert_frame_equal(m1, m2)
    pd.testing.assert_frame_equal(one.ledger.to_frame(), many.ledger.to_frame())
    assert many.ledger.totals()["incidents"] == {"read": 198_246, "used": 198_238, "dropped": 8}
    # dropping duplicates would depend on the parts (they are found within a part): refused
    drop = dataclasses.replace(study, incidents=dataclasses.replace(study.incidents, duplicates="drop"))
    with pytest.raises(UsmGeoError, match='duplicates = "drop" cannot be used on Dask'):
        run_intake(drop, scheduler=client)


def test_cli_aggregate_defaults_to_local_cluster_for_a_folder(synthetic, tmp_path):
    """`usm-geo aggregate FOLDER` starts a LocalCluster of worker processes (--scheduler local:2)."""
    folder, wards, _ = synthetic
    out = tmp_path / "counts.csv"
    result = CliRunner().invoke(main, ["aggregate", str(folder), "--units", f"{wards}:code", "--lon", "lon", "--lat",
                                       "lat", "--scheduler", "local:2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "points: read 5,000, used 4,996, dropped 4" in result.output  # no --time: dates unchecked
    counts = pd.read_csv(out, dtype={"unit_id": str})
    reference = aggregate_points(folder, f"{wards}:code", lon="lon", lat="lat").table
    assert counts["count"].tolist() == reference["count"].tolist() and counts["count"].sum() == 4996


def test_errors(synthetic, tmp_path):
    folder, wards, _ = synthetic
    bad = CliRunner().invoke(main, ["aggregate", str(folder), "--units", "h3:8", "--scheduler", "nonsense",
                                    "--out", str(tmp_path / "o.csv")])
    assert bad.exit_code == 2 and "unknown scheduler 'nonsense'" in bad.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="holds no .parquet files"):
        partitions(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    pq.write_table(pa.table({"lon": [1.0], "lat": [2.0]}), tmp_path / "mixed" / "a.parquet")
    pq.write_table(pa.table({"lon": [1.0], "y": [2.0]}), tmp_path / "mixed" / "b.parquet")
    with pytest.raises(InputFileError, match=r"b.parquet: the file's columns differ from those of a.parquet \(lat, y\)"):
        partitions(tmp_path / "mixed")
    (tmp_path / "p.csv").write_text("lon,lat\n1,2\n")
    with pytest.raises(UsmGeoError, match="only Parquet/GeoParquet input is read in parts"):
        aggregate_points(tmp_path / "p.csv", "h3:8", scheduler="threads")
