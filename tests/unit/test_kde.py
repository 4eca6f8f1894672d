"""Kernel density (usm_geo.hotspots.kde) against hand calculations and scipy.stats.gaussian_kde."""

from __future__ import annotations

import hashlib
import math
import statistics
import time

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import Affine

from usm_geo.errors import CRSError, UsmGeoError
from usm_geo.hotspots.kde import (
    KDEResult,
    arcgis_bandwidth,
    dual_kde,
    kde,
    kde_at_units,
    quartic_kernel,
    write_geotiff,
)

X0, Y0 = 500_000.0, 5_000_000.0  # somewhere in UTM 33N


def cell_of(result, x, y):
    """(row, col) of the cell holding (x, y)."""
    xmin, _, _, ymax = result.extent
    return int((ymax - y) // result.cell_size), int((x - xmin) // result.cell_size)


def quartic(d, h):
    """Silverman (1986) eq. 4.5 / ArcGIS: 3/(pi h^2) (1 - d^2/h^2)^2 for d < h, per m^2."""
    d = np.asarray(d, dtype=float)
    return np.where(d < h, 3 / (math.pi * h * h) * (1 - d * d / (h * h)) ** 2, 0.0)


# ---------------------------------------------------------------------------------------------
# quartic kernel: mass, peak, symmetry, shape
# ---------------------------------------------------------------------------------------------

def test_single_point_integrates_to_one_and_peaks_at_its_cell():
    x, y = np.array([X0 + 1_234.5]), np.array([Y0 + 678.9])
    r = kde(x, y, bandwidth=300, cell_size=25)
    cell_km2 = 25 * 25 / 1e6
    assert abs(r.values.sum() * cell_km2 - 1) < 1e-6
    assert abs(r.report["mass_in_grid"] - 1) < 1e-6 and r.report["events_in_reach"] == 1
    assert np.unravel_index(np.argmax(r.values), r.shape) == cell_of(r, x[0], y[0])
    # the point is moved to its cell centre; the peak is K(0) = 3/(pi h^2), per km^2, within 1 %
    # (the discrete kernel is normalised to sum to 1; sum K(d) cell^2 = 1 - 0.03 % at h = 12 cells)
    assert r.values.max() == pytest.approx(3 / (math.pi * 300 ** 2) * 1e6, rel=0.01)
    assert r.report["units"] == "events per km2" and r.report["bandwidth_rule"] == "given"
    # the auto extent (point +/- h, snapped) holds the whole kernel: the border rows/columns are 0
    assert r.values[0].max() == r.values[-1].max() == r.values[:, 0].max() == r.values[:, -1].max() == 0


def test_quartic_radial_symmetry_and_profile():
    h, c = 250.0, 10.0
    px, py = X0 + 1_005.0, Y0 + 2_005.0  # a cell centre
    r = kde([px], [py], bandwidth=h, cell_size=c)
    r0, c0 = cell_of(r, px, py)
    k = int(h // c)
    win = r.values[r0 - k:r0 + k + 1, c0 - k:c0 + k + 1]
    # symmetric under both flips and the transposition (the eight symmetries of the square)
    for other in (win[::-1], win[:, ::-1], win.T, win[::-1, ::-1].T):
        np.testing.assert_allclose(win, other, rtol=1e-9, atol=1e-12 * win.max())
    # equal distances, equal density: offsets (3, 4), (4, 3), (5, 0), (0, -5) are 5 cells away
    vals = [r.values[r0 + i, c0 + j] for i, j in ((3, 4), (4, 3), (5, 0), (0, -5), (-4, -3))]
    np.testing.assert_allclose(vals, vals[0], rtol=1e-9)
    # the profile is the quartic kernel (up to the discrete normalisation, a constant)
    off = np.arange(-k, k + 1) * c
    d = np.hypot(off[:, None], off[None, :])
    ref = quartic(d, h) * 1e6
    inside = ref > 0
    ratio = win[inside] / ref[inside]
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-9)
    assert ratio.mean() == pytest.approx(1, rel=1e-3)
    assert (win[~inside] == 0).all()  # exactly 0 beyond h (FFT round-off removed)


def test_quartic_kernel_matches_direct_sum_for_points_at_cell_centres():
    """FFT convolution vs a direct sum over points; points on cell centres (no binning error)."""
    rng = np.random.default_rng(3)
    c, h = 20.0, 130.0
    cols = rng.integers(0, 60, 300)
    rows = rng.integers(0, 40, 300)
    x, y = X0 + (cols + 0.5) * c, Y0 + (rows + 0.5) * c
    w = rng.uniform(0.5, 2.0, 300)
    r = kde(x, y, bandwidth=h, cell_size=c, weights=w, extent=(X0, Y0, X0 + 1_200, Y0 + 800))
    kern = quartic_kernel(h / c)
    gx, gy = r.cell_centres()
    # direct: every cell gets sum_i w_i * K_discrete(offset to point i) / cell area
    dc = np.rint((gx[None, None, :] - x[:, None, None]) / c).astype(int)  # (n, 1, cols)
    dr = np.rint((gy[None, :, None] - y[:, None, None]) / c).astype(int)  # (n, rows, 1)
    kk = kern.shape[0] // 2
    ok = (np.abs(dc) <= kk) & (np.abs(dr) <= kk)
    dcb, drb = np.broadcast_to(dc, ok.shape), np.broadcast_to(dr, ok.shape)
    contrib = np.where(ok, kern[np.clip(drb + kk, 0, 2 * kk), np.clip(dcb + kk, 0, 2 * kk)], 0.0)
    direct = np.einsum("n,nij->ij", w, contrib) / (c * c / 1e6)
    np.testing.assert_allclose(r.values, direct, rtol=1e-9, atol=1e-9 * direct.max())
    # extent given and every kernel inside it except near the edges: mass = sum w minus spill-over
    assert r.report["events_in_reach"] == pytest.approx(w.sum())
    assert r.report["mass_in_grid"] <= w.sum() + 1e-9


def test_mass_conserved_with_weights_and_many_points():
    rng = np.random.default_rng(4)
    x = X0 + rng.normal(0, 1_000, 5_000)
    y = Y0 + rng.normal(0, 700, 5_000)
    w = rng.integers(1, 5, 5_000).astype(float)
    for kernel in ("quartic", "gaussian"):
        r = kde(x, y, weights=w, kernel=kernel)
        assert r.report["mass_in_grid"] == pytest.approx(w.sum(), rel=1e-9)
        assert r.report["units"] == "weighted events per km2"
        assert np.isfinite(r.values).all() and (r.values >= 0).all()


def test_quartic_matches_exact_evaluation_at_cell_centres():
    """ArcGIS evaluates the quartic kernel at each cell centre from the exact point positions; we bin
    first. Linear binning, h = 20 cells, 400 points: measured 1.2 % at most where the density exceeds
    1 % of its maximum (0.8 % with 1,000 points; simple binning: 7 %); tolerance 2 %. At h = 10 cells
    linear binning gives 3.5 % there and 1.2 % above 10 % of the maximum (the quartic's support edge
    is not smooth, so the error is larger than with the Gaussian)."""
    rng = np.random.default_rng(2)
    x = X0 + np.concatenate([rng.normal(0, 600, 280), rng.normal(900, 150, 120)])
    y = Y0 + np.concatenate([rng.normal(0, 600, 280), rng.normal(-500, 150, 120)])
    h = 300.0
    r = kde(x, y, bandwidth=h, cell_size=15)
    gx, gy = r.cell_centres()
    exact = np.zeros(r.shape)
    for i in range(0, len(x), 50):
        d = np.hypot(gx[None, :, None] - x[i:i + 50], gy[:, None, None] - y[i:i + 50])
        exact += quartic(d, h).sum(-1)
    exact *= 1e6
    big = exact > 0.01 * exact.max()
    rel = np.abs(r.values[big] - exact[big]) / exact[big]
    print(f"\nquartic KDE (linear binning, h = 20 cells) vs exact evaluation, density > 1% of max: "
          f"max relative error {rel.max():.2e}, median {np.median(rel):.2e}")
    assert rel.max() < 0.02
    assert ((r.values == 0) == (exact == 0)).mean() > 0.99  # same support, up to the binning


# ---------------------------------------------------------------------------------------------
# Gaussian kernel vs scipy.stats.gaussian_kde
# ---------------------------------------------------------------------------------------------

def test_gaussian_matches_scipy_gaussian_kde():
    """Fixed bandwidth h = 200 m (sigma per axis), cell 20 m (h = 10 cells).

    gaussian_kde's kernel covariance is bw_method^2 * cov(data); the points are made with four-fold
    rotational symmetry about their mean, so cov(data) = s^2 I exactly and bw_method = h / s gives
    covariance h^2 I. Binning error: with linear binning (default) O((cell/h)^2), measured 0.3 %;
    tolerance 1 % where the density exceeds 1 % of its maximum. Simple binning moves each point by
    up to half a cell per axis, a first-order change of its kernel that averages out over many
    points but not in sparse tails: measured 6 % at 1 % of the maximum, 1.3 % above 10 % of it;
    tolerance 2 % above 10 % of the maximum.
    """
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(5)
    base = np.vstack([rng.normal(0, 500, (200, 2)), rng.normal(600, 150, (50, 2))])
    dx, dy = base[:, 0], base[:, 1]
    ox = np.concatenate([dx, -dy, -dx, dy])
    oy = np.concatenate([dy, dx, -dy, -dx])
    x, y = X0 + 3_000.3 + ox, Y0 + 4_000.7 + oy
    h, n = 200.0, len(x)
    s2 = np.cov(np.vstack([x, y]))[0, 0]
    ref = gaussian_kde(np.vstack([x, y]), bw_method=h / math.sqrt(s2))
    np.testing.assert_allclose(ref.covariance, h * h * np.eye(2), rtol=1e-9, atol=1e-6)

    for binning, floor, tol in (("linear", 0.01, 0.01), ("simple", 0.10, 0.02)):
        r = kde(x, y, bandwidth=h, cell_size=20, kernel="gaussian", binning=binning)
        assert r.report["bandwidth_meaning"].startswith("standard deviation")
        assert r.report["mass_in_grid"] == pytest.approx(n, rel=1e-9)
        gx, gy = r.cell_centres()
        rr, cc = np.nonzero(r.values > floor * r.values.max())
        expected = ref(np.vstack([gx[cc], gy[rr]])) * n * 1e6  # per m^2 per point -> events per km^2
        rel = np.abs(r.values[rr, cc] - expected) / expected
        print(f"\nGaussian KDE ({binning} binning) vs scipy.stats.gaussian_kde, density > {floor:.0%} of max: "
              f"max relative error {rel.max():.2e}, median {np.median(rel):.2e} over {len(rel)} cells")
        assert rel.max() < tol


# ---------------------------------------------------------------------------------------------
# automatic bandwidth and cell size
# ---------------------------------------------------------------------------------------------

def arcgis_by_hand(pts):
    """ArcGIS Pro "How Kernel Density works": h = 0.9 * min(SD, sqrt(1/ln 2) * Dm) * n^-0.2."""
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sd = math.sqrt(sum((p[0] - mx) ** 2 for p in pts) / n + sum((p[1] - my) ** 2 for p in pts) / n)
    dm = statistics.median(math.hypot(p[0] - mx, p[1] - my) for p in pts)
    return 0.9 * min(sd, math.sqrt(1 / math.log(2)) * dm) * n ** -0.2, sd, dm


def test_automatic_bandwidth_by_hand():
    pts = [(0, 0), (100, 0), (0, 100), (300, 400), (-200, 50), (50, -150)]
    # by hand: mean centre (250/6, 400/6) = (41.667, 66.667);
    # SD = sqrt(132083.3/6 + 168333.3/6) = sqrt(22013.89 + 28055.56) = 223.76;
    # distances, sorted: 53.36, 78.62, 88.58, 216.83, 242.24, 421.72 -> Dm = (88.58 + 216.83) / 2 = 152.71;
    # sqrt(1/ln 2) * Dm = 1.20112 * 152.71 = 183.42 < SD, so h = 0.9 * 183.42 * 6^-0.2 (0.69883) = 115.36
    h, sd, dm = arcgis_by_hand(pts)
    assert h == pytest.approx(115.36, abs=0.01) and sd == pytest.approx(223.76, abs=0.01)
    assert dm == pytest.approx(152.71, abs=0.01)
    xy = np.array(pts, dtype=float) + [X0, Y0]
    got, inputs = arcgis_bandwidth(xy[:, 0], xy[:, 1])
    assert got == pytest.approx(h, rel=1e-9)  # x, y near 5e6: the mean carries ~1e-9 m of round-off
    assert inputs["standard_distance"] == pytest.approx(sd, rel=1e-9)
    assert inputs["median_distance"] == pytest.approx(dm, rel=1e-9) and inputs["n"] == 6
    r = kde(xy[:, 0], xy[:, 1])
    assert r.report["bandwidth"] == pytest.approx(h, rel=1e-9) and r.report["bandwidth_auto"]
    assert "0.9 * min(SD, sqrt(1/ln 2) * Dm) * n^-0.2" in r.report["bandwidth_rule"]


def test_automatic_bandwidth_sd_branch_and_weights_as_repeats():
    rng = np.random.default_rng(6)
    pts = [tuple(p) for p in rng.normal(0, 300, (41, 2))]  # normal: the SD branch usually wins
    h, _sd, _dm = arcgis_by_hand(pts)
    xy = np.array(pts)
    assert arcgis_bandwidth(xy[:, 0], xy[:, 1])[0] == pytest.approx(h, rel=1e-12)
    # integer weights = repeated points (ArcGIS population field: n = sum of weights)
    w = rng.integers(1, 4, 41)
    rep = [p for p, k in zip(pts, w) for _ in range(k)]
    h_rep, _, _ = arcgis_by_hand(rep)
    assert arcgis_bandwidth(xy[:, 0], xy[:, 1], w.astype(float))[0] == pytest.approx(h_rep, rel=1e-12)
    # with an even total weight the two middle distances are averaged, as the median of the repeats
    w2 = np.ones(41)
    w2[0] = 2.0
    rep2 = [pts[0]] + pts
    assert arcgis_bandwidth(xy[:, 0], xy[:, 1], w2)[0] == pytest.approx(arcgis_by_hand(rep2)[0], rel=1e-12)


def test_automatic_cell_size_arcgis_rule():
    rng = np.random.default_rng(7)
    x = X0 + rng.uniform(0, 30_000, 500)
    y = Y0 + rng.uniform(0, 20_000, 500)
    r = kde(x, y, extent=(X0, Y0, X0 + 30_000, Y0 + 20_000))
    # 20,000 / 250 = 80 m -> rounded down to 50 m
    assert r.report["cell_size_raw"] == 80.0 and r.report["cell_size"] == 50.0
    assert r.shape == (400, 600) and r.extent == (X0, Y0, X0 + 30_000, Y0 + 20_000)
    assert r.transform == Affine(50.0, 0.0, X0, 0.0, -50.0, Y0 + 20_000)
    assert "250" in r.report["cell_size_rule"]


def test_undefined_bandwidth_and_bad_inputs():
    with pytest.raises(UsmGeoError, match="bandwidth="):
        kde([X0, X0, X0], [Y0, Y0, Y0])
    with pytest.raises(UsmGeoError, match="bandwidth="):
        kde([X0], [Y0])
    with pytest.raises(UsmGeoError, match="no points"):
        kde([], [], bandwidth=100)
    empty = kde([], [], bandwidth=100, cell_size=50, extent=(0, 0, 1_000, 500))
    assert empty.shape == (10, 20) and (empty.values == 0).all()
    with pytest.raises(CRSError):
        kde([13.4, 13.5], [52.5, 52.6], crs=4326)
    with pytest.raises(UsmGeoError, match="larger cell size"):
        kde([X0, X0 + 50_000], [Y0, Y0 + 50_000], cell_size=1, bandwidth=100)
    with pytest.raises(ValueError):
        kde([X0, X0 + 1], [Y0, Y0], weights=[1.0, -1.0], bandwidth=10)


def test_area_masks_cells_outside():
    area = shapely.Point(X0, Y0).buffer(2_000)
    rng = np.random.default_rng(8)
    x, y = X0 + rng.normal(0, 600, 2_000), Y0 + rng.normal(0, 600, 2_000)
    frame = gpd.GeoDataFrame(geometry=[area], crs=32633)
    r = kde(x, y, area=frame, bandwidth=300, cell_size=50)
    assert r.crs.equals(frame.crs) and r.report["extent_rule"] == "bounds of the study area"
    gx, gy = r.cell_centres()
    outside = np.hypot(gx[None, :] - X0, gy[:, None] - Y0) > 2_000
    assert np.isnan(r.values[outside]).all() and np.isfinite(r.values[~outside]).all()
    assert r.report["masked_cells"] == outside.sum()
    assert 0 < r.report["mass_in_grid"] < 2_000


# ---------------------------------------------------------------------------------------------
# dual KDE, density per unit, GeoTIFF
# ---------------------------------------------------------------------------------------------

def test_dual_kde_same_grid_and_zero_population():
    rng = np.random.default_rng(9)
    inc = kde(X0 + rng.normal(0, 500, 400), Y0 + rng.normal(0, 500, 400), bandwidth=300, crs=32633)
    px, py = X0 + rng.normal(0, 400, 300), Y0 + rng.normal(0, 400, 300)
    pop = kde(px, py, weights=rng.uniform(1, 50, 300), bandwidth=300, extent=inc.extent,
              cell_size=inc.cell_size, crs=32633)
    assert pop.transform == inc.transform and pop.shape == inc.shape
    zero = pop.values == 0
    assert zero.any()  # the population surface is exactly 0 far from every person
    d = dual_kde(inc, pop, "ratio", per=1000)
    assert np.isnan(d.values[zero]).all() and not np.isinf(d.values).any()
    ok = ~zero
    np.testing.assert_allclose(d.values[ok], inc.values[ok] / pop.values[ok] * 1000)
    assert d.report["undefined_cells"] == zero.sum()
    lr = dual_kde(inc, pop, "log_ratio")
    assert not np.isinf(lr.values).any()
    both = (inc.values > 0) & (pop.values > 0)
    overall = inc.values[ok].sum() / pop.values[ok].sum()
    np.testing.assert_allclose(lr.values[both], np.log(inc.values[both] / pop.values[both] / overall))
    assert np.isnan(lr.values[~both]).all()
    diff = dual_kde(inc, inc, "difference")
    assert (diff.values == 0).all()
    with pytest.raises(UsmGeoError, match="different grids"):
        dual_kde(inc, kde(px, py, bandwidth=300, cell_size=inc.cell_size * 2))


def test_dual_kde_hand_values():
    t = Affine(100, 0, 0, 0, -100, 200)
    inc = KDEResult(np.array([[4.0, 0.0], [3.0, np.nan]]), t)
    pop = KDEResult(np.array([[2.0, 5.0], [0.0, 1.0]]), t)
    d = dual_kde(inc, pop)
    np.testing.assert_array_equal(d.values, [[2.0, 0.0], [np.nan, np.nan]])


def test_kde_at_units_mean_of_cells_with_centre_inside():
    t = Affine(100, 0, 0, 0, -100, 400)  # 4 x 4 cells of 100 m, x 0–400, y 0–400
    vals = np.arange(16, dtype=float).reshape(4, 4)
    vals[0, 3] = np.nan
    res = KDEResult(vals, t, crs=None, report={"units": "events per km2"})
    units = gpd.GeoDataFrame({
        "unit_id": ["a", "b", "tiny", "far"],
        "geometry": [shapely.box(0, 200, 200, 400),        # top-left 2 x 2: cells 0, 1, 4, 5
                     shapely.box(190, 190, 410, 410),      # centres of cells 2, 3(NaN), 6, 7 (cell 3 NaN)
                     shapely.box(310, 10, 340, 40),        # holds no cell centre; sits in cell (3, 3)
                     shapely.box(5_000, 5_000, 5_100, 5_100)],
    })
    table, rep = kde_at_units(res, units)
    assert list(table["unit_id"]) == ["a", "b", "tiny", "far"]
    np.testing.assert_allclose(table["density"][:3], [np.mean([0, 1, 4, 5]), np.mean([2, 6, 7]), 15.0])
    assert np.isnan(table["density"][3])
    assert list(table["cells"]) == [4, 3, 0, 0]
    assert list(table["flags"]) == ["", "", "point_sample", "outside_grid"]
    assert rep["point_sampled"] == 1 and rep["outside_grid"] == 1 and rep["cells_per_unit"] == (0, 1.5, 4)


def test_kde_at_units_reprojects():
    rng = np.random.default_rng(10)
    r = kde(X0 + rng.normal(0, 500, 300), Y0 + rng.normal(0, 500, 300), bandwidth=400, cell_size=50, crs=32633)
    units = gpd.GeoDataFrame({"unit_id": ["c"]}, geometry=[shapely.box(X0 - 500, Y0 - 500, X0 + 500, Y0 + 500)],
                             crs=32633)
    direct, _ = kde_at_units(r, units)
    via, rep = kde_at_units(r, units.to_crs(4326))
    assert rep["reprojected"] and direct["cells"][0] == 400
    assert via["density"][0] == pytest.approx(direct["density"][0], rel=1e-3)


def test_write_geotiff_round_trip_and_deterministic(tmp_path):
    area = shapely.Point(X0, Y0).buffer(1_500)
    rng = np.random.default_rng(11)
    r = kde(X0 + rng.normal(0, 500, 1_000), Y0 + rng.normal(0, 500, 1_000), area=area, crs=32633)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    write_geotiff(r, a)
    write_geotiff(r, b, 32633)
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    write_geotiff(r, a)  # overwriting is atomic and leaves no temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]
    with rasterio.open(a) as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform == r.transform
        assert math.isnan(src.nodata) and src.dtypes[0] == "float32"
        assert src.profile["compress"] == "deflate"
        tags = src.tags()
        assert tags["UNITS"] == "events per km2" and tags["KERNEL"] == "quartic"
        assert float(tags["BANDWIDTH"]) == r.report["bandwidth"]
        data = src.read(1)
    np.testing.assert_array_equal(np.isnan(data), np.isnan(r.values))
    np.testing.assert_array_equal(data, r.values.astype(np.float32))
    with pytest.raises(CRSError):
        write_geotiff(KDEResult(r.values, r.transform), tmp_path / "c.tif")


def test_timing_one_million_points_on_a_50m_grid():
    """Not asserted; printed for the record (PERF-BASELINES §4: bincount + filter, ~0.02 s at 1M)."""
    rng = np.random.default_rng(12)
    n = 1_000_000
    centres = rng.uniform(0, 30_000, (200, 2))
    k = rng.integers(0, 200, int(n * 0.7))
    x = np.concatenate([centres[k, 0] + rng.normal(0, 300, len(k)), rng.uniform(0, 30_000, n - len(k))]) + X0
    y = np.concatenate([centres[k, 1] + rng.normal(0, 300, len(k)), rng.uniform(0, 30_000, n - len(k))]) + Y0
    kde(x[:1000], y[:1000], bandwidth=300, cell_size=50)  # warm up imports
    lines = []
    for kernel in ("quartic", "gaussian"):
        for bw in (300.0, None):
            t = time.perf_counter()
            r = kde(x, y, bandwidth=bw, cell_size=50, kernel=kernel)
            dt = time.perf_counter() - t
            lines.append(f"{kernel:9s} bandwidth {r.report['bandwidth']:7.1f} m {'(auto)' if bw is None else '      '} "
                         f"grid {r.shape[0]}x{r.shape[1]}: {dt:.3f} s")
            assert r.report["mass_in_grid"] == pytest.approx(n, rel=1e-9)
    print("\n1M points, 50 m cells:\n  " + "\n  ".join(lines))


def test_linear_binning_keeps_mass_and_mean_position():
    from usm_geo.hotspots.kde import _linear_bin

    rng = np.random.default_rng(13)
    origin, cell, shape = (X0, Y0), 25.0, (20, 30)
    for _ in range(20):
        px, py = X0 + rng.uniform(15, 735), Y0 + rng.uniform(15, 485)
        g = _linear_bin(np.array([px]), np.array([py]), np.array([2.5]), origin, cell, shape)
        rows = np.arange(shape[0])[:, None]
        cols = np.arange(shape[1])[None, :]
        cx, cy = X0 + (cols + 0.5) * cell, Y0 + (shape[0] - rows - 0.5) * cell
        assert g.sum() == pytest.approx(2.5, rel=1e-12) and np.count_nonzero(g) <= 4
        assert (g * cx).sum() / g.sum() == pytest.approx(px, abs=1e-6)
        assert (g * cy).sum() / g.sum() == pytest.approx(py, abs=1e-6)
    # a point half a cell outside the grid leaves its inner share on the edge cells only
    g = _linear_bin(np.array([X0 - 5.0]), np.array([Y0 + 100.0]), None, origin, cell, shape)
    assert g.sum() == pytest.approx(0.5 - 5 / 25) and (g[:, 1:] == 0).all()


def test_reports_are_plain_json():
    """The CLI prints (and run.json may store) every report: plain JSON types only."""
    import json

    from usm_geo.hotspots.grids import h3_grid, square_grid

    rng = np.random.default_rng(14)
    x, y = X0 + rng.normal(0, 500, 200), Y0 + rng.normal(0, 500, 200)
    r = kde(x, y, crs=32633)
    units = gpd.GeoDataFrame({"unit_id": ["u"]}, geometry=[shapely.box(X0 - 300, Y0 - 300, X0 + 300, Y0 + 300)],
                             crs=32633)
    reports = [r.report, dual_kde(r, r).report, kde_at_units(r, units)[1],
               square_grid(shapely.box(X0, Y0, X0 + 5_000, Y0 + 4_000))[1],
               h3_grid(shapely.box(13.3, 52.45, 13.4, 52.5))[1]]
    for rep in reports:
        json.dumps(rep, allow_nan=False)
