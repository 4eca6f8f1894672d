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

__all__ = ["benjamini_hochberg", "bonferroni", "public_rule", "significance_rule", "significant"]


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


#: the significance rule of every public hot spot layer (DESIGN.md: the public profile applies BH)
PUBLIC_ALPHA = 0.05
QUADRANTS = ("HH", "LL", "HL", "LH")


def _rule_alpha(layer) -> float:
    """The α of a layer's ``significance`` column ("BH FDR q < 0.05" / "raw p < 0.1"), capped at
    :data:`PUBLIC_ALPHA`; :data:`PUBLIC_ALPHA` when the column is missing or unreadable."""
    if "significance" not in layer.columns or not layer["significance"].notna().any():
        return PUBLIC_ALPHA
    text = str(layer["significance"].dropna().iloc[0])
    try:
        return min(float(text.rsplit("<", 1)[1]), PUBLIC_ALPHA)
    except (IndexError, ValueError):
        return PUBLIC_ALPHA


def public_rule(layer):
    """A hot spot layer (``hotspots.gpkg``) with its classes re-derived under the public rule:
    Benjamini–Hochberg over the level's tested units at ``α = min(run's α, 0.05)``, whatever rule the
    run used (``[hotspots] fdr = false``, or a run made before the rule existed).

    * ``gistar_bin``: ArcGIS's ±3/±2/±1 class (adjusted p < 0.01/0.05/0.10, sign of ``gistar_z``) of the
      BH-adjusted ``gistar_p`` (raw two-sided p; or of ``gistar_p_fdr`` when only that is there; or of
      the p of ``gistar_z`` when neither is), 0 otherwise.
    * ``lisa_quadrant``: HH/LL/HL/LH only where the BH-adjusted ``lisa_p_sim`` (else ``lisa_p_fdr``) is
      ``< α``, from ``lisa_scatter_quadrant`` when present; else ``not_significant`` (``island`` kept).
      A layer with a quadrant but no LISA p-value cannot be checked: its quadrants become
      ``not_significant``.
    * ``significance`` states the rule applied. Other columns are left as they are.
    """
    import pandas as pd

    out = layer.copy()
    alpha = _rule_alpha(layer)

    def column(name):
        return pd.to_numeric(out[name], errors="coerce").to_numpy(float) if name in out.columns else None

    if "gistar_bin" in out.columns:
        z = column("gistar_z")
        p_raw, p_adj = column("gistar_p"), column("gistar_p_fdr")
        if p_raw is None and p_adj is None and z is not None:
            from scipy.special import erfc

            p_raw = erfc(np.abs(z) / np.sqrt(2.0))  # two-sided normal p of z
        q = benjamini_hochberg(p_raw) if p_raw is not None else p_adj
        if q is None or z is None:
            out["gistar_bin"] = np.zeros(len(out), dtype=np.int64)
        else:
            ok = np.isfinite(z) & np.isfinite(q)
            level = np.zeros(len(out), dtype=np.int64)
            with np.errstate(invalid="ignore"):
                level[ok & (q < 0.10)] = 1
                level[ok & (q < 0.05)] = 2
                level[ok & (q < 0.01)] = 3
            out["gistar_bin"] = (np.sign(np.nan_to_num(z)) * level).astype(np.int64)
    if "lisa_quadrant" in out.columns:
        p_sim, p_adj = column("lisa_p_sim"), column("lisa_p_fdr")
        q = benjamini_hochberg(p_sim) if p_sim is not None else p_adj
        shown = out["lisa_quadrant"].astype(object).to_numpy()
        scatter = (out["lisa_scatter_quadrant"].astype(object).to_numpy() if "lisa_scatter_quadrant" in out.columns
                   else shown)
        if q is None:
            sig = np.zeros(len(out), dtype=bool)
        else:
            with np.errstate(invalid="ignore"):
                sig = np.isfinite(q) & (q < alpha)
        quad = np.isin(scatter, QUADRANTS)
        result = np.where(sig & quad, scatter, "not_significant").astype(object)
        result[shown == "island"] = "island"
        out["lisa_quadrant"] = result
    out["significance"] = significance_rule(True, alpha)
    return out
