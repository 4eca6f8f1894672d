"""Poisson E-test (Krishnamoorthy & Thomson 2004) against scipy.stats.poisson_means_test."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from usm_geo.indicators.etest import poisson_etest


def test_etest_equals_scipy_on_2000_random_pairs_with_zeros():
    """2,000 pairs: counts from 0 to ~3,000 (a fifth of them 0, both 0 in some), exposures from
    1.5 to 25,000 (days, residents); scipy 1.17 called once per pair in the test only.
    Tolerance 1e-10 absolute and 1e-8 relative (our inner sums are differences of Poisson
    distribution functions, scipy adds the probabilities cell by cell)."""
    rng = np.random.default_rng(20261207)
    n = 2000
    k1 = rng.poisson(rng.choice([0.3, 3.0, 20.0, 200.0, 3000.0], n)).astype(float)
    k2 = rng.poisson(rng.choice([0.3, 3.0, 20.0, 200.0, 3000.0], n)).astype(float)
    k1[:150] = 0
    k2[100:250] = 0  # at least 50 pairs with both 0
    n1 = rng.choice([1.5, 90.0, 365.0, 366.0, 1000.0, 25000.0], n)
    n2 = rng.choice([1.5, 90.0, 365.0, 366.0, 1000.0, 25000.0], n)
    got = poisson_etest(k1, n1, k2, n2)
    ref = np.array([stats.poisson_means_test(int(a), b, int(c), d).pvalue for a, b, c, d in zip(k1, n1, k2, n2)])
    assert ((k1 == 0) & (k2 == 0)).sum() >= 50 and (ref < 0.05).sum() > 100 and (ref > 0.5).sum() > 100
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10)


def test_etest_special_cases():
    # both zero: nothing to test (scipy returns p = 1); equal rates; missing exposure → NaN
    got = poisson_etest([0, 10, 3, 5, 5], [10, 10, 1, np.nan, 0], [0, 10, 6, 5, 5], [5, 10, 2, 10, 10])
    assert got[0] == 1.0
    assert got[1] == pytest.approx(stats.poisson_means_test(10, 10, 10, 10).pvalue, abs=1e-12)
    assert got[2] == pytest.approx(stats.poisson_means_test(3, 1, 6, 2).pvalue, abs=1e-12)
    assert np.isnan(got[3]) and np.isnan(got[4])
    # the same pair computed once or many times gives the same value, in any shape
    many = poisson_etest(np.full((3, 4), 7), 365, np.full((3, 4), 19), 366)
    assert many.shape == (3, 4) and np.all(many == many[0, 0])
    assert many[0, 0] == pytest.approx(stats.poisson_means_test(7, 365, 19, 366).pvalue, abs=1e-12)


def test_progress_csv_has_etest_p_for_counts_and_rates():
    """progress_table: ``count`` rows use the periods' lengths in days (2019: 365, 2020: 366) as
    exposures, rate rows the populations; etest_p equals scipy on both."""
    from usm_geo.indicators.registry import Indicator, IndicatorSettings
    from usm_geo.indicators.tables import progress_table

    periods = ["2019", "2020"]
    y = {("A", "2019"): 40.0, ("A", "2020"): 25.0, ("B", "2019"): 0.0, ("B", "2020"): 4.0}
    pop = {"A": 12000.0, "B": 900.0}
    rows = []
    for (u, p), c in y.items():
        rows.append({"level": "nb", "unit_id": u, "period": p, "category": "all", "measure": "count",
                     "numerator": c, "denominator": np.nan, "value": c})
        rows.append({"level": "nb", "unit_id": u, "period": p, "category": "all", "measure": "incident_rate",
                     "numerator": c, "denominator": pop[u], "value": c / pop[u] * 1000})
    measures = pd.DataFrame(rows)
    ind = Indicator(id="incident_rate", name="rate", theme="t", kind="rate", source="police")
    settings = IndicatorSettings(indicators={"incident_rate": ind}, categories=pd.DataFrame(), harm=None)
    table = progress_table(measures, settings, "2019", "2020").set_index(["indicator", "unit_id"])
    for u in ("A", "B"):
        c0, c1 = y[(u, periods[0])], y[(u, periods[1])]
        days = stats.poisson_means_test(int(c1), 366, int(c0), 365).pvalue
        rate = stats.poisson_means_test(int(c1), pop[u], int(c0), pop[u]).pvalue
        assert table.loc[("count", u), "etest_p"] == pytest.approx(days, abs=1e-12)
        assert table.loc[("incident_rate", u), "etest_p"] == pytest.approx(rate, abs=1e-12)
    # count change is per day: (25/366)/(40/365) − 1
    assert table.loc[("count", "A"), "change"] == pytest.approx((25 / 366) / (40 / 365) - 1, rel=1e-12)
    assert table.loc[("count", "A"), "baseline_value"] == pytest.approx(40 / 365, rel=1e-12)
