"""Small-area estimates of survey shares: the Fay–Herriot area-level model (EBLUP).

A national or city survey has too few respondents in most neighbourhoods to publish their direct
shares (:mod:`usm_geo.indicators.survey`): the intervals are wide and the values jump from year
to year. The Fay–Herriot model borrows strength from area covariates (deprivation, density …)::

    ŷ_i = θ_i + e_i,   e_i ~ N(0, D_i)       (sampling error; D_i = the direct estimate's design variance, known)
    θ_i = x_iᵀβ + u_i, u_i ~ N(0, σ²_u)      (area effect)

Fitted by REML (Fisher scoring on σ²_u, Cressie 1992). With
``γ_i = σ²_u / (σ²_u + D_i)`` (the *shrinkage factor*: the weight of the direct estimate) the EBLUP is ::

    θ̂_i = γ_i ŷ_i + (1 − γ_i) x_iᵀβ̂,    β̂ = (Xᵀ V⁻¹ X)⁻¹ Xᵀ V⁻¹ ŷ,   V = diag(σ̂²_u + D_i)

and its mean squared error is the Prasad–Rao (1990) second-order approximation ::

    MSE_i = g1_i + g2_i + 2 g3_i
    g1_i = γ_i D_i
    g2_i = (1 − γ_i)² x_iᵀ (Xᵀ V⁻¹ X)⁻¹ x_i
    g3_i = D_i² / (σ̂²_u + D_i)³ · V̄(σ̂²_u),   V̄(σ̂²_u) = 2 / Σ_j (σ̂²_u + D_j)⁻²   (REML)

When the REML estimate of σ²_u is not positive it is set to 0: every area gets the synthetic
estimate x_iᵀβ̂ (γ_i = 0) and the result says so (``sigma2_truncated``).

Checked against samplics 0.6.1 (``EblupAreaModel``) on the milk-expenditure data of Arora & Lahiri
(1997) to 1e-9 (tests/unit/test_small_area.py). Estimates are *model-based*: they are written in
their own columns with the flag ``model_based`` and never mixed with direct estimates.

References: Fay, R. E. & Herriot, R. A. (1979) JASA 74, 269–277; Prasad, N. G. N. & Rao, J. N. K.
(1990) JASA 85, 163–171; Datta, G. S. & Lahiri, P. (2000) Statistica Sinica 10, 613–627; Rao, J. N.
K. & Molina, I. (2015) *Small Area Estimation*, 2nd ed., Wiley, ch. 6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError

METHODS = ("REML",)  # ML needs a bias-corrected MSE (Datta & Lahiri 2000) not yet checked against a reference


@dataclass(frozen=True)
class FayHerriotFit:
    """A fitted Fay–Herriot model: ``sigma2_u`` (area-effect variance), ``beta`` (fixed effects,
    intercept first when one was added), ``iterations``, ``converged``, ``sigma2_truncated`` (the
    estimate was ≤ 0 and set to 0), ``method``, ``loglik`` (at the estimate, up to a constant)."""

    sigma2_u: float
    beta: np.ndarray
    iterations: int
    converged: bool
    sigma2_truncated: bool
    method: str
    loglik: float


def _design(covariates, n: int, intercept: bool) -> np.ndarray:
    if covariates is None:
        x = np.empty((n, 0))
    else:
        x = np.asarray(covariates, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
    if intercept:
        x = np.column_stack([np.ones(n), x])
    return x


def _gls(y, x, d, s2):
    w = 1.0 / (s2 + d)
    xtwx = x.T @ (x * w[:, None])
    inv = np.linalg.inv(xtwx)
    beta = inv @ (x.T @ (w * y))
    return beta, inv, w


def _score_info(y, x, d, s2):
    """Score and Fisher information of the restricted log-likelihood in σ²_u."""
    _, inv, w = _gls(y, x, d, s2)
    # REML: P = V⁻¹ − V⁻¹X(XᵀV⁻¹X)⁻¹XᵀV⁻¹ ; score = −½ tr P + ½ rᵀV⁻¹V⁻¹r ; info = ½ tr(PP)
    wx = x * w[:, None]
    p = np.diag(w) - wx @ inv @ wx.T
    py = p @ y
    score = -0.5 * np.trace(p) + 0.5 * float(py @ py)
    info = 0.5 * float(np.sum(p * p))
    return score, info


def _loglik(y, x, d, s2):
    beta, inv, w = _gls(y, x, d, s2)
    r = y - x @ beta
    ll = -0.5 * (np.sum(np.log(s2 + d)) + np.sum(w * r * r))
    ll -= 0.5 * np.linalg.slogdet(np.linalg.inv(inv))[1]  # REML: log |XᵀV⁻¹X|
    return float(ll)


def fit_fay_herriot(direct, variance, covariates=None, *, intercept: bool = True, method: str = "REML",
                    tol: float = 1e-12, max_iter: int = 200) -> FayHerriotFit:
    """Fit the Fay–Herriot model by Fisher scoring (module docstring).

    ``direct``: direct estimates ŷ_i (any scale, e.g. shares 0–1); ``variance``: their design
    variances D_i (> 0, treated as known); ``covariates``: n × p area covariates (no intercept column:
    ``intercept=True`` adds it). Convergence: |Δσ²_u| < ``tol`` · max(1, σ²_u).
    """
    method = str(method).upper()
    if method not in METHODS:
        raise UsmGeoError(f"unknown small-area fitting method '{method}'", fix="use REML")
    y = np.asarray(direct, dtype=float)
    d = np.asarray(variance, dtype=float)
    x = _design(covariates, y.shape[0], intercept)
    n, p = x.shape
    if d.shape != y.shape or x.shape[0] != n:
        raise ValueError("direct, variance and covariates must have one row per area")
    bad = ~np.isfinite(y) | ~np.isfinite(d) | (d <= 0) | ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise UsmGeoError(f"{int(bad.sum())} area(s) have no finite direct estimate, design variance > 0 or covariates "
                          f"(first at position {int(np.flatnonzero(bad)[0])})",
                          fix="leave such areas out of the model (areas without respondents get the synthetic estimate "
                              "from predict_fay_herriot)")
    if n <= p + 1:
        raise UsmGeoError(f"a Fay–Herriot model needs more areas than covariates + 2: {n} areas, {p} coefficients",
                          fix="use fewer covariates or a finer level with more areas")
    if np.linalg.matrix_rank(x) < p:
        raise UsmGeoError("the covariates are collinear (the design matrix is not of full rank)",
                          fix="drop a covariate that is a combination of the others (e.g. one dummy per category)")
    # start: the moment estimate of σ²_u from OLS residuals (Fay & Herriot), at least a small positive value
    beta0 = np.linalg.lstsq(x, y, rcond=None)[0]
    s2 = max(float(np.sum((y - x @ beta0) ** 2) / (n - p) - np.mean(d)), 1e-3 * float(np.median(d)))
    converged, truncated, it = False, False, 0
    for it in range(1, max_iter + 1):
        score, info = _score_info(y, x, d, s2)
        step = score / info
        new = s2 + step
        if new <= 0:
            new = 0.0
        if abs(new - s2) < tol * max(1.0, s2):
            s2, converged = new, True
            break
        if new == 0.0 and s2 == 0.0:
            converged = True
            break
        s2 = new
    if s2 <= 0:
        s2, truncated = 0.0, True
        # with σ²_u = 0 the score at 0 says whether the maximum lies on the boundary
        converged = _score_info(y, x, d, 0.0)[0] <= 0
    beta, _, _ = _gls(y, x, d, s2)
    return FayHerriotFit(sigma2_u=float(s2), beta=beta, iterations=it, converged=bool(converged),
                         sigma2_truncated=truncated, method=method, loglik=_loglik(y, x, d, s2))


def predict_fay_herriot(fit: FayHerriotFit, direct, variance, covariates=None, *, fitted_variance=None,
                        fitted_covariates=None, intercept: bool = True) -> pd.DataFrame:
    """EBLUP, Prasad–Rao MSE and shrinkage factor per area (module docstring).

    ``direct``/``variance``/``covariates``: the areas to predict, in the order of the fit's areas.
    An area with no direct estimate (NaN) gets the synthetic estimate x_iᵀβ̂ with MSE
    g2 + x_iᵀ… (γ_i = 0: MSE = σ²_u + x_iᵀ(XᵀV⁻¹X)⁻¹x_i), flagged ``synthetic``.
    ``fitted_variance``/``fitted_covariates``: the D_j and covariates the model was fitted on (default:
    the areas given, when every one of them has a direct estimate).

    Returns a DataFrame (one row per area, input order): ``eblup``, ``mse``, ``rmse``, ``gamma``,
    ``synthetic`` (x_iᵀβ̂), ``direct``, ``direct_variance``, ``g1``, ``g2``, ``g3``, ``flags``
    (``model_based`` always; ``synthetic`` where no direct estimate).
    """
    y = np.asarray(direct, dtype=float)
    d = np.asarray(variance, dtype=float)
    x = _design(covariates, y.shape[0], intercept)
    has = np.isfinite(y) & np.isfinite(d) & (d > 0)
    fd = d[has] if fitted_variance is None else np.asarray(fitted_variance, dtype=float)
    fx = x[has] if fitted_covariates is None else _design(fitted_covariates, len(fd), intercept)
    s2 = fit.sigma2_u
    _, inv, _ = _gls(np.zeros(len(fd)), fx, fd, s2)
    synthetic = x @ fit.beta
    gamma = np.where(has, s2 / (s2 + np.where(has, d, 1.0)), 0.0)
    eblup = np.where(has, gamma * np.where(has, y, 0.0) + (1 - gamma) * synthetic, synthetic)
    g2 = (1 - gamma) ** 2 * np.einsum("ij,jk,ik->i", x, inv, x)
    var_s2 = 2.0 / float(np.sum(1.0 / (s2 + fd) ** 2))
    dd = np.where(has, d, 0.0)
    g1 = np.where(has, gamma * dd, s2)
    g3 = np.where(has, dd ** 2 / (s2 + np.where(has, d, 1.0)) ** 3 * var_s2, 0.0)
    mse = g1 + g2 + 2 * g3
    flags = np.where(has, "model_based", "model_based;synthetic")
    return pd.DataFrame({"eblup": eblup, "mse": mse, "rmse": np.sqrt(mse), "gamma": gamma, "synthetic": synthetic,
                         "direct": y, "direct_variance": d, "g1": g1, "g2": g2, "g3": g3, "flags": flags})


def fay_herriot(direct, variance, covariates=None, *, intercept: bool = True, method: str = "REML") -> tuple[pd.DataFrame, FayHerriotFit]:
    """Fit on the areas with a direct estimate and predict every area (those without one get the
    synthetic estimate). Returns (per-area table as :func:`predict_fay_herriot`, fit)."""
    y = np.asarray(direct, dtype=float)
    d = np.asarray(variance, dtype=float)
    has = np.isfinite(y) & np.isfinite(d) & (d > 0)
    xc = None if covariates is None else np.asarray(covariates, dtype=float)
    if xc is not None and xc.ndim == 1:
        xc = xc[:, None]
    fit = fit_fay_herriot(y[has], d[has], None if xc is None else xc[has], intercept=intercept, method=method)
    table = predict_fay_herriot(fit, y, d, xc, fitted_variance=d[has],
                                fitted_covariates=None if xc is None else xc[has], intercept=intercept)
    return table, fit
