"""Local and global spatial statistics (usm_geo.hotspots.local / global_stats / fdr).

References (tolerances stated per test):
* Hand calculations written out below for 4 units in a line (1 – 2 – 3 – 4).
* esda 2.9 (``G_Local``, ``Moran_Local``, ``Moran``, ``G``) on seeded random data with asymmetric
  k-nearest-neighbour weights (the real-data comparisons with spdep/GeoDa are in
  tests/realdata/test_autocorrelation_reference.py).
* Exact conditional-permutation distributions enumerated with itertools (permutation p-values).
* ``scipy.stats.false_discovery_control(method="bh")`` for Benjamini–Hochberg.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from usm_geo.hotspots.fdr import benjamini_hochberg, bonferroni
from usm_geo.hotspots.global_stats import getis_ord_global, moran
from usm_geo.hotspots.local import getis_ord, gistar_bin, local_moran
from usm_geo.units.weights import from_sparse, knn

LINE = from_sparse(sp.csr_array(np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]])), ids=list("abcd"))
Y = np.array([1.0, 2.0, 3.0, 6.0])


# ----------------------------------------------------------------------------- Gi* by hand
def test_gistar_by_hand_four_units_in_a_line():
    # n = 4, Σy = 12, ȳ = 3, Σy²/n = 50/4 = 12.5, s² = 12.5 − 9 = 3.5.
    # Gi* neighbourhoods (self included): a {a,b}, b {a,b,c}, c {b,c,d}, d {c,d}: W = S1 = 2, 3, 3, 2.
    # Σ_j w_ij y_j = 3, 6, 11, 9.
    # z_i = (Σ w y − ȳ W) / (s √((n S1 − W²)/(n − 1))):
    #   a: (3 − 6) / (√3.5 √((8 − 4)/3))  = −3 / √(14/3)
    #   b: (6 − 9) / (√3.5 √((12 − 9)/3)) = −3 / √3.5
    #   c: (11 − 9) / √3.5                = 2 / √3.5
    #   d: (9 − 6) / √(14/3)              = 3 / √(14/3)
    res = getis_ord(Y, LINE, star=True)
    expected_z = [-3 / math.sqrt(14 / 3), -3 / math.sqrt(3.5), 2 / math.sqrt(3.5), 3 / math.sqrt(14 / 3)]
    assert list(res.index) == list("abcd") and res.index.name == "unit_id"
    np.testing.assert_allclose(res["z"], expected_z, rtol=1e-13)
    # G*_i = Σ w y / Σ y; E = W/n; Var = W (n − W)/(n − 1)/n² · s²/ȳ²  (Getis & Ord 1992)
    np.testing.assert_allclose(res["G"], [3 / 12, 6 / 12, 11 / 12, 9 / 12], rtol=1e-14)
    np.testing.assert_allclose(res["EG"], [2 / 4, 3 / 4, 3 / 4, 2 / 4], rtol=1e-14)
    np.testing.assert_allclose(res["VG"][["a", "b"]], [2 * 2 / 3 / 16 * 3.5 / 9, 3 * 1 / 3 / 16 * 3.5 / 9], rtol=1e-13)
    np.testing.assert_allclose(res["p"], 2 * stats.norm.sf(np.abs(expected_z)), rtol=1e-12)
    assert not res["island"].any() and list(res["n_neighbours"]) == [1, 2, 2, 1]


def test_gi_by_hand_four_units_in_a_line():
    # Gi leaves unit i out. a: others {2, 3, 6}: n' = 3, mean 11/3, var = 49/3 − (11/3)² = 26/9;
    #   neighbours {b}: W = S1 = 1, Σ w y = 2; z = (2 − 11/3) / √(26/9 · (3·1 − 1)/2) = −5/√26.
    # b: others {1, 3, 6}: mean 10/3, var = 46/3 − 100/9 = 38/9; neighbours {a, c}: W = S1 = 2,
    #   Σ w y = 4; z = (4 − 20/3) / √(38/9 · (6 − 4)/2) = −8/√38.
    res = getis_ord(Y, LINE, star=False)
    np.testing.assert_allclose(res["z"][["a", "b"]], [-5 / math.sqrt(26), -8 / math.sqrt(38)], rtol=1e-13)
    np.testing.assert_allclose(res["G"][["a", "b"]], [2 / 11, 4 / 10], rtol=1e-14)


@pytest.mark.parametrize("star", [True, False])
def test_row_standardised_gi_has_the_binary_z(star):
    """DESIGN.md: Gi* z does not change under row-standardisation (spdep/ArcGIS convention)."""
    b = getis_ord(Y, LINE, star=star, transform="B")
    r = getis_ord(Y, LINE, star=star, transform="R")
    np.testing.assert_allclose(r["z"], b["z"], rtol=0, atol=1e-13)
    k = np.array([1, 2, 2, 1]) + star
    np.testing.assert_allclose(r["G"], b["G"] / k, rtol=1e-14)  # w_ij = 1/(k_i [+1])
    np.testing.assert_allclose(r["EG"], 1 / (4 - (not star)), rtol=1e-14)


def test_alternatives():
    res = {a: getis_ord(Y, LINE, alternative=a) for a in ("two-sided", "greater", "less")}
    z = res["greater"]["z"].to_numpy()
    np.testing.assert_allclose(res["greater"]["p"], stats.norm.sf(z), rtol=1e-12)
    np.testing.assert_allclose(res["less"]["p"], stats.norm.cdf(z), rtol=1e-12)
    with pytest.raises(ValueError, match="alternative"):
        getis_ord(Y, LINE, alternative="both")


@pytest.fixture(scope="module")
def random_knn():
    rng = np.random.default_rng(11)
    x, y = rng.uniform(0, 1000, 120), rng.uniform(0, 1000, 120)
    counts = rng.poisson(3 + 4 * (x < 300), 120).astype(float)
    return counts, knn(x, y, 5)


@pytest.mark.parametrize("star", [True, False])
def test_getis_ord_equals_esda_on_asymmetric_weights(random_knn, star):
    """esda G_Local(transform="B") z and G, tolerance 1e-10."""
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    y, w = random_knn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lg = esda.G_Local(y, libpysal.weights.W.from_sparse(sp.csr_matrix(w.sparse)), transform="B",
                          star=star, permutations=0)
    res = getis_ord(y, w, star=star)
    np.testing.assert_allclose(res["z"], lg.Zs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["G"], lg.Gs, rtol=1e-12)
    np.testing.assert_allclose(res["EG"], lg.EGs, rtol=1e-12)
    np.testing.assert_allclose(res["VG"], lg.VGs, rtol=1e-9)


def test_islands_and_constant_values_give_nan_z_without_warnings():
    m = sp.csr_array(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    w = from_sparse(m)
    y = np.array([1.0, 5.0, 2.0, 8.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for star in (True, False):
            res = getis_ord(y, w, star=star)
            assert list(res["island"]) == [False, False, True, True]
            assert res["z"][2:].isna().all() and res["p"][2:].isna().all() and res["z"][:2].notna().all()
        lm = local_moran(y, w, permutations=99, seed=1)
        assert lm["z"][2:].isna().all() and lm["p_sim"][2:].isna().all()
        assert list(lm["quadrant"][2:]) == ["island", "island"] and list(lm["cluster"][2:]) == ["island", "island"]
        flat = getis_ord(np.full(4, 3.0), LINE)
        assert flat["z"].isna().all()
        assert local_moran(np.full(4, 3.0), LINE)["z"].isna().all()
    with pytest.raises(ValueError, match="missing"):
        getis_ord(np.array([1.0, np.nan, 2.0, 3.0]), LINE)
    with pytest.raises(ValueError, match="4 units"):
        getis_ord(np.ones(3), LINE)


# ----------------------------------------------------------------------------- gistar_bin
def test_gistar_bin_thresholds_and_fdr():
    z = np.array([3.0, -3.0, 2.2, -2.0, 1.7, -1.7, 0.5, np.nan])
    p = np.array([0.001, 0.009, 0.03, 0.049, 0.09, 0.099, 0.6, np.nan])
    assert list(gistar_bin(z, p, adjust=None)) == [3, -3, 2, -2, 1, -1, 0, 0]  # ArcGIS Gi_Bin on raw p
    # R 4.2.2: p.adjust(c(0.001, 0.009, 0.03, 0.049, 0.09, 0.099, 0.6), "BH")
    #   [1] 0.00700 0.03150 0.07000 0.08575 0.11550 0.11550 0.60000
    q = benjamini_hochberg(p)  # 7 tests (NaN skipped)
    np.testing.assert_allclose(q[:7], [0.007, 0.0315, 0.07, 0.08575, 0.1155, 0.1155, 0.6])
    assert list(gistar_bin(z, p)) == [3, -2, 1, -1, 0, 0, 0, 0]  # default: FDR-adjusted p
    assert list(gistar_bin(z, p, adjust="bonferroni")) == [3, -1, 0, 0, 0, 0, 0, 0]  # 0.007, 0.063, 0.21, …
    assert gistar_bin(z, p).dtype == np.int8
    with pytest.raises(ValueError, match="adjust"):
        gistar_bin(z, p, adjust="holm")


# ----------------------------------------------------------------------------- FDR
def test_benjamini_hochberg_equals_scipy_and_skips_nan():
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.uniform(0, 1, 200), rng.uniform(0, 0.01, 30)])
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"), rtol=1e-14)
    with_nan = p.copy()
    with_nan[[3, 50]] = np.nan
    out = benjamini_hochberg(with_nan)
    assert np.isnan(out[[3, 50]]).all()
    keep = ~np.isnan(with_nan)
    np.testing.assert_allclose(out[keep], stats.false_discovery_control(with_nan[keep], method="bh"), rtol=1e-14)
    np.testing.assert_allclose(bonferroni([0.01, np.nan, 0.5]), [0.02, np.nan, 1.0])
    assert benjamini_hochberg([np.nan]).tolist() != [0.0] and benjamini_hochberg([]).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.2, 1.2])


# ----------------------------------------------------------------------------- local Moran by hand
def test_local_moran_by_hand_four_units_in_a_line():
    # z = y − ȳ = (−2, −1, 0, 3); Σz² = 14; m2 = 14/(n − 1) = 14/3 (esda/GeoDa divisor).
    # Row-standardised lags: a: z_b = −1; b: (z_a + z_c)/2 = −1; c: (z_b + z_d)/2 = 1; d: z_c = 0.
    # I_i = z_i · lag_i / m2 = (2, 1, 0, 0) · 3/14.
    res = local_moran(Y, LINE)
    np.testing.assert_allclose(res["I"], [6 / 14, 3 / 14, 0, 0], atol=1e-15)
    assert list(res["quadrant"]) == ["LL", "LL", "LH", "HL"]  # z ≤ 0 is "low"; lag 0 is "low"
    # conditional moments with m2' = Σz²/n = 3.5, for a: W = S1 = 1, z² = 4
    #   EI = −4·1/(3·3.5);  VI = (−2/3.5)² · 4/2 · (1 − 1/3) · (3.5 − 4/3)
    assert res["EI"]["a"] == pytest.approx(-4 / 10.5, rel=1e-14)
    assert res["VI"]["a"] == pytest.approx((2 / 3.5) ** 2 * 2 * (2 / 3) * (3.5 - 4 / 3), rel=1e-14)
    binary = local_moran(Y, LINE, transform="B")
    np.testing.assert_allclose(binary["I"], [6 / 14, 3 * 2 / 14, 0, 0], atol=1e-15)
    assert res["p_sim"].isna().all()


def test_local_moran_equals_esda_on_asymmetric_weights(random_knn):
    """esda Moran_Local Is (tolerance 1e-12), EIc/VIc (conditional) and EI/VI (total), quadrants."""
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    y, w = random_knn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = esda.Moran_Local(y, libpysal.weights.W.from_sparse(sp.csr_matrix(w.sparse)), permutations=0)
    res = local_moran(y, w)
    np.testing.assert_allclose(res["I"], lm.Is, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res["EI"], lm.EIc, rtol=1e-12)
    np.testing.assert_allclose(res["VI"], lm.VIc, rtol=1e-12)
    total = local_moran(y, w, moments="total")
    np.testing.assert_allclose(total["EI"], lm.EI, rtol=1e-12)
    np.testing.assert_allclose(total["VI"], lm.VI, rtol=1e-12)
    names = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}  # esda's q codes
    assert list(res["quadrant"]) == [names[q] for q in lm.q]


def test_permutation_p_is_seeded_and_matches_the_exact_conditional_distribution():
    # 9 units; unit 0 has 2 neighbours (collision-redraw sampler), unit 1 has 5 (random-key
    # sampler: 5·4 > 8). Exact: enumerate every set of k values from the other 8.
    rng = np.random.default_rng(2)
    y = rng.gamma(2.0, 3.0, 9)
    dense = np.zeros((9, 9))
    dense[0, [1, 2]] = dense[[1, 2], 0] = 1
    dense[1, [3, 4, 5, 6, 7]] = dense[[3, 4, 5, 6, 7], 1] = 1
    dense[8, 7] = dense[7, 8] = 1
    w = from_sparse(sp.csr_array(dense))
    permutations = 20_000
    res = local_moran(y, w, permutations=permutations, seed=42)
    again = local_moran(y, w, permutations=permutations, seed=42)
    np.testing.assert_array_equal(res["p_sim"], again["p_sim"])  # deterministic with a seed
    other = local_moran(y, w, permutations=permutations, seed=43)
    assert not np.array_equal(res["p_sim"], other["p_sim"])
    z = y - y.mean()
    m2 = (z @ z) / (len(y) - 1)
    for unit in (0, 1, 7):
        k = int(dense[unit].sum())
        others = [j for j in range(9) if j != unit]
        sims = np.array([z[unit] * z[list(c)].mean() / m2 for c in itertools.combinations(others, k)])
        at_least = (sims >= res["I"][unit] - 1e-12).mean()  # the observed set itself is a tie
        at_most = (sims <= res["I"][unit] + 1e-12).mean()
        expected = (min(at_least, at_most) * permutations + 1) / (permutations + 1)
        assert res["p_sim"][unit] == pytest.approx(expected, abs=0.015)  # ±4 sd of 20,000 draws
    assert (res["p_sim"] >= 1 / (permutations + 1)).all() and (res["p_sim"] <= 1).all()
    # a unit at the mean: every simulated I is 0 = observed, so p_sim = 1 (not "most significant")
    y_mean = y.copy()
    y_mean[8] = (y.sum() - y[8]) / 8
    assert local_moran(y_mean, w, permutations=99, seed=1)["p_sim"][8] == 1.0


# ----------------------------------------------------------------------------- global statistics
def test_global_moran_and_g_equal_esda_on_asymmetric_weights(random_knn):
    """esda Moran (row-standardised and binary) and G; tolerance 1e-10 relative."""
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    y, w = random_knn
    for transform in ("R", "B"):
        lw = libpysal.weights.W.from_sparse(sp.csr_matrix(w.sparse))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mi = esda.Moran(y, lw, transformation=transform.lower(), permutations=0)
        ours = moran(y, w, transform=transform)
        for name in ("I", "EI", "VI_norm", "z_norm", "p_norm", "VI_rand", "z_rand", "p_rand"):
            assert getattr(ours, name) == pytest.approx(getattr(mi, name), rel=1e-10), name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = esda.G(y, libpysal.weights.W.from_sparse(sp.csr_matrix(w.sparse)), permutations=0)
    ours = getis_ord_global(y, w)
    for name in ("G", "EG", "VG", "z_norm"):
        assert getattr(ours, name) == pytest.approx(getattr(g, name), rel=1e-10), name
    assert ours.p == pytest.approx(2 * g.p_norm, rel=1e-9)  # esda's p_norm is one-sided
    assert ours.z == ours.z_norm


def test_global_moran_by_hand_four_units_in_a_line():
    # Row-standardised line: S0 = 4; Σ_ij w_ij z_i z_j = Σ z_i lag_i = (−2)(−1) + (−1)(−1) + 0 + 0 = 3;
    # I = n/S0 · 3/14 = 3/14. E[I] = −1/3.
    # S1 = ½ Σ (w_ij + w_ji)²: pairs a–b: (1 + ½)² twice, b–c: (½ + ½)² twice, c–d: (½ + 1)² twice
    #    = ½ · 2 · (2.25 + 1 + 2.25) = 5.5; S2 = Σ (w_i· + w_·i)² = (1 + ½)² + (1 + 1.5)² + (1 + 1.5)² + (1 + ½)² = 17
    # Var_norm = (16·5.5 − 4·17 + 3·16)/(15·16) − 1/9 = 68/240 − 1/9
    m = moran(Y, LINE)
    assert m.I == pytest.approx(3 / 14, rel=1e-14)
    assert m.EI == pytest.approx(-1 / 3, rel=1e-14)
    assert m.VI_norm == pytest.approx(68 / 240 - 1 / 9, rel=1e-13)
    assert m.z == m.z_norm and m.p == m.p_norm
    with pytest.raises(ValueError, match="transform"):
        moran(Y, LINE, transform="W")


def test_gistar_conditional_permutations_are_seeded_and_agree_with_the_analytic_p():
    """Gi* p_sim: the same seed gives the same values; on a strong planted cluster the pseudo-p
    and the analytic p agree on which units are significant; binary and row-standardised agree."""
    import libpysal

    from usm_geo.hotspots.local import getis_ord
    from usm_geo.units.weights import from_sparse

    w = libpysal.weights.lat2W(12, 12, rook=False)
    matrix, _ = w.full()
    rng = np.random.default_rng(3)
    y = rng.poisson(3.0, 144).astype(float)
    y[[13, 14, 25, 26]] += 25  # a hot cluster near the top-left corner
    weights = from_sparse(matrix)
    a = getis_ord(y, weights, permutations=999, seed=42)
    b = getis_ord(y, weights, permutations=999, seed=42)
    c = getis_ord(y, weights, transform="R", permutations=999, seed=42)
    np.testing.assert_array_equal(a["p_sim"], b["p_sim"])
    np.testing.assert_array_equal(a["p_sim"], c["p_sim"])
    assert (a["p_sim"] >= 1 / 1000).all() and (a["p_sim"] <= 1).all()
    assert (a.loc[[13, 14, 25, 26], "p_sim"] <= 0.01).all()
    agree = ((a["p_sim"] < 0.05) == (a["p"] < 0.05)).mean()
    assert agree > 0.9
    assert getis_ord(y, weights)["p_sim"].isna().all()  # off by default


# ----------------------------------------------------------------------------- zero variance
DISTRICTS = from_sparse(sp.csr_array(np.array([  # the Demo City's 6 districts: D1 borders every other one
    [0, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0],
    [1, 0, 0, 0, 1, 0], [1, 0, 0, 1, 0, 1], [1, 1, 0, 0, 1, 0]])), ids=[f"D{i}" for i in range(1, 7)])
DISTRICT_COUNTS = np.array([19442.0, 1182, 466, 5904, 1508, 10418])


def test_zero_variance_gives_nan_z_and_a_flag():
    """Issue #19 point 3: D1's neighbours are all the other districts. By hand, Gi*: W = S1 = n = 6, so
    n·S1 − W² = 0; local Moran (row-standardised, k = n − 1): S1 − W²/(n − 1) = 1/5 − 1/5 = 0. Both
    variances are 0 in exact arithmetic (the statistic is the same under every permutation), so z is
    undefined — the old code divided rounding noise by rounding noise and reported z = 1.94e7."""
    g = getis_ord(DISTRICT_COUNTS, DISTRICTS, star=True)
    lisa = local_moran(DISTRICT_COUNTS, DISTRICTS, permutations=99, seed=1)
    for out in (g, lisa):
        assert np.isnan(out.loc["D1", "z"]) and np.isnan(out.loc["D1", "p"])
        assert out["zero_variance"].tolist() == [True, False, False, False, False, False]
        assert np.isfinite(out["z"].iloc[1:]).all() and (out["z"].abs() < 1e6).sum() == 5
    # D1's local Moran's I is fixed: its lag is the mean of the other five, (Σ y − y_1)/5, as by hand
    dev = DISTRICT_COUNTS - DISTRICT_COUNTS.mean()
    m2 = (dev @ dev) / 5
    assert lisa.loc["D1", "I"] == pytest.approx(dev[0] * dev[1:].mean() / m2, rel=1e-12)
    # and the other units' z is the ordinary one (same as with the conditional moments by hand below)
    n, k = 6, np.array([3, 2, 2, 3, 3])
    m2n = (dev @ dev) / n
    lag = np.array([dev[[0, 2, 5]].mean(), dev[[0, 1]].mean(), dev[[0, 4]].mean(), dev[[0, 3, 5]].mean(),
                    dev[[0, 1, 4]].mean()])
    i_ = dev[1:] * lag / m2
    ei = -dev[1:] ** 2 / ((n - 1) * m2n)
    vi = (dev[1:] / m2n) ** 2 * n / (n - 2) * (1 / k - 1 / (n - 1)) * (m2n - dev[1:] ** 2 / (n - 1))
    np.testing.assert_allclose(lisa["z"].iloc[1:], (i_ - ei) / np.sqrt(vi), rtol=1e-10)


def test_a_tiny_real_spread_is_not_zero_variance():
    """Values 10⁶ ± 1: a spread 1e-12 of the mean square is real (Gi* is shift-invariant: same z as 0 ± 1)."""
    base = np.array([0.0, 1, 0, 1])
    np.testing.assert_allclose(getis_ord(base + 1e6, LINE)["z"], getis_ord(base, LINE)["z"], rtol=1e-6)
    assert not getis_ord(base + 1e6, LINE)["zero_variance"].any()


def test_hotspot_layer_quadrant_only_where_bh_significant_and_too_few_units_refused():
    """Issue #19: LISA quadrant published only where the BH-adjusted p_sim < 0.05 (scipy's
    false_discovery_control as reference); fewer than min_units units → no statistics, too_few_units."""
    gpd = pytest.importorskip("geopandas")
    from shapely.geometry import box

    from usm_geo.hotspots.analysis import hotspot_layer, hotspot_value

    cells = [box(c, r, c + 1, r + 1) for r in range(6) for c in range(6)]
    layer = gpd.GeoDataFrame({"unit_id": [f"c{i}" for i in range(36)]}, geometry=cells, crs="EPSG:32633")
    y = np.array([10.0 if (i // 6 >= 4 and i % 6 >= 4) else 1.0 + (i % 3) for i in range(36)])
    out, _, rep = hotspot_layer(layer, y, permutations=999, seed=3)
    q = stats.false_discovery_control(out["lisa_p_sim"].to_numpy(), method="bh")
    sig = q < 0.05
    assert (out["lisa_quadrant"] != "not_significant").to_numpy().tolist() == sig.tolist()
    assert (out.loc[sig, "lisa_quadrant"] == out.loc[sig, "lisa_scatter_quadrant"]).all()
    assert rep["significant_units"]["lisa"] == int(sig.sum()) and rep["significance"] == "BH FDR q < 0.05"
    raw, _, _ = hotspot_layer(layer, y, permutations=999, seed=3, fdr=False)
    assert ((raw["lisa_quadrant"] != "not_significant") == (raw["lisa_p_sim"] < 0.05)).all()
    small, _, rep = hotspot_layer(layer.iloc[:6], y[:6], permutations=99)
    assert (small["flags"] == "too_few_units").all() and small["gistar_z"].isna().all()
    assert (small["lisa_quadrant"] == "not_significant").all() and "too_few_units" in rep["refused"]
    # value: EB rates where population varies > 2× (reference: esda Empirical_Bayes × 1000)
    esda = pytest.importorskip("esda")
    pop = np.linspace(500, 5000, 36)
    v, label, _ = hotspot_value(y, pop, kind="polygon")
    assert label == "eb_rate"
    np.testing.assert_allclose(v, esda.smoothing.Empirical_Bayes(y, pop).r.ravel() * 1000, rtol=1e-12)
    assert hotspot_value(y, np.full(36, 1000.0), kind="polygon")[1] == "count"
    assert hotspot_value(y, pop, kind="h3")[1] == "count"
