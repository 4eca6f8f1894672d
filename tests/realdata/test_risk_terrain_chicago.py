"""Point covariates and the risk terrain model on real data: Chicago's aggravated assaults of 2019
(../shared/data) against the CTA 'L' stations (tests/data/chicago-cta-l-stops, City of Chicago data
terms), over the 77 community areas in EPSG:32616.

Independent references computed here: station counts per community area by a geopandas sjoin,
distances with shapely, the grid layers by numpy over every cell × station pair, incidents per cell
by np.histogram2d, the NB2 fit by statsmodels on that hand-made cell table, and the relative-risk
surface exp(Xβ)/mean recomputed from it."""

from __future__ import annotations

import json
import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, REPO, chicago_rate_inputs, need_shared

pytestmark = pytest.mark.realdata
CTA = REPO / "tests" / "data" / "chicago-cta-l-stops"
CELL, BANDWIDTH = 1000.0, 1500.0
CRS = "EPSG:32616"  # the working CRS of chicago_rate_inputs


@pytest.fixture(scope="module")
def chicago_rtm(tmp_path_factory):
    from usm_geo.pipeline import model_study
    from usm_geo.study import load_study

    base = tmp_path_factory.mktemp("chicago-rtm")
    (base / "study.toml").write_text(chicago_rate_inputs() + textwrap.dedent(f"""
        [[inputs.covariates]]
        name = "cta"
        path = "{CTA / 'cta_l_stations.csv'}"
        lon = "longitude"
        lat = "latitude"
        unit_level = "community_area"
        measures = ["count", "density", "distance"]

        [model]
        risk_terrain = true
        cell_size = {CELL:g}
        features = [{{ name = "cta", operation = "distance" }}, {{ name = "cta", operation = "density", bandwidth = {BANDWIDTH:g} }}]

        [periods]
        frequency = "year"
        start = 2019-01-01
        end = 2019-12-31
        current = "2019"
        """), encoding="utf-8")
    study = load_study(base / "study.toml")
    info = model_study(study, base / "out")
    return base, study, info


def _stations():
    st = pd.read_csv(CTA / "cta_l_stations.csv")
    return gpd.GeoDataFrame(st, geometry=gpd.points_from_xy(st["longitude"], st["latitude"]), crs="EPSG:4326").to_crs(CRS)


def _areas():
    a = gpd.read_file(need_shared(*CHICAGO_AREAS), layer="Chicago_2020").to_crs(CRS)
    return a.assign(area_num_1=a["area_num_1"].astype(int).astype(str))  # 35.0 → "35", as the run's unit ids


def test_the_stations_file_is_the_documented_extract():
    s = pd.read_csv(CTA / "CTA_-_System_Information_-_List_of__L__Stops.csv")
    ll = s["Location"].str.strip("()").str.split(",", expand=True).astype(float)
    ref = (pd.DataFrame({"map_id": s["MAP_ID"], "latitude": ll[0], "longitude": ll[1]})
           .drop_duplicates("map_id", keep="first").sort_values("map_id").reset_index(drop=True))
    st = pd.read_csv(CTA / "cta_l_stations.csv")
    assert len(st) == 143 and st["map_id"].is_unique
    pd.testing.assert_frame_equal(st[["map_id", "latitude", "longitude"]], ref)


def test_station_counts_densities_and_distances_per_community_area(chicago_rtm):
    from usm_geo.intake.covariates import point_measures

    base, study, info = chicago_rtm
    areas = _areas()
    st = _stations()
    joined = gpd.sjoin(st, areas[["area_num_1", "geometry"]], predicate="within")
    ledger = pd.read_csv(base / "out" / "ledger.csv")
    out = ledger[(ledger["source"] == "covariates/cta") & (ledger["reason"] == "outside_study_area")]
    # stations outside the 77 areas (Evanston, Oak Park, Rosemont, …) are in the ledger, one row each
    assert len(out) == 143 - joined["map_id"].nunique() and len(out) > 10
    inside = st[st["map_id"].isin(joined["map_id"])]
    pts = shapely.get_coordinates(inside.geometry.to_numpy())
    got = point_measures(pts[:, 0], pts[:, 1], areas.geometry.to_numpy(), areas["area_num_1"].astype(str).to_numpy(dtype=object),
                         ("count", "density", "distance"), "cta").set_index("unit_id")
    ref = joined.groupby(joined["area_num_1"].astype(str)).size().reindex(got.index).fillna(0)
    assert (got["cta_count"] == ref).all() and ref.sum() == len(inside)
    area_km2 = areas.set_index(areas["area_num_1"].astype(str)).geometry.area.reindex(got.index) / 1e6
    np.testing.assert_allclose(got["cta_density"], ref / area_km2, rtol=1e-12)
    geoms = areas.set_index(areas["area_num_1"].astype(str)).geometry
    for uid in ("8", "32", "44", "76"):  # Near North Side, the Loop, Chatham, O'Hare
        c = geoms[uid].centroid
        assert got.loc[uid, "cta_distance"] == pytest.approx(inside.distance(c).min(), rel=1e-9)
    model = info["models"]["community_area"]
    assert model["status"] == "fitted" and model["n_units"] == 77
    assert [c["term"] for c in model["coefficients"]][1:] == ["cta_count", "cta_density", "cta_distance"]


