"""Emerging Hot Spot Analysis: space–time Gi*, Mann–Kendall trend, and the 17 ArcGIS Pro patterns.

The method follows ArcGIS Pro's *Emerging Hot Spot Analysis* ("How Emerging Hot Spot Analysis
works", Space Time Pattern Mining toolbox):

1. **Space–time Gi\\*** (:func:`space_time_gistar`). Every bin ``(t, u)`` of a cube of counts
   (``T`` time steps × ``U`` units) gets a Getis–Ord Gi\\* z-score computed over its space–time
   neighbourhood: the unit itself and its spatial neighbours, each in time step ``t`` and in the
   ``time_window`` *previous* steps ``t − k … t``. ArcGIS documents exactly this ("for each of
   these bins, bins at the same location in the previous N time steps are included, where N is the
   Neighborhood Time Step", default N = 1): it looks only backwards, so the default here is
   ``time_direction="previous"``; ``"both"`` (``t − k … t + k``) is offered for retrospective
   analyses and is *not* what ArcGIS does. The global mean and variance are those of all
   ``T · U`` bins (ArcGIS's default "Entire cube" global window).
2. **Trend** (:func:`mann_kendall`): the Mann–Kendall test on each unit's series of Gi\\* z-scores.
3. **Classification** (:func:`classify`) into the 17 patterns; rules in that function's docstring.

Gi\\* is Ord & Getis (1995) with binary weights and the focal bin included::

    Gi* = (Σ_j w_ij x_j − x̄ Σ_j w_ij) / (s · sqrt((N Σ_j w_ij² − (Σ_j w_ij)²) / (N − 1)))

with ``x̄`` and ``s`` (population standard deviation, divisor N) over all N = T·U bins. As the
design notes, this z does not change if the weights are row-standardised (spdep, ArcGIS).

Bin significance: a bin is a significant hot (cold) spot when ``p < alpha`` and ``z > 0``
(``z < 0``). ArcGIS Pro applies a false discovery rate (FDR) correction to the bin p-values, so
:func:`emerging_hotspots` does too by default (``p_adjust="fdr"``: Benjamini–Hochberg over all
T·U bins of the cube together — ArcGIS does not say over which set; the cube is the reading
here), as ``gistar_bin`` does for spatial Gi* (DESIGN.md). ArcGIS also counts bins at 90 %
confidence as significant; ``alpha=0.10`` reproduces that, the default here is 0.05.

Sources: Esri, ArcGIS Pro documentation, "How Emerging Hot Spot Analysis works" and
"Emerging Hot Spot Analysis (Space Time Pattern Mining)"; Ord, J. K. & Getis, A. (1995) Local
spatial autocorrelation statistics: distributional issues and an application. Geographical
Analysis 27(4), 286–306; Mann, H. B. (1945) Nonparametric tests against trend. Econometrica 13,
245–259; Kendall, M. G. (1975) Rank Correlation Methods, 4th ed., Griffin (tie correction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import norm

from usm_geo.errors import UsmGeoError

__all__ = [
    "PATTERNS",
    "MannKendall",
    "classify",
    "emerging_hotspots",
    "mann_kendall",
    "space_time_gistar",
    "space_time_weights",
]

#: The 17 pattern names, spelt as ArcGIS Pro writes them in its ``PATTERN`` field.
PATTERNS: tuple[str, ...] = (
    "No Pattern Detected",
    "New Hot Spot",
    "Consecutive Hot Spot",
    "Intensifying Hot Spot",
    "Persistent Hot Spot",
    "Diminishing Hot Spot",
    "Sporadic Hot Spot",
    "Oscillating Hot Spot",
    "Historical Hot Spot",
    "New Cold Spot",
    "Consecutive Cold Spot",
    "Intensifying Cold Spot",
    "Persistent Cold Spot",
    "Diminishing Cold Spot",
    "Sporadic Cold Spot",
    "Oscillating Cold Spot",
    "Historical Cold Spot",
)


# --------------------------------------------------------------------------- space–time Gi*

def _space_matrix(w_space, n_units: int | None = None) -> sparse.csr_matrix:
    if not sparse.issparse(w_space) and hasattr(w_space, "sparse"):
        w_space = w_space.sparse        # usm_geo.units.weights.Weights, libpysal W / Graph
    if sparse.issparse(w_space):
        w = sparse.csr_matrix(w_space)
    else:
        w = sparse.csr_matrix(np.asarray(w_space))
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise UsmGeoError(f"spatial weights must be a square matrix, got shape {w.shape}",
                          fix="pass a scipy sparse (U, U) adjacency matrix")
    if n_units is not None and w.shape[0] != n_units:
        raise UsmGeoError(f"spatial weights are {w.shape[0]} × {w.shape[0]} but the cube has {n_units} units",
                          fix="build the weights for the same units, in the same order, as the columns of counts")
    w = w.copy()
    w.eliminate_zeros()
    w.data = np.ones_like(w.data, dtype=float)          # binary
    w = (w + sparse.identity(w.shape[0], format="csr")).tocsr()   # focal unit included (Gi*)
    w.data = np.ones_like(w.data, dtype=float)          # a self-loop already present stays 1
    return w


def space_time_weights(w_space, n_steps: int, time_window: int = 1,
                       time_direction: Literal["previous", "both"] = "previous") -> sparse.csr_matrix:
    """Binary space–time weights for a cube flattened time-major (bin ``t·U + u``), self included.

    ``W = kron(L, A + I)`` where ``A`` is the binary spatial adjacency (no self) and ``L[t, s] = 1``
    for ``t − k ≤ s ≤ t`` (``"previous"``, ArcGIS) or ``|t − s| ≤ k`` (``"both"``), k = ``time_window``.
    """
    if int(time_window) != time_window or time_window < 0:
        raise UsmGeoError(f"time_window must be a whole number of time steps ≥ 0, got {time_window!r}")
    if time_direction not in ("previous", "both"):
        raise UsmGeoError(f"time_direction must be 'previous' or 'both', got {time_direction!r}")
    a = _space_matrix(w_space)
    k = min(int(time_window), max(n_steps - 1, 0))
    offsets = list(range(-k, 1)) if time_direction == "previous" else list(range(-k, k + 1))
    lt = sparse.diags([np.ones(n_steps - abs(o)) for o in offsets], offsets,
                      shape=(n_steps, n_steps), format="csr")
    return sparse.kron(lt, a, format="csr")


def _as_cube(counts) -> np.ndarray:
    x = np.asarray(counts, dtype=float)
    if x.ndim != 2:
        raise UsmGeoError(f"counts must be a (time steps, units) array, got {x.ndim} dimension(s)",
                          fix="pass one row per time step and one column per unit")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise UsmGeoError(f"counts cube is empty (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        raise UsmGeoError("counts contain NaN or infinite values",
                          fix="fill bins without incidents with 0")
    return x


def space_time_gistar(counts, w_space, time_window: int = 1,
                      time_direction: Literal["previous", "both"] = "previous"):
    """Getis–Ord Gi* z-score and two-sided normal p-value for every bin of a space–time cube.

    Parameters
    ----------
    counts : array (T, U)
        Value per time step (rows) and unit (columns), e.g. incident counts.
    w_space : scipy sparse or array (U, U)
        Spatial adjacency, binary, without self-neighbours (any non-zero is treated as 1; a
        diagonal already present is harmless). Column order of ``counts``.
    time_window : int, default 1
        Number of neighbouring time steps (ArcGIS "Neighborhood Time Step"). 0 = same step only.
    time_direction : {"previous", "both"}, default "previous"
        ``"previous"``: steps ``t − k … t`` as ArcGIS; ``"both"``: ``t − k … t + k``.

    Returns
    -------
    z, p : arrays (T, U)
        Analytic z (mean and variance over all T·U bins) and ``2·(1 − Φ(|z|))``. NaN where the cube
        is constant or a neighbourhood covers every bin (no variance).
    """
    x = _as_cube(counts)
    t_steps, n_units = x.shape
    _space_matrix(w_space, n_units)  # validates the shape against the cube
    w = space_time_weights(w_space, t_steps, time_window, time_direction)
    y = x.ravel()                    # time-major: bin t*U + u
    n = y.size
    mean = y.mean()
    sd = np.sqrt(max((y * y).mean() - mean * mean, 0.0))
    wsum = np.asarray(w.sum(axis=1)).ravel()
    w2sum = wsum                     # binary weights: Σ w² = Σ w
    num = w @ y - mean * wsum
    var_term = (n * w2sum - wsum ** 2) / (n - 1) if n > 1 else np.zeros_like(wsum)
    den = sd * np.sqrt(np.clip(var_term, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    p = 2.0 * norm.sf(np.abs(z))
    return z.reshape(t_steps, n_units), p.reshape(t_steps, n_units)


# --------------------------------------------------------------------------- Mann–Kendall

class MannKendall(NamedTuple):
    """Mann–Kendall trend test per unit: Kendall's tau-b, S, z and two-sided p (arrays (U,))."""

    tau: np.ndarray
    s: np.ndarray
    z: np.ndarray
    p: np.ndarray


