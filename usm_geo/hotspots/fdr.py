"""Multiple-testing control for local statistics (one test per unit).

Both functions take raw p-values (any shape) and return adjusted p-values of the same shape.
NaN entries (islands, units without a test) are left NaN and do not count as tests.

* :func:`benjamini_hochberg` — false discovery rate (Benjamini & Hochberg 1995, step-up): with the
  ``m`` finite p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of rank ``r`` is
  ``min(1, min_{s ≥ r} p_(s) · m / s)``. Rejecting every unit with adjusted ``p ≤ α`` keeps the
  expected share of false hot spots among those flagged at ``α`` (for independent or positively
  dependent tests). Same values as ``scipy.stats.false_discovery_control(p, method="bh")`` and R
  ``p.adjust(p, "BH")``. This is what ``gistar_bin`` uses by default (DESIGN.md).
* :func:`bonferroni` — family-wise error rate: ``min(1, p · m)``; R ``p.adjust(p, "bonferroni")``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["benjamini_hochberg", "bonferroni", "significance_rule", "significant"]


def _finite_p(p) -> tuple[np.ndarray, np.ndarray]:
    p = np.array(p, dtype=np.float64, copy=True)
    ok = np.isfinite(p)
    if ok.any() and ((p[ok] < 0) | (p[ok] > 1)).any():
        bad = p[ok][(p[ok] < 0) | (p[ok] > 1)][0]
        raise ValueError(f"p-values must lie in [0, 1], got {bad!r}")
    if np.isinf(p).any():
        raise ValueError("p-values must lie in [0, 1], got an infinite value")
    return p, ok


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg FDR-adjusted p-values ("q-values"); NaN stays NaN and is not counted.

    ``q_(r) = min(1, min_{s ≥ r} p_(s) · m / s)`` over the ``m`` finite p-values sorted in
    increasing order (Benjamini, Y. & Hochberg, Y. 1995, JRSS B 57(1), 289–300).
    """
    p, ok = _finite_p(p)
    out = np.full(p.shape, np.nan)
    values = p[ok]
    m = values.shape[0]
    if m == 0:
        return out
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(q, 1.0)
    out[ok] = adjusted
    return out


def bonferroni(p) -> np.ndarray:
    """Bonferroni-adjusted p-values ``min(1, p · m)``, ``m`` = number of finite p-values; NaN stays NaN."""
    p, ok = _finite_p(p)
    out = np.full(p.shape, np.nan)
    out[ok] = np.minimum(p[ok] * ok.sum(), 1.0)
    return out


def significance_rule(fdr: bool = True, alpha: float = 0.05) -> str:
    """The rule as stated in outputs: ``"BH FDR q < 0.05"`` or ``"raw p < 0.05"``."""
    return f"{'BH FDR q' if fdr else 'raw p'} < {alpha:g}"


def significant(p, *, fdr: bool = True, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The one significance rule of the local statistics (Gi* and LISA; ``[hotspots] fdr``, ``alpha``).

    Returns (p used, significant): the Benjamini–Hochberg adjusted p over the finite p-values when
    ``fdr`` (the default), else ``p`` itself; a unit is significant where that p is ``< alpha``.
    NaN p (islands, zero variance, no test) is never significant.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    used = benjamini_hochberg(p) if fdr else _finite_p(p)[0]
    with np.errstate(invalid="ignore"):
        return used, np.isfinite(used) & (used < alpha)
