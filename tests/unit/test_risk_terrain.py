"""Point-layer covariates (usm_geo.intake.covariates.point_measures) and the risk terrain model
(usm_geo.models.risk_terrain), each against an independent computation written here: geopandas
sjoin for counts, shapely ``distance`` point by point, kernel sums by hand over every pair,
np.histogram2d for the cell counts and statsmodels' NB2 fit on the same cell table."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Point, box

from usm_geo.errors import UsmGeoError
from usm_geo.intake.covariates import point_measures
from usm_geo.models.risk_terrain import (CAVEATS, cell_counts, density_layer, distance_layer, grid_over,
                                         relative_risk, risk_terrain)
from usm_geo.study import RiskFeature

CRS = "EPSG:32633"


def _squares():
    """A 3 × 3 block of 1 km squares (working CRS, metres), ids sorted in a shuffled file order."""
    geoms = [box(500_000 + i * 1000, 5_800_000 + j * 1000, 500_000 + (i + 1) * 1000, 5_800_000 + (j + 1) * 1000)
             for j in range(3) for i in range(3)]
    ids = [f"U{k}" for k in (4, 1, 7, 0, 8, 2, 6, 3, 5)]
    return gpd.GeoDataFrame({"unit_id": ids}, geometry=geoms, crs=CRS)


def _features(n=40, seed=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(500_050, 502_950, n), rng.uniform(5_800_050, 5_802_950, n)


def test_point_counts_equal_a_geopandas_sjoin_and_densities_and_distances_by_hand():
    units = _squares()
    fx, fy = _features()
    got = point_measures(fx, fy, units.geometry.to_numpy(), units["unit_id"].to_numpy(dtype=object),
                         ("count", "density", "distance"), "bars")
    assert list(got.columns) == ["unit_id", "bars_count", "bars_density", "bars_distance"]
    assert list(got["unit_id"]) == sorted(units["unit_id"])
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(fx, fy), crs=CRS)
    joined = gpd.sjoin(pts, units, predicate="within")
    ref = joined.groupby("unit_id").size().reindex(got["unit_id"]).fillna(0).astype(int).to_numpy()
    assert (got["bars_count"].to_numpy() == ref).all() and ref.sum() == len(fx)
    # every square is exactly 1 km²: the density equals the count
    np.testing.assert_allclose(got["bars_density"].to_numpy(), ref / 1.0, rtol=1e-12)
    by_id = units.set_index("unit_id").geometry
    for uid, d in zip(got["unit_id"], got["bars_distance"]):
        c = by_id[uid].centroid
        assert d == pytest.approx(min(c.distance(Point(x, y)) for x, y in zip(fx, fy)), rel=1e-12)


def test_a_feature_on_a_shared_border_counts_once_and_an_empty_layer_has_no_distance():
    units = _squares()
    # x = 501000 is the border between two columns of squares
    got = point_measures([501_000.0], [5_800_500.0], units.geometry.to_numpy(), units["unit_id"].to_numpy(dtype=object),
                         ("count",), "lights")
    assert got["lights_count"].sum() == 1
    empty = point_measures([], [], units.geometry.to_numpy(), units["unit_id"].to_numpy(dtype=object),
                           ("count", "distance"), "lights")
    assert (empty["lights_count"] == 0).all() and empty["lights_distance"].isna().all()


def _area():
    # an L-shaped study area: cells whose centre is outside it are out of the grid's area
    return shapely.union_all([box(0, 0, 3000, 1000), box(0, 1000, 1000, 3000)])


def test_grid_cells_and_counts():
    g = grid_over(_area(), 500)
    assert (g.rows, g.cols) == (6, 6) and g.x0 == 0 and g.y1 == 3000
    assert int(g.inside.sum()) == 6 * 2 + 4 * 2  # bottom two rows (6 cells each) + the left two columns of the 4 rows above
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-200, 3200, 500), rng.uniform(-200, 3200, 500)
    got = cell_counts(g, x, y)
    h, _, _ = np.histogram2d(y, x, bins=[np.arange(0, 3001, 500), np.arange(0, 3001, 500)])
    ref = np.where(g.inside, h[::-1].astype(int), 0)  # histogram rows run south → north, rasters north → south
    assert (got == ref).all()


def test_distance_raster_equals_shapely_distances_from_cell_centres():
    g = grid_over(_area(), 250)
    fx, fy = np.array([100.0, 2900.0, 800.0]), np.array([2900.0, 100.0, 700.0])
    got = distance_layer(g, fx, fy)
    feats = [Point(a, b) for a, b in zip(fx, fy)]
    for r in range(g.rows):
        for c in range(g.cols):
            centre = Point(125 + 250 * c, g.y1 - 125 - 250 * r)
            if g.inside[r, c]:
                assert got[r, c] == pytest.approx(min(centre.distance(f) for f in feats), rel=1e-12)
            else:
                assert np.isnan(got[r, c])


@pytest.mark.parametrize("kernel", ["quartic", "gaussian"])
def test_density_raster_equals_a_hand_kernel_sum(kernel):
    g = grid_over(_area(), 250)
    rng = np.random.default_rng(5)
    fx, fy = rng.uniform(0, 3000, 60), rng.uniform(0, 3000, 60)
    fx[0], fy[0] = 125.0, 125.0  # one feature exactly on a cell centre (distance 0)
    h = 400.0
    got = density_layer(g, fx, fy, h, kernel)
    cx = 125 + 250 * np.arange(g.cols)
    cy = g.y1 - 125 - 250 * np.arange(g.rows)
    X, Y = np.meshgrid(cx, cy)
    d2 = (X[..., None] - fx) ** 2 + (Y[..., None] - fy) ** 2  # every cell × every feature
    if kernel == "quartic":
        k = np.where(d2 < h * h, 3 / (np.pi * h * h) * (1 - d2 / (h * h)) ** 2, 0.0)
    else:
        k = np.exp(-d2 / (2 * h * h)) / (2 * np.pi * h * h)
    ref = k.sum(axis=2) * 1e6  # per m² → per km²
    np.testing.assert_allclose(got[g.inside], ref[g.inside], rtol=1e-10, atol=1e-12)
    assert np.isnan(got[~g.inside]).all()


def _rtm(seed=11):
    area = shapely.box(0, 0, 4000, 4000)
    rng = np.random.default_rng(seed)
    bx, by = rng.uniform(0, 4000, 25), rng.uniform(0, 4000, 25)
    # incidents: more near the bars (a cluster around each) plus a uniform background
    near = rng.integers(0, 25, 900)
    ix = np.concatenate([bx[near] + rng.normal(0, 150, 900), rng.uniform(0, 4000, 600)])
    iy = np.concatenate([by[near] + rng.normal(0, 150, 900), rng.uniform(0, 4000, 600)])
    feats = {"bars": pd.DataFrame({"x": bx, "y": by})}
    specs = [RiskFeature("bars", "distance"), RiskFeature("bars", "density", 600.0, "quartic")]
    return risk_terrain(ix, iy, feats, specs, area, 250.0), (ix, iy, bx, by)


def test_risk_terrain_fit_equals_statsmodels_and_the_surface_is_exp_xb_over_its_mean():
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    rt, (ix, iy, bx, by) = _rtm()
    g = rt.grid
    inside = g.inside
    assert inside.all() and (g.rows, g.cols) == (16, 16)
    y = rt.counts[inside].astype(float)
    assert y.sum() == ((ix >= 0) & (ix < 4000) & (iy >= 0) & (iy < 4000)).sum()
    X = sm.add_constant(np.column_stack([rt.layers["bars_distance_100m"][inside], rt.layers["bars_density_km2"][inside]]))
    ref = NegativeBinomial(y, X, offset=np.full(len(y), np.log(0.0625)), loglike_method="nb2").fit(
        disp=False, method="bfgs", maxiter=2000)
    t = rt.rate_ratios.set_index("term")
    assert t.loc["bars_distance_100m", "coef"] == pytest.approx(ref.params[1], rel=1e-4)
    assert t.loc["bars_density_km2", "coef"] == pytest.approx(ref.params[2], rel=1e-4)
    assert t.loc["bars_distance_100m", "rate_ratio"] < 1  # incidents cluster near bars: farther → fewer
    assert t.loc["bars_distance_100m", "rr_lower"] < t.loc["bars_distance_100m", "rate_ratio"] < t.loc["bars_distance_100m", "rr_upper"]
    eta = ref.params[1] * X[:, 1] + ref.params[2] * X[:, 2]
    rr = np.exp(eta) / np.exp(eta).mean()
    np.testing.assert_allclose(rt.relative_risk[inside], rr, rtol=1e-4)
    assert rt.relative_risk[inside].mean() == pytest.approx(1.0, rel=1e-12)
    # also μ̂ / mean μ̂ of the fitted model itself
    mu = rt.model.units["expected"].to_numpy()
    np.testing.assert_allclose(rt.relative_risk[inside], mu / mu.mean(), rtol=1e-8)
    assert any("not" in c and "cause" in c for c in CAVEATS)


def test_same_inputs_same_surface_and_refusals():
    a, _ = _rtm()
    b, _ = _rtm()
    assert a.relative_risk.tobytes() == b.relative_risk.tobytes()
    with pytest.raises(UsmGeoError, match="cells"):
        grid_over(shapely.box(0, 0, 1e6, 1e6), 1.0)
    with pytest.raises(UsmGeoError, match="study area"):
        grid_over(None, 250)
    with pytest.raises(UsmGeoError, match="at least one feature"):
        distance_layer(grid_over(_area(), 500), [], [])


def test_relative_risk_uses_only_the_layer_terms():
    # a hand model: coefficients of a fake CountModel-like object
    class M:
        coefficients = pd.DataFrame({"term": ["(intercept)", "a"], "coef": [5.0, np.log(2.0)]})

    inside = np.array([[True, True], [True, False]])
    layer = np.array([[0.0, 1.0], [2.0, np.nan]])
    got = relative_risk(M, {"a": layer}, inside)
    ref = np.array([1.0, 2.0, 4.0]) / (7.0 / 3.0)
    np.testing.assert_allclose(got[inside], ref, rtol=1e-12)
    assert np.isnan(got[1, 1])


STUDY = """
[study]
name = "Testville"
working_crs = "EPSG:32633"