def mann_kendall(series, continuity: bool = True) -> MannKendall:
    """Mann–Kendall trend test on each column of a (T, U) array, vectorised over units.

    ``S = Σ_{i<j} sign(x_j − x_i)``; with tie groups of sizes ``t_g`` in a column,
    ``Var(S) = [n(n−1)(2n+5) − Σ_g t_g(t_g−1)(2t_g+5)] / 18`` (Kendall 1975);
    ``z = (S − 1)/√Var`` if S > 0, ``(S + 1)/√Var`` if S < 0, 0 if S = 0 (continuity correction; pass
    ``continuity=False`` for ``S/√Var``, which is scipy's ``kendalltau(range(T), x,
    method="asymptotic")`` z); ``p = 2(1 − Φ(|z|))``. ``tau`` is Kendall's tau-b between time and x,
    ``S / √(n0 (n0 − n1))`` with ``n0 = n(n−1)/2`` and ``n1 = Σ_g t_g(t_g−1)/2`` (= S / n0 without ties).
    A column that is constant has S = 0, z = 0, p = 1 and tau NaN; a column with NaN gives NaN.
    """
    x = np.asarray(series, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise UsmGeoError(f"series must be a (time steps, units) array, got {x.ndim} dimensions")
    n, n_units = x.shape
    if n < 2:
        raise UsmGeoError(f"the Mann–Kendall test needs at least 2 time steps, got {n}")
    bad = ~np.all(np.isfinite(x), axis=0)
    xf = np.where(bad[None, :], 0.0, x)

    s = np.zeros(n_units)
    for lag in range(1, n):          # loop over lags (≤ T), vectorised over pairs and units
        s += np.sign(xf[lag:] - xf[:-lag]).sum(axis=0)

    xs = np.sort(xf, axis=0)
    starts = np.ones_like(xs, dtype=bool)
    starts[1:] = xs[1:] != xs[:-1]
    group = np.cumsum(starts, axis=0) - 1                              # 0 … T−1 within a column
    flat = (group + n * np.arange(n_units)[None, :]).ravel()
    sizes = np.bincount(flat, minlength=n * n_units).reshape(n_units, n).astype(float)
    tie_var = (sizes * (sizes - 1) * (2 * sizes + 5)).sum(axis=1)
    n1 = (sizes * (sizes - 1) / 2).sum(axis=1)

    var_s = (n * (n - 1) * (2 * n + 5) - tie_var) / 18.0
    sd = np.sqrt(np.clip(var_s, 0.0, None))
    numer = s - np.sign(s) if continuity else s
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, numer / np.where(sd > 0, sd, 1.0), 0.0)
        n0 = n * (n - 1) / 2.0
        denom = np.sqrt(n0 * (n0 - n1))
        tau = np.where(denom > 0, s / np.where(denom > 0, denom, 1.0), np.nan)
    p = 2.0 * norm.sf(np.abs(z))
    for arr in (tau, s, z, p):
        arr[bad] = np.nan
    return MannKendall(tau=tau, s=s, z=z, p=p)


