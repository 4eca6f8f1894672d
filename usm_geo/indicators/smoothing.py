"""Empirical Bayes smoothed rates, reported beside the raw rates.

Small areas with few people have very noisy crude rates. Empirical Bayes (EB) shrinks each
unit's rate towards a prior mean, the more so the smaller its population. Both estimators here
are Marshall's (1991) method-of-moments EB, as in GeoDa and PySAL/esda.

Notation (unit i, events ``e_i``, population ``p_i``, crude rate ``r_i = e_i / p_i``; rates are
events per person, multiplied by ``per`` on output).

Global (Marshall 1991; esda ``Empirical_Bayes``)::

    b   = Σ e / Σ p                               prior mean (the overall rate)
    s²  = Σ p_i (r_i − b)² / Σ p                  population-weighted variance of the rates
    a   = s² − b / (Σ p / n)                      prior variance; clamped at 0 when negative
    w_i = a / (a + b / p_i)                       shrinkage weight of the unit's own rate
    smoothed_i = w_i r_i + (1 − w_i) b

When ``a`` comes out negative the observed rates vary less than Poisson noise alone would make
them; ``a`` is clamped to 0, every ``w_i = 0`` and every unit gets the prior mean ``b`` (flag
``prior_variance_zero``). Note: esda 2.9's ``Empirical_Bayes`` does *not* clamp the global ``a``
(its spatial version does); for ``a ≥ 0`` the two agree.

Spatial (Marshall 1991 local prior; esda ``Spatial_Empirical_Bayes``): the same formulas with the
sums taken over the set ``J_i`` = unit i and its neighbours (binary contiguity), and ``n_i = |J_i|``::

    b_i = Σ_J e_j / Σ_J p_j
    s²_i = Σ_J p_j (r_j − b_i)² / Σ_J p_j
    a_i = max(0, s²_i − b_i / (Σ_J p_j / n_i))
    smoothed_i = b_i + (r_i − b_i) · a_i / (a_i + b_i / p_i)

Units with population 0 (or NaN, or a NaN count) have no rate: they are left out of every prior
(their events and people are not counted, and they do not count in ``n``), their ``raw`` and
``value`` are NaN and they carry the flag ``no_denominator``; no division warning is raised.

Sources: Marshall, R.J. (1991) Mapping disease and mortality rates using empirical Bayes
estimators. Applied Statistics 40(2), 283–294. Anselin, L., Lozano, N. & Koschinsky, J. (2006)
Rate transformations and smoothing. GeoDa Center technical report. Rey, S. & Anselin, L. (2007)
PySAL, esda.smoothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.rates import join_flags

__all__ = ["eb_global", "eb_spatial"]


def _inputs(count, population):
    e = np.ravel(np.asarray(count, dtype=float))
    p = np.ravel(np.asarray(population, dtype=float))
    if e.shape != p.shape:
        raise UsmGeoError(f"count has {e.size} values but population has {p.size}",
                          fix="pass one population per count, in the same unit order")
    with np.errstate(invalid="ignore"):
        if np.any(e < 0) or np.any(p < 0):
            raise UsmGeoError("counts and populations must be 0 or more",
                              fix="check the input columns for negative values")
    valid = np.isfinite(e) & np.isfinite(p) & (p > 0)
    e0 = np.where(valid, e, 0.0)
    p0 = np.where(valid, p, 0.0)
    raw = np.divide(e0, p0, out=np.full(e.shape, np.nan), where=valid)
    return e0, p0, raw, valid


def _shrink(raw, prior, a, p0, valid):
    """w = a / (a + b/p) and the smoothed rate; w = 0 where a + b/p = 0 (no events in the prior)."""
    ok = valid & np.isfinite(prior)
    noise = np.divide(prior, p0, out=np.full(raw.shape, np.nan), where=ok)
    denom = a + noise
    w = np.divide(a, denom, out=np.zeros(raw.shape), where=ok & (denom > 0))
    w = np.where(ok, w, np.nan)
    return w, np.where(ok, w * raw + (1 - w) * prior, np.nan)


def _frame(raw, value, w, prior, per, flags) -> pd.DataFrame:
    return pd.DataFrame({"raw": raw * per, "value": value * per, "weight": w, "prior": prior * per, "flags": flags})


def eb_global(count, population, per: float = 1.0) -> pd.DataFrame:
    """Global empirical Bayes smoothed rates (Marshall 1991, method of moments).

    Parameters
    ----------
    count : array_like
        Events per unit (≥ 0).
    population : array_like
        People at risk per unit (≥ 0), same order.
    per : float
        Multiplier of every rate in the output (1 = events per person, as esda; 1000 = per 1,000).

    Returns
    -------
    DataFrame, one row per unit:
        ``raw``    crude rate ``e/p · per``;
        ``value``  EB smoothed rate ``· per``;
        ``weight`` shrinkage weight ``w_i`` of the unit's own rate (0 = fully the prior);
        ``prior``  prior mean ``b · per`` (the same for every unit);
        ``flags``  ``no_denominator`` (population 0/NaN), ``prior_variance_zero`` (a clamped at 0).
    """
    e0, p0, raw, valid = _inputs(count, population)
    n = int(valid.sum())
    flags_nd = ("no_denominator", ~valid)
    if n == 0:
        nan = np.full(raw.shape, np.nan)
        return _frame(raw, nan, nan, nan, per, join_flags(flags_nd))
    p_sum = p0.sum()
    b = e0.sum() / p_sum
    dev = np.where(valid, raw - b, 0.0)
    s2 = (p0 * dev * dev).sum() / p_sum
    a = s2 - b / (p_sum / n)
    clamped = a <= 0
    a = max(a, 0.0)
    prior = np.full(raw.shape, b)
    w, value = _shrink(raw, prior, a, p0, valid)
    flags = join_flags(flags_nd, ("prior_variance_zero", valid & clamped))
    return _frame(raw, value, w, prior, per, flags)


def _neighbours_with_self(weights, n: int) -> sparse.csr_matrix:
    """Binary CSR ``W + I``: any non-zero weight is a neighbour; the diagonal is set to 1."""
    from scipy import sparse  # imported here: `usm-geo aggregate` reaches this module but never smooths

    try:
        w = sparse.csr_matrix(weights, dtype=float)
    except (TypeError, ValueError) as exc:
        raise UsmGeoError(f"weights could not be read as a sparse matrix ({exc})",
                          fix="pass a scipy.sparse CSR adjacency matrix, e.g. libpysal W.sparse") from None
    if w.shape != (n, n):
        raise UsmGeoError(f"weights are {w.shape[0]}×{w.shape[1]} but there are {n} units",
                          fix="build the weights for the same units, in the same order, as the counts")
    w.data = (w.data != 0).astype(float)
    w.setdiag(0.0)
    w = w + sparse.identity(n, format="csr")
    w.eliminate_zeros()
    w.sort_indices()
    return w


def eb_spatial(count, population, weights, per: float = 1.0) -> pd.DataFrame:
    """Spatial empirical Bayes smoothed rates: a local prior from each unit and its neighbours.

    Parameters
    ----------
    count, population : array_like
        Events and people at risk per unit (≥ 0).
    weights : scipy.sparse matrix (n × n)
        Adjacency between the units, in the same order: non-zero = neighbour (values are
        binarised, the diagonal is ignored; the unit itself is always added to its own prior).
        E.g. ``libpysal.weights.Queen.from_dataframe(gdf).sparse``.
    per : float
        Multiplier of every rate in the output.

    Returns
    -------
    DataFrame with ``raw, value, weight, prior, flags`` as :func:`eb_global`, where ``prior`` is
    the local prior mean ``b_i``. Flags: ``no_denominator``, ``prior_variance_zero`` (a_i clamped
    at 0, the unit gets its local prior mean), ``no_neighbours`` (an island: its prior is its own
    rate, so its smoothed rate equals its raw rate).

    Computed with sparse products and one ``bincount`` over the non-zeros of W + I (no loop over
    units).
    """
    e0, p0, raw, valid = _inputs(count, population)
    n = e0.size
    a_mat = _neighbours_with_self(weights, n)
    e_loc = a_mat @ e0
    p_loc = a_mat @ p0
    n_loc = a_mat @ valid.astype(float)
    has_prior = p_loc > 0
    prior = np.divide(e_loc, p_loc, out=np.full(n, np.nan), where=has_prior)
    rows = np.repeat(np.arange(n), np.diff(a_mat.indptr))
    cols = a_mat.indices
    r_j = np.where(valid, raw, 0.0)[cols]
    dev = np.where(valid[cols], r_j - np.nan_to_num(prior)[rows], 0.0)
    s2_num = np.bincount(rows, weights=p0[cols] * dev * dev, minlength=n)
    s2 = np.divide(s2_num, p_loc, out=np.full(n, np.nan), where=has_prior)
    mean_p = np.divide(p_loc, n_loc, out=np.full(n, np.nan), where=has_prior)
    a = s2 - np.divide(prior, mean_p, out=np.full(n, np.nan), where=has_prior)
    clamped = has_prior & (a <= 0)
    a = np.where(has_prior, np.maximum(a, 0.0), np.nan)
    w, value = _shrink(raw, prior, a, p0, valid)
    n_neigh = np.diff(a_mat.indptr) - 1
    flags = join_flags(("no_denominator", ~valid), ("prior_variance_zero", valid & clamped),
                       ("no_neighbours", n_neigh == 0))
    return _frame(raw, value, w, prior, per, flags)
