"""Negative-binomial regression of area counts on risk and resilience factors.

Crime counts per area are over-dispersed (variance above the mean), so a Poisson model gives
intervals that are too narrow. The NB2 model (the one R's ``MASS::glm.nb`` fits) ::

    y_i ~ NegBin(mean μ_i, shape θ):   Var(y_i) = μ_i + μ_i² / θ
    log μ_i = log(exposure_i) + β₀ + Σ_k β_k x_ik            (exposure: the population, an offset)

β and θ are maximum-likelihood estimates (statsmodels' ``NegativeBinomial``; ``alpha = 1/θ``).
Standard errors are those of ``glm.nb``'s summary: the GLM with θ held at its estimate, from the
expected (Fisher) information. Per covariate: the **rate ratio** exp(β_k) — the factor by which the
expected rate changes for one unit more of the covariate, the others held fixed — with a Wald
interval exp(β_k ± z·se) (R's ``confint.default``; MASS's ``confint`` profiles the likelihood
instead and differs slightly). Per area: expected count μ̂_i and the Pearson residual
(y_i − μ̂_i) / √(μ̂_i + μ̂_i²/θ̂); the residual Moran's I (usm_geo.hotspots.global_stats.moran, checked
against esda) says whether space is left unexplained.

These are *associations*: a covariate with a rate ratio above 1 goes with more recorded incidents;
it is not shown to cause them (and recorded incidents depend on reporting and policing).

Reference: Venables, W. N. & Ripley, B. D. (2002) *Modern Applied Statistics with S*, 4th ed., §7.4;
Hilbe, J. M. (2011) *Negative Binomial Regression*, 2nd ed. Tested against R 4.2 MASS::glm.nb on the
St Louis county homicides (tests/realdata/test_count_model.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtri

from usm_geo.errors import UsmGeoError

CAVEAT = ("associations, not causes: a rate ratio above 1 means more recorded incidents go with more of the "
          "factor, other factors held fixed; it does not show that the factor causes them")


@dataclass
class CountModel:
    """A fitted NB2 model. ``coefficients``: one row per term (``term, coef, se, z, p, rate_ratio,
    rr_lower, rr_upper``; the intercept first); ``theta`` (shape) and ``alpha = 1/theta``;
    ``units``: per area ``observed, expected, pearson_residual``; ``loglik``, ``aic``, ``n``,
    ``converged``; ``caveat``: the plain-language reading."""

    coefficients: pd.DataFrame
    theta: float
    alpha: float
    units: pd.DataFrame
    loglik: float
    aic: float
    n: int
    converged: bool
    level: float
    caveat: str = CAVEAT
    notes: list[str] = field(default_factory=list)


def negative_binomial(counts, exposure, covariates: pd.DataFrame, *, unit_ids=None, level: float = 0.95) -> CountModel:
    """Fit ``counts ~ covariates + offset(log(exposure))`` by NB2 maximum likelihood (module docstring).

    ``counts``: non-negative integers per area; ``exposure``: population (or area, km²) per area, > 0;
    ``covariates``: a DataFrame, one numeric column per factor (an intercept is added).
    Areas with a missing value are refused with their position (fill or drop them first).
    """
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    y = np.asarray(counts, dtype=float)
    e = np.asarray(exposure, dtype=float)
    x = pd.DataFrame(covariates).astype(float)
    n = y.shape[0]
    if e.shape[0] != n or len(x) != n:
        raise ValueError("counts, exposure and covariates need one row per area")
    bad = ~np.isfinite(y) | (y < 0) | (np.round(y) != y)
    if bad.any():
        raise UsmGeoError(f"{int(bad.sum())} count(s) are not non-negative integers (first at position {int(np.flatnonzero(bad)[0])})",
                          fix="model counts of incidents, not rates")
    bad = ~np.isfinite(e) | (e <= 0)
    if bad.any():
        raise UsmGeoError(f"{int(bad.sum())} area(s) have no exposure (population) > 0 (first at position {int(np.flatnonzero(bad)[0])})",
                          fix="leave areas without residents out of the model, or use area (km²) as the exposure")
    missing = ~np.isfinite(x.to_numpy()).all(axis=1)
    if missing.any():
        raise UsmGeoError(f"{int(missing.sum())} area(s) miss a covariate value (first at position {int(np.flatnonzero(missing)[0])})",
                          fix="fill or drop areas without covariate values")
    design = sm.add_constant(x, prepend=True, has_constant="add")
    if np.linalg.matrix_rank(design.to_numpy()) < design.shape[1]:
        raise UsmGeoError("the covariates are collinear (or one is constant)", fix="drop a covariate that is a combination of the others")
    if n <= design.shape[1] + 1:
        raise UsmGeoError(f"{n} areas are too few for {design.shape[1]} coefficients and the dispersion",
                          fix="use fewer covariates or a level with more areas")
    offset = np.log(e)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence chatter; convergence is reported below
        start = sm.GLM(y, design, family=sm.families.Poisson(), offset=offset).fit()
        nb = NegativeBinomial(y, design, offset=offset, loglike_method="nb2").fit(
            start_params=np.append(start.params.to_numpy(), 0.1), method="bfgs", maxiter=2000, gtol=1e-10, disp=False)
        nb = NegativeBinomial(y, design, offset=offset, loglike_method="nb2").fit(
            start_params=nb.params.to_numpy(), method="newton", maxiter=200, tol=1e-12, disp=False)
    alpha = float(nb.params.iloc[-1])
    converged = bool(nb.mle_retvals.get("converged", False))
    if not np.isfinite(alpha) or alpha <= 1e-10:
        # no over-dispersion: the NB model is the Poisson model (θ → ∞)
        notes.append("no over-dispersion found: the fit is the Poisson model")
        alpha = 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = sm.GLM(y, design, family=sm.families.NegativeBinomial(alpha=alpha), offset=offset).fit(
            start_params=nb.params.iloc[:-1].to_numpy(), tol=1e-12, maxiter=200)
    beta = glm.params.to_numpy()
    se = glm.bse.to_numpy()
    z = beta / se
    from scipy.stats import norm

    q = float(ndtri(0.5 + level / 2))
    coef = pd.DataFrame({"term": ["(intercept)", *x.columns.astype(str)], "coef": beta, "se": se, "z": z,
                         "p": 2 * norm.sf(np.abs(z)), "rate_ratio": np.exp(beta),
                         "rr_lower": np.exp(beta - q * se), "rr_upper": np.exp(beta + q * se)})
    mu = glm.fittedvalues.to_numpy() if hasattr(glm.fittedvalues, "to_numpy") else np.asarray(glm.fittedvalues)
    theta = 1.0 / alpha
    pearson = (y - mu) / np.sqrt(mu + mu ** 2 / theta)
    units = pd.DataFrame({"unit_id": np.asarray(unit_ids, dtype=object) if unit_ids is not None else np.arange(n).astype(str),
                          "observed": y.astype(np.int64), "expected": mu, "pearson_residual": pearson})
    loglik = float(nb.llf)
    k = design.shape[1] + 1
    return CountModel(coefficients=coef, theta=theta, alpha=alpha, units=units, loglik=loglik, aic=2 * k - 2 * loglik,
                      n=n, converged=converged, level=level, notes=notes)


def residual_moran(model: CountModel, weights, *, transform: str = "R") -> dict:
    """Moran's I of the model's Pearson residuals over ``weights`` (a usm_geo Weights or sparse
    matrix in the units' order): is there spatial pattern the covariates leave unexplained?
    Returns the statistic, its expectation and the normality/randomisation z and p values."""
    from usm_geo.hotspots.global_stats import moran

    m = moran(model.units["pearson_residual"].to_numpy(), weights, transform=transform)
    return {k: float(getattr(m, k)) for k in ("I", "EI", "z_norm", "p_norm", "z_rand", "p_rand")}


def area_count_model(measures: pd.DataFrame, layer, covariates: pd.DataFrame, *, level: str, period: str | None = None,
                     weights=None) -> dict:
    """The count model of one level from the run's tables: ``count`` (category ``all``) in ``period``
    (default: the latest period with counts) against the ``covariates`` columns, exposure = the
    level's ``population`` (or, where the level has none, the unit's area in km², said in the result).

    ``layer``: the level's units (``unit_id``, geometry in the working CRS, metres); ``weights``: spatial
    weights over ``layer``'s units in its order for the residual Moran's I (None: not computed).
    Returns ``{"json": summary for model.json, "units": per-unit table or None}``. A level that cannot
    be modelled (too few units with every value, no counts) gets ``status = "not_fitted"`` and the reason.
    """
    m = measures[(measures["level"] == level) & (measures["category"] == "all")]
    counts = m[m["measure"] == "count"]
    factors = [c for c in covariates.columns if c != "unit_id"]
    base = {"level": level, "factors": factors, "caveat": CAVEAT, "model": "negative binomial (NB2), log link, "
            "offset log(exposure); Wald intervals (docs/methods.md)"}
    if counts.empty:
        return {"json": {**base, "status": "not_fitted", "period": period, "n_units": 0,
                         "notes": ["no counts at this level"]}, "units": None}
    if period is None or period not in set(counts["period"]):
        period = str(sorted(counts["period"].unique())[-1])
    ids = layer["unit_id"].astype(str).to_numpy()
    y = counts[counts["period"] == period].set_index("unit_id")["value"].reindex(ids)
    pop = m[(m["measure"] == "population") & (m["period"] == period)].set_index("unit_id")["value"].reindex(ids)
    notes: list[str] = []
    if pop.notna().any():
        exposure, exposure_name = pop.to_numpy(float), "population"
    else:
        exposure, exposure_name = layer.geometry.area.to_numpy() / 1e6, "area_km2"
        notes.append("no population at this level: the exposure is each unit's area (km²), so rate ratios are per km²")
    x = covariates.set_index("unit_id").reindex(ids)[factors]
    ok = np.isfinite(y.to_numpy(float)) & np.isfinite(exposure) & (exposure > 0) & np.isfinite(x.to_numpy(float)).all(axis=1)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} of {len(ids)} units left out: no count, {exposure_name} or factor value")
    base.update({"period": period, "category": "all", "exposure": exposure_name, "n_units": int(ok.sum())})
    try:
        model = negative_binomial(y.to_numpy(float)[ok], exposure[ok], x[ok].reset_index(drop=True), unit_ids=ids[ok])
    except UsmGeoError as exc:
        return {"json": {**base, "status": "not_fitted", "notes": [*notes, exc.message]}, "units": None}
    moran_info = None
    if weights is not None and ok.all():
        moran_info = residual_moran(model, weights)
    elif weights is not None:
        notes.append("residual Moran's I not computed: some units were left out of the model")
    notes.extend(model.notes)
    coef = model.coefficients.to_dict("records")
    summary = {**base, "status": "fitted", "converged": model.converged, "theta": model.theta, "alpha": model.alpha,
               "loglik": model.loglik, "aic": model.aic, "coefficients": coef, "residual_moran": moran_info,
               "notes": notes}
    return {"json": summary, "units": model.units.assign(period=period)}
