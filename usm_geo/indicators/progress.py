"""Progress: change between two periods, annual trend, and progress towards a target.

All changes are *fractions*: −0.25 means a fall of 25 %; multiply by 100 for percent. Annual
rates of change are per unit of the time axis given (per year when periods are in years).

change
    ``value = RR − 1`` with ``RR = (c1/d1) / (c0/d0)`` and the exact conditional (binomial)
    interval of :func:`usm_geo.indicators.rates.rate_ratio` minus 1 — R
    ``poisson.test(c(c1, c0), c(d1, d0))$conf.int − 1``. It treats the two counts as independent
    Poisson counts and the denominators as known.

trend
    Poisson log-linear regression ``log E[y_t] = log(exposure_t) + β0 + β1·t`` fitted by
    maximum likelihood (iteratively reweighted least squares = Newton–Raphson, canonical link;
    started as R's ``glm`` does, from μ = y + 0.1, with step halving). The annual rate of change
    is ``exp(β1) − 1``; its interval is the Wald interval ``exp(β1 ± z·se(β1)) − 1`` with
    ``se² = [(XᵀWX)⁻¹]₁₁``, ``W = diag(μ̂)`` — R ``glm(y ~ t, family = poisson,
    offset = log(e))`` with ``confint.default``. With ``dispersion="quasi"`` the standard error is
    multiplied by ``√φ``, ``φ = Σ (y − μ̂)²/μ̂ / (T − 2)`` (Pearson; R ``family = quasipoisson``,
    not floored at 1). Crime counts are usually over-dispersed, so the Poisson interval is often
    too narrow; "quasi" is the safer choice when there are enough periods.

progress_to_target
    required annual rate ``= (target / baseline)^(1/(T − B)) − 1``,
    achieved annual rate ``= (current / baseline)^(1/(C − B)) − 1``, and the achieved rate's
    interval from the current value's interval in the same way (the baseline is taken as fixed).
    Status, for lower-is-better indicators (signs reversed otherwise):

    * ``insufficient data`` — a value is missing or not positive, the current year is not after
      the baseline year or the target year is not after the baseline year, or the achieved
      rate's interval contains both the required rate and 0 (the data cannot tell "no change"
      from "on track");
    * ``on track`` — achieved ≤ required (within 1e-12);
    * ``off track`` — otherwise.

    This is the compound annual growth rate comparison that Eurostat's SDG monitoring reports use
    for indicators with a quantitative target (actual against required growth rate): the pace
    needed from the baseline to reach the target, compared with the pace achieved so far.

Sources: McCullagh, P. & Nelder, J.A. (1989) Generalized Linear Models, 2nd ed., ch. 6
(Poisson log-linear models, quasi-likelihood). Breslow, N.E. & Day, N.E. (1987) Statistical
methods in cancer research II, §7.2 (exact rate ratio interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.rates import SMALL_COUNT, join_flags, rate_ratio

__all__ = ["change", "period_midpoints", "progress_to_target", "trend"]

ON_TRACK, OFF_TRACK, INSUFFICIENT = "on track", "off track", "insufficient data"


def period_midpoints(labels) -> np.ndarray:
    """The time axis of :func:`trend`: each period's mid-point in decimal years.

    mid-point = start + (day after the end − start) / 2 (a time of day where the period has an odd
    number of days); decimal year = ``Y + (mid-point − 1 January Y) / (length of year Y)``, so that a
    calendar year is always ``Y.5`` exactly (2019 → 2019.5, 2020 → 2020.5), 2019-Q1 (90 days, mid-point
    15 February 00:00) → 2019 + 45/365 = 2019.1233, 2019-03 → 2019 + 74.5/365 = 2019.2041.
    Labels are the period labels of :mod:`usm_geo.periods` (2019, 2019-Q1, 2019-03, START/END).
    """
    from usm_geo.periods import period_bounds

    out = []
    for lab in labels:  # one per period, not per record
        w = period_bounds(str(lab))
        start = pd.Timestamp(w.start)
        mid = start + (pd.Timestamp(w.end) + pd.Timedelta(days=1) - start) / 2
        jan1 = pd.Timestamp(year=mid.year, month=1, day=1)
        out.append(mid.year + (mid - jan1) / (pd.Timestamp(year=mid.year + 1, month=1, day=1) - jan1))
    return np.asarray(out, dtype=float)


def change(count0, denominator0, count1, denominator1, level: float = 0.95, *,
           small_count: float = SMALL_COUNT) -> pd.DataFrame:
    """Relative change of a rate from baseline (0) to current (1), with an exact interval.

    Returns
    -------
    DataFrame(value, lower, upper, flags): ``value = (c1/d1)/(c0/d0) − 1`` (fraction; −0.2 is a
    20 % fall), interval = exact conditional rate-ratio interval − 1. Flags as
    :func:`~usm_geo.indicators.rates.rate_ratio` (``zero_baseline``: the change is +inf, so value
    and upper are NaN and only the lower bound is given).
    """
    rr = rate_ratio(count1, denominator1, count0, denominator0, level, small_count=small_count)
    return rr.assign(value=rr["value"] - 1, lower=rr["lower"] - 1, upper=rr["upper"] - 1)


def _wls(x, z, w):
    """Per-row weighted least squares of z on [1, x]: returns (b0, b1, s0, s1, s2)."""
    s0 = w.sum(axis=1)
    s1 = (w * x).sum(axis=1)
    s2 = (w * x * x).sum(axis=1)
    t0 = (w * z).sum(axis=1)
    t1 = (w * x * z).sum(axis=1)
    det = s0 * s2 - s1 * s1
    # det = 0 only for rows that cannot be fitted (one period: every x the same); they are NaN, quietly
    ok = det != 0
    b0 = np.divide(s2 * t0 - s1 * t1, det, out=np.full(det.shape, np.nan), where=ok)
    b1 = np.divide(s0 * t1 - s1 * t0, det, out=np.full(det.shape, np.nan), where=ok)
    return b0, b1, s0, s1, s2


def _deviance(y, mu, m):
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return 2 * (m * (ylogy - (y - mu))).sum(axis=1)


def trend(periods_t, counts, exposure, level: float = 0.95, dispersion: str = "poisson",
          max_iter: int = 100, tol: float = 1e-13) -> pd.DataFrame:
    """Annual rate of change from a Poisson log-linear regression with an exposure offset.

    Parameters
    ----------
    periods_t : array_like, shape (T,)
        Time of each period in years; the pipeline passes :func:`period_midpoints` (2019 → 2019.5).
    counts : array_like, shape (T,) or (U, T)
        Events per period, one row per unit (the fit is vectorised over units).
    exposure : array_like, broadcastable to ``counts``
        People at risk (or person-years) per period. Periods with exposure 0/NaN or a NaN count
        are left out of that unit's fit.
    level : float
        Confidence level of the Wald interval.
    dispersion : "poisson" or "quasi"
        Poisson standard errors, or quasi-Poisson (Pearson dispersion, see the module notes).

    Returns
    -------
    DataFrame, one row per unit: ``value`` = exp(β1) − 1 (fraction per year), ``lower``,
    ``upper``, ``beta``, ``se``, ``n_periods`` (periods used), ``flags``:
    ``no_events`` (no events at all), ``too_few_periods`` (fewer than 2 distinct periods, or
    fewer than 3 periods with "quasi"), ``no_finite_trend`` (all events in the first or the last period:
    the maximum-likelihood slope is ±infinite), ``not_converged``, ``small_count`` (fewer than
    :data:`~usm_geo.indicators.rates.SMALL_COUNT` events in all). Flagged rows other than
    ``small_count`` have NaN estimates.
    """
    if dispersion not in ("poisson", "quasi"):
        raise UsmGeoError(f"dispersion {dispersion!r} is not 'poisson' or 'quasi'")
    if not 0.0 < level < 1.0:
        raise UsmGeoError(f"confidence level {level!r} is not between 0 and 1")
    t = np.ravel(np.asarray(periods_t, dtype=float))
    y_in = np.asarray(counts, dtype=float)
    y_in = np.atleast_2d(y_in)
    if y_in.ndim != 2 or y_in.shape[1] != t.size:
        raise UsmGeoError(f"counts have shape {np.shape(counts)} but there are {t.size} periods",
                          fix="pass counts as (periods,) or (units, periods)")
    try:
        e_in = np.broadcast_to(np.asarray(exposure, dtype=float), y_in.shape)
    except ValueError:
        raise UsmGeoError(f"exposure of shape {np.shape(exposure)} does not match counts {y_in.shape}") from None
    if not np.all(np.isfinite(t)):
        raise UsmGeoError("period times must be finite numbers (e.g. years)")
    with np.errstate(invalid="ignore"):
        if np.any(y_in < 0) or np.any(e_in < 0):
            raise UsmGeoError("counts and exposure must be 0 or more")
        valid = np.isfinite(y_in) & np.isfinite(e_in) & (e_in > 0)
    m = valid.astype(float)
    x_all = np.broadcast_to(t - t.mean(), y_in.shape)
    y = np.where(valid, y_in, 0.0)
    total = y.sum(axis=1)
    n_used = valid.sum(axis=1)
    # distinct valid periods and the position of the events on the time axis
    big = np.where(valid, x_all, np.inf)
    small = np.where(valid, x_all, -np.inf)
    t_min, t_max = big.min(axis=1), small.max(axis=1)
    distinct = (t_max > t_min) & (n_used >= (3 if dispersion == "quasi" else 2))
    no_events = total == 0
    events_t = np.where(y > 0, x_all, np.nan)
    with np.errstate(invalid="ignore"):
        e_lo = np.where(no_events, np.nan, np.nanmin(np.where(no_events[:, None], 0.0, events_t), axis=1))
        e_hi = np.where(no_events, np.nan, np.nanmax(np.where(no_events[:, None], 0.0, events_t), axis=1))
    no_finite = distinct & ~no_events & ((e_hi <= t_min) | (e_lo >= t_max))
    fit = distinct & ~no_events & ~no_finite
    # rows that are not fitted get a harmless dummy problem so that the vectorised loop stays finite
    y = np.where(fit[:, None], y, 1.0)
    m = np.where(fit[:, None], m, 1.0)
    off = np.where(fit[:, None] & valid, np.log(np.where(valid, e_in, 1.0)), 0.0)
    x = np.where(fit[:, None], x_all, np.broadcast_to(np.arange(t.size, dtype=float), y.shape))
    # IRLS, started like R's glm: mu = y + 0.1
    mu = y + 0.1
    eta = np.log(mu)
    z = eta - off + (y - mu) / mu
    b0, b1, *_ = _wls(x, z, mu * m)
    dev = np.full(y.shape[0], np.inf)
    prev0, prev1 = b0, b1
    converged = np.zeros(y.shape[0], dtype=bool)
    for _ in range(max_iter):
        mu = np.exp(b0[:, None] + b1[:, None] * x + off)
        new_dev = _deviance(y, mu, m)
        # step halving where the deviance went up (rare for the canonical link)
        for _halve in range(30):
            worse = new_dev > dev * (1 + 1e-12) + 1e-12
            if not worse.any():
                break
            b0 = np.where(worse, (b0 + prev0) / 2, b0)
            b1 = np.where(worse, (b1 + prev1) / 2, b1)
            mu = np.exp(b0[:, None] + b1[:, None] * x + off)
            new_dev = _deviance(y, mu, m)
        dev = new_dev
        z = (b0[:, None] + b1[:, None] * x) + (y - mu) / mu
        prev0, prev1 = b0, b1
        b0, b1, *_ = _wls(x, z, mu * m)
        step = np.maximum(np.abs(b0 - prev0), np.abs(b1 - prev1))
        converged = step <= tol * (1 + np.maximum(np.abs(b0), np.abs(b1)))
        if converged.all():
            break
    mu = np.exp(b0[:, None] + b1[:, None] * x + off)
    _, _, s0, s1, s2 = _wls(x, np.zeros_like(x), mu * m)
    var_b1 = s0 / (s0 * s2 - s1 * s1)
    if dispersion == "quasi":
        df = np.maximum(n_used - 2, 1)
        phi = (m * (y - mu) ** 2 / mu).sum(axis=1) / df
        var_b1 = var_b1 * phi
    se = np.sqrt(var_b1)
    from scipy import stats  # scipy.stats takes ~1 s to import: only where a quantile is needed

    zq = stats.norm.ppf(0.5 + level / 2)
    ok = fit & converged
    beta = np.where(ok, b1, np.nan)
    se = np.where(ok, se, np.nan)
    frame = pd.DataFrame({
        "value": np.expm1(beta),
        "lower": np.expm1(beta - zq * se),
        "upper": np.expm1(beta + zq * se),
        "beta": beta,
        "se": se,
        "n_periods": n_used.astype(np.int64),
    })
    frame["flags"] = join_flags(
        ("no_events", no_events),
        ("too_few_periods", ~distinct & ~no_events),
        ("no_finite_trend", no_finite),
        ("not_converged", fit & ~converged),
        ("small_count", ~no_events & (total < SMALL_COUNT)),
    )
    return frame


def progress_to_target(baseline_value, baseline_year, target_value, target_year, current_value, current_year,
                       current_lower=None, current_upper=None, lower_is_better=True) -> pd.DataFrame:
    """Compare the annual rate of change achieved so far with the rate needed to meet a target.

    Every argument may be a scalar or an array (broadcast together: one row per indicator × unit).

    Parameters
    ----------
    baseline_value, baseline_year : the value in the baseline year (e.g. a rate per 1,000).
    target_value, target_year : the value to reach and the year to reach it by.
    current_value, current_year : the latest value and its year.
    current_lower, current_upper : optional interval of the current value (e.g. from
        :func:`~usm_geo.indicators.rates.rate`); NaN or None = no interval.
    lower_is_better : bool or array of bools; False for indicators where a rise is progress.

    Returns
    -------
    DataFrame: ``required`` and ``achieved`` annual rates of change (fractions per year),
    ``achieved_lower``, ``achieved_upper``, ``status`` (``on track`` / ``off track`` /
    ``insufficient data``) and ``reason`` (why the status is ``insufficient data``, else '').
    """
    nan = np.nan
    args = [baseline_value, baseline_year, target_value, target_year, current_value, current_year,
            nan if current_lower is None else current_lower, nan if current_upper is None else current_upper]
    b, by, tv, ty, c, cy, cl, cu = (np.asarray(a, dtype=float) for a in args)
    better_low = np.asarray(lower_is_better, dtype=bool)
    shape = np.broadcast_shapes(b.shape, by.shape, tv.shape, ty.shape, c.shape, cy.shape, cl.shape, cu.shape,
                                better_low.shape)
    b, by, tv, ty, c, cy, cl, cu, better_low = (np.ravel(np.broadcast_to(a, shape))
                                                for a in (b, by, tv, ty, c, cy, cl, cu, better_low))

    def positive(v):
        return np.isfinite(v) & (np.nan_to_num(v, nan=-1.0) > 0)

    reasons = [
        ("baseline value missing or not positive", ~positive(b)),
        ("target value missing or not positive", ~positive(tv)),
        ("current value missing or not positive", ~positive(c)),
        ("years missing", ~(np.isfinite(by) & np.isfinite(ty) & np.isfinite(cy))),
    ]
    years_ok = np.isfinite(by) & np.isfinite(ty) & np.isfinite(cy)
    reasons.append(("target year not after baseline year", years_ok & ~(ty > by)))
    reasons.append(("current year not after baseline year", years_ok & ~(cy > by)))
    bad = np.zeros(b.size, dtype=bool)
    for _, mask in reasons:
        bad |= mask
    good = ~bad
    span_t = np.where(good, ty - by, 1.0)
    span_c = np.where(good, cy - by, 1.0)
    base = np.where(good, b, 1.0)
    required = np.where(good, (np.where(good, tv, 1.0) / base) ** (1 / span_t) - 1, nan)
    achieved = np.where(good, (np.where(good, c, 1.0) / base) ** (1 / span_c) - 1, nan)
    has_ci = good & np.isfinite(cl) & np.isfinite(cu) & (np.nan_to_num(cl, nan=-1.0) >= 0)
    lo = np.where(has_ci, (np.where(has_ci, cl, 1.0) / base) ** (1 / span_c) - 1, nan)
    hi = np.where(has_ci, (np.where(has_ci, cu, 1.0) / base) ** (1 / span_c) - 1, nan)
    eps = 1e-12
    unclear = has_ci & (lo <= required + eps) & (hi >= required - eps) & (lo <= 0) & (hi >= 0)
    reasons.append(("interval includes both the required rate and no change", good & unclear))
    on = np.where(better_low, achieved <= required + eps, achieved >= required - eps)
    status = np.where(on, ON_TRACK, OFF_TRACK).astype(object)
    status[bad | unclear] = INSUFFICIENT
    reason = np.full(b.size, "", dtype=object)
    for text, mask in reversed(reasons):  # the first reason in the list wins
        reason[mask] = text
    return pd.DataFrame({"required": required, "achieved": achieved, "achieved_lower": lo, "achieved_upper": hi,
                         "status": status, "reason": reason})
