"""Reconciling two sources of the same incidents (police and health records, or two files).

Police and health records of violence disagree: many assaults treated in an emergency department
are never reported to the police, and some recorded ones never needed treatment. Per unit and
period this module says how far two counts ``a`` (e.g. police) and ``b`` (e.g. health) differ and
whether by more than chance, and — when records can be linked — estimates the total number of
incidents that either source could have recorded.

Comparison (:func:`compare_counts`), for counts over the same unit, period and definition::

    difference = a − b,   ratio = a / b
    ratio interval: conditional on a + b, a ~ Binomial(a + b, π) with ratio = π / (1 − π);
                    the Clopper–Pearson interval (π_L, π_U) gives (π_L/(1−π_L), π_U/(1−π_U))
    p (two-sided exact binomial test of π = 1/2, i.e. the same expected count in both sources)

``sources_differ`` is flagged where the Benjamini–Hochberg adjusted p (over the units of one level,
period and category; :mod:`usm_geo.hotspots.fdr`) is below α. With a zero in both sources nothing
is tested (flag ``no_records``).

Capture–recapture (:func:`chapman`), when ``m`` incidents are found in both sources by linking
(same date and unit, or a shared id; :func:`linked_counts`)::

    N̂ = (a + 1)(b + 1) / (m + 1) − 1                               (Chapman 1951)
    Var(N̂) = (a + 1)(b + 1)(a − m)(b − m) / ((m + 1)²(m + 2))      (Seber 1970)
    interval (Chao 1987, log-normal for the unseen f̂₀ = N̂ − (a + b − m)):
        C = exp(z · √(ln(1 + Var/f̂₀²))),   (a + b − m) + f̂₀/C  …  (a + b − m) + f̂₀·C

It assumes the two sources record independently and every incident is equally likely to be
recorded (closed population, homogeneous catchability); positive dependence (the injured who go to
hospital are more often reported to the police) makes N̂ too small. Those caveats are written out
with the results.

References: Chapman, D. G. (1951) Univ. California Publ. Statist. 1, 131–160; Seber, G. A. F. (1970)
Biometrika 57, 313–318; Chao, A. (1987) Biometrics 43, 783–791; Clopper, C. J. & Pearson, E. S.
(1934) Biometrika 26, 404–413.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from usm_geo.hotspots.fdr import benjamini_hochberg

CAPTURE_RECAPTURE_CAVEAT = (
    "capture-recapture assumes the two sources record independently and every incident is equally likely to be "
    "recorded; when the injured who go to hospital are also more often reported to the police, the estimate is too small")


def _binom_two_sided(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exact two-sided binomial test of π = 1/2 (the distribution is symmetric: 2·P(X ≤ min(k, n−k)))."""
    low = np.minimum(k, n - k)
    p = 2.0 * binom.cdf(low, n, 0.5)
    p = np.where(2 * k == n, 1.0, p)
    return np.minimum(p, 1.0)


def compare_counts(a, b, *, alpha: float = 0.05, level: float = 0.95, fdr: bool = True) -> pd.DataFrame:
    """Per row: ``a, b, difference, ratio, ratio_lower, ratio_upper, p, p_fdr, flags`` (module docstring).

    ``a`` and ``b`` are counts for the same units (one row each, in order). ``fdr=False`` flags on
    the raw p. A ratio with ``b = 0`` is infinite (its lower bound finite when a > 0).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = a + b
    tested = n > 0
    q = (1.0 - level) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        lo_pi = np.where(a > 0, beta_dist.ppf(q, a, b + 1), 0.0)
        hi_pi = np.where(b > 0, beta_dist.ppf(1 - q, a + 1, b), 1.0)
        ratio = np.where(tested, a / b, np.nan)
        ratio_lo = np.where(tested, lo_pi / (1 - lo_pi), np.nan)
        ratio_hi = np.where(tested, np.where(hi_pi < 1, hi_pi / (1 - hi_pi), np.inf), np.nan)
    p = np.full(a.shape, np.nan)
    p[tested] = _binom_two_sided(a[tested], n[tested])
    p_adj = np.full(a.shape, np.nan)
    if tested.any():
        p_adj[tested] = benjamini_hochberg(p[tested]) if fdr else p[tested]
    flags = np.where(~tested, "no_records", np.where(p_adj < alpha, "sources_differ", ""))
    return pd.DataFrame({"a": a.astype(np.int64), "b": b.astype(np.int64), "difference": (a - b).astype(np.int64),
                         "ratio": ratio, "ratio_lower": ratio_lo, "ratio_upper": ratio_hi, "p": p, "p_fdr": p_adj,
                         "flags": flags})


def chapman(a, b, m, *, level: float = 0.95) -> pd.DataFrame:
    """Chapman's estimate of the total with Seber's variance and Chao's interval (module docstring).

    ``a``, ``b``: incidents recorded by each source; ``m``: incidents found in both (linked). Arrays
    or scalars. Returns ``observed`` (a + b − m), ``estimate``, ``se``, ``lower``, ``upper``, ``flags``
    (``no_overlap`` where m = 0: the estimate is unstable; ``invalid_link`` where m exceeds a or b).
    """
    a = np.atleast_1d(np.asarray(a, dtype=float))
    b = np.atleast_1d(np.asarray(b, dtype=float))
    m = np.atleast_1d(np.asarray(m, dtype=float))
    invalid = (m > a) | (m > b) | (m < 0)
    observed = a + b - m
    est = (a + 1) * (b + 1) / (m + 1) - 1
    var = (a + 1) * (b + 1) * (a - m) * (b - m) / ((m + 1) ** 2 * (m + 2))
    z = float(ndtri(0.5 + level / 2))
    f0 = est - observed
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.exp(z * np.sqrt(np.log1p(var / f0 ** 2)))
        lower = np.where(f0 > 0, observed + f0 / c, observed)
        upper = np.where(f0 > 0, observed + f0 * c, observed)
    flags = np.where(invalid, "invalid_link", np.where(m == 0, "no_overlap", ""))
    bad = invalid
    return pd.DataFrame({"observed": np.where(bad, np.nan, observed), "estimate": np.where(bad, np.nan, est),
                         "se": np.where(bad, np.nan, np.sqrt(np.maximum(var, 0))),
                         "lower": np.where(bad, np.nan, lower), "upper": np.where(bad, np.nan, upper), "flags": flags})


def linked_counts(a: pd.DataFrame, b: pd.DataFrame, link: list[str], by: list[str]) -> pd.DataFrame:
    """Counts per group ``by`` of each source and of records in both, linked on the ``link`` columns.

    Records are matched one to one within each combination of ``link`` values: with 3 police and 2
    health records on the same date in the same unit, 2 are taken as the same incidents (the most
    that can be). Returns ``by`` columns + ``a``, ``b``, ``m``; ``by`` should be among ``link``'s
    groups (e.g. link = [date, unit], by = [unit, period]) so a match never crosses groups.
    """
    keys = list(dict.fromkeys([*by, *link]))
    ca = a.groupby(keys, sort=True, dropna=False).size().rename("a")
    cb = b.groupby(keys, sort=True, dropna=False).size().rename("b")
    both = pd.concat([ca, cb], axis=1).fillna(0).astype(np.int64)
    both["m"] = np.minimum(both["a"], both["b"])
    return both.groupby(level=by, sort=True).sum().reset_index()
