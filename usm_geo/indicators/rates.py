"""Crude rates with exact Poisson intervals, and the rate ratio between two periods.

Everything here works on numpy arrays (one element per unit × period) and returns arrays or
small DataFrames with the measures-table columns ``value, lower, upper, flags``.

Formulas
--------
Exact Poisson interval for a count ``k`` (Garwood 1936), with ``α = 1 − level``::

    lower = χ²(α/2;   2k)     / 2      (0 when k = 0)
    upper = χ²(1−α/2; 2k + 2) / 2

where ``χ²(p; ν)`` is the p-quantile of the chi-square distribution with ν degrees of freedom.
This is the interval of R's ``poisson.test(k)$conf.int`` and the "exact" method for counts in
the UK public-health guidance on confidence intervals (PHE/OHID technical guide).

Crude rate per ``per`` people: ``value = count / denominator · per``; its interval is the count
interval scaled the same way (the denominator is treated as known exactly).

Rate ratio of two periods (current 1 over baseline 0) ``RR = (c1/d1) / (c0/d0)``, with the exact
*conditional* interval: given ``c1 + c0 = n``, ``c1 ~ Binomial(n, π)`` with
``π = RR·d1 / (RR·d1 + d0)``; the Clopper–Pearson interval ``(πL, πU)`` for π is mapped back by
``RR = π/(1−π) · d0/d1``. This is R's ``poisson.test(c(c1, c0), c(d1, d0))$conf.int``
(Fay 2010; Breslow & Day 1987, §7.2).

Sources: Garwood, F. (1936) Fiducial limits for the Poisson distribution. Biometrika 28, 437–442.
Ulm, K. (1990) A simple method to calculate the confidence interval of a standardized mortality
ratio. Am. J. Epidemiol. 131, 373–375. Fay, M.P. (2010) Two-sided exact tests and matching
confidence intervals for discrete data. R Journal 2(1), 53–58.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError

#: Default count below which a rate is flagged ``small_count``. UK public-health practice
#: (PHE/OHID Fingertips) does not publish directly standardised rates on fewer than 10 events;
#: ONS mortality tables mark rates on fewer than 20 events as of low reliability — pass
#: ``small_count=20`` to follow that instead.
SMALL_COUNT = 10
#: Default denominator (people at risk) below which a rate is flagged ``small_denominator``.
SMALL_DENOMINATOR = 100

__all__ = ["SMALL_COUNT", "SMALL_DENOMINATOR", "join_flags", "poisson_interval", "rate", "rate_ratio"]


def _alpha(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise UsmGeoError(f"confidence level {level!r} is not between 0 and 1",
                          fix="use e.g. level=0.95 for a 95 % interval")
    return 1.0 - float(level)


def _out(x: np.ndarray):
    """0-d arrays back to Python floats, everything else unchanged."""
    return float(x) if np.ndim(x) == 0 else x


def _check_nonnegative(name: str, values: np.ndarray) -> None:
    with np.errstate(invalid="ignore"):
        bad = values < 0
    if np.any(bad):
        first = int(np.flatnonzero(np.ravel(bad))[0])
        raise UsmGeoError(f"{name} has a negative value ({np.ravel(values)[first]!r} at position {first})",
                          fix=f"{name} must be counts or sizes of 0 or more")


def join_flags(*columns: tuple[str, np.ndarray]) -> np.ndarray:
    """``(name, boolean mask)`` pairs → one ``;``-joined flags string per element ('' = no flag).

    Vectorised over elements (the loop is over the few flag names only)."""
    masks = [(name, np.ravel(np.asarray(mask, dtype=bool))) for name, mask in columns]
    size = masks[0][1].size if masks else 0
    out = np.full(size, "", dtype=object)
    for name, mask in masks:
        add = mask & (out != "")
        out[add] = out[add] + ";" + name
        out[mask & ~add] = name
    return out


def poisson_interval(count, level: float = 0.95):
    """Exact (Garwood 1936) confidence interval for a Poisson count.

    Parameters
    ----------
    count : array_like
        Observed counts (events), ≥ 0; need not be integers (the chi-square formula is
        continuous in k). NaN gives NaN.
    level : float
        Confidence level, e.g. 0.95.

    Returns
    -------
    (lower, upper) : arrays of the same shape as ``count`` (floats for a scalar), in events.
        ``lower = χ²(α/2; 2k)/2`` (0 for k = 0), ``upper = χ²(1 − α/2; 2k + 2)/2``.
        Equal to R ``poisson.test(k, conf.level = level)$conf.int``.
    """
    from scipy import stats  # scipy.stats takes ~1 s to import: only where a quantile is needed

    alpha = _alpha(level)
    k = np.asarray(count, dtype=float)
    _check_nonnegative("count", k)
    with np.errstate(invalid="ignore"):
        positive = k > 0
    lower = np.where(positive, stats.chi2.ppf(alpha / 2, 2 * np.where(positive, k, 1.0)) / 2, 0.0)
    lower = np.where(np.isnan(k), np.nan, lower)
    upper = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return _out(lower), _out(upper)


def rate(count, denominator, per: float = 1000.0, level: float = 0.95, *,
         small_count: float = SMALL_COUNT, small_denominator: float = SMALL_DENOMINATOR) -> pd.DataFrame:
    """Crude rate per ``per`` with its exact Poisson interval and reliability flags.

    Parameters
    ----------
    count : array_like
        Events per unit (≥ 0).
    denominator : array_like
        People (or other exposure) at risk per unit, same shape; 0 or NaN means "no denominator".
    per : float
        Rate multiplier: 1000 gives events per 1,000 people.
    level : float
        Confidence level of the interval.
    small_count, small_denominator : float
        Flag thresholds (strictly below): ``small_count`` (default 10, see :data:`SMALL_COUNT`)
        and ``small_denominator`` (default 100).

    Returns
    -------
    DataFrame with one row per element (flattened) and columns
        ``value``  = count / denominator · per,
        ``lower``, ``upper`` = Garwood interval of the count / denominator · per,
        ``flags``  = ``;``-joined subset of ``no_count`` (count NaN), ``no_denominator``
        (denominator 0 or NaN: value, lower and upper are NaN, never inf, and no numpy
        warning), ``small_count``, ``small_denominator``.
    """
    c = np.ravel(np.asarray(count, dtype=float))
    d = np.ravel(np.asarray(denominator, dtype=float))
    if c.shape != d.shape:
        raise UsmGeoError(f"count has {c.size} values but denominator has {d.size}",
                          fix="pass one denominator per count")
    _check_nonnegative("denominator", d)
    lo, hi = poisson_interval(c, level)
    lo, hi = np.ravel(lo), np.ravel(hi)
    no_count = np.isnan(c)
    no_den = np.isnan(d) | (d == 0)
    scale = np.divide(per, d, out=np.full(d.shape, np.nan), where=~no_den)
    frame = pd.DataFrame({"value": c * scale, "lower": lo * scale, "upper": hi * scale})
    frame["flags"] = join_flags(
        ("no_count", no_count),
        ("no_denominator", no_den),
        ("small_count", ~no_count & (np.nan_to_num(c, nan=np.inf) < small_count)),
        ("small_denominator", ~no_den & (np.nan_to_num(d, nan=np.inf) < small_denominator)),
    )
    return frame


def rate_ratio(c1, d1, c0, d0, level: float = 0.95, *, small_count: float = SMALL_COUNT) -> pd.DataFrame:
    """Ratio of the current rate (c1/d1) to the baseline rate (c0/d0), exact conditional interval.

    Parameters
    ----------
    c1, d1 : array_like
        Current-period events and exposure (people × years, or people when periods are equal).
    c0, d0 : array_like
        Baseline-period events and exposure.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame(value, lower, upper, flags), one row per element. ``value = (c1/d1)/(c0/d0)``
    (dimensionless); the interval is the Clopper–Pearson interval for
    ``π = c1/(c1+c0)`` mapped by ``π/(1−π)·d0/d1`` — R ``poisson.test(c(c1, c0), c(d1, d0))``.

    Edge cases (never inf, never a warning):
        * ``d1`` or ``d0`` 0/NaN, or a count NaN → all NaN, flag ``no_denominator`` / ``no_count``;
        * ``c1 = c0 = 0`` → all NaN, flag ``no_events``;
        * ``c0 = 0 < c1`` → value and upper NaN (they are +inf), lower kept, flag ``zero_baseline``;
        * ``c1 = 0 < c0`` → value 0, lower 0, upper finite (as R).
    Flag ``small_count``: the baseline or the current count is below ``small_count`` (default
    :data:`SMALL_COUNT`).
    """
    from scipy import stats  # scipy.stats takes ~1 s to import: only where a quantile is needed

    alpha = _alpha(level)
    arrays = [np.ravel(np.asarray(a, dtype=float)) for a in (c1, d1, c0, d0)]
    c1, d1, c0, d0 = np.broadcast_arrays(*arrays)
    for name, a in (("c1", c1), ("d1", d1), ("c0", c0), ("d0", d0)):
        _check_nonnegative(name, a)
    no_count = np.isnan(c1) | np.isnan(c0)
    no_den = np.isnan(d1) | np.isnan(d0) | (d1 == 0) | (d0 == 0)
    ok = ~no_count & ~no_den
    c1s, c0s = np.where(ok, c1, 1.0), np.where(ok, c0, 1.0)
    d1s, d0s = np.where(ok, d1, 1.0), np.where(ok, d0, 1.0)
    n = c1s + c0s
    no_events = ok & (n == 0)
    # Clopper–Pearson for π = c1/n (beta quantiles; guarded so no argument is 0).
    safe_lo = ok & (c1s > 0) & (n > 0)
    safe_hi = ok & (c0s > 0) & (n > 0)
    p_lo = np.where(safe_lo, stats.beta.ppf(alpha / 2, np.where(safe_lo, c1s, 1.0),
                                             np.where(safe_lo, c0s + 1, 1.0)), 0.0)
    p_hi = np.where(safe_hi, stats.beta.ppf(1 - alpha / 2, np.where(safe_hi, c1s + 1, 1.0),
                                             np.where(safe_hi, c0s, 1.0)), 1.0)
    odds = d0s / d1s
    lower = p_lo / (1 - p_lo) * odds
    zero_base = ok & (c0s == 0) & (c1s > 0)
    finite = ok & ~no_events & ~zero_base
    upper = np.divide(p_hi, 1 - p_hi, out=np.full(n.shape, np.nan), where=finite) * odds
    value = np.divide(c1s * d0s, c0s * d1s, out=np.full(n.shape, np.nan), where=finite)
    lower = np.where(ok & ~no_events, lower, np.nan)
    upper = np.where(finite, upper, np.nan)
    flags = join_flags(
        ("no_count", no_count),
        ("no_denominator", no_den),
        ("no_events", no_events),
        ("zero_baseline", zero_base),
        ("small_count", ok & ~no_events & ((c1s < small_count) | (c0s < small_count))),
    )
    return pd.DataFrame({"value": value, "lower": lower, "upper": upper, "flags": flags})
