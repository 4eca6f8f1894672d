"""Crude rates, exact Poisson intervals and rate ratios, checked against R's poisson.test.

Reference values were computed with R 4.2.2 (stats::poisson.test) and are written out below:

    for (k in c(0, 1, 2, 5, 10, 100, 1000)) print(poisson.test(k)$conf.int, digits = 17)
    poisson.test(0, conf.level = 0.9)$conf.int; poisson.test(5, conf.level = 0.9)$conf.int
    poisson.test(c(30, 20), c(10000, 12000))            # and the other rate-ratio cases below
    poisson.test(c(30, 20), c(10000, 12000), conf.level = 0.9)

Tolerance: 1e-9 relative (R's qgamma and scipy's chi2.ppf / beta.ppf agree to ~1e-15).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.rates import poisson_interval, rate, rate_ratio

RTOL = 1e-9

# R: poisson.test(k)$conf.int  (95 %)
R_POISSON_95 = {
    0: (0.0, 3.6888794541139354),
    1: (0.025317807984289897, 5.5716433909388989),
    2: (0.24220927854396501, 7.2246876677239582),
    5: (1.6234863901184209, 11.668332079322667),
    10: (4.7953886961324343, 18.390356042017778),
    100: (81.363991250923164, 121.62679379242637),
    1000: (938.97301840769524, 1063.9521360163019),
}
# R: poisson.test(k, conf.level = 0.9)$conf.int
R_POISSON_90 = {0: (0.0, 2.99573227355399), 5: (1.97014956805953, 10.513034908741531)}

# R: poisson.test(c(c1, c0), c(d1, d0)) -> estimate, conf.int   (c1, d1, c0, d0)
R_RATE_RATIO = [
    ((30, 10000, 20, 12000), 1.7999999999999998, 0.98895827907709466, 3.3441051683550804),
    ((5, 800, 12, 1000), 0.52083333333333337, 0.1437445623375162, 1.5882174206800834),
    ((0, 500, 7, 600), 0.0, 0.0, 0.8325767761157431),
    ((250, 54000, 310, 52000), 0.77658303464755074, 0.65475318626407686, 0.92034719892972283),
]


def test_poisson_interval_matches_r():
    k = np.array(list(R_POISSON_95))
    ref = np.array(list(R_POISSON_95.values()))
    lower, upper = poisson_interval(k)
    np.testing.assert_allclose(lower, ref[:, 0], rtol=RTOL, atol=0)
    np.testing.assert_allclose(upper, ref[:, 1], rtol=RTOL, atol=0)
    k90 = np.array(list(R_POISSON_90))
    ref90 = np.array(list(R_POISSON_90.values()))
    lower, upper = poisson_interval(k90, level=0.9)
    np.testing.assert_allclose(lower, ref90[:, 0], rtol=RTOL, atol=0)
    np.testing.assert_allclose(upper, ref90[:, 1], rtol=RTOL, atol=0)


def test_poisson_interval_scalar_nan_and_errors():
    lower, upper = poisson_interval(0)
    assert isinstance(lower, float) and lower == 0.0
    assert upper == pytest.approx(-np.log(0.025), rel=1e-12)  # k = 0: upper solves e^(−u) = α/2
    lower, upper = poisson_interval([np.nan, 3])
    assert np.isnan(lower[0]) and np.isnan(upper[0]) and lower[1] > 0
    with pytest.raises(UsmGeoError, match="negative"):
        poisson_interval([1, -1])
    with pytest.raises(UsmGeoError, match="between 0 and 1"):
        poisson_interval(3, level=95)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=5000), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_poisson_interval_defining_equations(k, level):
    """Independent check through the Poisson distribution itself (not chi-square):
    P(X ≥ k | μ = lower) = α/2 and P(X ≤ k | μ = upper) = α/2."""
    alpha = 1 - level
    lower, upper = poisson_interval(k, level)
    assert stats.poisson.sf(k - 1, lower) == pytest.approx(alpha / 2, rel=1e-7)
    assert stats.poisson.cdf(k, upper) == pytest.approx(alpha / 2, rel=1e-7)


def test_rate_values_interval_and_flags():
    count = np.array([5, 120, 0, 7, 3, np.nan])
    den = np.array([2000, 40000, 50, 0, np.nan, 1000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings
        out = rate(count, den, per=1000)
    assert list(out.columns) == ["value", "lower", "upper", "flags"]
    # 5 / 2000 × 1000 = 2.5 per 1,000; interval = R's (1.6234863901184209, 11.668332079322667) / 2
    assert out["value"][0] == pytest.approx(2.5, rel=1e-15)
    assert out["lower"][0] == pytest.approx(1.6234863901184209 / 2, rel=RTOL)
    assert out["upper"][0] == pytest.approx(11.668332079322667 / 2, rel=RTOL)
    assert out["value"][1] == pytest.approx(3.0)
    # zero count: value 0, lower 0, upper = 3.6888794541139354 / 50 × 1000
    assert out["value"][2] == 0 and out["lower"][2] == 0
    assert out["upper"][2] == pytest.approx(3.6888794541139354 * 20, rel=RTOL)
    # no denominator: NaN, never inf
    assert out.loc[3:4, ["value", "lower", "upper"]].isna().all().all()
    assert not np.isinf(out[["value", "lower", "upper"]].to_numpy()).any()
    assert out["flags"].tolist() == [
        "small_count",
        "",
        "small_count;small_denominator",
        "no_denominator;small_count",
        "no_denominator;small_count",
        "no_count",
    ]


def test_rate_thresholds_are_parameters():
    out = rate([15, 25], [150, 150], per=100, small_count=20, small_denominator=200)
    assert out["flags"].tolist() == ["small_count;small_denominator", "small_denominator"]
    assert out["value"].tolist() == pytest.approx([10.0, 25 / 150 * 100])
    with pytest.raises(UsmGeoError, match="denominator"):
        rate([1, 2], [10])
    with pytest.raises(UsmGeoError, match="negative"):
        rate([1], [-5])


@pytest.mark.parametrize("case", R_RATE_RATIO)
def test_rate_ratio_matches_r(case):
    (c1, d1, c0, d0), est, lo, hi = case
    out = rate_ratio(c1, d1, c0, d0).iloc[0]
    assert out["value"] == pytest.approx(est, rel=RTOL, abs=1e-300)
    assert out["lower"] == pytest.approx(lo, rel=RTOL, abs=1e-300)
    assert out["upper"] == pytest.approx(hi, rel=RTOL)


def test_rate_ratio_vectorised_and_level():
    c1, d1, c0, d0 = (np.array(v) for v in zip(*[case[0] for case in R_RATE_RATIO]))
    out = rate_ratio(c1, d1, c0, d0)
    np.testing.assert_allclose(out["upper"], [case[3] for case in R_RATE_RATIO], rtol=RTOL)
    # R: poisson.test(c(30, 20), c(10000, 12000), conf.level = 0.9)$conf.int
    r90 = rate_ratio(30, 10000, 20, 12000, level=0.9).iloc[0]
    assert r90["lower"] == pytest.approx(1.0808495643399532, rel=RTOL)
    assert r90["upper"] == pytest.approx(3.0383269010894143, rel=RTOL)


def test_rate_ratio_edge_cases_never_inf():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = rate_ratio([7, 0, 4, 4], [1000, 100, 0, 100], [0, 0, 4, np.nan], [1000, 100, 100, 100])
    # c0 = 0 < c1: R gives estimate Inf, conf.int (1.441308518835239, Inf); we give NaN for the infinities
    assert np.isnan(out["value"][0]) and np.isnan(out["upper"][0])
    assert out["lower"][0] == pytest.approx(1.441308518835239, rel=RTOL)
    assert out["flags"][0] == "zero_baseline;small_count"
    assert out.loc[1, ["value", "lower", "upper"]].isna().all() and out["flags"][1] == "no_events"
    assert out.loc[2, ["value", "lower", "upper"]].isna().all() and out["flags"][2] == "no_denominator"
    assert out.loc[3, ["value", "lower", "upper"]].isna().all() and out["flags"][3] == "no_count"
    assert not np.isinf(out[["value", "lower", "upper"]].to_numpy()).any()
