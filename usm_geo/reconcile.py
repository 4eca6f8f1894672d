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


def reconcile_tables(a: pd.DataFrame, b: pd.DataFrame, levels: dict[str, np.ndarray], periods: list[str], *,
                     link_key_a: np.ndarray | None = None, link_key_b: np.ndarray | None = None,
                     alpha: float = 0.05) -> pd.DataFrame:
    """``reconciliation.csv``: every unit of every level × period, the two sources compared.

    ``a`` and ``b``: one row per record with a ``period`` column and one column per level (the
    record's unit id, None outside); ``levels``: level → every unit id of that level (zeros are
    listed). With link keys (one per record, e.g. "date|unit" or a shared id; :func:`linked_counts`'
    one-to-one rule), ``m`` and Chapman's estimate are added; a matched pair is placed in the unit
    and period of its record in ``a``. A key of None is never linked.
    """
    frames = []
    if link_key_a is not None:
        ka = pd.Series(np.asarray(link_key_a, dtype=object))
        kb = pd.Series(np.asarray(link_key_b, dtype=object))
        ca, cb = ka.value_counts(), kb.value_counts()
        m_key = np.minimum(ca, cb.reindex(ca.index).fillna(0)).astype(np.int64)
        m_key = m_key[m_key > 0]
        # the first record of each matched key in a carries the key's matches (one unit, one period)
        first = ~ka.duplicated(keep="first").to_numpy() & ka.isin(m_key.index).to_numpy()
        weight_a = np.zeros(len(a), dtype=np.int64)
        weight_a[first] = m_key.reindex(ka[first]).to_numpy()
    for level, ids in levels.items():
        grid = pd.MultiIndex.from_product([np.asarray(ids, dtype=object), periods], names=["unit_id", "period"])
        na = a.groupby([level, "period"]).size().reindex(grid, fill_value=0)
        nb = b.groupby([level, "period"]).size().reindex(grid, fill_value=0)
        table = grid.to_frame(index=False)
        table.insert(0, "level", level)
        parts = []
        for period in periods:
            sel = table["period"].to_numpy() == period
            cmp_ = compare_counts(na.to_numpy()[sel], nb.to_numpy()[sel], alpha=alpha)
            cmp_.index = np.flatnonzero(sel)
            parts.append(cmp_)
        body = pd.concat(parts).sort_index()
        table = pd.concat([table, body.reset_index(drop=True)], axis=1)
        if link_key_a is not None:
            m = pd.Series(weight_a).groupby([a[level].to_numpy(dtype=object), a["period"].to_numpy(dtype=object)]).sum()
            m = m.reindex(grid, fill_value=0).to_numpy()
            cr = chapman(table["a"].to_numpy(), table["b"].to_numpy(), m)
            table["m"] = m
            table = pd.concat([table, cr.drop(columns=["observed"]).add_prefix("total_")], axis=1)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)
