"""Lorenz curve, Gini, generalised Gini and top shares, checked by hand and by other formulas.

References:
* Gini: the mean-absolute-difference definition Σ_i Σ_j |x_i − x_j| / (2 n² x̄) (exact, tolerance 1e-12),
  and 1 − 2·(area under the Lorenz curve by the trapezoid rule).
* Generalised Gini: Bernasco & Steenbeek (2017) defined geometrically — the area between the line of
  maximal equality and the Lorenz curve over the area under that line — integrated here with
  numpy's trapezoid rule (tolerance 1e-12); the worked examples in the documentation of their R
  package lorenzgini 0.1.2 (``?gini``: 0.78 / 0.78, 0.8 / 0.75, 0.9 / unbiased 1); and the hand
  cases below.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.concentration import (
    generalised_gini,
    gini,
    lorenz,
    maximal_equality_line,
    top_share,
)

counts_strategy = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=60).filter(lambda v: sum(v) > 0)


def _trapezoid(y, x):
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def test_lorenz_curve():
    u, c = lorenz([3, 0, 1, 0])
    np.testing.assert_allclose(u, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(c, [0, 0, 0, 0.25, 1.0])
    u, c = lorenz([0, 0])
    assert np.isnan(c).all()


@settings(max_examples=100, deadline=None)
@given(counts_strategy)
def test_gini_equals_mean_absolute_difference_and_lorenz_area(values):
    x = np.array(values, dtype=float)
    n = x.size
    mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean())
    assert gini(x) == pytest.approx(mad, rel=1e-12, abs=1e-12)
    u, c = lorenz(x)
    assert gini(x) == pytest.approx(1 - 2 * _trapezoid(c, u), rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(counts_strategy)
def test_generalised_gini_is_the_area_against_the_line_of_maximal_equality(values):
    x = np.array(values, dtype=float)
    u, c = lorenz(x)
    lx, ly = maximal_equality_line(x.size, x.sum())
    line_area = _trapezoid(ly, lx)
    lorenz_area = _trapezoid(c, u)
    expected = (line_area - lorenz_area) / line_area
    assert generalised_gini(x) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    if x.sum() >= x.size:
        assert generalised_gini(x) == pytest.approx(gini(x), rel=1e-15, abs=1e-15)


def test_hand_cases_ten_units_five_crimes():
    """n = 10 units, N = 5 crimes; G = Σ (2i − n − 1) x_(i) / (n N), G' = 1 − max(1, n/N)(1 − G).

    Five different units hold one crime each: sorted x = 0,0,0,0,0,1,1,1,1,1; the ones sit at
    i = 6…10 with weights 2i − 11 = 1, 3, 5, 7, 9 → G = 25/(10·5) = 0.5; G' = 1 − 2·(1 − 0.5) = 0
    (the data are as even as 5 crimes over 10 units can be).

    All five in one unit: only i = 10 counts, weight 9 → G = 9·5/50 = 0.9; G' = 1 − 2·0.1 = 0.8 =
    1 − 1/N (the published G' does not reach 1, their footnote 3); with lorenzgini's small-sample
    correction m/(m − 1), m = min(n, N) = 5: 0.8 · 5/4 = 1.
    """
    spread = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert gini(spread) == pytest.approx(0.5, abs=1e-15)
    assert generalised_gini(spread) == pytest.approx(0.0, abs=1e-15)
    assert generalised_gini(spread, unbiased=True) == pytest.approx(0.0, abs=1e-15)
    one = [5, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert gini(one) == pytest.approx(0.9, abs=1e-15)
    assert generalised_gini(one) == pytest.approx(0.8, abs=1e-15)
    assert generalised_gini(one, unbiased=True) == pytest.approx(1.0, abs=1e-15)


def test_lorenzgini_documented_examples():
    """Examples from ?lorenzgini::gini (Steenbeek & Bernasco 2018, R package 0.1.2)."""
    a = [10, 8, 2] + [0] * 7  # n = 10, N = 20: G = (2·5 + 8·7 + 10·9)/(10·20) = 156/200
    assert gini(a) == pytest.approx(0.78, abs=1e-15)
    assert generalised_gini(a) == pytest.approx(0.78, abs=1e-15)
    b = [5, 2, 1] + [0] * 7  # n = 10, N = 8: G = (1·5 + 2·7 + 5·9)/80 = 0.8; G' = 1 − (10/8)·0.2 = 0.75
    assert gini(b) == pytest.approx(0.8, abs=1e-15)
    assert generalised_gini(b) == pytest.approx(0.75, abs=1e-15)
    c = [10] + [0] * 9  # N = n = 10: G = 0.9, unbiased 0.9 · 10/9 = 1
    assert gini(c) == pytest.approx(0.9, abs=1e-15)
    assert generalised_gini(c, unbiased=True) == pytest.approx(1.0, abs=1e-15)
    assert gini([10] + [0] * 99) == pytest.approx(0.99, abs=1e-15)


def test_maximal_equality_line():
    x, y = maximal_equality_line(10, 4)
    np.testing.assert_allclose(x, [0, 0.6, 1])
    np.testing.assert_allclose(y, [0, 0, 1])
    x, y = maximal_equality_line(10, 40)
    np.testing.assert_allclose(x, [0, 1])


def test_top_share():
    counts = np.arange(1, 21)  # 20 units, 210 incidents
    # top 5 % → ceil(1) = 1 unit (20 incidents); top 10 % → 2 units (20 + 19)
    np.testing.assert_allclose(top_share(counts), [20 / 210, 39 / 210])
    assert top_share(counts, 0.5) == pytest.approx(sum(range(11, 21)) / 210)
    # fractional unit counts round up: 5 % of 30 units = 1.5 → 2 units
    assert top_share(np.arange(1, 31), 0.05) == pytest.approx((30 + 29) / 465)
    # 0.1 · 30 is 3.0000000000000004 in floating point: still 3 units, not 4
    assert top_share(np.arange(1, 31), 0.1) == pytest.approx((30 + 29 + 28) / 465)
    # ties at the cut: any tied unit gives the same share
    assert top_share([5, 5, 5, 1], 0.25) == pytest.approx(5 / 16)
    assert top_share([3, 0, 0], 0.01) == pytest.approx(1.0)  # at least one unit
    assert np.isnan(top_share([0, 0, 0], 0.1))
    with pytest.raises(UsmGeoError, match="fraction"):
        top_share(counts, 0)
    with pytest.raises(UsmGeoError, match="fraction"):
        top_share(counts, 1.5)


def test_bad_counts():
    assert np.isnan(gini([0, 0, 0])) and np.isnan(generalised_gini([0, 0]))
    assert np.isnan(generalised_gini([1, 0, 0], unbiased=True))  # m = 1: correction undefined
    with pytest.raises(UsmGeoError, match="negative"):
        gini([1, -1])
    with pytest.raises(UsmGeoError, match="NaN"):
        gini([1, np.nan])
    with pytest.raises(UsmGeoError, match="no units"):
        lorenz([])
