"""Global spatial autocorrelation: Moran's I and Getis–Ord General G.

Arrays in, a small frozen dataclass out. Names follow esda (``I``, ``EI``, ``VI_norm``,
``z_norm``, …; ``G``, ``EG``, ``VG``); every result also has ``z`` and ``p`` (normality
assumption) like the local statistics. Nothing here reads or writes files.

Notation: ``n`` units, weights ``w_ij`` (no self-weights),
``S0 = Σ_ij w_ij``, ``S1 = ½ Σ_ij (w_ij + w_ji)²``, ``S2 = Σ_i (w_i· + w_·i)²``.

Moran's I (Moran 1950; moments from Cliff & Ord 1981, ch. 2)::

    z = x − x̄,   I = (n / S0) · Σ_ij w_ij z_i z_j / Σ z_i²,   E[I] = −1 / (n − 1)
    Var_norm[I] = (n² S1 − n S2 + 3 S0²) / ((n² − 1) S0²) − E[I]²
    b2 = n Σ z⁴ / (Σ z²)²                                     (sample kurtosis)
    Var_rand[I] = (n ((n² − 3n + 3) S1 − n S2 + 3 S0²) − b2 ((n² − n) S1 − 2n S2 + 6 S0²))
                  / ((n − 1)(n − 2)(n − 3) S0²) − E[I]²

as esda ``Moran`` and R spdep ``moran.test`` (``randomisation=FALSE/TRUE``).

General G (Getis & Ord 1992), binary weights, values ≥ 0::

    G = Σ_{i≠j} w_ij x_i x_j / Σ_{i≠j} x_i x_j,   E[G] = S0 / (n (n − 1))
    E[G²] = (B0 m2² + B1 m4 + B2 m1² m2 + B3 m1 m3 + B4 m1⁴) / ((m1² − m2)² n (n−1)(n−2)(n−3))

with ``m_k = Σ x^k`` and Getis & Ord's B0…B4 (functions of n, S0, S1, S2), ``Var[G] = E[G²] − E[G]²``;
as esda ``G`` and spdep ``globalG.test``.

p-values are two-sided by default (``alternative="greater"`` for clustering of high values /
positive autocorrelation, ``"less"`` for the opposite).

Sources: Moran, P.A.P. (1950) Biometrika 37, 17–23. Cliff, A.D. & Ord, J.K. (1981) Spatial
Processes: Models and Applications, Pion. Getis, A. & Ord, J.K. (1992) Geographical Analysis 24(3),
189–206.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from usm_geo.hotspots.local import _p_from_z
from usm_geo.units.weights import binary_and_ids, row_standardise

__all__ = ["GeneralG", "Moran", "getis_ord_global", "moran"]


@dataclass(frozen=True)
class Moran:
    """Global Moran's I and its inference under normality (``_norm``) and randomisation (``_rand``)."""

    I: float
    EI: float
    VI_norm: float
    z_norm: float
    p_norm: float
    VI_rand: float
    z_rand: float
    p_rand: float
    n: int
    S0: float
    transform: str
    alternative: str

    @property
    def z(self) -> float:
        """``z_norm`` (as esda's headline z)."""
        return self.z_norm

    @property
    def p(self) -> float:
        """``p_norm``."""
        return self.p_norm


@dataclass(frozen=True)
class GeneralG:
    """Getis–Ord General G (binary weights) and its inference under normality."""

    G: float
    EG: float
    VG: float
    z_norm: float
    p_norm: float
    n: int
    S0: float
    alternative: str

    @property
    def z(self) -> float:
        return self.z_norm

    @property
    def p(self) -> float:
        return self.p_norm


def _prepare(y, w):
    matrix, _ = binary_and_ids(w)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = matrix.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} values but the weights have {n} units")
    if not np.isfinite(y).all():
        raise ValueError(f"y has {int((~np.isfinite(y)).sum())} missing or infinite value(s)")
    if n < 3:
        raise ValueError("global statistics need at least 3 units")
    return y, matrix


def _s012(weights: sp.csr_array) -> tuple[float, float, float]:
    weights = sp.csr_array(weights)
    s0 = float(weights.sum())
    sym = sp.csr_array(weights + weights.T)
    s1 = 0.5 * float((sym.data**2).sum())
    s2 = float(((np.asarray(weights.sum(axis=1)).ravel() + np.asarray(weights.sum(axis=0)).ravel()) ** 2).sum())
    return s0, s1, s2


def _scalar_p(z: float, alternative: str) -> float:
    return float(_p_from_z(np.array([z]), alternative)[0])