# --------------------------------------------------------------------------- classification

def _trailing_run(flags: np.ndarray) -> np.ndarray:
    """Length of the run of True at the end of each column of a (T, U) boolean array."""
    rev = flags[::-1]
    first_false = np.argmin(rev, axis=0)
    return np.where(rev.all(axis=0), flags.shape[0], first_false)


def classify(z, p, trend_z, trend_p, alpha: float = 0.05) -> np.ndarray:
    """Classify each unit into one of the 17 ArcGIS Pro Emerging Hot Spot patterns.

    Inputs: ``z``, ``p`` (T, U) — the bin z-scores and p-values, time steps in order, the last row
    the final step; ``trend_z``, ``trend_p`` (U,) — the Mann–Kendall trend of each unit's z series.

    Definitions (T time steps; a bin is *hot* when ``p < alpha`` and ``z > 0``, *cold* when
    ``p < alpha`` and ``z < 0``; NaN is neither; "≥ 90 %" means ``n_hot ≥ 0.9 T``, compared exactly
    as ``10 · n_hot ≥ 9 · T`` — so for T < 10 it means every step; the trend is *significant* when
    ``trend_p < alpha`` and its direction is the sign of ``trend_z``):

    ======================  ============================================================================
    New Hot Spot            final step hot; never hot before; (reading:) never cold before either.
    Consecutive Hot Spot    a single uninterrupted run of ≥ 2 hot bins ending at the final step; never
                            hot before that run; (reading:) never cold; fewer than 90 % of steps hot.
    Intensifying Hot Spot   hot in ≥ 90 % of steps including the final one; significant increasing trend.
    Persistent Hot Spot     hot in ≥ 90 % of steps including the final one (reading, see below); no
                            significant trend.
    Diminishing Hot Spot    hot in ≥ 90 % of steps including the final one; significant decreasing trend.
    Sporadic Hot Spot       final step hot; fewer than 90 % of steps hot; hot before the final run too
                            (on again, off again); never cold.
    Oscillating Hot Spot    final step hot; at least one earlier step cold; fewer than 90 % hot.
    Historical Hot Spot     final step *not* hot; ≥ 90 % of steps hot.
    … Cold Spot             the same with hot and cold exchanged (Intensifying Cold = significant
                            *decreasing* trend, i.e. getting colder; Diminishing Cold = increasing).
    No Pattern Detected     none of the above (e.g. final step not significant and < 90 % hot/cold).
    ======================  ============================================================================

    Readings where ArcGIS's wording leaves overlaps (the rules above make the 17 classes a partition):

    * The family is decided by the final bin: if it is hot, only hot patterns other than Historical
      can apply; if cold, only cold ones. Hence a unit hot in ≥ 90 % of steps whose final step is
      *cold* is an Oscillating Cold Spot, not a Historical Hot Spot (ArcGIS's Historical says only
      "the most recent time period is not hot"); Historical applies when the final bin is not
      significant.
    * Persistent requires the final step hot: otherwise the unit is Historical.
    * New and Consecutive read "never been a significant hot spot before" literally, which would
      overlap Oscillating for a unit that was cold earlier; the cold history wins (Oscillating),
      as Oscillating is defined precisely by it.
    """
    z = np.asarray(z, dtype=float)
    p = np.asarray(p, dtype=float)
    if z.ndim == 1:
        z, p = z[:, None], p[:, None]
    if z.shape != p.shape or z.ndim != 2:
        raise UsmGeoError(f"z and p must be (T, U) arrays of the same shape, got {z.shape} and {p.shape}")
    t_steps, n_units = z.shape
    trend_z = np.broadcast_to(np.asarray(trend_z, dtype=float), (n_units,))
    trend_p = np.broadcast_to(np.asarray(trend_p, dtype=float), (n_units,))
    if not 0 < alpha < 1:
        raise UsmGeoError(f"alpha must be between 0 and 1, got {alpha!r}")

    sig = p < alpha                  # NaN compares False
    hot = sig & (z > 0)
    cold = sig & (z < 0)
    n_hot = hot.sum(axis=0)
    n_cold = cold.sum(axis=0)
    trend_sig = trend_p < alpha
    up = trend_sig & (trend_z > 0)
    down = trend_sig & (trend_z < 0)

    out = np.full(n_units, "No Pattern Detected", dtype=object)

    def family(this, other, n_this, n_other, word, getting_stronger, getting_weaker):
        final = this[-1]
        mostly = 10 * n_this >= 9 * t_steps
        run = _trailing_run(this)
        cases = [
            (final & mostly & getting_stronger, f"Intensifying {word}"),
            (final & mostly & getting_weaker, f"Diminishing {word}"),
            (final & mostly & ~getting_stronger & ~getting_weaker, f"Persistent {word}"),
            (final & ~mostly & (n_other > 0), f"Oscillating {word}"),
            (final & ~mostly & (n_other == 0) & (n_this == run) & (run == 1), f"New {word}"),
            (final & ~mostly & (n_other == 0) & (n_this == run) & (run >= 2), f"Consecutive {word}"),
            (final & ~mostly & (n_other == 0) & (n_this > run), f"Sporadic {word}"),
        ]
        for mask, name in cases:
            out[mask] = name
        return mostly

    mostly_hot = family(hot, cold, n_hot, n_cold, "Hot Spot", up, down)
    mostly_cold = family(cold, hot, n_cold, n_hot, "Cold Spot", down, up)
    neither = ~hot[-1] & ~cold[-1]
    out[neither & mostly_hot] = "Historical Hot Spot"
    out[neither & mostly_cold] = "Historical Cold Spot"
    return out


