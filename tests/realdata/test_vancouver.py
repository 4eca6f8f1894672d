"""Vancouver police incidents 2022 (tests/data/vancouver, see its SOURCE.md): the date in integer
parts (YEAR, MONTH, DAY, HOUR, MINUTE) and bare projected X/Y in UTM 10N, run end to end through
`usm-geo run` with no population. Counts per local area × month are checked against an independent
geopandas sjoin + groupby on the raw CSV."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "vancouver"
CSV = DATA / "crimedata_csv_AllNeighbourhoods_2022.csv.gz"
AREAS = DATA / "local-area-boundary.geojson"

STUDY = f"""
[study]
name = "Vancouver 2022"
timezone = "America/Vancouver"

[inputs.incidents]
path = "{CSV.as_posix()}"
x = "X"
y = "Y"
crs = "EPSG:26910"
year = "YEAR"
month = "MONTH"
day = "DAY"
hour = "HOUR"
minute = "MINUTE"
category = "TYPE"

[[inputs.boundaries]]
level = "local_area"
path = "{AREAS.as_posix()}"
id = "name"
name = "name"

[periods]
frequency = "month"
start = "2022-01-01"
end = "2022-12-31"
"""


@pytest.fixture(scope="module")
def vancouver_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vancouver")
    study = folder / "study.toml"
    study.write_text(STUDY, encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _raw() -> pd.DataFrame:
    with gzip.open(CSV) as f:
        return pd.read_csv(f)


def test_counts_per_local_area_and_month_match_an_independent_sjoin(vancouver_run):
    raw = _raw()
    assert len(raw) == 34_323
    pts = raw[raw.X.notna() & (raw.X != 0) & (raw.Y != 0)].copy()
    pts["period"] = pd.to_datetime(pts[["YEAR", "MONTH", "DAY"]].rename(columns=str.lower)).dt.strftime("%Y-%m")
    gpts = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(pts.X, pts.Y), crs="EPSG:26910")
    areas = gpd.read_file(AREAS)[["name", "geometry"]].to_crs("EPSG:26910")
    joined = gpd.sjoin(gpts, areas, predicate="within", how="inner")
    expected = joined.groupby(["name", "period"]).size()

    measures = pd.read_csv(vancouver_run / "measures.csv", dtype={"unit_id": str, "period": str})
    got = measures[(measures.level == "local_area") & (measures.measure == "count") & (measures.category == "all")]
    got = got.set_index(["unit_id", "period"])["value"]
    assert len(got) == 22 * 12
    aligned = expected.reindex(got.index, fill_value=0)
    # a point on a shared edge may fall to either neighbour in a within-join: the totals agree to a handful
    assert (got - aligned).abs().sum() <= 10
    assert abs(int(got.sum()) - len(joined)) <= 10
    # per category too (TYPE): the eleven offence types are the categories
    cats = measures[(measures.level == "city") & (measures.measure == "count") & (measures.category != "all")]
    by_type = cats.groupby("category")["value"].sum()
    want = joined.groupby("TYPE").size()
    assert set(by_type.index) <= set(raw.TYPE)
    assert (by_type - want.reindex(by_type.index)).abs().sum() <= 10


def test_ledger_accounts_for_zero_and_missing_coordinates(vancouver_run):
    raw = _raw()
    ledger = pd.read_csv(vancouver_run / "ledger.csv", dtype={"detail": str})
    inc = ledger[ledger.source == "incidents"]
    zero = inc[(inc.reason == "zero_coordinate") & (inc.status == "dropped")]
    assert len(zero) == int(((raw.X == 0) | (raw.Y == 0)).sum()) == int((raw.X == 0).sum()) == 3_944
    assert (inc.reason == "missing_coordinates").sum() == int(raw.X.isna().sum()) == 1
    # every date part of 2022 is valid: nothing dropped for its date
    assert not inc.reason.isin(["invalid_date_parts", "outside_study_period"]).any()


def test_map_and_every_geopackage_pass_gdal(vancouver_run):
    assert (vancouver_run / "map.html").stat().st_size > 10_000
    packages = sorted(vancouver_run.rglob("*.gpkg"))
    assert packages
    for gpkg in packages:
        info = subprocess.run(["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True)
        assert info.returncode == 0, info.stderr
        assert "Feature Count" in info.stdout


def test_the_dask_path_reads_date_parts_the_same(vancouver_run, tmp_path):
    """The same study on a Parquet copy counted part by part on Dask (integer parts, not text)."""
    _raw().to_parquet(tmp_path / "van.parquet")
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace(CSV.as_posix(), (tmp_path / "van.parquet").as_posix()), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet", "--scheduler", "threads"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "measures.csv").equals(pd.read_csv(vancouver_run / "measures.csv"))
    assert pd.read_csv(out / "ledger.csv").equals(pd.read_csv(vancouver_run / "ledger.csv"))
