"""Hot spot analysis of one layer in one step: weights, Gi* with FDR, local Moran's I, global
Moran's I and Getis–Ord G — with every automatic choice reported (sfhotspot's style).

Used by ``usm-geo hotspots`` (any polygon layer with a value column, like ArcGIS's Hot Spot
Analysis on a feature class, or counts of points on an H3 or square grid) and by ``run`` for
``hotspots.gpkg``.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from usm_geo.errors import CRSError, UsmGeoError
from usm_geo.units import weights as wts
from usm_geo.hotspots.fdr import benjamini_hochberg, significance_rule, significant
from usm_geo.hotspots.global_stats import getis_ord_global, moran
from usm_geo.hotspots.local import getis_ord, gistar_bin, local_moran

COLUMNS = ["gistar_z", "gistar_p", "gistar_p_fdr", "gistar_bin", "lisa_i", "lisa_z", "lisa_p_sim", "lisa_quadrant",
           "n_neighbours"]
# added after COLUMNS (new in issue #19): the BH-adjusted LISA p, the Moran scatterplot quadrant of every
# unit whatever its significance (internal), why a unit has no test, the value analysed and the rule
EXTRA_COLUMNS = ["lisa_p_fdr", "lisa_scatter_quadrant", "flags", "hotspot_value", "significance"]
MIN_UNITS = 30  # ArcGIS warns below 30 features: local statistics on fewer units mean little
NOT_SIGNIFICANT = "not_significant"

def parse_weights(spec: str) -> tuple[str, float | None]:
    """``queen``, ``rook``, ``knn:K``, ``distance`` or ``distance:METRES``, ``h3`` → (kind, parameter)."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind in ("queen", "rook", "h3") and not arg:
        return kind, None
    if kind == "knn":
        try:
            k = int(arg)
        except ValueError:
            k = 0
        if k < 1:
            raise UsmGeoError(f"'{spec}' needs a whole number of neighbours", where="--weights", fix="e.g. knn:8")
        return kind, float(k)
    if kind == "distance":
        if not arg:
            return kind, None
        try:
            d = float(arg)
        except ValueError:
            d = -1.0
        if d <= 0:
            raise UsmGeoError(f"'{spec}' needs a distance in metres", where="--weights", fix="e.g. distance:500, or distance for the smallest band that gives every unit a neighbour")
        return kind, d
    raise UsmGeoError(f"unknown weights '{spec}'", where="--weights", fix="use queen, rook, knn:K, distance[:METRES] or h3")


def build_weights(layer: gpd.GeoDataFrame, spec: str, cells=None) -> wts.Weights:
    """Spatial weights for a layer. Distance bands need a projected CRS (metres); contiguity and
    k nearest neighbours work without a CRS (the report says so)."""
    kind, arg = parse_weights(spec)
    ids = layer["unit_id"].to_numpy() if "unit_id" in layer else None
    if kind == "queen":
        w = wts.queen(layer, ids=ids)
    elif kind == "rook":
        w = wts.rook(layer, ids=ids)
    elif kind == "h3":
        if cells is None:
            raise UsmGeoError("h3 weights need an H3 grid", where="--weights", fix="use --grid h3:RES, or queen weights")
        w = wts.h3_rings(cells, k=1, ids=ids)
    else:
        if kind == "distance" and (layer.crs is None or not layer.crs.is_projected):
            raise CRSError("distance-band weights need a projected CRS in metres, and the layer has "
                           + ("none" if layer.crs is None else f"{layer.crs.name}"),
                           fix="use queen, rook or knn:K weights, or reproject the layer")
        centre = shapely.centroid(layer.geometry.to_numpy())
        x, y = shapely.get_x(centre), shapely.get_y(centre)
        w = wts.distance_band(x, y, arg, ids=ids) if kind == "distance" else wts.knn(x, y, int(arg), ids=ids)
    if layer.crs is None:
        w.report["crs"] = "none: the layer has no CRS (fine for contiguity and k nearest neighbours)"
    return w


