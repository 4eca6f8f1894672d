"""Knox test for near repeats: pair counts by hand, brute force, determinism, planted patterns.

References: pair tables counted by hand for a five-incident example (exact); an O(n²) brute force
with ``scipy.spatial.distance.pdist`` and ``numpy.digitize`` (exact); the permutation invariant that
the total number of pairs in a distance band does not depend on the times (exact); planted
near-repeat pattern detected (p ≤ 0.05, Knox ratio > 2) and a pattern without space–time
interaction not detected (seeded).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist

from usm_geo.errors import UsmGeoError
from usm_geo.hotspots.near_repeat import knox_test

# A (0, 0) day 0; B (50, 0) day 3; C (150, 0) day 20; D (0, 0) day 10; F (1000, 0) day 5.
X = np.array([0.0, 50.0, 150.0, 0.0, 1000.0])
Y = np.zeros(5)
T = np.array([0.0, 3.0, 20.0, 10.0, 5.0])
# Pairs within 200 m (F is > 800 m from all):
#   A–B  d 50   dt 3        A–C  d 150  dt 20       A–D  d 0    dt 10
#   B–C  d 100  dt 17       B–D  d 50   dt 7        C–D  d 150  dt 10


def test_pair_table_by_hand():
    r = knox_test(X, Y, T, [0, 100, 200], [0, 7, 14, 21], permutations=9)
    # distance [0, 100]: A–B (dt 3), B–D (dt 7, right-closed → [0, 7]), A–D (10), B–C (100 m, 17)
    # distance (100, 200]: C–D (10), A–C (20)
    np.testing.assert_array_equal(r.observed, [[2, 1, 1], [0, 1, 1]])
    assert r.n_pairs == 6 and r.n_points == 5


def test_same_location_band_and_open_time_band():
    r = knox_test(X, Y, T, [0, 0, 100, 200], [0, 7, np.inf], permutations=9)
    # d = 0: A–D (10 days); (0, 100]: A–B (3), B–D (7), B–C (17); (100, 200]: C–D (10), A–C (20)
    np.testing.assert_array_equal(r.observed, [[0, 1], [2, 1], [0, 2]])
    df = r.to_frame()
    assert df.distance_band.tolist()[:2] == ["0 m", "0 m"]
    assert df.distance_band.tolist()[2] == "(0, 100] m"
    assert df.time_band.tolist()[:2] == ["[0, 7] days", "(7, inf] days"]


def test_manhattan_distance():
    # A (0, 0) and E (60, 80): Euclidean 100 m, Manhattan 140 m.
    x, y, t = np.array([0.0, 60.0]), np.array([0.0, 80.0]), np.array([0.0, 1.0])
    eu = knox_test(x, y, t, [0, 100, 200], [0, 7], permutations=9)
    mh = knox_test(x, y, t, [0, 100, 200], [0, 7], permutations=9, metric="manhattan")
    np.testing.assert_array_equal(eu.observed, [[1], [0]])
    np.testing.assert_array_equal(mh.observed, [[0], [1]])


def test_expected_equals_observed_when_time_is_unbanded():
    # With one time band covering every gap, the count per distance band is the same whatever the
    # times, so every permutation reproduces it: ratio 1, p 1.
    r = knox_test(X, Y, T, [0, 100, 200], [0, np.inf], permutations=19, seed=4)
    np.testing.assert_array_equal(r.observed, [[4], [2]])
    np.testing.assert_array_equal(r.expected, [[4.0], [2.0]])
    np.testing.assert_array_equal(r.knox_ratio, [[1.0], [1.0]])
    np.testing.assert_array_equal(r.p, [[1.0], [1.0]])


def _brute_force(x, y, t, d_edges, t_edges):
    """O(n²) reference: every pair, bands closed on the right (the first also on the left)."""
    d = pdist(np.column_stack([x, y]))
    dt = pdist(t[:, None], metric="cityblock")

    def band(v, e):
        b = np.digitize(v, e, right=True) - 1
        b[v == e[0]] = 0
        b[(v < e[0]) | (v > e[-1])] = -1
        return b

    bd, bt = band(d, np.asarray(d_edges, float)), band(dt, np.asarray(t_edges, float))
    ok = (bd >= 0) & (bt >= 0)
    out = np.zeros((len(d_edges) - 1, len(t_edges) - 1), dtype=np.int64)
    np.add.at(out, (bd[ok], bt[ok]), 1)
    return out


def test_matches_brute_force_with_integer_coordinates_and_days():
    rng = np.random.default_rng(5)
    n = 400
    # integers on a 20 m lattice and whole days, so many pairs sit exactly on band edges
    x = rng.integers(0, 50, n) * 20.0
    y = rng.integers(0, 50, n) * 20.0
    t = rng.integers(0, 120, n).astype(float)
    d_edges, t_edges = [0, 0, 100, 200, 300], [0, 7, 14, 21, 28]
    r = knox_test(x, y, t, d_edges, t_edges, permutations=5)
    np.testing.assert_array_equal(r.observed, _brute_force(x, y, t, d_edges, t_edges))
    # one permutation, redone by hand with the same generator
    rng2 = np.random.default_rng(0)
    first = _brute_force(x, y, t[rng2.permutation(n)], d_edges, t_edges)
    np.testing.assert_array_equal(r.sim[0], first)


def _incidents(n: int, seed: int, planted: int = 0):
    """Uniform incidents over 5 km × 5 km and a year, plus ``planted`` repeats ≤ 80 m, ≤ 10 days."""
    rng = np.random.default_rng(seed)
    x, y, t = rng.uniform(0, 5000, n), rng.uniform(0, 5000, n), rng.uniform(0, 365, n)
    if planted:
        src = rng.integers(0, n, planted)
        ang, rad = rng.uniform(0, 2 * np.pi, planted), rng.uniform(0, 80, planted)
        x = np.r_[x, x[src] + rad * np.cos(ang)]
        y = np.r_[y, y[src] + rad * np.sin(ang)]
        t = np.r_[t, t[src] + rng.uniform(0, 10, planted)]
    return x, y, t


D_BANDS, T_BANDS = [0, 100, 200, 300, 400], [0, 14, 28, 42, 56]


def test_planted_near_repeats_are_detected():
    x, y, t = _incidents(400, seed=1, planted=60)
    r = knox_test(x, y, t, D_BANDS, T_BANDS, seed=1)
    assert r.p[0, 0] <= 0.05
    assert r.knox_ratio[0, 0] > 2
    assert r.p[0, 0] == pytest.approx(1 / 100)        # no permutation reached the observed count


def test_no_space_time_interaction_is_not_detected():
    x, y, t = _incidents(460, seed=2)
    r = knox_test(x, y, t, D_BANDS, T_BANDS, seed=2)
    assert r.p[0, 0] > 0.05
    assert 0.5 < r.knox_ratio[0, 0] < 1.5
    assert (r.p <= 0.05).sum() <= 2                   # of 16 cells, by chance ≈ 0.8 expected


def test_same_seed_same_result_and_datetimes():
    x, y, t = _incidents(300, seed=3, planted=30)
    a = knox_test(x, y, t, D_BANDS, T_BANDS, seed=42)
    b = knox_test(x, y, t, D_BANDS, T_BANDS, seed=42)
    c = knox_test(x, y, t, D_BANDS, T_BANDS, seed=43)
    np.testing.assert_array_equal(a.sim, b.sim)
    np.testing.assert_array_equal(a.p, b.p)
    assert not np.array_equal(a.sim, c.sim)
    np.testing.assert_array_equal(a.observed, c.observed)
    stamps = pd.Timestamp("2021-03-01") + pd.to_timedelta(t, unit="D")
    d = knox_test(x, y, stamps.to_numpy(), D_BANDS, T_BANDS, seed=42)
    np.testing.assert_array_equal(d.observed, a.observed)
    np.testing.assert_array_equal(d.p, a.p)
    assert a.permutations == 99 and a.seed == 42


def test_bad_input_raises():
    with pytest.raises(UsmGeoError, match="same length"):
        knox_test([0, 1], [0, 1], [0], [0, 100], [0, 7])
    with pytest.raises(UsmGeoError, match="increase"):
        knox_test(X, Y, T, [0, 200, 100], [0, 7])
    with pytest.raises(UsmGeoError, match="finite"):
        knox_test(X, Y, T, [0, np.inf], [0, 7])
    with pytest.raises(UsmGeoError, match="at least two edges"):
        knox_test(X, Y, T, [100], [0, 7])
    with pytest.raises(UsmGeoError, match="NaN"):
        knox_test([0.0, np.nan], [0.0, 0.0], [0.0, 1.0], [0, 100], [0, 7])
    with pytest.raises(UsmGeoError, match="permutations"):
        knox_test(X, Y, T, [0, 100], [0, 7], permutations=0)
    with pytest.raises(UsmGeoError, match="metric"):
        knox_test(X, Y, T, [0, 100], [0, 7], metric="chebyshev")