def test_risk_terrain_on_chicago_equals_a_hand_built_cell_model(chicago_rtm):
    import rasterio
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    base, study, info = chicago_rtm
    areas = _areas()
    union = shapely.union_all(areas.geometry.to_numpy())
    with rasterio.open(base / "out" / "risk_terrain.tif") as src:
        t, rr_file, rows, cols = src.transform, src.read(1), src.height, src.width
        assert src.crs.to_epsg() == 32616 and t.a == CELL and t.e == -CELL
    minx, miny, maxx, maxy = union.bounds
    assert (t.c, t.f) == (np.floor(minx / CELL) * CELL, np.ceil(maxy / CELL) * CELL)
    cx = t.c + CELL * (np.arange(cols) + 0.5)
    cy = t.f - CELL * (np.arange(rows) + 0.5)
    X, Y = np.meshgrid(cx, cy)
    inside = shapely.contains_xy(union, X, Y)
    assert (np.isfinite(rr_file) == inside).all()
    st = _stations()
    st = st[shapely.contains_xy(union, st.geometry.x, st.geometry.y)]
    d2 = (X[..., None] - st.geometry.x.to_numpy()) ** 2 + (Y[..., None] - st.geometry.y.to_numpy()) ** 2
    dist = np.sqrt(d2.min(axis=2))[inside] / 100
    h = BANDWIDTH
    dens = (np.where(d2 < h * h, 3 / (np.pi * h * h) * (1 - d2 / (h * h)) ** 2, 0.0).sum(axis=2) * 1e6)[inside]
    inc = pd.read_csv(need_shared(*CHICAGO_ASSAULTS))
    inc = inc[inc["date"].str.startswith("2019")]
    g = gpd.GeoSeries(gpd.points_from_xy(inc["longitude"], inc["latitude"]), crs="EPSG:4326").to_crs(CRS)
    # the run keeps only incidents inside a community area; a cell's centre decides the cell's area
    keep = shapely.contains_xy(union, g.x, g.y)
    y_edges = t.f - CELL * np.arange(rows + 1)[::-1]  # ascending, south → north
    x_edges = t.c + CELL * np.arange(cols + 1)
    hist, _, _ = np.histogram2d(g.y[keep], g.x[keep], bins=[y_edges, x_edges])
    y = hist[::-1][inside]
    Xd = sm.add_constant(np.column_stack([dist, dens]))
    ref = NegativeBinomial(y, Xd, offset=np.full(len(y), np.log((CELL / 1000) ** 2)), loglike_method="nb2").fit(
        disp=False, method="bfgs", maxiter=3000)
    table = pd.read_csv(base / "out" / "risk_terrain.csv").set_index("term")
    summary = json.loads((base / "out" / "risk_terrain.json").read_text(encoding="utf-8"))
    assert summary["fit"]["incidents_in_cells"] == int(y.sum())
    assert table.loc["cta_distance_100m", "coef"] == pytest.approx(ref.params[1], rel=1e-4)
    assert table.loc["cta_density_km2", "coef"] == pytest.approx(ref.params[2], rel=1e-4)
    eta = ref.params[1] * dist + ref.params[2] * dens
    np.testing.assert_allclose(rr_file[inside], np.exp(eta) / np.exp(eta).mean(), rtol=1e-4)
    # on Chicago's 2019 assaults, cells farther from a station have fewer assaults
    assert table.loc["cta_distance_100m", "rr_upper"] < 1
