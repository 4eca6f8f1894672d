"""A study with only incidents and boundaries (no population, no survey) runs to the end through the
CLI: counts per community area and year, a map of counts, GeoPackages GDAL reads, every rate listed
as not computed, a report card without rate rows, and `export`/`map` on the run folder."""

from __future__ import annotations

import json
import subprocess
import zipfile

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, chicago_study_text, need_shared
from usm_geo.cli import main


@pytest.fixture(scope="module")
def counts_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chicago_counts")
    study = folder / "study.toml"
    study.write_text(chicago_study_text(), encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_counts_per_area_and_year_match_an_independent_sjoin(counts_run):
    out, _ = counts_run
    pts = pd.read_csv(need_shared(*CHICAGO_ASSAULTS), usecols=["date", "longitude", "latitude"])
    areas = gpd.read_file(f"zip://{need_shared(*CHICAGO_AREAS)}")[["area_num_1", "geometry"]].set_crs("EPSG:4326", allow_override=True)
    gpts = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(pts.longitude, pts.latitude), crs="EPSG:4326")
    joined = gpd.sjoin(gpts, areas, predicate="within", how="inner")
    joined["year"] = joined["date"].str[:4]
    joined["unit_id"] = joined["area_num_1"].astype(int).astype(str)
    expected = joined.groupby(["unit_id", "year"]).size()

    measures = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str})
    got = measures[(measures.level == "community_area") & (measures.measure == "count") & (measures.category == "all")]
    got = got.set_index(["unit_id", "period"])["value"]
    assert len(got) == 77 * 10
    # points on a shared edge may fall to either neighbour in a within-join; the totals must agree to a handful
    aligned = expected.reindex(got.index, fill_value=0)
    assert (got - aligned).abs().sum() <= 10
    assert int(got.sum()) == 148_536  # every assault but the 100 outside the community areas

    # the exported layer carries the same counts (the tables show counts when there is no rate)
    layer = gpd.read_file(out / "areas.gpkg", layer="community_area")
    assert {"count", "count_n", "count_flags"} <= set(layer.columns)
    assert not any(c.endswith("rate") for c in layer.columns)
    by_layer = layer.assign(unit_id=layer.unit_id.astype(str), period=layer.period.astype(str)).set_index(["unit_id", "period"])["count"]
    assert (by_layer.reindex(got.index) == got).all()


def test_map_shows_counts_and_says_so(counts_run):
    out, stdout = counts_run
    html = (out / "map.html").read_text(encoding="utf-8")
    assert "Incidents (count)" in html
    assert "a count, not a rate: the study has no population" in html
    assert "no indicator could be computed: the tables and map.html show incident counts" in stdout


def test_geopackages_pass_ogrinfo(counts_run):
    out, _ = counts_run
    for gpkg in sorted(out.glob("*.gpkg")):
        proc = subprocess.run(["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "Feature Count" in proc.stdout


def test_run_json_lists_every_rate_as_not_computed_and_promises_only_written_files(counts_run):
    out, stdout = counts_run
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["indicators"]["computed"] == []
    not_computed = info["indicators"]["not_computed"]
    rates = [i for i, d in info["indicator_definitions"].items() if d.get("kind") == "rate"] or \
        ["incident_rate", "homicide_rate", "violent_crime_rate"]
    for rate in rates:
        assert "no population" in not_computed[rate]
        assert f"  {rate}: {not_computed[rate]}" in stdout  # and on screen
    files = info["outputs"]["files"]
    assert files == sorted(p.name for p in out.iterdir() if p.is_file())
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert all((out / f).is_file() for f in meta["files"])
    assert "map.html" in meta["files"]


def test_report_card_has_no_rate_rows(counts_run):
    out, _ = counts_run
    card = json.loads((out / "report_card.json").read_text(encoding="utf-8"))
    assert not [r for r in card if r.get("kind") == "rate" or "rate" in r["indicator"]]


def test_export_and_map_on_a_counts_run(counts_run, tmp_path):
    out, _ = counts_run
    exp = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", str(out), "--format", "shp", "--format", "html", "--out", str(exp)])
    assert result.exit_code == 0, result.output
    assert (exp / "shapefiles.zip").is_file() and (exp / "map.html").is_file()
    with zipfile.ZipFile(exp / "shapefiles.zip") as z:  # long layout: one shapefile per level and period
        layers = sorted(m for m in z.namelist() if m.startswith("community_area_") and m.endswith(".shp"))
    assert layers
    shp = pd.concat([gpd.read_file(f"zip://{exp / 'shapefiles.zip'}!{m}") for m in layers])
    assert all(len(gpd.read_file(f"zip://{exp / 'shapefiles.zip'}!{m}")) == 77 for m in layers[:1])  # every area
    public_counts = pd.to_numeric(shp["count"], errors="coerce")
    assert public_counts.notna().any() and (public_counts.dropna() >= 5).all()  # public profile: 1…4 suppressed
    page = tmp_path / "counts.html"
    result = CliRunner().invoke(main, ["map", str(out), "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert "Incidents (count)" in page.read_text(encoding="utf-8")
