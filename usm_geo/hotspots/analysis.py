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
from usm_geo.hotspots import weights as wts
from usm_geo.hotspots.fdr import benjamini_hochberg
from usm_geo.hotspots.global_stats import getis_ord_global, moran
from usm_geo.hotspots.local import getis_ord, gistar_bin, local_moran

COLUMNS = ["gistar_z", "gistar_p", "gistar_p_fdr", "gistar_bin", "lisa_i", "lisa_z", "lisa_p_sim", "lisa_quadrant",
           "n_neighbours"]


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
                  seed: int = 0, cells=None) -> tuple[gpd.GeoDataFrame, dict, dict]:
    """Add Gi* and local Moran columns (:data:`COLUMNS`) to ``layer`` for the values ``y``.

    Returns (layer with the columns, global statistics, report of automatic choices).
    ``gistar_bin`` uses FDR-adjusted p (Benjamini–Hochberg over all units), as DESIGN.md says;
    Gi* z is the same for binary and row-standardised weights (spdep/ArcGIS convention).
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
    # Gi*, local and global Moran's I and Getis-Ord G do not change when y is multiplied by a constant;
    # scaling by a power of two is exact in floating point and keeps squares and fourth powers of huge
    # values (1e300) from overflowing
    top = float(np.abs(y).max())
    if top > 0:
        y = np.ldexp(y, -int(np.frexp(top)[1]))
    w = build_weights(layer, weights, cells)
    g = getis_ord(y, w, star=True, transform=transform)
    lisa = local_moran(y, w, permutations=permutations, seed=seed, transform="R")
    p_fdr = benjamini_hochberg(g["p"].to_numpy())
    out = layer.copy()
    out["gistar_z"] = g["z"].to_numpy()
    out["gistar_p"] = g["p"].to_numpy()
    out["gistar_p_fdr"] = p_fdr
    out["gistar_bin"] = gistar_bin(g["z"].to_numpy(), g["p"].to_numpy(), adjust="fdr").astype(np.int64)
    out["lisa_i"] = lisa["I"].to_numpy()
    out["lisa_z"] = lisa["z"].to_numpy()
    out["lisa_p_sim"] = lisa["p_sim"].to_numpy()
    out["lisa_quadrant"] = lisa["quadrant"].astype(str).to_numpy()
    out["n_neighbours"] = np.asarray(w.sparse.sum(axis=1)).ravel().astype(np.int64)
    mi = moran(y, w, transform="R")
    globals_ = {"moran": {"I": mi.I, "EI": mi.EI, "z_norm": mi.z_norm, "p_norm": mi.p_norm, "z_rand": mi.z_rand, "p_rand": mi.p_rand}}
    if (y >= 0).all() and y.sum() > 0:
        gg = getis_ord_global(y, w)
        globals_["getis_ord_g"] = {"G": gg.G, "EG": gg.EG, "z": gg.z_norm, "p": gg.p_norm}
    report = {"weights": weights, "transform": transform, "permutations": permutations, "seed": seed,
              "multiple_testing": "Benjamini-Hochberg FDR for gistar_bin", **{f"weights_{k}": v for k, v in w.report.items()}}
    return out, _plain(globals_), _plain(report)


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
