"""Reconciling police and health counts (issue 21 point 2): comparison and Chapman's estimate,
against scipy's exact binomial test and hand calculations written out here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from usm_geo.reconcile import chapman, compare_counts, linked_counts


def test_compare_counts_against_scipy_binomtest():
    a = np.array([30, 5, 0, 7, 0, 12])
    b = np.array([12, 5, 4, 0, 0, 11])
    out = compare_counts(a, b, fdr=False)
    for i in range(len(a)):
        n = a[i] + b[i]
        if n == 0:
            assert out.loc[i, "flags"] == "no_records" and math.isnan(out.loc[i, "p"])
            continue
        ref = binomtest(int(a[i]), int(n), 0.5)
        ci = ref.proportion_ci(0.95, method="exact")
        assert out.loc[i, "p"] == pytest.approx(ref.pvalue, rel=1e-12)
        lo = ci.low / (1 - ci.low)
        hi = ci.high / (1 - ci.high) if ci.high < 1 else math.inf
        assert out.loc[i, "ratio_lower"] == pytest.approx(lo, rel=1e-9, abs=1e-15)
        assert out.loc[i, "ratio_upper"] == pytest.approx(hi, rel=1e-9)
    assert out.loc[0, "ratio"] == 2.5 and out.loc[0, "difference"] == 18
    assert out.loc[0, "flags"] == "sources_differ"  # p = 0.0080 (2 P(X ≤ 12), X ~ Bin(42, 1/2))
    assert out.loc[1, "flags"] == "" and out.loc[1, "p"] == 1.0
    assert math.isinf(out.loc[3, "ratio"])


def test_compare_counts_fdr_is_benjamini_hochberg():
    a = np.array([30, 20, 14, 9])
    b = np.array([12, 10, 10, 9])
    raw = np.array([binomtest(int(x), int(x + y)).pvalue for x, y in zip(a, b)])
    # BH by hand: sort, p_(r) · m / r, cumulative minimum from the top
    order = np.argsort(raw)
    scaled = raw[order] * 4 / np.arange(1, 5)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    expected = np.empty(4)
    expected[order] = np.minimum(q, 1)
    out = compare_counts(a, b)
    np.testing.assert_allclose(out["p_fdr"], expected, rtol=1e-12)


def test_chapman_by_hand():
    # 50 police records, 40 health records, 20 linked as the same incidents
    out = chapman(50, 40, 20).iloc[0]
    n_hat = 51 * 41 / 21 - 1                       # 98.5714…
    var = 51 * 41 * 30 * 20 / (21 ** 2 * 22)       # 129.3135…
    assert out["estimate"] == pytest.approx(n_hat, rel=1e-12)
    assert out["se"] == pytest.approx(math.sqrt(var), rel=1e-12)
    observed, f0 = 70, n_hat - 70
    c = math.exp(1.959963984540054 * math.sqrt(math.log(1 + var / f0 ** 2)))
    assert out["observed"] == observed
    assert (out["lower"], out["upper"]) == pytest.approx((observed + f0 / c, observed + f0 * c), rel=1e-12)
    assert out["lower"] > observed  # Chao's interval never goes below what was seen
    assert out["flags"] == ""


def test_chapman_flags():
    out = chapman([10, 10], [8, 8], [0, 9])
    assert out.loc[0, "flags"] == "no_overlap" and out.loc[0, "estimate"] == pytest.approx(11 * 9 / 1 - 1)
    assert out.loc[1, "flags"] == "invalid_link" and math.isnan(out.loc[1, "estimate"])


def test_linked_counts_match_one_to_one():
    police = pd.DataFrame({"unit": ["A", "A", "A", "A", "B"], "period": "2019",
                           "date": ["01-02", "01-02", "01-02", "01-05", "01-02"]})
    health = pd.DataFrame({"unit": ["A", "A", "B", "B"], "period": "2019",
                           "date": ["01-02", "01-02", "01-02", "01-03"]})
    out = linked_counts(police, health, link=["date", "unit"], by=["unit", "period"])
    # A: 3 police and 2 health on 01-02 → 2 linked; 01-05 police only. B: 1 and 1 on 01-02 → 1
    assert out.to_dict("records") == [{"unit": "A", "period": "2019", "a": 4, "b": 2, "m": 2},
                                      {"unit": "B", "period": "2019", "a": 1, "b": 2, "m": 1}]
