"""Crime concentration at place: Lorenz curve, Gini, generalised Gini, top-x % share.

All functions take one array of counts (incidents per unit, ≥ 0; zeros included — a unit with no
incident is a unit, and leaving it out changes every figure here) and sort internally.

Formulas (n units, N = Σ counts incidents, ``x_(1) ≤ … ≤ x_(n)`` the counts sorted ascending)
------------------------------------------------------------------------------------------------
Lorenz curve: the points ``(i/n, Σ_{j≤i} x_(j) / N)`` for i = 0 … n, from (0, 0) to (1, 1).

Gini (the usual "biased" sample Gini, = 1 − 2·area under the piecewise-linear Lorenz curve;
R ``DescTools::Gini(x, unbiased = FALSE)``, ``ineq::Gini``)::

    G = Σ_i (2i − n − 1) x_(i) / (n N)

Its maximum (all incidents in one unit) is ``1 − 1/n``.

Generalised Gini (Bernasco & Steenbeek 2017). When there are fewer incidents than units
(N < n) even the most even spread possible — N units with one incident each — leaves
``n − N`` units empty, so G cannot fall below ``1 − N/n``. They compare the Lorenz curve not with
the diagonal but with the *line of maximal equality*, which runs along the x axis from (0, 0) to
(1 − N/n, 0) and then straight to (1, 1). The generalised Gini is the area between that line and
the Lorenz curve, as a share of the area under that line (N/(2n))::

    G' = 1 − max(1, n/N) · (1 − G)          (= G when N ≥ n)

(R ``lorenzgini::gini(x, generalized = TRUE, unbiased = FALSE)``). G' = 0 when the
N incidents fall in N different units. Like G it does not reach 1 when all incidents are in one
unit: then G' = 1 − 1/N for N < n (their footnote 3). ``unbiased=True`` applies the small-sample
correction of the lorenzgini package (Steenbeek & Bernasco 2018), multiplying G' by
``m/(m − 1)`` with ``m = min(n, N)``, so that "all in one unit" gives exactly 1.

Top share: the share of incidents in the ``k = ceil(fraction · n)`` units with the most incidents
(at least one unit). Ties at the cut do not matter — any choice among tied units gives the same
sum — and ``fraction · n`` is rounded to 9 decimals before the ceiling so that 0.1 · 30 is 3
units, not 4.

Sources: Bernasco, W. & Steenbeek, W. (2017) More places than crimes: implications for
evaluating the law of crime concentration at place. Journal of Quantitative Criminology 33(3),
451–467. doi:10.1007/s10940-016-9324-7. Steenbeek, W. & Bernasco, W. (2018) lorenzgini:
generalized Gini for sparse data situations, R package 0.1.2. Weisburd, D. (2015) The law of
crime concentration and the criminology of place. Criminology 53(2), 133–157 (top-x % shares).
"""

from __future__ import annotations

import numpy as np

from usm_geo.errors import UsmGeoError

__all__ = ["generalised_gini", "gini", "lorenz", "maximal_equality_line", "top_share"]


def _counts(counts) -> np.ndarray:
    x = np.ravel(np.asarray(counts, dtype=float))
    if x.size == 0:
        raise UsmGeoError("no units to measure concentration over", fix="pass one count per unit, zeros included")
    if not np.all(np.isfinite(x)):
        raise UsmGeoError("counts contain NaN or infinite values",
                          fix="fill units without incidents with 0 and drop units without data first")
    if np.any(x < 0):
        raise UsmGeoError("counts contain negative values", fix="concentration needs counts of 0 or more")
    return np.sort(x)


def lorenz(counts) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve of incidents over units (units sorted by ascending count).

    Returns
    -------
    (cum_share_units, cum_share_incidents) : two arrays of length n + 1, both from 0 to 1:
        ``i/n`` and ``Σ_{j≤i} x_(j) / N``. With no incidents at all the second array is NaN.
    """
    x = _counts(counts)
    n = x.size
    cum = np.concatenate([[0.0], np.cumsum(x)])
    total = cum[-1]
    share = cum / total if total > 0 else np.full(n + 1, np.nan)
    return np.arange(n + 1) / n, share


def maximal_equality_line(n_units: int, n_incidents: float) -> tuple[np.ndarray, np.ndarray]:
    """Bernasco & Steenbeek's line of maximal equality, as points (x, y) for plotting with
    :func:`lorenz`: (0, 0) → (1 − N/n, 0) → (1, 1) when N < n, else the diagonal (0, 0) → (1, 1)."""
    if n_units <= 0 or n_incidents <= 0:
        raise UsmGeoError("the line of maximal equality needs at least one unit and one incident")
    if n_incidents < n_units:
        return np.array([0.0, 1.0 - n_incidents / n_units, 1.0]), np.array([0.0, 0.0, 1.0])
    return np.array([0.0, 1.0]), np.array([0.0, 1.0])


def gini(counts) -> float:
    """Gini coefficient ``G = Σ (2i − n − 1) x_(i) / (n N)`` (dimensionless, 0 … 1 − 1/n).

    NaN when there are no incidents (N = 0)."""
    x = _counts(counts)
    n = x.size
    total = x.sum()
    if total <= 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=float)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def generalised_gini(counts, unbiased: bool = False) -> float:
    """Bernasco & Steenbeek's (2017) generalised Gini ``G' = 1 − max(1, n/N)(1 − G)``.

    Equals :func:`gini` when there are at least as many incidents as units. ``unbiased=True``
    multiplies by ``m/(m − 1)``, ``m = min(n, N)`` (lorenzgini's ``unbiased = TRUE``; NaN when
    m ≤ 1). NaN when there are no incidents.
    """
    x = _counts(counts)
    n = x.size
    total = x.sum()
    if total <= 0:
        return float("nan")
    g = gini(x)
    value = 1.0 - max(1.0, n / total) * (1.0 - g)
    if unbiased:
        m = min(n, total)
        value = value * m / (m - 1) if m > 1 else float("nan")
    return float(value)


def top_share(counts, fraction=(0.05, 0.10)):
    """Share of incidents in the top ``fraction`` of units (by count).

    Parameters
    ----------
    counts : array_like
        Incidents per unit, zeros included.
    fraction : float or sequence of floats in (0, 1]
        Fraction(s) of units; ``k = ceil(fraction · n)`` units are taken (at least 1).

    Returns
    -------
    float (scalar ``fraction``) or array: the share (0 … 1) of all incidents in those k units;
    NaN when there are no incidents.
    """
    x = _counts(counts)[::-1]
    n = x.size
    f = np.asarray(fraction, dtype=float)
    if np.any(~(f > 0)) or np.any(f > 1):
        raise UsmGeoError(f"fraction {fraction!r} is not in (0, 1]", fix="use e.g. 0.05 for the top 5 % of units")
    k = np.maximum(1, np.ceil(np.round(f * n, 9))).astype(np.int64)
    cum = np.cumsum(x)
    total = cum[-1]
    share = cum[k - 1] / total if total > 0 else np.full(f.shape, np.nan)
    return float(share) if np.ndim(share) == 0 else share
