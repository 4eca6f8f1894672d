"""Emerging Hot Spot Analysis: space–time Gi*, Mann–Kendall, and the 17 ArcGIS Pro patterns.

References and tolerances:
* Space–time Gi*: esda ``G_Local(transform="B", star=True)`` on the flattened cube with the same
  space–time neighbours (tolerance 1e-10), and a hand calculation on a 2 × 3 cube (1e-6).
* Mann–Kendall: hand calculations written out below (1e-6), and scipy
  ``kendalltau(range(T), x, method="asymptotic")`` — tau-b and p, ties included — with the
  continuity correction switched off (1e-12).
* Classification: one hand-built z/p series per pattern (exact), and a synthetic 5 × 5 grid over 10
  steps with planted hot spots.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.stats import false_discovery_control, kendalltau, norm

from usm_geo.errors import UsmGeoError
from usm_geo.hotspots.emerging import (
    PATTERNS,
    classify,
    emerging_hotspots,
    mann_kendall,
    space_time_gistar,
    space_time_weights,
)


def rook_grid(n: int) -> sparse.csr_matrix:
    """Binary rook adjacency of an n × n grid, cells numbered row by row, no self-neighbours."""
    idx = np.arange(n * n).reshape(n, n)
    r = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    c = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    a = sparse.coo_matrix((np.ones(r.size), (r, c)), shape=(n * n, n * n))
    return (a + a.T).tocsr()


# --------------------------------------------------------------------------- space–time Gi*

def test_space_time_weights_previous_and_both():
    one = sparse.csr_matrix((1, 1))                      # one unit, no neighbours
    prev = space_time_weights(one, 3, time_window=1).toarray()
    np.testing.assert_array_equal(prev, [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    both = space_time_weights(one, 3, time_window=1, time_direction="both").toarray()
    np.testing.assert_array_equal(both, [[1, 1, 0], [1, 1, 1], [0, 1, 1]])
    same = space_time_weights(one, 3, time_window=0).toarray()
    np.testing.assert_array_equal(same, np.eye(3))
    # two adjacent units, two steps: bin t*U + u
    two = sparse.csr_matrix(np.array([[0, 1], [1, 0]]))
    w = space_time_weights(two, 2, 1).toarray()
    np.testing.assert_array_equal(w, [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])


def test_gistar_by_hand():
    # Three units in a line 0 – 1 – 2, two time steps, neighbourhood = previous step (ArcGIS).
    # Bins: 1, 2, 0 (t = 0) and 3, 6, 0 (t = 1). N = 6, mean = 12 / 6 = 2,
    # population variance = 50 / 6 − 4 = 4.3333…, s = 2.0816660.
    cube = np.array([[1.0, 2.0, 0.0], [3.0, 6.0, 0.0]])
    a = sparse.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    z, p = space_time_gistar(cube, a, time_window=1)
    s = np.sqrt(50 / 6 - 4)
    # (t=1, u=0): units {0, 1} at t = 0, 1 → 1 + 2 + 3 + 6 = 12 over 4 bins.
    #   (12 − 2·4) / (s · sqrt((6·4 − 4²) / 5)) = 4 / (2.0816660 · 1.2649111) = 1.5191091
    assert z[1, 0] == pytest.approx(4 / (s * np.sqrt(8 / 5)), abs=1e-12)
    assert z[1, 0] == pytest.approx(1.5191091, abs=1e-6)
    # (t=0, u=2): units {1, 2} at t = 0 → 2 + 0 = 2 over 2 bins: (2 − 4) / (s · sqrt(8/5)) = −0.7595545
    assert z[0, 2] == pytest.approx(-0.7595545, abs=1e-6)
    # (t=0, u=1): units {0, 1, 2} at t = 0 → 3 over 3 bins: (3 − 6) / (s · sqrt(9/5)) = −1.0741723
    assert z[0, 1] == pytest.approx(-1.0741723, abs=1e-6)
    # (t=1, u=1): its neighbourhood is the whole cube → no variance → NaN, and p NaN.
    assert np.isnan(z[1, 1]) and np.isnan(p[1, 1])
    assert p[1, 0] == pytest.approx(2 * norm.sf(1.5191091), abs=1e-6)


def test_gistar_matches_esda():
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    a = rook_grid(4)
    rng = np.random.default_rng(3)
    cube = rng.poisson(4, size=(5, 16)).astype(float)
    for window, direction in [(1, "previous"), (2, "previous"), (1, "both"), (0, "previous")]:
        z, p = space_time_gistar(cube, a, time_window=window, time_direction=direction)
        w = space_time_weights(a, 5, window, direction)
        w = (w - sparse.identity(w.shape[0])).tocsr()
        w.eliminate_zeros()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            W = libpysal.weights.WSP(w).to_W(silence_warnings=True)
            g = esda.G_Local(cube.ravel(), W, transform="B", star=True, permutations=0)
        np.testing.assert_allclose(z.ravel(), g.Zs, atol=1e-10)
        np.testing.assert_allclose(p.ravel(), 2 * g.p_norm, atol=1e-10)


def test_gistar_constant_cube_is_nan_and_bad_input_raises():
    z, p = space_time_gistar(np.ones((3, 4)), rook_grid(2))
    assert np.isnan(z).all() and np.isnan(p).all()
    with pytest.raises(UsmGeoError, match="units"):
        space_time_gistar(np.ones((3, 5)), rook_grid(2))
    with pytest.raises(UsmGeoError, match="NaN"):
        space_time_gistar(np.array([[1.0, np.nan, 0, 0]]), rook_grid(2))
    with pytest.raises(UsmGeoError, match="time_direction"):
        space_time_gistar(np.ones((3, 4)), rook_grid(2), time_direction="next")


# --------------------------------------------------------------------------- Mann–Kendall

def test_mann_kendall_by_hand_no_ties():
    # x = 1, 3, 2, 5, 4. Pairs i < j: from 1: +4; from 3: −1 +1 +1 = +1; from 2: +2; from 5: −1.
    # S = 6, Var(S) = 5·4·15 / 18 = 16.6667, z = (6 − 1) / 4.0824829 = 1.2247449,
    # p = 2(1 − Φ(1.2247449)) = 0.2206714, tau = 6 / 10 = 0.6.
    mk = mann_kendall(np.array([1, 3, 2, 5, 4], dtype=float))
    assert mk.s[0] == 6
    assert mk.z[0] == pytest.approx(1.2247449, abs=1e-6)
    assert mk.p[0] == pytest.approx(0.2206714, abs=1e-6)
    assert mk.tau[0] == pytest.approx(0.6, abs=1e-12)


def test_mann_kendall_by_hand_ties_and_directions():
    # x = 1, 2, 2, 3: S = 3 + 1 + 1 = 5; one tie group of 2: Var = (4·3·13 − 2·1·9)/18 = 138/18;
    # z = 4 / sqrt(7.6667) = 1.4446302; tau-b = 5 / sqrt(6 · (6 − 1)) = 0.9128709; p = 0.1485618.
    # x = 5, 4, 3, 2: S = −6, z = (−6 + 1)/sqrt(4·3·13/18), tau = −1.
    # x = 2, 2, 2, 2: S = 0, z = 0, p = 1, tau undefined.
    # x = 5, 4, 3, 2, 1: S = −10, z = (−10 + 1)/sqrt(50/3) = −2.2045408.
    series = np.column_stack([[1, 2, 2, 3], [5, 4, 3, 2], [2, 2, 2, 2]]).astype(float)
    mk = mann_kendall(series)
    np.testing.assert_allclose(mk.s, [5, -6, 0])
    assert mk.z[0] == pytest.approx(1.4446302, abs=1e-6)
    assert mk.tau[0] == pytest.approx(0.9128709, abs=1e-6)
    assert mk.p[0] == pytest.approx(0.1485618, abs=1e-6)
    assert mk.z[1] == pytest.approx(-5 / np.sqrt(4 * 3 * 13 / 18), abs=1e-12)
    assert mk.tau[1] == pytest.approx(-1.0)
    assert mk.z[2] == 0 and mk.p[2] == 1 and np.isnan(mk.tau[2])
    five = mann_kendall(np.array([5, 4, 3, 2, 1], dtype=float))
    assert five.s[0] == -10 and five.z[0] == pytest.approx(-2.2045408, abs=1e-6)


def test_mann_kendall_matches_scipy_kendalltau():
    rng = np.random.default_rng(11)
    t_steps = 12
    series = rng.integers(0, 5, size=(t_steps, 40)).astype(float)     # many ties
    series[:, :5] = rng.normal(size=(t_steps, 5))                       # no ties
    mk = mann_kendall(series, continuity=False)
    for u in range(series.shape[1]):
        ref = kendalltau(np.arange(t_steps), series[:, u], method="asymptotic")
        assert mk.tau[u] == pytest.approx(ref.statistic, abs=1e-12)
        assert mk.p[u] == pytest.approx(ref.pvalue, abs=1e-12)
    with_cc = mann_kendall(series)
    assert np.all(with_cc.p >= mk.p - 1e-15)          # the correction is conservative


def test_mann_kendall_nan_column_and_short_series():
    mk = mann_kendall(np.array([[1.0, 1.0], [2.0, np.nan], [3.0, 3.0]]))
    assert mk.s[0] == 3 and np.isnan(mk.s[1]) and np.isnan(mk.p[1])
    with pytest.raises(UsmGeoError, match="at least 2"):
        mann_kendall(np.ones((1, 3)))


# --------------------------------------------------------------------------- classification

HOT, COLD, NS = (3.0, 0.001), (-3.0, 0.001), (0.5, 0.6)
LEVEL = {"H": HOT, "C": COLD, ".": NS}


def series(code: str):
    """z and p columns from a code: H = significant hot, C = significant cold, . = not significant."""
    zp = np.array([LEVEL[ch] for ch in code])
    return zp[:, 0], zp[:, 1]


# pattern, series over 10 steps (final step last), trend z, trend p
CASES = [
    ("New Hot Spot", ".........H", 1.0, 0.3),
    ("Consecutive Hot Spot", "......HHHH", 3.0, 0.001),
    ("Intensifying Hot Spot", ".HHHHHHHHH", 3.5, 0.001),
    ("Persistent Hot Spot", "HHHHHHHHHH", 0.2, 0.8),
    ("Diminishing Hot Spot", "HHHHHHHH.H", -2.5, 0.01),
    ("Sporadic Hot Spot", "..H..H...H", 0.4, 0.7),
    ("Oscillating Hot Spot", "CC..C...HH", 2.0, 0.04),
    ("Historical Hot Spot", "HHHHHHHHH.", -1.0, 0.3),
    ("New Cold Spot", ".........C", -1.0, 0.3),
    ("Consecutive Cold Spot", ".......CCC", -3.0, 0.001),
    ("Intensifying Cold Spot", "CCCCCCCCCC", -3.5, 0.001),
    ("Persistent Cold Spot", "CCCC.CCCCC", 0.1, 0.9),
    ("Diminishing Cold Spot", "CCCCCCCCCC", 2.5, 0.01),
    ("Sporadic Cold Spot", "C.C.C.C..C", 0.0, 1.0),
    ("Oscillating Cold Spot", "..HH...H.C", -1.5, 0.13),
    ("Historical Cold Spot", ".CCCCCCCCC"[::-1], 1.0, 0.3),     # cold in 9 steps, final not
    ("No Pattern Detected", "..HH..C...", 0.0, 1.0),
]


def test_cases_cover_all_17_patterns():
    assert sorted(c[0] for c in CASES) == sorted(PATTERNS)
    assert len(PATTERNS) == 17


@pytest.mark.parametrize("pattern, code, tz, tp", CASES, ids=[c[0] for c in CASES])
def test_each_pattern_from_a_hand_built_series(pattern, code, tz, tp):
    z, p = series(code)
    assert classify(z[:, None], p[:, None], [tz], [tp])[0] == pattern


def test_all_patterns_at_once_vectorised():
    cols = [series(code) for _, code, _, _ in CASES]
    z = np.column_stack([c[0] for c in cols])
    p = np.column_stack([c[1] for c in cols])
    out = classify(z, p, [c[2] for c in CASES], [c[3] for c in CASES])
    assert list(out) == [c[0] for c in CASES]


@pytest.mark.parametrize("pattern, code, tz, tp", [
    # 9 of 10 hot is "≥ 90 %"; 8 of 10 is not.
    ("Persistent Hot Spot", "H.HHHHHHHH", 0.0, 1.0),
    ("Sporadic Hot Spot", "H..HHHHHHH", 0.0, 1.0),
    # Consecutive needs a run of ≥ 2 and nothing hot before it; one earlier hot bin → Sporadic.
    ("Consecutive Hot Spot", "........HH", 0.0, 1.0),
    ("Sporadic Hot Spot", "H.......HH", 0.0, 1.0),
    # Reading: an earlier cold bin makes New / Consecutive into Oscillating.
    ("Oscillating Hot Spot", "C........H", 0.0, 1.0),
    ("Oscillating Hot Spot", "C......HHH", 0.0, 1.0),
    # Reading: ≥ 90 % hot but the final step significantly cold → Oscillating Cold, not Historical.
    ("Oscillating Cold Spot", "HHHHHHHHHC", -3.0, 0.001),
    # Reading: Persistent needs the final step hot, otherwise Historical.
    ("Historical Hot Spot", "HHHHHHHHH.", 0.0, 1.0),
    # Hot history < 90 % but final step not hot → no pattern (Sporadic needs the final step hot).
    ("No Pattern Detected", "H.H.H.H.H.", 0.0, 1.0),
    # ≥ 90 % hot with a significant increasing trend but final step not hot → Historical.
    ("Historical Hot Spot", "HHHHHHHHH.", 3.0, 0.001),
    # Trend p exactly alpha is not significant.
    ("Persistent Hot Spot", "HHHHHHHHHH", 3.0, 0.05),
])
def test_boundary_readings(pattern, code, tz, tp):
    z, p = series(code)
    assert classify(z, p, tz, tp)[0] == pattern


def test_ninety_percent_for_short_series_means_every_step():
    z, p = series("HHHH.H")   # 5 of 6 = 83 %
    assert classify(z, p, 0.0, 1.0)[0] == "Sporadic Hot Spot"
    z, p = series("HHHHHH")
    assert classify(z, p, 0.0, 1.0)[0] == "Persistent Hot Spot"


def test_nan_bins_are_not_significant_and_alpha_matters():
    z, p = series("........HH")
    z[8], p[8] = np.nan, np.nan
    assert classify(z, p, 0.0, 1.0)[0] == "New Hot Spot"
    z, p = series("........HH")
    p[-2:] = 0.07                               # significant at 90 % confidence only
    assert classify(z, p, 0.0, 1.0, alpha=0.05)[0] == "No Pattern Detected"
    assert classify(z, p, 0.0, 1.0, alpha=0.10)[0] == "Consecutive Hot Spot"


# --------------------------------------------------------------------------- end to end

def _planted(seed: int):
    a = rook_grid(5)
    rng = np.random.default_rng(seed)
    base = rng.poisson(5, size=(10, 25)).astype(float)
    centre = 12
    return a, base, centre, a[centre].indices


def test_planted_increasing_hotspot_is_intensifying():
    a, cube, centre, nb = _planted(0)
    steps = np.arange(10)
    cube[:, centre] += 30 + 3 * steps
    cube[:, nb] += 12 + 1.5 * steps[:, None]
    df = emerging_hotspots(cube, a)
    row = df.iloc[centre]
    assert row.pattern == "Intensifying Hot Spot"
    assert row.n_hot >= 9 and row.trend_z > 0 and row.trend_p < 0.05
    assert set(df.pattern.iloc[[0, 4, 20, 24]]) == {"No Pattern Detected"}


def test_planted_final_step_spike_is_new():
    a, cube, centre, nb = _planted(0)
    cube[-1, centre] += 40
    cube[-1, nb] += 15
    df = emerging_hotspots(cube, a)
    assert df.pattern.iloc[centre] == "New Hot Spot"
    assert df.n_hot.iloc[centre] == 1
    assert (df.final_z.iloc[nb] > 2).all()
    assert set(df.pattern.iloc[[0, 4, 20, 24]]) == {"No Pattern Detected"}


def test_planted_recent_run_is_consecutive():
    a, cube, centre, nb = _planted(0)
    cube[-3:, centre] += 40
    cube[-3:, nb] += 15
    df = emerging_hotspots(cube, a)
    assert df.pattern.iloc[centre] == "Consecutive Hot Spot"
    assert df.n_hot.iloc[centre] == 3


def test_emerging_hotspots_table_and_settings():
    a, cube, centre, _ = _planted(1)
    ids = [f"cell{i:02d}" for i in range(25)]
    df = emerging_hotspots(cube, a, unit_ids=ids)
    assert list(df.columns) == ["unit_id", "pattern", "persistence", "trend_tau", "trend_z", "trend_p",
                                "n_hot", "n_cold", "final_z", "final_p"]
    assert df.unit_id.tolist() == ids
    assert set(df.pattern) <= set(PATTERNS)
    assert df.attrs == {"time_window": 1, "time_direction": "previous", "alpha": 0.05,
                        "p_adjust": "fdr", "n_steps": 10}
    z, p = space_time_gistar(cube, a)
    mk = mann_kendall(z)
    np.testing.assert_allclose(df.trend_z, mk.z)
    np.testing.assert_allclose(df.final_z, z[-1])
    # default: Benjamini–Hochberg over all 250 bins of the cube together
    q = np.minimum(1.0, np.minimum.accumulate((np.sort(p.ravel()) * 250 / np.arange(1, 251))[::-1])[::-1])
    q_bins = np.empty(250)
    q_bins[np.argsort(p.ravel(), kind="stable")] = q
    np.testing.assert_allclose(df.final_p, q_bins.reshape(10, 25)[-1], atol=1e-15)
    # an adjustment can only remove significant bins
    cube[:, centre] += 30
    raw = emerging_hotspots(cube, a, p_adjust=None)
    fdr = emerging_hotspots(cube, a)
    bonf = emerging_hotspots(cube, a, p_adjust=lambda v: np.minimum(1.0, v * v.size))
    assert raw.attrs["p_adjust"] == "none" and bonf.attrs["p_adjust"] == "<lambda>"
    assert (fdr.n_hot <= raw.n_hot).all() and (bonf.n_hot <= fdr.n_hot).all()
    assert bonf.n_hot.sum() < raw.n_hot.sum()
    with pytest.raises(UsmGeoError, match="p_adjust"):
        emerging_hotspots(cube, a, p_adjust="holm")
    with pytest.raises(UsmGeoError, match="unit ids"):
        emerging_hotspots(cube, a, unit_ids=ids[:3])
    with pytest.raises(UsmGeoError, match="2 time steps"):
        emerging_hotspots(cube[:1], a)


def test_persistence_column_is_sfhotspot_on_the_same_bins():
    """``persistence``: the sfhotspot classes of the BH-significant bins (scipy's BH here), the rules
    applied by hand (T = 10: R = floor(0.2·10) = 2 recent steps, 8 older; shares vs 0.1 and 0.8)."""
    a, cube, centre, nb = _planted(0)
    steps = np.arange(10)
    cube[:, centre] += 30 + 3 * steps
    cube[:, nb] += 12 + 1.5 * steps[:, None]
    fdr = emerging_hotspots(cube, a)
    z, p = space_time_gistar(cube, a)
    qb = false_discovery_control(p.ravel(), method="bh").reshape(10, 25)

    def cls(f, word):
        every, recent, older = f.mean(), f[8:].mean(), f[:8].mean()
        if every >= 0.8:
            return f"persistent {word}"
        if older < 0.1 and recent >= 0.1:
            return f"emerging {word}"
        if older >= 0.1 and recent < 0.1:
            return f"former {word}"
        return f"intermittent {word}" if every >= 0.1 else "no pattern"

    for u in range(25):
        h = cls((qb[:, u] < 0.05) & (z[:, u] > 0), "hotspot")
        c = cls((qb[:, u] < 0.05) & (z[:, u] < 0), "coldspot")
        want = "mixed hot/coldspot" if "no pattern" not in (h, c) else (h if h != "no pattern" else c)
        assert fdr.persistence[u] == want, u
    assert fdr.persistence[centre] == "persistent hotspot"
    assert fdr.pattern[centre] == "Intensifying Hot Spot"


def test_accepts_a_weights_object_and_uses_its_ids():
    class FakeWeights:                    # the shape of usm_geo.units.weights.Weights
        def __init__(self, matrix, ids):
            self.sparse, self.ids = matrix, np.asarray(ids)

    a, cube, _, _ = _planted(2)
    ids = np.array([f"h{i}" for i in range(25)])
    from_obj = emerging_hotspots(cube, FakeWeights(a, ids))
    from_matrix = emerging_hotspots(cube, a, unit_ids=ids)
    pd.testing.assert_frame_equal(from_obj, from_matrix)
    assert from_obj.unit_id.iloc[3] == "h3"
