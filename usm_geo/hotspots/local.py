"""Local spatial statistics: Getis–Ord Gi / Gi* and local Moran's I (LISA).

Arrays in, a DataFrame out (one row per unit, indexed by the weights' ids), with the same column
names across statistics: the statistic (``G`` or ``I``), its expectation and variance under the
null (``EG``/``VG``, ``EI``/``VI``), the standard normal deviate ``z``, its p-value ``p`` and an
``island`` flag. Units without a neighbour ("islands") get NaN ``z`` and ``p``. Nothing here
reads or writes files.

Getis–Ord Gi and Gi* (Getis & Ord 1992; Ord & Getis 1995)
-------------------------------------------------------
For unit ``i`` with weights ``w_ij`` and values ``x_j`` (counts, rates: non-negative),

* Gi* (``star=True``) sums over every unit, *including i itself* with ``w_ii = 1``::

      G*_i = Σ_j w_ij x_j / Σ_j x_j
      W_i = Σ_j w_ij,   S1_i = Σ_j w_ij²,   x̄ = Σ x / n,   s² = Σ (x − x̄)² / n
      z_i = (Σ_j w_ij x_j − x̄ W_i) / ( s · sqrt( (n S1_i − W_i²) / (n − 1) ) )

  with ``E[G*_i] = W_i / n`` and ``Var[G*_i] = s² (n S1_i − W_i²) / ((n − 1) (Σ x)²)`` (the
  moments of a weighted sum of ``W_i`` values drawn without replacement from the ``n``).
* Gi (``star=False``) leaves unit ``i`` out of everything: the sums run over ``j ≠ i``, ``n``
  becomes ``n − 1`` and ``x̄``, ``s²`` are the mean and variance of the other ``n − 1`` values.

For binary weights (``S1_i = W_i``) these are exactly Getis & Ord's (1992) expressions and give
esda's ``G_Local(transform="B").Zs`` and R spdep's ``localG``.

**Row standardisation does not change z (DESIGN.md, "Gi*").** With ``transform="R"`` the weights
(for Gi*: the binary weights *with the self-weight 1 added*) are divided by their row sums, so
``G`` is the row-standardised statistic (GeoDa's G/G*, esda's ``G_Local(transform="R").Gs``), but
the variance uses the actual ``S1_i = Σ_j w_ij²`` of the standardised weights. Multiplying a row by
a constant multiplies the numerator and the standard deviation of ``z_i`` by the same constant, so
``z`` equals the binary ``z`` — as in spdep (``localG`` with style "W") and ArcGIS (which documents
that standardisation has no effect on Gi*). **esda's row-standardised z differs**: it keeps the
binary-weights variance ``W_i (n − W_i)`` with ``W_i = 1`` and so gives another z (by up to 2.6
on the St Louis homicide rates); we do not follow it.

p-values are from the standard normal: two-sided by default (``2 · (1 − Φ(|z|))``),
``"greater"`` (hot spots, ``1 − Φ(z)``) or ``"less"`` (cold spots, ``Φ(z)``). The normal
approximation is the one ArcGIS and spdep use; it is poor for units with very few neighbours and
skewed counts. For hot-spot classes use :func:`gistar_bin`, which controls the false discovery
rate across units.

Local Moran's I (Anselin 1995)
------------------------------
With ``z_i = x_i − x̄`` and, by default, row-standardised weights::

    I_i = z_i Σ_j w_ij z_j / m2,     m2 = Σ_j z_j² / (n − 1)

The ``n − 1`` divisor is esda's and GeoDa's (and spdep ``localmoran(mlvar=FALSE)``; spdep's default
``mlvar=TRUE`` divides by ``n``, giving ``I_i · n / (n − 1)``). ``EI``, ``VI`` are the moments under
*conditional* randomisation (``x_i`` fixed, the others permuted; Sokal, Oden & Thomson 1998,
eqs. A7–A8; spdep ``localmoran`` default, esda ``Moran_Local.EIc``/``VIc``), with
``m2' = Σ z² / n``::

    EI_i = − z_i² W_i / ((n − 1) m2')
    VI_i = (z_i / m2')² · n / (n − 2) · (S1_i − W_i² / (n − 1)) · (m2' − z_i² / (n − 1))
    z = (I_i − EI_i) / sqrt(VI_i)

``moments="total"`` gives the total-randomisation moments instead (Sokal et al. 1998 A3–A4*;
esda ``Moran_Local.EI``/``VI``). With ``permutations > 0`` the pseudo p-value ``p_sim`` comes from
conditional permutation (Anselin 1995): for each unit, ``permutations`` random sets of ``k_i``
distinct values drawn from the *other* ``n − 1`` units are put in its neighbours' places;
``p_sim = (min(#{sim ≥ obs}, #{sim ≤ obs}) + 1) / (permutations + 1)``: esda's and GeoDa's folded
pseudo p-value (``(min(larger, permutations − larger) + 1) / (permutations + 1)``), except that
simulated values equal to the observed one (up to rounding) count on both sides. Ties only occur
with few units or repeated values; there esda counts them as "larger" only, which can make a unit
with ``x_i = x̄`` (all simulated ``I_i = 0``) look maximally significant, whereas here it gets 1. Draws come from a seeded ``numpy.random.Generator``: the same seed gives the same p-values,
but they are not the draws of esda or GeoDa, so p-values agree with theirs only within sampling
error.

Quadrants (esda's rule): ``HH`` (z_i > 0, lag > 0), ``LH`` (z_i ≤ 0, lag > 0), ``LL`` (z_i ≤ 0,
lag ≤ 0), ``HL`` (z_i > 0, lag ≤ 0); ``island`` for islands. ``cluster`` is the quadrant where the
unit is significant (``p_sim`` when permutations were run, else ``p``) at ``significance``, and
``ns`` elsewhere, like GeoDa's LISA cluster map.

Sources: Getis, A. & Ord, J.K. (1992) The analysis of spatial association by use of distance
statistics. Geographical Analysis 24(3), 189–206. Ord, J.K. & Getis, A. (1995) Local spatial
autocorrelation statistics: distributional issues and an application. Geographical Analysis 27(4),
286–306. Anselin, L. (1995) Local indicators of spatial association — LISA. Geographical Analysis
27(2), 93–115. Sokal, R.R., Oden, N.L. & Thomson, B.A. (1998) Local spatial autocorrelation in a
biological model. Geographical Analysis 30(4), 331–354.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from usm_geo.hotspots.fdr import benjamini_hochberg, bonferroni
from usm_geo.units.weights import binary_and_ids
from usm_geo.progressbar import bar

__all__ = ["getis_ord", "gistar_bin", "local_moran"]

# Upper bound on the number of random draws held in memory at once by the permutation test
# (int32 indices plus the float64 values they pick and a few temporaries: ~100–200 MB at most).
_MAX_DRAWS = 1 << 23


# ----------------------------------------------------------------------------- shared helpers
def _prepare(y, w, transform: str):
    matrix, ids = binary_and_ids(w)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = matrix.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} values but the weights have {n} units")
    if not np.isfinite(y).all():
        raise ValueError(
            f"y has {int((~np.isfinite(y)).sum())} missing or infinite value(s); local statistics need a value "
            "for every unit (fill zeros for units with no events, or drop the units and rebuild the weights)"
        )
    transform = str(transform).upper()
    if transform not in ("B", "R"):
        raise ValueError(f"transform must be 'B' (binary) or 'R' (row-standardised), got {transform!r}")
    index = pd.RangeIndex(n) if ids is None else pd.Index(ids, name="unit_id")
    return y, matrix, index, transform


def _p_from_z(z: np.ndarray, alternative: str) -> np.ndarray:
    if alternative == "two-sided":
        return 2.0 * ndtr(-np.abs(z))  # ndtr = standard normal cdf (scipy.special)
    if alternative == "greater":
        return ndtr(-z)
    if alternative == "less":
        return ndtr(z)
    raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")


# A variance below this share of the size of the terms it is computed from is zero in exact
# arithmetic and rounding noise in floating point (e.g. 1/5 − 1/5 ≈ 1e-17): z would be noise / noise
# (1.9e7 for a district that neighbours every other one). Real variances are never this small relative
# to their own terms, so such units get no test (z NaN, flag ``zero_variance``).
ZERO_VARIANCE_RTOL = 1e-10


def _safe_z(numerator: np.ndarray, variance: np.ndarray, degenerate=None) -> tuple[np.ndarray, np.ndarray]:
    """z = numerator / sqrt(variance), NaN where the variance is zero: not > 0, or ``degenerate``
    (zero up to rounding, see :data:`ZERO_VARIANCE_RTOL`). Returns (z, zero-variance mask)."""
    zero = ~(variance > 0)
    if degenerate is not None:
        zero |= degenerate
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / np.sqrt(np.where(zero, 1.0, variance))
    z[zero] = np.nan  # no variance (constant y, every unit a neighbour, all other values equal): no test
    return z, zero


def _negligible(part, reference, rtol: float = ZERO_VARIANCE_RTOL) -> np.ndarray:
    """``|part| ≤ rtol · |reference|``: a difference of terms that is zero up to rounding. For a sum of
    squared deviations against the sum of squares (constant values) the rounding is ~1e-26 relative,
    and a real spread can be far smaller than 1e-10 of it (values 10⁶ ± 1), hence ``rtol = 1e-24`` there."""
    return np.abs(part) <= rtol * np.abs(reference)


# ----------------------------------------------------------------------------- Getis–Ord
def getis_ord(y, w, star: bool = True, transform: str = "B", alternative: str = "two-sided", permutations: int = 0,
              seed=None) -> pd.DataFrame:
    """Local Getis–Ord Gi* (``star=True``, the unit counts as its own neighbour) or Gi.

    Parameters
    ----------
    y : array-like of float, length n
        Values per unit in weights order (counts or rates, ≥ 0 for G to be meaningful; z is
        defined for any values). Missing values raise ValueError.
    w : Weights, libpysal W/Graph or square sparse matrix
        Neighbours; the matrix is used as *binary* (non-zero = neighbour) and its diagonal is
        ignored — Gi* adds the self-weight 1 itself.
    star : bool
        Gi* (include unit i, default) or Gi (exclude it).
    transform : {"B", "R"}
        Binary weights, or row-standardised ones (for Gi*, after adding the self-weight, so that
        ``w_ii = 1 / (k_i + 1)``). Changes ``G``, ``EG``, ``VG`` but **not** ``z`` or ``p``
        (spdep/ArcGIS convention; esda's row-standardised z differs — see the module docstring).
    alternative : {"two-sided", "greater", "less"}
        For ``p``, from the standard normal.
    permutations : int
        Optional conditional-permutation inference (0 = none): for each unit, its own value stays
        and its ``k_i`` neighbours' values are drawn without replacement from the other n − 1
        units; ``p_sim`` = (min(#sim ≥ obs, #sim ≤ obs) + 1) / (permutations + 1), ties counting
        on both sides (as local Moran's ``p_sim`` here). The statistic is monotone in the sum of
        the neighbours' values, so the binary and row-standardised versions give the same ``p_sim``.
    seed : int, numpy.random.Generator or None
        Seed of the permutations: the same seed gives the same ``p_sim``.

    Returns
    -------
    pandas.DataFrame indexed by the weights' ids (``unit_id``) or 0…n−1, with columns
    ``G`` (the statistic), ``EG``, ``VG`` (its mean and variance under randomisation),
    ``z``, ``p``, ``p_sim`` (NaN without permutations), ``n_neighbours`` (excluding the unit
    itself) and ``island`` (no neighbour: ``z``, ``p`` and ``p_sim`` are NaN).

    Formulas in the module docstring (Getis & Ord 1992, eqs. for G_i and G*_i; Ord & Getis 1995,
    standardised form for general weights). Matches esda ``G_Local(transform="B").Zs`` and R spdep
    ``localG`` to ~1e-12 on the Columbus and St Louis reference data.
    """
    y, matrix, index, transform = _prepare(y, w, transform)
    n = y.shape[0]
    cardinality = np.diff(matrix.indptr)
    island = cardinality == 0
    # The adjacency is binary, so the weights of row i are all equal: 1 (B) or 1 / b_i (R),
    # b_i = number of neighbours (+ 1 for the unit itself in Gi*). No weighted matrix is built.
    binary_sum = cardinality + 1.0 if star else cardinality.astype(np.float64)
    lag = matrix @ y + (y if star else 0.0)
    if transform == "R":
        with np.errstate(divide="ignore", invalid="ignore"):
            row_weight = np.where(binary_sum > 0, 1.0 / binary_sum, 0.0)
        lag = lag * row_weight
        w_i = binary_sum * row_weight
        s1_i = binary_sum * row_weight**2
    else:
        w_i = binary_sum
        s1_i = binary_sum
    total = y.sum()
    dev = y - total / n
    ss = float(dev @ dev)
    if star:
        # the same for every unit: scalars (element for element the same arithmetic as full arrays)
        big_n = float(n)
        totals = total
        means = total / n
        variances = ss / n
    else:
        if n < 3:
            raise ValueError("Gi needs at least 3 units")
        big_n = float(n - 1)
        totals = total - y
        means = totals / big_n
        # Σ_{j≠i} (x_j − mean_i)² = SS − d_i² n / (n − 1), with d_i = x_i − x̄ (no cancellation).
        variances = np.maximum(ss - dev**2 * n / big_n, 0.0) / big_n
    spread = (big_n * s1_i - w_i**2) / (big_n - 1.0)  # Var(Σ w x) / s²
    with np.errstate(divide="ignore", invalid="ignore"):
        g = lag / totals
        eg = w_i / big_n
        vg = variances * spread / totals**2
    # spread = (n S1 − W²)/(n − 1) is 0 when the unit's neighbours (with itself) are every unit;
    # the spread of values is 0 when they are all equal (for Gi: all the other units' values)
    degenerate = _negligible(spread, big_n * s1_i / (big_n - 1.0)) | _negligible(ss, float(y @ y), rtol=1e-24)
    if not star:
        degenerate |= _negligible(variances, ss / big_n)
    z, zero_variance = _safe_z(lag - means * w_i, variances * spread, degenerate)
    z[island] = np.nan
    zero_variance &= ~island
    p = _p_from_z(z, alternative)
    p_sim = np.full(n, np.nan)
    if permutations < 0:
        raise ValueError(f"permutations must be ≥ 0, got {permutations}")
    if permutations and ss > 0:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        # G_i depends on the draw only through the sum of the neighbours' deviations
        neighbour_dev = matrix @ dev
        at_least, at_most = _conditional_permutation_counts(dev, cardinality, np.ones(n), neighbour_dev,
                                                            permutations, rng)
        p_sim = (np.minimum(at_least, at_most) + 1.0) / (permutations + 1.0)
        p_sim[island] = np.nan
    return pd.DataFrame(
        {"G": g, "EG": eg, "VG": vg, "z": z, "p": p, "p_sim": p_sim, "n_neighbours": cardinality.astype(np.int64),
         "island": island, "zero_variance": zero_variance},
        index=index,
    )


def gistar_bin(z, p, *, adjust: str | None = "fdr") -> np.ndarray:
    """ArcGIS's ``Gi_Bin`` hot/cold spot class from Gi* z and p-values.

    ``+3`` / ``−3``: hot / cold spot at 99 % confidence (p < 0.01); ``±2``: 95 % (p < 0.05);
    ``±1``: 90 % (p < 0.10); ``0``: not significant (also for NaN z or p, e.g. islands). The sign
    is the sign of ``z``.

    Parameters
    ----------
    z, p : array-like
        ``z`` and the *raw* two-sided ``p`` of :func:`getis_ord`.
    adjust : {"fdr", "bonferroni", None}
        Multiple-testing correction applied to ``p`` before binning. Default ``"fdr"``
        (Benjamini–Hochberg over the units with a finite p; DESIGN.md: ``gistar_bin`` uses
        FDR-adjusted p, like ArcGIS's "Apply False Discovery Rate correction"). Pass ``None`` only
        when ``p`` is already adjusted (adjusting twice is wrong) or to reproduce uncorrected
        ArcGIS output.
    """
    z = np.asarray(z, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if z.shape != p.shape:
        raise ValueError(f"z and p must have the same shape, got {z.shape} and {p.shape}")
    if adjust == "fdr":
        p = benjamini_hochberg(p)
    elif adjust == "bonferroni":
        p = bonferroni(p)
    elif adjust is not None:
        raise ValueError(f"adjust must be 'fdr', 'bonferroni' or None, got {adjust!r}")
    level = np.zeros(z.shape, dtype=np.int8)
    ok = np.isfinite(z) & np.isfinite(p)
    level[ok & (p < 0.10)] = 1
    level[ok & (p < 0.05)] = 2
    level[ok & (p < 0.01)] = 3
    return (level * np.where(z > 0, 1, np.where(z < 0, -1, 0))).astype(np.int8)


# ----------------------------------------------------------------------------- local Moran
def local_moran(
    y,
    w,
    permutations: int = 0,
    seed=None,
    transform: str = "R",
    alternative: str = "two-sided",
    moments: str = "conditional",
    significance: float = 0.05,
) -> pd.DataFrame:
    """Local Moran's I (Anselin 1995 LISA) with analytic and, optionally, permutation inference.

    Parameters
    ----------
    y : array-like of float, length n
        Values per unit in weights order; missing values raise ValueError.
    w : Weights, libpysal W/Graph or square sparse matrix
        Neighbours (binary; the diagonal is ignored).
    permutations : int
        Conditional permutations for ``p_sim`` (0 = none, the default; 999 is usual).
    seed : int, numpy.random.Generator or None
        Seed of the permutations: the same seed gives the same ``p_sim``.
    transform : {"R", "B"}
        Row-standardised (default, as esda/GeoDa) or binary weights.
    alternative : {"two-sided", "greater", "less"}
        For the analytic ``p``.
    moments : {"conditional", "total"}
        Randomisation null for ``EI``/``VI``: conditional (spdep ``localmoran`` default, esda
        ``EIc``/``VIc``) or total (esda ``EI``/``VI``).
    significance : float
        Level for ``cluster``.

    Returns
    -------
    pandas.DataFrame indexed by the weights' ids, columns ``I``, ``EI``, ``VI``, ``z``, ``p``
    (analytic), ``p_sim`` (NaN without permutations), ``quadrant`` (HH/LH/LL/HL/island),
    ``cluster`` (quadrant if significant, else ``ns``), ``n_neighbours``, ``island``.

    ``I`` uses the n − 1 variance divisor (esda, GeoDa, spdep ``mlvar=FALSE``; DESIGN.md). Formulas
    in the module docstring.
    """
    y, matrix, index, transform = _prepare(y, w, transform)
    n = y.shape[0]
    if n < 3:
        raise ValueError("local Moran's I needs at least 3 units")
    if moments not in ("conditional", "total"):
        raise ValueError(f"moments must be 'conditional' or 'total', got {moments!r}")
    permutations = int(permutations)
    if permutations < 0:
        raise ValueError(f"permutations must be ≥ 0, got {permutations}")
    cardinality = np.diff(matrix.indptr)
    island = cardinality == 0
    # binary adjacency: row i's weights are all 1 (B) or all 1 / k_i (R)
    k = cardinality.astype(np.float64)
    if transform == "R":
        row_weight = np.divide(1.0, k, out=np.zeros(n), where=k > 0)
    else:
        row_weight = np.ones(n)
    dev = y - y.mean()
    ss = float(dev @ dev)
    lag = (matrix @ dev) * row_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = dev / (ss / (n - 1))  # I_i = scale_i · lag_i
        local_i = scale * lag
    w_i = k * row_weight
    s1_i = k * row_weight**2
    m2 = ss / n
    with np.errstate(divide="ignore", invalid="ignore"):
        if moments == "conditional":
            ei = -(dev**2) * w_i / ((n - 1) * m2)
            spread = s1_i - w_i**2 / (n - 1)  # 0 when the unit's neighbours are all the other units
            rest = m2 - dev**2 / (n - 1)  # 0 when all the other units have the same value
            vi = (dev / m2) ** 2 * (n / (n - 2)) * spread * rest
            degenerate = (_negligible(spread, s1_i) | _negligible(rest, m2) | _negligible(ss, float(y @ y), rtol=1e-24)
                          | _negligible(dev, np.abs(y).max(), rtol=1e-13))
        else:
            b2 = float((dev**4).sum() / n) / m2**2
            ei = -w_i / (n - 1)
            first = s1_i * (n - b2) / (n - 1)
            second = (w_i**2 - s1_i) * (2 * b2 - n) / ((n - 1) * (n - 2))
            vi = first + second - ei**2
            degenerate = _negligible(vi, np.abs(first) + np.abs(second) + ei**2)
    z, zero_variance = _safe_z(local_i - ei, vi, degenerate)
    z[island] = np.nan
    zero_variance &= ~island
    p = _p_from_z(z, alternative)

    p_sim = np.full(n, np.nan)
    if permutations and ss > 0:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        at_least, at_most = _conditional_permutation_counts(dev, cardinality, scale * row_weight, local_i,
                                                            permutations, rng)
        p_sim = (np.minimum(at_least, at_most) + 1.0) / (permutations + 1.0)
        p_sim[island] = np.nan

    quadrant = np.where(dev > 0, np.where(lag > 0, "HH", "HL"), np.where(lag > 0, "LH", "LL")).astype(object)
    quadrant[island] = "island"
    sig = p_sim if permutations else p
    cluster = np.where(np.isfinite(sig) & (sig <= significance), quadrant, "ns").astype(object)
    cluster[island] = "island"
    return pd.DataFrame(
        {
            "I": local_i, "EI": ei, "VI": vi, "z": z, "p": p, "p_sim": p_sim,
            "quadrant": quadrant, "cluster": cluster,
            "n_neighbours": cardinality.astype(np.int64), "island": island, "zero_variance": zero_variance,
        },
        index=index,
    )


def _repeats(draws: np.ndarray) -> np.ndarray:
    """Which columns of a ``(k, rows)`` integer array hold some value twice."""
    k = draws.shape[0]
    if k <= 16:  # pairwise comparisons of contiguous rows: fast for the usual 4–8 neighbours
        bad = np.zeros(draws.shape[1], dtype=bool)
        for a in range(k):
            for b in range(a + 1, k):
                bad |= draws[a] == draws[b]
        return bad
    ordered = np.sort(draws.T, axis=1)
    return (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)


def _sample_distinct(rng: np.random.Generator, m: int, k: int, rows: int) -> np.ndarray:
    """``rows`` independent uniform draws of ``k`` distinct integers from ``0 … m−1``, as a
    ``(k, rows)`` array (one draw per column).

    Few collisions expected (``k(k−1) ≤ m``): draw with replacement and redraw the columns that
    repeat a value (uniform over distinct tuples, by conditioning). Otherwise: the ``k`` smallest
    of ``m`` uniform keys (a uniform random subset; there ``m < k²``, so the keys stay few).
    """
    if k > m:
        raise ValueError(f"cannot draw {k} distinct values from {m}")
    dtype = np.int32 if m < 2**31 - 1 else np.int64
    if k * (k - 1) <= m:
        out = rng.integers(0, m, size=(k, rows), dtype=dtype)
        if k == 1:
            return out
        todo = np.flatnonzero(_repeats(out))
        while todo.size:
            out[:, todo] = rng.integers(0, m, size=(k, todo.size), dtype=dtype)
            todo = todo[_repeats(out[:, todo])]
        return out
    keys = rng.random((rows, m))
    return np.ascontiguousarray(np.argpartition(keys, k - 1, axis=1)[:, :k].T.astype(dtype))


def _conditional_permutation_counts(dev, cardinality, factor, observed, permutations, rng):
    """For each unit, how many of ``permutations`` conditional draws give a statistic ≥ and ≤ the
    observed one (ties, within rounding, count on both sides).

    The simulated statistic of unit ``i`` is ``factor_i · Σ dev[draw]`` over ``k_i`` values drawn
    without replacement from the other n − 1 units. Units are grouped by ``k``; each group's
    (unit, permutation) rows are drawn in blocks that keep at most ``_MAX_DRAWS`` random numbers
    in memory (vectorised over units and permutations; the only Python loops run over blocks and
    over the ``k`` neighbour slots).
    """
    n = dev.shape[0]
    at_least = np.zeros(n, dtype=np.int64)
    at_most = np.zeros(n, dtype=np.int64)
    biggest = float(np.abs(dev).max())
    with bar(int((cardinality > 0).sum()) * permutations, "permutations", unit="draws") as progress:
        for k in np.unique(cardinality[cardinality > 0]):
            k = int(k)
            units = np.flatnonzero(cardinality == k)
            # rounding allowance: a sum of k terms of size ≤ max|dev|, computed in two different orders
            tolerance = 1e-12 * k * biggest * np.abs(factor)
            per_row = k if k * (k - 1) <= n - 1 else n - 1  # random numbers per row (see _sample_distinct)
            block = max(1, _MAX_DRAWS // per_row)
            total = units.size * permutations
            for start in range(0, total, block):
                unit = units[np.arange(start, min(start + block, total)) // permutations]
                draws = _sample_distinct(rng, n - 1, k, unit.size)
                draws += draws >= unit  # index among the others → index among all units
                sums = dev[draws[0]]
                for slot in range(1, k):
                    sums += dev[draws[slot]]
                difference = factor[unit] * sums - observed[unit]
                at_least += np.bincount(unit[difference >= -tolerance[unit]], minlength=n)
                at_most += np.bincount(unit[difference <= tolerance[unit]], minlength=n)
                progress.update(unit.size)
    return at_least, at_most
