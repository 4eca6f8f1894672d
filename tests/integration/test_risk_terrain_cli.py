"""`usm-geo model` with a point layer of features and `[model] risk_terrain` on the Demo City.

The test writes 120 "bars" (seeded uniform points over the city's bounds plus 1 km, x/y in
EPSG:32633) — some fall outside the city and must be in the ledger. References computed here:
counts per neighbourhood by a geopandas sjoin, distances with shapely, the risk layers by hand
(numpy over every cell × bar pair), the relative risk from the written rate ratios, the GeoTIFF read
back with rasterio and gdalinfo, and a second run for byte equality.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from usm_geo.cli import main

CELL = 500.0
BANDWIDTH = 800.0
OUTPUTS = ("risk_terrain.tif", "risk_terrain.csv", "risk_terrain.json", "risk_terrain_map.html", "model.json", "ledger.csv")


@pytest.fixture(scope="module")
def rtm_run(demo, tmp_path_factory):
    out, _ = demo
    base = tmp_path_factory.mktemp("rtm")
    inputs = base / "inputs"
    shutil.copytree(out / "inputs", inputs)
    nb = gpd.read_file(inputs / "demo_city.gpkg", layer="neighbourhoods")
    b = nb.total_bounds
    rng = np.random.default_rng(7)
    bars = pd.DataFrame({"bar_id": np.arange(120), "east": rng.uniform(b[0] - 1000, b[2] + 1000, 120).round(2),
                         "north": rng.uniform(b[1] - 1000, b[3] + 1000, 120).round(2)})
    bars.to_csv(inputs / "bars.csv", index=False)
    study = (inputs / "study.toml").read_text(encoding="utf-8")
    study += ('\n[[inputs.covariates]]\nname = "bars"\npath = "bars.csv"\nx = "east"\ny = "north"\ncrs = "EPSG:32633"\n'
              'unit_level = "neighbourhood"\nmeasures = ["count", "density", "distance"]\n'
              f'\n[model]\nrisk_terrain = true\ncell_size = {CELL:g}\nfeatures = [{{ name = "bars", operation = "distance" }}, '
              f'{{ name = "bars", operation = "density", bandwidth = {BANDWIDTH:g} }}]\n')
    (inputs / "study.toml").write_text(study, encoding="utf-8")
    results = [CliRunner().invoke(main, ["model", str(inputs / "study.toml"), "--out", str(base / f"out{i}")]) for i in (1, 2)]
    return base, results, bars, nb


def test_point_covariates_equal_a_sjoin_and_outside_features_are_in_the_ledger(rtm_run):
    from usm_geo.pipeline import run_intake
    from usm_geo.study import load_study

    base, results, bars, nb = rtm_run
    assert results[0].exit_code == 0, results[0].output
    pts = gpd.GeoDataFrame(bars, geometry=gpd.points_from_xy(bars["east"], bars["north"]), crs="EPSG:32633")
    joined = gpd.sjoin(pts, nb[["nbhd_id", "geometry"]], predicate="within")
    outside = sorted(set(bars["bar_id"]) - set(joined["bar_id"]))
    assert 0 < len(outside) < 120
    ledger = pd.read_csv(base / "out1" / "ledger.csv")
    dropped = ledger[(ledger["source"] == "covariates/bars") & (ledger["reason"] == "outside_study_area")]
    assert sorted(dropped["row"] - 1) == outside  # rows are 1-based, bar_id 0-based
    intake = run_intake(load_study(base / "inputs" / "study.toml"))
    table = intake.covariates["neighbourhood"].set_index("unit_id")
    ref = joined.groupby("nbhd_id").size().reindex(table.index).fillna(0).astype(int)
    assert (table["bars_count"] == ref).all()
    area = nb.set_index("nbhd_id").geometry.area.reindex(table.index) / 1e6
    np.testing.assert_allclose(table["bars_density"], ref / area, rtol=1e-12)
    inside = joined.geometry.to_numpy()
    for uid, geom in nb.set_index("nbhd_id").geometry.items():
        assert table.loc[uid, "bars_distance"] == pytest.approx(min(geom.centroid.distance(p) for p in inside), rel=1e-9)
    model = json.loads((base / "out1" / "model.json").read_text(encoding="utf-8"))["neighbourhood"]
    assert [c["term"] for c in model["coefficients"]] == ["(intercept)", "bars_count", "bars_density", "bars_distance"]


def _layers_by_hand(nb, bars_in, x0, y1, rows, cols):
    cx = x0 + CELL * (np.arange(cols) + 0.5)
    cy = y1 - CELL * (np.arange(rows) + 0.5)
    X, Y = np.meshgrid(cx, cy)
    d2 = (X[..., None] - bars_in[:, 0]) ** 2 + (Y[..., None] - bars_in[:, 1]) ** 2
    dist = np.sqrt(d2.min(axis=2))
    h = BANDWIDTH
    dens = np.where(d2 < h * h, 3 / (np.pi * h * h) * (1 - d2 / (h * h)) ** 2, 0.0).sum(axis=2) * 1e6
    inside = shapely.contains_xy(nb.geometry.union_all(), X, Y)
    return dist, dens, inside


def test_relative_risk_geotiff_reads_back_with_rasterio_and_gdalinfo(rtm_run):
    import rasterio
    from affine import Affine

    base, results, bars, nb = rtm_run
    assert results[0].exit_code == 0, results[0].output
    assert "risk terrain" in results[0].output and "bars_distance_100m: rate ratio" in results[0].output
    minx, miny, maxx, maxy = nb.geometry.union_all().bounds
    x0, y1 = np.floor(minx / CELL) * CELL, np.ceil(maxy / CELL) * CELL
    cols, rows = int(np.ceil(maxx / CELL) - np.floor(minx / CELL)), int(np.ceil(maxy / CELL) - np.floor(miny / CELL))
    with rasterio.open(base / "out1" / "risk_terrain.tif") as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform == Affine(CELL, 0, x0, 0, -CELL, y1)
        assert (src.height, src.width) == (rows, cols) and src.dtypes == ("float32",)
        values = src.read(1)
        assert src.tags()["UNITS"].startswith("relative risk")
    pts = gpd.GeoDataFrame(bars, geometry=gpd.points_from_xy(bars["east"], bars["north"]), crs="EPSG:32633")
    used = gpd.sjoin(pts, nb[["nbhd_id", "geometry"]], predicate="within")
    dist, dens, inside = _layers_by_hand(nb, used[["east", "north"]].to_numpy(float), x0, y1, rows, cols)
    assert (np.isfinite(values) == inside).all()
    rr = pd.read_csv(base / "out1" / "risk_terrain.csv").set_index("term")
    eta = rr.loc["bars_distance_100m", "coef"] * dist / 100 + rr.loc["bars_density_km2", "coef"] * dens
    ref = np.exp(eta[inside]) / np.exp(eta[inside]).mean()
    np.testing.assert_allclose(values[inside], ref, rtol=2e-6)  # float32 in the file
    assert (rr["rr_lower"] < rr["rate_ratio"]).all() and (rr["rate_ratio"] < rr["rr_upper"]).all()
    np.testing.assert_allclose(rr["rate_ratio"], np.exp(rr["coef"]), rtol=1e-12)
    info = subprocess.run(["gdalinfo", str(base / "out1" / "risk_terrain.tif")], capture_output=True, text=True, check=True).stdout
    assert f"Size is {cols}, {rows}" in info and "Pixel Size = (500.000000000000000,-500.000000000000000)" in info
    assert 'ID["EPSG",32633]' in info and "relative risk" in info
    summary = json.loads((base / "out1" / "risk_terrain.json").read_text(encoding="utf-8"))
    assert summary["fit"]["cells_in_area"] == int(inside.sum())
    assert any("not causes" in c for c in summary["caveats"])


def test_same_study_same_bytes_and_the_map_is_offline(rtm_run):
    base, results, _, _ = rtm_run
    assert results[1].exit_code == 0, results[1].output
    for name in OUTPUTS:
        assert (base / "out1" / name).read_bytes() == (base / "out2" / name).read_bytes(), name
    html = (base / "out1" / "risk_terrain_map.html").read_text(encoding="utf-8")
    assert "Relative risk (risk terrain)" in html
    assert 'src="http' not in html and "href=\"http" not in html.replace('href="https://leafletjs.com"', "")


@pytest.fixture(scope="module")
def rtm_public_run(rtm_run):
    """`usm-geo run` of the same study in the public profile: the model outputs come with the run."""
    base, results, bars, nb = rtm_run
    text = (base / "inputs" / "study.toml").read_text(encoding="utf-8")
    assert 'profile = "internal"' in text
    study = base / "inputs" / "public.toml"
    study.write_text(text.replace('profile = "internal"', 'profile = "public"'), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(base / "run"), "--quiet"])
    return base, result, bars, nb


def test_run_writes_the_model_outputs_of_model_and_publishes_no_small_count(rtm_public_run):
    base, result, bars, nb = rtm_public_run
    assert result.exit_code == 0, result.output
    run, model = base / "run", base / "out1"
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    for name in ("risk_terrain.tif", "risk_terrain.csv", "risk_terrain.json", "risk_terrain_map.html",
                 "covariates.csv", "resilience.csv", "model.json"):
        assert name in info["outputs"]["files"] and (run / name).is_file(), name
    # one code path: the surface and its rate ratios are those `usm-geo model` wrote
    assert (run / "risk_terrain.tif").read_bytes() == (model / "risk_terrain.tif").read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(run / "risk_terrain.csv"), pd.read_csv(model / "risk_terrain.csv"))
    # covariates.csv: the bars per neighbourhood, as a geopandas sjoin counts them
    pts = gpd.GeoDataFrame(bars, geometry=gpd.points_from_xy(bars["east"], bars["north"]), crs="EPSG:32633")
    ref = gpd.sjoin(pts, nb[["nbhd_id", "geometry"]], predicate="within").groupby("nbhd_id").size()
    cov = pd.read_csv(run / "covariates.csv", dtype={"unit_id": str})
    cov = cov[cov["level"] == "neighbourhood"].set_index("unit_id")
    assert len(cov) == 60
    assert (cov["bars_count"] == ref.reindex(cov.index).fillna(0).astype(int)).all()
    # resilience.csv in public: observed counts 0 or >= k, expected blank beside a withheld count;
    # the survey shares are the run's measures of that unit and period
    k = info["outputs"]["suppression_threshold"]
    res = pd.read_csv(run / "resilience.csv", dtype={"unit_id": str, "period": str, "safe_after_dark_share_period": str})
    obs = res["observed"].dropna()
    assert len(obs) and not ((obs >= 1) & (obs < k)).any()
    assert res.loc[res["observed"].isna(), "expected"].isna().all()
    m = pd.read_csv(run / "measures.csv", dtype={"unit_id": str, "period": str})
    share = m[(m["measure"] == "safe_after_dark_share") & (m["category"] == "all")]
    got = res.dropna(subset=["safe_after_dark_share"]).merge(
        share, left_on=["level", "unit_id", "safe_after_dark_share_period"], right_on=["level", "unit_id", "period"])
    assert len(got) > 30
    np.testing.assert_allclose(got["safe_after_dark_share"], got["value"], rtol=1e-12)
    # no file of the model carries a cell count below k
    rtj = json.loads((run / "risk_terrain.json").read_text(encoding="utf-8"))
    for key in ("incidents_in_cells", "incidents_outside_cells"):
        v = rtj["fit"].get(key)
        assert v is None or v == 0 or v >= k, (key, v)