def hotspot_layer(layer: gpd.GeoDataFrame, y, *, weights: str = "queen", transform: str = "B", permutations: int = 999,
                  seed: int = 0, cells=None, fdr: bool = True, alpha: float = 0.05, min_units: int = MIN_UNITS,
                  value: str = "count") -> tuple[gpd.GeoDataFrame, dict, dict]:
    """Add Gi* and local Moran columns (:data:`COLUMNS` + :data:`EXTRA_COLUMNS`) to ``layer`` for ``y``.

    Returns (layer with the columns, global statistics, report of automatic choices).

    One significance rule for Gi* and LISA (:func:`usm_geo.hotspots.fdr.significant`): Benjamini–Hochberg
    FDR over the units with a test when ``fdr`` (default), raw p otherwise, significant where ``< alpha``.
    ``gistar_bin`` is ArcGIS's class (±3/±2/±1 at p < 0.01/0.05/0.10) of that p; ``lisa_quadrant`` is
    HH/LL/HL/LH only where the permutation p (``p_sim``; the analytic p when ``permutations = 0``) is
    significant under the rule, ``not_significant`` elsewhere (``island`` for units without neighbours).
    Gi* z is the same for binary and row-standardised weights (spdep/ArcGIS convention).

    Layers with fewer than ``min_units`` units, or whose weights give no unit a neighbour, are not
    analysed: every statistic is NaN, ``gistar_bin`` 0, ``lisa_quadrant`` ``not_significant``, flag
    ``too_few_units`` or ``islands_only``, and ``report["refused"]`` says why. ``value`` names what ``y``
    is (``count``, ``rate``, ``eb_rate``) and is written to ``hotspot_value``.
    """
    y = np.asarray(y, dtype=float)
    if np.isnan(y).any():
        bad = np.flatnonzero(np.isnan(y))[:5] + 1
        raise UsmGeoError(f"{int(np.isnan(y).sum())} unit(s) have no value (rows {', '.join(map(str, bad))}…)",
                          fix="fill or drop them before a hot spot analysis")
    if np.isinf(y).any():
        bad = np.flatnonzero(np.isinf(y))[:5] + 1
        raise UsmGeoError(f"{int(np.isinf(y).sum())} unit(s) have an infinite value (rows {', '.join(map(str, bad))}…)",
                          fix="fill or drop them before a hot spot analysis")
    if len(y) < 3:
        raise UsmGeoError(f"a hot spot analysis needs at least 3 units, not {len(y)}")
    if int(min_units) < 3:
        raise UsmGeoError(f"min_units must be at least 3, not {min_units}", where="[hotspots] min_units", fix="e.g. min_units = 30")
    rule = significance_rule(fdr, alpha)
    report = {"weights": weights, "transform": transform, "permutations": permutations, "seed": seed,
              "multiple_testing": ("Benjamini-Hochberg FDR" if fdr else "none (raw p-values)") + " for gistar_bin and lisa_quadrant",
              "significance": rule, "value": value, "min_units": int(min_units)}
    if len(y) < min_units:
        report["refused"] = (f"too_few_units: {len(y)} units, fewer than min_units = {min_units}; local statistics on so "
                             "few units mean little (set [hotspots] min_units to override)")
        return _refused(layer, "too_few_units", value, rule), {}, _plain(report)
    # Gi*, local and global Moran's I and Getis-Ord G do not change when y is multiplied by a constant;
    # scaling by a power of two is exact in floating point and keeps squares and fourth powers of huge
    # values (1e300) from overflowing
    top = float(np.abs(y).max())
    if top > 0:
        y = np.ldexp(y, -int(np.frexp(top)[1]))
    w = build_weights(layer, weights, cells)
    report.update({f"weights_{k}": v for k, v in w.report.items()})
    n_neighbours = np.asarray(w.sparse.sum(axis=1)).ravel()
    if not (n_neighbours > 0).any():
        report["refused"] = f"islands_only: no unit has a neighbour under {weights} weights (choose knn:K or distance weights)"
        return _refused(layer, "islands_only", value, rule), {}, _plain(report)
    g = getis_ord(y, w, star=True, transform=transform)
    lisa = local_moran(y, w, permutations=permutations, seed=seed, transform="R")
    g_used, g_sig = significant(g["p"].to_numpy(), fdr=fdr, alpha=alpha)
    lisa_p = lisa["p_sim"].to_numpy() if permutations else lisa["p"].to_numpy()
    _, lisa_sig = significant(lisa_p, fdr=fdr, alpha=alpha)
    scatter = lisa["quadrant"].astype(str).to_numpy()
    quadrant = np.where(lisa_sig, scatter, NOT_SIGNIFICANT).astype(object)
    quadrant[scatter == "island"] = "island"
    out = layer.copy()
    out["gistar_z"] = g["z"].to_numpy()
    out["gistar_p"] = g["p"].to_numpy()
    out["gistar_p_fdr"] = benjamini_hochberg(g["p"].to_numpy())
    out["gistar_bin"] = gistar_bin(g["z"].to_numpy(), g_used, adjust=None).astype(np.int64)
    out["lisa_i"] = lisa["I"].to_numpy()
    out["lisa_z"] = lisa["z"].to_numpy()
    out["lisa_p_sim"] = lisa["p_sim"].to_numpy()
    out["lisa_quadrant"] = quadrant
    out["n_neighbours"] = n_neighbours.astype(np.int64)
    out["lisa_p_fdr"] = benjamini_hochberg(lisa_p)
    out["lisa_scatter_quadrant"] = scatter
    out["flags"] = _unit_flags(g["island"].to_numpy(), g["zero_variance"].to_numpy(), lisa["zero_variance"].to_numpy())
    out["hotspot_value"] = value
    out["significance"] = rule
    mi = moran(y, w, transform="R")
    globals_ = {"moran": {"I": mi.I, "EI": mi.EI, "z_norm": mi.z_norm, "p_norm": mi.p_norm, "z_rand": mi.z_rand, "p_rand": mi.p_rand}}
    if (y >= 0).all() and y.sum() > 0:
        gg = getis_ord_global(y, w)
        globals_["getis_ord_g"] = {"G": gg.G, "EG": gg.EG, "z": gg.z_norm, "p": gg.p_norm}
    report["significant_units"] = {"gistar": int(g_sig.sum()), "lisa": int(lisa_sig.sum())}
    return out, _plain(globals_), _plain(report)