# --------------------------------------------------------------------------- one-step analysis

def emerging_hotspots(counts, w_space, *, time_window: int = 1,
                      time_direction: Literal["previous", "both"] = "previous",
                      alpha: float = 0.05,
                      p_adjust: Literal["fdr"] | Callable[[np.ndarray], np.ndarray] | None = "fdr",
                      unit_ids=None) -> pd.DataFrame:
    """Emerging Hot Spot Analysis of a (T, U) cube: one row per unit with its pattern.

    Runs :func:`space_time_gistar`; adjusts the T·U bin p-values together with ``p_adjust``
    (``"fdr"``: Benjamini–Hochberg, as ArcGIS Pro; a callable taking and returning a 1-d array of
    p-values; ``None``: raw p); runs :func:`mann_kendall` (with continuity correction) on each unit's
    Gi* z series (the trend test itself is not adjusted); and :func:`classify`.

    ``w_space`` may be a sparse/dense (U, U) matrix or a :class:`usm_geo.units.weights.Weights`
    (anything with a ``.sparse`` matrix); a ``Weights``' ``ids`` are used when ``unit_ids`` is not
    given.

    Returns a DataFrame with columns ``unit_id`` (strings; ``"0" … "U−1"`` when no ids are known),
    ``pattern``, ``persistence`` (sfhotspot's simpler reading of the same bins:
    :func:`usm_geo.hotspots.change.classify_persistence` of each unit's significant hot and cold
    bins per time step, default shares), ``trend_tau``, ``trend_z``, ``trend_p``, ``n_hot``, ``n_cold``, ``final_z``,
    ``final_p`` (``final_p`` and the hot/cold counts use the adjusted p); ``df.attrs`` records the
    settings (``time_window``, ``time_direction``, ``alpha``, ``p_adjust``, ``n_steps``). Every unit
    passed is analysed: ArcGIS leaves out grid locations that never hold a point, so drop such units
    first to reproduce that.
    """
    x = _as_cube(counts)
    t_steps, n_units = x.shape
    if t_steps < 2:
        raise UsmGeoError(f"emerging hot spot analysis needs at least 2 time steps, got {t_steps}",
                          fix="use shorter periods so that the study spans several time steps")
    z, p = space_time_gistar(x, w_space, time_window=time_window, time_direction=time_direction)
    if isinstance(p_adjust, str):
        if p_adjust != "fdr":
            raise UsmGeoError(f"p_adjust must be 'fdr', None or a function, got {p_adjust!r}")
        from usm_geo.hotspots.fdr import benjamini_hochberg
        adjust, adjust_name = benjamini_hochberg, "fdr"
    elif p_adjust is None:
        adjust, adjust_name = None, "none"
    else:
        adjust, adjust_name = p_adjust, getattr(p_adjust, "__name__", "custom")
    if adjust is not None:
        flat = p.ravel()
        ok = np.isfinite(flat)
        adj = np.full_like(flat, np.nan)
        adj[ok] = np.asarray(adjust(flat[ok]), dtype=float)
        p = adj.reshape(p.shape)
    trend = mann_kendall(np.where(np.isfinite(z), z, 0.0))
    pattern = classify(z, p, trend.z, trend.p, alpha=alpha)
    sig = p < alpha
    if unit_ids is None and not sparse.issparse(w_space) and getattr(w_space, "ids", None) is not None:
        unit_ids = w_space.ids
    if unit_ids is None:
        ids = [str(i) for i in range(n_units)]
    else:
        ids = [str(u) for u in unit_ids]
        if len(ids) != n_units:
            raise UsmGeoError(f"{len(ids)} unit ids for {n_units} columns of counts",
                              fix="pass one id per column of counts, in the same order")
    from usm_geo.hotspots.change import classify_persistence

    with np.errstate(invalid="ignore"):
        hot_bins, cold_bins = sig & (z > 0), sig & (z < 0)
    df = pd.DataFrame({
        "unit_id": ids,
        "pattern": pattern.astype(str),
        "persistence": classify_persistence(hot_bins, cold_bins),
        "trend_tau": trend.tau,
        "trend_z": trend.z,
        "trend_p": trend.p,
        "n_hot": (sig & (z > 0)).sum(axis=0).astype(np.int64),
        "n_cold": (sig & (z < 0)).sum(axis=0).astype(np.int64),
        "final_z": z[-1],
        "final_p": p[-1],
    })
    df.attrs.update(time_window=int(time_window), time_direction=time_direction, alpha=float(alpha),
                    p_adjust=adjust_name, n_steps=int(t_steps))
    return df
