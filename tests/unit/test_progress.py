"""Change, Poisson trend and progress to target, checked against R and by hand.

Trend reference values: R 4.2.2, ``glm(y ~ t, family = poisson, offset = log(e))`` converged tightly,
with the standard error taken from the fitted means at the final coefficients (R's own ``vcov`` uses
the weights of the previous iteration, ~1e-9 away) and Wald limits as ``confint.default``::

    fitref <- function(tag, y, t, e, quasi = FALSE) {
      f <- glm(y ~ t, family = poisson, offset = log(e), control = glm.control(epsilon = 1e-15, maxit = 200))
      X <- model.matrix(f); mu <- fitted(f)
      v <- solve(t(X) %*% (mu * X))[2, 2]
      if (quasi) v <- v * sum((y - mu)^2 / mu) / df.residual(f)   # = summary(quasipoisson fit)$dispersion
      b <- unname(coef(f)[2]); se <- sqrt(v); z <- qnorm(0.975)
      cat(tag, sprintf("%.17g", c(b, se, exp(b) - 1, exp(b - z * se) - 1, exp(b + z * se) - 1)), "\\n")
    }
    fitref("A", c(120, 131, 118, 104, 99, 101, 87, 90, 78), 2015:2023,
           c(50000, 50500, 51000, 51800, 52300, 53000, 53400, 54100, 54900))      # and quasi = TRUE
    fitref("B", c(0, 3, 1, 0, 5, 2), 0:5, c(1000, 1000, 1200, 1200, 1500, 1500))
    fitref("C", c(0, 3, 0, 0), 1:4, rep(100, 4)); fitref("D", c(1, 2, 3, 4), 1:4, rep(100, 4))

(R warns "algorithm did not converge" at epsilon = 1e-15 because its deviance criterion cannot get
that small; the coefficients are converged.) Tolerance 1e-9 relative: repeated R runs at epsilon 1e-12
and 1e-15 differ from each other by up to 4e-11.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.progress import change, progress_to_target, trend

RTOL = 1e-9
KEYS = ["beta", "se", "value", "lower", "upper"]

T_A = np.arange(2015, 2024)
Y_A = [120, 131, 118, 104, 99, 101, 87, 90, 78]
E_A = [50000, 50500, 51000, 51800, 52300, 53000, 53400, 54100, 54900]
R_A = [-0.069376158907873950, 0.012798616113762125, -0.067024333043970596, -0.090136768246313559,
       -0.043324793491941072]
R_A_QUASI = [-0.069376158907873950, 0.0075701481022401179, -0.067024333043970596, -0.080764908041335071,
             -0.053078366191019022]
R_B = [0.14879226625829398, 0.18621586125788278, 0.16043190330784518, -0.19441303255261055, 0.67157893142382652]
R_C = [-0.41961762499109700, 0.55503877739386731, -0.34270189386162342, -0.77853121804972292, 0.95079774462341993]
R_D = [0.41961762499109850, 0.30400725866870926, 0.52137970680456847, -0.16157123200954704, 1.7606354894338629]


def _check(row, ref):
    np.testing.assert_allclose(row[KEYS].to_numpy(dtype=float), ref, rtol=RTOL, atol=0)


def test_change_matches_r_poisson_test():
    # R: poisson.test(c(30, 20), c(10000, 12000))  → RR 1.8 (0.98895827907709466, 3.3441051683550804)
    out = change(20, 12000, 30, 10000).iloc[0]
    assert out["value"] == pytest.approx(0.8, rel=1e-12)
    assert out["lower"] == pytest.approx(0.98895827907709466 - 1, rel=RTOL)
    assert out["upper"] == pytest.approx(3.3441051683550804 - 1, rel=RTOL)
    # R: poisson.test(c(250, 310), c(54000, 52000)) → 0.77658303464755074 (0.65475318626407686, 0.92034719892972283)
    out = change([310], [52000], [250], [54000]).iloc[0]
    assert out["value"] == pytest.approx(0.77658303464755074 - 1, rel=RTOL)
    assert out["lower"] == pytest.approx(0.65475318626407686 - 1, rel=RTOL)
    assert out["upper"] == pytest.approx(0.92034719892972283 - 1, rel=RTOL)
    zero = change(0, 100, 4, 100).iloc[0]
    assert np.isnan(zero["value"]) and "zero_baseline" in zero["flags"]


def test_trend_matches_r_glm():
    _check(trend(T_A, Y_A, E_A).iloc[0], R_A)
    _check(trend(T_A, Y_A, E_A, dispersion="quasi").iloc[0], R_A_QUASI)
    _check(trend(np.arange(6), [0, 3, 1, 0, 5, 2], [1000, 1000, 1200, 1200, 1500, 1500]).iloc[0], R_B)


def test_trend_vectorised_over_units_matches_r_and_single_fits():
    y = np.array([[0, 3, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 5], [5, 0, 0, 0], [np.nan, 1, np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = trend([1, 2, 3, 4], y, 100)
    _check(out.iloc[0], R_C)
    _check(out.iloc[1], R_D)
    assert out["flags"].tolist() == ["small_count", "", "no_events", "no_finite_trend;small_count",
                                     "no_finite_trend;small_count", "too_few_periods;small_count"]
    assert out.loc[2:, ["value", "lower", "upper"]].isna().all().all()
    assert out["n_periods"].tolist() == [4, 4, 4, 4, 4, 1]
    single = trend([1, 2, 3, 4], y[1], 100).iloc[0]
    np.testing.assert_allclose(single[KEYS].to_numpy(dtype=float), out.iloc[1][KEYS].to_numpy(dtype=float),
                               rtol=1e-14)


def test_trend_two_periods_is_the_rate_ratio():
    """Two periods t = 0, 1: the model is saturated, so μ̂ = y, exp(β) = (c1/e1)/(c0/e0) exactly and
    se(β)² = 1/c0 + 1/c1 (inverse of XᵀWX with W = diag(c0, c1))."""
    c0, e0, c1, e1 = 40, 20000, 25, 21000
    out = trend([0, 1], [c0, c1], [e0, e1]).iloc[0]
    rr = (c1 / e1) / (c0 / e0)
    assert out["value"] == pytest.approx(rr - 1, rel=1e-12)
    assert out["se"] == pytest.approx(np.sqrt(1 / c0 + 1 / c1), rel=1e-12)
    z = 1.959963984540054
    assert out["lower"] == pytest.approx(rr * np.exp(-z * np.sqrt(1 / c0 + 1 / c1)) - 1, rel=1e-12)
    # time in years: a two-year gap halves β
    two = trend([2020, 2022], [c0, c1], [e0, e1]).iloc[0]
    assert two["beta"] == pytest.approx(np.log(rr) / 2, rel=1e-12)


def test_trend_skips_periods_without_exposure():
    full = trend(T_A, Y_A, E_A).iloc[0]
    e = np.array(E_A, dtype=float)
    e[3] = 0
    y = np.array(Y_A, dtype=float)
    y[5] = np.nan
    gap = trend(T_A, y, e).iloc[0]
    keep = np.ones(9, bool)
    keep[[3, 5]] = False
    sub = trend(T_A[keep], np.array(Y_A)[keep], np.array(E_A)[keep]).iloc[0]
    assert gap["n_periods"] == 7
    np.testing.assert_allclose(gap[KEYS].to_numpy(dtype=float), sub[KEYS].to_numpy(dtype=float), rtol=1e-12)
    assert gap["beta"] != pytest.approx(full["beta"], rel=1e-6)


def test_trend_bad_inputs():
    with pytest.raises(UsmGeoError, match="periods"):
        trend([1, 2, 3], [1, 2], [10, 10])
    with pytest.raises(UsmGeoError, match="dispersion"):
        trend([1, 2], [1, 2], [10, 10], dispersion="negbin")
    assert trend([1, 2], [3, 4], 10, dispersion="quasi")["flags"][0] == "too_few_periods;small_count"


def test_progress_to_target_halving_violence_2020_2030():
    """Target: halve violence between 2020 (100 per 10,000) and 2030 (50).
    required = 0.5^(1/10) − 1 = −0.066967 (−6.7 % a year).
    2024 at 80: achieved = 0.8^(1/4) − 1 = −0.054258 → slower than required → off track.
    2024 at 75: achieved = 0.75^(1/4) − 1 = −0.069395 → on track.
    2024 at 80 (60 to 105): achieved interval 0.6^(1/4) − 1 = −0.1199 to 1.05^(1/4) − 1 = +0.0123 contains both
    −0.067 and 0 → insufficient data.
    2024 at 50 (45 to 55): interval −0.181 to −0.139, all faster than required → on track."""
    out = progress_to_target(100, 2020, 50, 2030, [80, 75, 80, 50], 2024, [np.nan, np.nan, 60, 45],
                             [np.nan, np.nan, 105, 55])
    np.testing.assert_allclose(out["required"], 0.5 ** 0.1 - 1, rtol=1e-14)
    np.testing.assert_allclose(out["achieved"], [0.8 ** 0.25 - 1, 0.75 ** 0.25 - 1, 0.8 ** 0.25 - 1, 0.5 ** 0.25 - 1],
                               rtol=1e-14)
    assert out["required"][0] == pytest.approx(-0.066967, abs=1e-6)
    assert out["status"].tolist() == ["off track", "on track", "insufficient data", "on track"]
    assert out["achieved_lower"][2] == pytest.approx(0.6 ** 0.25 - 1, rel=1e-14)
    assert out["achieved_upper"][2] == pytest.approx(1.05 ** 0.25 - 1, rel=1e-14)
    assert out["reason"][2] == "interval includes both the required rate and no change"
    # exactly on the required path (rounding aside) counts as on track
    exact = progress_to_target(100, 2020, 50, 2030, 100 * 0.5 ** 0.4, 2024)
    assert exact["status"][0] == "on track"


def test_progress_to_target_interval_that_excludes_the_required_rate():
    # achieved −2 %/yr, interval entirely slower than required (−6.7 %) but including 0 → off track
    out = progress_to_target(100, 2020, 50, 2030, 92, 2024, 85, 101)
    assert out["status"][0] == "off track"


def test_progress_to_target_higher_is_better_and_missing_data():
    # trust in police: raise from 40 % to 60 % by 2030; required = 1.5^(1/10) − 1 = +4.1 %/yr
    out = progress_to_target(40, 2020, 60, 2030, [50, 42], 2024, lower_is_better=False)
    assert out["status"].tolist() == ["on track", "off track"]
    bad = progress_to_target([0, 100, 100, 100, 100], 2020, [50, 50, np.nan, 50, 50], [2030, 2030, 2030, 2030, 2015],
                             [80, np.nan, 80, 80, 80], [2024, 2024, 2024, 2020, 2024])
    assert (bad["status"] == "insufficient data").all()
    assert bad["reason"].tolist() == ["baseline value missing or not positive", "current value missing or not positive",
                                      "target value missing or not positive", "current year not after baseline year",
                                      "target year not after baseline year"]
    assert bad[["required", "achieved"]].isna().all().all()


def test_period_midpoints_are_what_the_docstring_and_methods_say():
    """Issue #19 point 4: 2019 → 2019.5 (the old code gave 2019.49863, day 183 of 365); hand values."""
    from usm_geo.indicators.progress import period_midpoints

    got = period_midpoints(["2019", "2020", "2019-Q1", "2019-03", "2020-01-01/2020-01-02"])
    want = [2019.5, 2020.5, 2019 + 45 / 365, 2019 + 74.5 / 365, 2020 + 1 / 366]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_progress_table_trend_on_years_equals_a_fit_on_whole_years():
    """Evenly spaced mid-points: the slope of yearly periods equals the slope on t = 2019, 2020, …
    (a shift of t changes only β0), so progress.csv's trend equals R ``glm(y ~ t, quasipoisson,
    offset = log(P))`` on whole years (here: our trend(), itself checked against R above)."""
    import pandas as pd

    from usm_geo.indicators.progress import trend
    from usm_geo.indicators.registry import Indicator, IndicatorSettings
    from usm_geo.indicators.tables import progress_table

    years = np.arange(2019, 2024)
    y = np.array([120.0, 131, 118, 104, 99])
    pop = np.array([50000.0, 50500, 51000, 51800, 52300])
    measures = pd.DataFrame({"level": "city", "unit_id": "city", "period": [str(v) for v in years], "category": "all",
                             "measure": "incident_rate", "numerator": y, "denominator": pop, "value": y / pop * 1000})
    ind = Indicator(id="incident_rate", name="rate", theme="t", kind="rate", source="police")
    settings = IndicatorSettings(indicators={"incident_rate": ind}, categories=pd.DataFrame(), harm=None)
    table = progress_table(measures, settings, None, None)
    ref = trend(years.astype(float), y, pop, dispersion="quasi")
    assert table["trend_per_year"].iloc[0] == pytest.approx(ref["value"].iloc[0], rel=1e-10)
    assert table["trend_lower"].iloc[0] == pytest.approx(ref["lower"].iloc[0], rel=1e-10)


def test_trend_with_one_period_is_nan_without_a_warning():
    # a study of one year (Northumbria 2022): no trend can be fitted, and no RuntimeWarning escapes
    import warnings

    from usm_geo.indicators import progress

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = progress.trend([2022.5], [[120.0], [0.0]], [[1000.0], [500.0]], dispersion="quasi")
    assert out["value"].isna().all() and out["beta"].isna().all()
    assert list(out["flags"]) == ["too_few_periods", "no_events"]