def hotspot_value(count, population, *, kind: str, choice: str = "auto", per: float = 1000.0
                  ) -> tuple[np.ndarray, str, str]:
    """The values a level's local statistics run on: (values, ``count``/``rate``/``eb_rate``, why).

    ``rate`` = count / population · ``per``; ``eb_rate`` = the global empirical Bayes smoothed rate
    (Marshall 1991, :func:`usm_geo.indicators.smoothing.eb_global`), which keeps small populations'
    noisy rates from making hot spots. Rates need a polygon level (``kind``) with a population > 0 for
    every unit; otherwise counts are used and the reason says so. ``choice = "auto"``: ``eb_rate`` where
    the largest population is more than twice the smallest (counts then mostly map population), else
    ``count``.
    """
    from usm_geo.indicators.smoothing import eb_global

    count = np.asarray(count, dtype=float)
    if choice == "count":
        return count, "count", "[hotspots] value = count"
    pop = None if population is None else np.asarray(population, dtype=float)
    if kind != "polygon":
        return count, "count", f"counts: rates are for polygon levels, this is an {kind} level"
    if pop is None or pop.shape != count.shape or not (np.isfinite(pop) & (pop > 0)).all():
        return count, "count", "counts: not every unit has a population > 0"
    spread = float(pop.max() / pop.min())
    if choice == "auto":
        if spread <= 2.0:
            return count, "count", f"counts: populations vary {spread:.1f}× (≤ 2×)"
        choice, why = "eb_rate", f"EB-smoothed rates per {per:g}: populations vary {spread:.1f}× (> 2×)"
    else:
        why = f"[hotspots] value = {choice}"
    if choice == "rate":
        return count / pop * per, "rate", why
    return eb_global(count, pop, per=per)["value"].to_numpy(), "eb_rate", why


def _unit_flags(island, gistar_zero, lisa_zero) -> np.ndarray:
    """Why a unit has no z: ``island``; ``zero_variance`` (``gistar`` / ``lisa``: the statistic cannot vary)."""
    parts = [np.where(island, "island", ""), np.where(gistar_zero, "gistar_zero_variance", ""),
             np.where(lisa_zero, "lisa_zero_variance", "")]
    joined = pd.Series(parts[0]).str.cat([pd.Series(p) for p in parts[1:]], sep=";")
    return joined.str.replace(r";{2,}", ";", regex=True).str.strip(";").to_numpy(dtype=object)


def _refused(layer: gpd.GeoDataFrame, flag: str, value: str, rule: str) -> gpd.GeoDataFrame:
    """The layer with every local statistic missing (no test was run) and ``flag`` on every unit."""
    out = layer.copy()
    for col in ("gistar_z", "gistar_p", "gistar_p_fdr", "lisa_i", "lisa_z", "lisa_p_sim", "lisa_p_fdr"):
        out[col] = np.nan
    out["gistar_bin"] = np.zeros(len(out), dtype=np.int64)
    out["lisa_quadrant"] = NOT_SIGNIFICANT
    out["lisa_scatter_quadrant"] = ""
    out["n_neighbours"] = np.zeros(len(out), dtype=np.int64)
    out["flags"] = flag
    out["hotspot_value"] = value
    out["significance"] = rule
    return out[[c for c in layer.columns] + COLUMNS + EXTRA_COLUMNS]


def _plain(obj):
    """JSON-ready: numpy scalars and arrays → Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray, pd.Index)):
        return [_plain(v) for v in list(obj)]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    return obj