[inputs.incidents]
path = "inc.csv"
lon = "lon"
lat = "lat"

[[inputs.boundaries]]
level = "n"
path = "b.gpkg"
id = "id"

[[inputs.covariates]]
name = "bars"
path = "bars.csv"
x = "east"
y = "north"
crs = "EPSG:32633"
unit_level = "n"
measures = ["count", "distance"]
"""


@pytest.fixture
def files(tmp_path):
    for name in ("inc.csv", "b.gpkg", "bars.csv"):
        (tmp_path / name).write_text("x\n")
    return tmp_path


def test_study_reads_point_layers_and_the_risk_terrain_settings(write_study, files):
    from usm_geo.study import load_study

    s = load_study(write_study(STUDY + '\n[model]\nrisk_terrain = true\ncell_size = 200\nfeatures = [{ name = "bars", '
                                       'operation = "density", bandwidth = 500 }, { name = "bars" }]\n'))
    (c,) = s.covariates
    assert c.feature == "bars" and c.columns == ("bars_count", "bars_distance") and c.measures == ("count", "distance")
    assert c.points.x == "east" and c.points.crs == "EPSG:32633" and c.points.name == "covariates/bars"
    assert s.model.risk_terrain and s.model.cell_size == 200.0
    assert s.model.features == (RiskFeature("bars", "density", 500.0, "quartic"), RiskFeature("bars", "distance", None, "quartic"))


@pytest.mark.parametrize("extra, message", [
    ('\n[model]\nrisk_terrain = true\nfeatures = [{ name = "pubs" }]\n', "no point layer"),
    ('\n[model]\nrisk_terrain = true\nfeatures = [{ name = "bars", operation = "density" }]\n', "bandwidth"),
    ('\n[model]\nrisk_terrain = true\nfeatures = [{ name = "bars", bandwidth = 300 }]\n', "applies only"),
    ('\n[model]\nrisk_terrain = true\n', "at least one risk feature"),
    ('\n[model]\nrisk_terrain = true\ncell_size = 0\nfeatures = [{ name = "bars" }]\n', "positive"),
    ('\n[model]\nfeatures = [{ name = "bars" }]\n', "risk_terrain is not"),
])
def test_study_refuses_bad_risk_terrain_settings(write_study, files, extra, message):
    from usm_geo.errors import StudyError
    from usm_geo.study import load_study

    with pytest.raises(StudyError, match=message):
        load_study(write_study(STUDY + extra))


@pytest.mark.parametrize("old, new, message", [
    ('measures = ["count", "distance"]', 'measures = ["count", "nearness"]', "measures"),
    ('name = "bars"', 'name = "bars and pubs"', "plain name"),
    ('unit_level = "n"', 'unit_level = "n"\ndate = "opened"', "does not apply to a point layer"),
])
def test_study_refuses_bad_point_layers(write_study, files, old, new, message):
    from usm_geo.errors import StudyError
    from usm_geo.study import load_study

    with pytest.raises(StudyError, match=message):
        load_study(write_study(STUDY.replace(old, new)))
