"""`usm-geo aggregate`: counts per polygon or H3 cell, by hand, in every output format."""

from __future__ import annotations

import geopandas as gpd
import h3
import pandas as pd
import pyarrow.parquet as pq
import shapely
from click.testing import CliRunner

from usm_geo.cli import main

X0, Y0 = 400_000.0, 5_800_000.0


def _inputs(tmp_path):
    areas = gpd.GeoDataFrame({"code": ["W1", "W2", "W3"]},
                             geometry=[shapely.box(X0 + i * 1000, Y0, X0 + (i + 1) * 1000, Y0 + 1000) for i in range(3)],
                             crs="EPSG:32633")
    areas.to_file(tmp_path / "wards.gpkg")
    # 3 points in W1 (2 thefts in 2020-01, 1 assault in 2020-03), 1 in W2 (2020-03), none in W3, 1 outside
    xy = [(X0 + 100, Y0 + 100), (X0 + 200, Y0 + 200), (X0 + 300, Y0 + 300), (X0 + 1500, Y0 + 500), (X0 + 9000, Y0 + 500)]
    ll = gpd.GeoSeries(gpd.points_from_xy(*zip(*xy)), crs=32633).to_crs(4326)
    pd.DataFrame({"lng": ll.x, "lat": ll.y, "when": ["2020-01-05", "2020-01-09", "2020-03-01", "2020-03-02", "2020-03-03"],
                  "type": ["theft", "theft", "assault", "theft", "theft"]}).to_csv(tmp_path / "pts.csv", index=False)
    return tmp_path / "pts.csv", tmp_path / "wards.gpkg", ll


def test_polygons_with_period_and_category(tmp_path):
    pts, wards, _ = _inputs(tmp_path)
    out = tmp_path / "counts.csv"
    result = CliRunner().invoke(main, ["aggregate", str(pts), "--units", f"{wards}:code", "--lon", "lng", "--lat", "lat",
                                       "--time", "when", "--period", "month", "--category", "type", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "points: read 5, used 4, dropped 1" in result.output
    assert "outside_study_area" in result.output
    table = pd.read_csv(out, dtype={"unit_id": str})
    assert list(table.columns) == ["unit_id", "period", "category", "count"]
    # 3 units × 3 months (2020-01..2020-03, zeros included) × 2 categories
    assert len(table) == 18
    c = table.set_index(["unit_id", "period", "category"])["count"]
    assert c[("W1", "2020-01", "theft")] == 2 and c[("W1", "2020-03", "assault")] == 1
    assert c[("W2", "2020-03", "theft")] == 1 and c.loc["W3"].sum() == 0 and c[("W1", "2020-02", "theft")] == 0
    assert table["count"].sum() == 4


def test_h3_counts_and_gpkg_parquet_outputs(tmp_path):
    pts, _, ll = _inputs(tmp_path)
    expected = pd.Series([h3.latlng_to_cell(b, a, 8) for a, b in zip(ll.x, ll.y)]).value_counts()
    for name in ("h3.gpkg", "h3.parquet"):
        out = tmp_path / name
        result = CliRunner().invoke(main, ["aggregate", str(pts), "--units", "h3:8", "--out", str(out)])
        assert result.exit_code == 0, result.output
        frame = gpd.read_file(out) if name.endswith("gpkg") else gpd.read_parquet(out)
        assert dict(zip(frame.unit_id, frame["count"])) == expected.to_dict()  # only cells holding a point
        assert frame.geometry.geom_type.eq("Polygon").all()
    assert b"geo" in pq.read_schema(tmp_path / "h3.parquet").metadata  # GeoParquet metadata


def test_bad_options_are_clear(tmp_path):
    pts, wards, _ = _inputs(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["aggregate", str(pts), "--units", "h3:99", "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "not an H3 resolution" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["aggregate", str(pts), "--units", f"{wards}:nope", "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "no such column" in r.output
    r = runner.invoke(main, ["aggregate", str(pts), "--units", "h3:9", "--period", "year", "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "--period needs --time" in r.output
    r = runner.invoke(main, ["aggregate", str(pts), "--units", "h3:9", "--out", str(tmp_path / "x.xlsx")])
    assert r.exit_code == 2 and ".csv, .gpkg or .parquet" in r.output