def moran(y, w, transform: str = "R", alternative: str = "two-sided") -> Moran:
    """Global Moran's I.

    Needs ≥ 3 units; with exactly 3 the randomisation variance is undefined (NaN).

    Parameters
    ----------
    y : array-like, length n (no missing values)
    w : Weights, libpysal W/Graph or square sparse matrix (used as binary, diagonal ignored)
    transform : {"R", "B"}
        Row-standardised (default, as esda and spdep style "W") or binary weights. Islands keep
        all-zero rows (so ``S0 < n`` under "R", as in esda and spdep with ``zero.policy=TRUE``).
    alternative : {"two-sided", "greater", "less"}

    Returns
    -------
    :class:`Moran` — ``I, EI, VI_norm, z_norm, p_norm, VI_rand, z_rand, p_rand``; formulas in the
    module docstring. Matches esda 2.9 ``Moran`` and spdep ``moran.test`` to ~1e-12.
    """
    y, matrix = _prepare(y, w)
    transform = str(transform).upper()
    if transform not in ("B", "R"):
        raise ValueError(f"transform must be 'B' or 'R', got {transform!r}")
    weights = row_standardise(matrix) if transform == "R" else matrix
    n = y.shape[0]
    z = y - y.mean()
    zz = float(z @ z)
    s0, s1, s2 = _s012(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = n / s0 * float(z @ (weights @ z)) / zz if s0 > 0 and zz > 0 else np.nan
        ei = -1.0 / (n - 1)
        vi_norm = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n - 1) * (n + 1) * s0 * s0) - ei * ei
        b2 = (float((z**4).sum()) / n) / (zz / n) ** 2 if zz > 0 else np.nan
        a = n * ((n * n - 3 * n + 3) * s1 - n * s2 + 3 * s0 * s0)
        b = b2 * ((n * n - n) * s1 - 2 * n * s2 + 6 * s0 * s0)
        vi_rand = (a - b) / ((n - 1) * (n - 2) * (n - 3) * s0 * s0) - ei * ei if n > 3 else np.nan
        z_norm = (value - ei) / np.sqrt(vi_norm) if vi_norm > 0 else np.nan
        z_rand = (value - ei) / np.sqrt(vi_rand) if vi_rand > 0 else np.nan
    return Moran(
        I=float(value), EI=ei, VI_norm=float(vi_norm), z_norm=float(z_norm), p_norm=_scalar_p(z_norm, alternative),
        VI_rand=float(vi_rand), z_rand=float(z_rand), p_rand=_scalar_p(z_rand, alternative),
        n=n, S0=s0, transform=transform, alternative=alternative,
    )


def getis_ord_global(y, w, alternative: str = "two-sided") -> GeneralG:
    """Getis–Ord General G on binary weights (Getis & Ord 1992).

    ``y`` should be non-negative (counts, rates); ≥ 4 units for a variance (3 give NaN). Returns :class:`GeneralG` — ``G, EG, VG, z_norm,
    p_norm`` (also ``z``, ``p``); formulas in the module docstring. Matches esda 2.9 ``G`` and spdep
    ``globalG.test`` to ~1e-12.
    """
    y, weights = _prepare(y, w)
    n = y.shape[0]
    s0, s1, s2 = _s012(weights)
    m1, m2, m3, m4 = (float((y**k).sum()) for k in (1, 2, 3, 4))
    den = m1 * m1 - m2  # Σ_{i≠j} x_i x_j
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(y @ (weights @ y)) / den
        eg = s0 / (n * (n - 1))
        n2, s02 = n * n, s0 * s0
        b0 = (n2 - 3 * n + 3) * s1 - n * s2 + 3 * s02
        b1 = -((n2 - n) * s1 - 2 * n * s2 + 6 * s02)
        b2 = -(2 * n * s1 - (n + 3) * s2 + 6 * s02)
        b3 = 4 * (n - 1) * s1 - 2 * (n + 1) * s2 + 8 * s02
        b4 = s1 - s2 + s02
        eg2 = (b0 * m2 * m2 + b1 * m4 + b2 * m1 * m1 * m2 + b3 * m1 * m3 + b4 * m1**4) / (
            den * den * n * (n - 1) * (n - 2) * (n - 3)
        ) if n > 3 else np.nan
        vg = eg2 - eg * eg
        z_norm = (value - eg) / np.sqrt(vg) if vg > 0 else np.nan
    return GeneralG(G=value, EG=eg, VG=float(vg), z_norm=float(z_norm), p_norm=_scalar_p(z_norm, alternative),
                    n=n, S0=s0, alternative=alternative)
