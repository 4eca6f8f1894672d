"""Fay–Herriot small-area estimates (issue 21 point 3) against samplics and hand calculations.

Reference: samplics 0.6.1 (PyPI), in a separate virtual environment (CI never needs it):

    import pandas as pd
    from samplics.sae import EblupAreaModel
    from samplics.utils.types import FitMethod
    m = pd.read_csv("tests/data/milk/expenditure_on_milk.csv")
    X = pd.get_dummies(m.major_area, drop_first=True).astype(float).to_numpy()
    fh = EblupAreaModel(method=FitMethod.reml)
    fh.fit(yhat=m.direct_est, X=X, area=m.small_area, error_std=m.std_error, intercept=True, tol=1e-12, maxiter=500)
    fh.predict(X=X, area=m.small_area, intercept=True)
    fh.re_std ** 2, fh.fixed_effects, fh.area_est, fh.area_mse

(converged in 13 iterations, precision 1.2e-13). R's sae::eblupFH on the same `milk` data gives
refvar 0.01855 (Molina & Marhuenda 2015, The R Journal 7(1), p. 86).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.small_area import _loglik, fay_herriot, fit_fay_herriot

MILK = Path(__file__).resolve().parents[1] / "data" / "milk" / "expenditure_on_milk.csv"

SAMPLICS_SIGMA2 = 0.018550334762766883
SAMPLICS_BETA = [0.9681889869749648, 0.13278030545673855, 0.22694622452059438, -0.24130103994462912]
SAMPLICS_EST = [1.021970544151, 1.047601951442, 1.067951426304, 0.760816565089, 0.846157043779, 0.974372706113,
                1.058452671948, 1.097776256185, 1.221545489446, 1.195146014837, 0.785214919184, 1.213946205377,
                1.209659720793, 0.9834964412, 1.186424709593, 1.155698113921, 1.226341250657, 1.285648988661,
                1.236324840855, 1.234960139388, 1.090301627491, 1.192305722834, 1.121646766765, 1.223029721892,
                1.193805444394, 0.762719589639, 0.764955153215, 0.733844388083, 0.769929554161, 0.61344162336,
                0.769556072273, 0.795825311687, 0.772318847723, 0.610230068312, 0.700178189652, 0.759278810407,
                0.529886336458, 0.743446678038, 0.754899633112, 0.770191965716, 0.748116423846, 0.804077515804,
                0.681086885061]
SAMPLICS_MSE = [0.01346025646, 0.005372879733, 0.005701994717, 0.008541752019, 0.009579609714, 0.011670657818,
                0.015926190443, 0.010586535919, 0.014184079511, 0.014901513343, 0.00769427, 0.016336520457,
                0.01256275326, 0.012117403161, 0.012031258605, 0.011709174202, 0.010859802955, 0.013690899748,
                0.011034697953, 0.013079721999, 0.009948654394, 0.017244045293, 0.011292350664, 0.013625336476,
                0.008065798491, 0.009205151259, 0.009205151259, 0.01647698444, 0.007800638828, 0.006098675379,
                0.015441626645, 0.014657921709, 0.009024716461, 0.003870788609, 0.007800638828, 0.009646159544,
                0.006404343452, 0.010155668261, 0.007209948012, 0.008470292522, 0.005484865134, 0.009205151259,
                0.009903647797]


@pytest.fixture(scope="module")
def milk():
    m = pd.read_csv(MILK)
    x = pd.get_dummies(m.major_area, drop_first=True).astype(float).to_numpy()
    return m, x


def test_milk_matches_samplics(milk):
    m, x = milk
    table, fit = fay_herriot(m.direct_est, m.std_error ** 2, x)
    assert fit.converged and not fit.sigma2_truncated
    assert fit.sigma2_u == pytest.approx(SAMPLICS_SIGMA2, rel=1e-9)
    np.testing.assert_allclose(fit.beta, SAMPLICS_BETA, rtol=1e-9)
    np.testing.assert_allclose(table["eblup"], SAMPLICS_EST, atol=1e-9)  # samplics printed to 12 decimals
    np.testing.assert_allclose(table["mse"], SAMPLICS_MSE, atol=1e-11)
    assert (table["flags"] == "model_based").all()


def test_milk_by_hand_for_area_1(milk):
    # area 1: ŷ = 1.099, D = 0.163², major area 1 (the intercept only)
    m, x = milk
    table, fit = fay_herriot(m.direct_est, m.std_error ** 2, x)
    s2, d = fit.sigma2_u, 0.163 ** 2
    gamma = s2 / (s2 + d)
    synthetic = fit.beta[0]
    assert table.loc[0, "gamma"] == pytest.approx(gamma, rel=1e-12)
    assert table.loc[0, "eblup"] == pytest.approx(gamma * 1.099 + (1 - gamma) * synthetic, rel=1e-12)
    assert table.loc[0, "g1"] == pytest.approx(gamma * d, rel=1e-12)
    v = s2 + m.std_error.to_numpy() ** 2
    assert table.loc[0, "g3"] == pytest.approx(d ** 2 / (s2 + d) ** 3 * 2 / np.sum(1 / v ** 2), rel=1e-12)
    # shrinkage never makes the estimate worse than the direct one here
    assert (table["mse"] < m.std_error ** 2).all()


def test_reml_score_is_zero_at_the_estimate(milk):
    # an independent check of the Fisher scoring: the restricted log-likelihood is flat there
    m, x = milk
    y, d = m.direct_est.to_numpy(), m.std_error.to_numpy() ** 2
    fit = fit_fay_herriot(y, d, x)
    xx = np.column_stack([np.ones(len(y)), x])
    h = 1e-6
    slope = (_loglik(y, xx, d, fit.sigma2_u + h) - _loglik(y, xx, d, fit.sigma2_u - h)) / (2 * h)
    assert abs(slope) < 1e-6
    assert _loglik(y, xx, d, fit.sigma2_u) > _loglik(y, xx, d, fit.sigma2_u * 1.2)
    assert _loglik(y, xx, d, fit.sigma2_u) > _loglik(y, xx, d, fit.sigma2_u * 0.8)


def test_area_without_respondents_gets_the_synthetic_estimate(milk):
    m, x = milk
    y = m.direct_est.to_numpy().copy()
    d = m.std_error.to_numpy() ** 2
    y[5] = np.nan  # area 6 has no direct estimate
    table, fit = fay_herriot(y, d, x)
    xx = np.column_stack([np.ones(len(y)), x])
    keep = np.isfinite(y)
    w = 1 / (fit.sigma2_u + d[keep])
    inv = np.linalg.inv(xx[keep].T @ (xx[keep] * w[:, None]))
    assert table.loc[5, "eblup"] == pytest.approx(xx[5] @ fit.beta, rel=1e-12)
    assert table.loc[5, "mse"] == pytest.approx(fit.sigma2_u + xx[5] @ inv @ xx[5], rel=1e-12)
    assert table.loc[5, "gamma"] == 0 and "synthetic" in table.loc[5, "flags"]


def test_no_area_variation_truncates_sigma2_at_zero():
    # direct estimates exactly on a line with large sampling variances: REML puts σ²_u at 0, and every
    # area gets its synthetic (regression) estimate, which here is the line itself
    cov = np.arange(10, dtype=float)
    y = 0.2 + 0.05 * cov
    table, fit = fay_herriot(y, np.full(10, 0.01), cov)
    assert fit.sigma2_truncated and fit.sigma2_u == 0.0
    np.testing.assert_allclose(table["gamma"], 0.0)
    np.testing.assert_allclose(table["eblup"], y, atol=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(UsmGeoError, match="more areas than covariates"):
        fay_herriot([0.1, 0.2, 0.3], [0.01, 0.01, 0.01], [[1.0], [2.0], [3.0]])
    with pytest.raises(UsmGeoError, match="collinear"):
        c = np.arange(8, dtype=float)
        fit_fay_herriot(np.linspace(0, 1, 8), np.full(8, 0.01), np.column_stack([c, 2 * c]))
    with pytest.raises(UsmGeoError, match="design variance"):
        fit_fay_herriot([0.1, 0.2, 0.3, 0.4, 0.5], [0.01, 0.0, 0.01, 0.01, 0.01])
    with pytest.raises(UsmGeoError, match="REML"):
        fit_fay_herriot(np.linspace(0, 1, 8), np.full(8, 0.01), method="FH")
