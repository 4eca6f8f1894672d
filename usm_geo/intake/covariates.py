"""Risk and resilience factors as area tables (``[[inputs.covariates]]``).

One row per unit of the table's boundary level, one numeric column per factor. Numbers may carry
thousands separators (``12,345``); decimals are written with a point. Every row is accounted for in the ledger: a unit id that matches no
unit (``unknown_unit``), a repeated unit (``duplicate_unit``) or a value that is not a number
(``invalid_covariate``, the value is then missing for that unit) — units left without a value are
left out of the model, which says how many.

A **point layer of features** (``[[inputs.covariates]]`` with ``name`` and ``measures``: bars,
transit stops, streetlights…) is read like an incident file — any reader format, lon/lat, x/y with
its ``crs`` or a spatial file's geometry, reprojected to the working CRS — and every feature is
checked the same way: one outside the study area is in the ledger (``outside_study_area``), as are
missing or impossible coordinates. Per unit of ``unit_level`` it gives (:func:`point_measures`):

- ``<name>_count``: features inside the unit (a feature on a shared border counts once, in the
  first unit of the boundary file's order);
- ``<name>_density``: that count per km² of the unit's area in the working CRS;
- ``<name>_distance``: metres from the unit's **centroid** (the geometric centroid of its polygon in
  the working CRS, not a population-weighted point) to the nearest feature of the layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.intake import columns as cols
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import normalise_ids
from usm_geo.study import CovariateSource


def point_measures(fx, fy, polygons, unit_ids, measures, feature: str) -> pd.DataFrame:
    """Per unit: ``<feature>_count``, ``_density`` (features per km²) and ``_distance`` (metres from
    the unit's centroid to the nearest feature), as ``measures`` asks, sorted by ``unit_id``.

    ``fx``, ``fy``: feature coordinates (working CRS, metres); ``polygons``: the units' shapely
    polygons in the same CRS, ``unit_ids`` in the same order. Vectorised: one STRtree query for the
    counts (``intersects``, so border points count; each feature is kept in its first unit only) and
    one nearest-neighbour query for the distances. Without any feature the distance is NaN.
    """
    import shapely

    geoms = np.asarray(polygons, dtype=object)
    ids = np.asarray(unit_ids, dtype=object)
    pts = shapely.points(np.asarray(fx, float), np.asarray(fy, float))
    out = pd.DataFrame({"unit_id": ids})
    if "count" in measures or "density" in measures:
        tree = shapely.STRtree(geoms)
        point_i, poly_i = tree.query(pts, predicate="intersects")
        order = np.lexsort((poly_i, point_i))  # per feature, the unit that comes first in the file
        point_i, poly_i = point_i[order], poly_i[order]
        first = np.ones(len(point_i), bool)
        first[1:] = point_i[1:] != point_i[:-1]
        counts = np.bincount(poly_i[first], minlength=len(geoms)).astype(np.int64)
        if "count" in measures:
            out[f"{feature}_count"] = counts
        if "density" in measures:
            out[f"{feature}_density"] = counts / (shapely.area(geoms) / 1e6)
    if "distance" in measures:
        if len(pts):
            tree = shapely.STRtree(pts)
            centres = shapely.centroid(geoms)
            (ci, _), dist = tree.query_nearest(centres, return_distance=True, all_matches=False)
            d = np.full(len(geoms), np.nan)
            d[ci] = dist
        else:
            d = np.full(len(geoms), np.nan)
        out[f"{feature}_distance"] = d
    # keep the columns in the order the study lists the measures
    out = out[["unit_id", *[f"{feature}_{m}" for m in measures]]]
    return out.sort_values("unit_id", kind="stable").reset_index(drop=True)


def read_point_covariates(src: CovariateSource, ledger: Ledger, ctx, layer) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A point layer of features → (per-unit table of :func:`point_measures`, the used features with
    ``row, x, y`` in the working CRS). ``ctx``: the intake Context (working CRS, study area);
    ``layer``: the units of ``src.unit_level`` (``unit_id``, geometry in the working CRS).
    Every feature is used or in the ledger under ``src.name`` (module docstring)."""
    from usm_geo.intake.records import read_point_records

    pts = read_point_records(src.points, ledger, ctx, detect=False)
    table = point_measures(pts["x"].to_numpy(), pts["y"].to_numpy(), layer.geometry.to_numpy(),
                           layer["unit_id"].to_numpy(dtype=object), src.measures, src.feature)
    return table, pts[["row", "x", "y"]].reset_index(drop=True)


def read_covariates(src: CovariateSource, ledger: Ledger, unit_ids) -> pd.DataFrame:
    """``unit_id`` + one float column per factor (NaN where missing or not a number), one row per
    matched unit, sorted by ``unit_id``. ``unit_ids``: the ids of ``src.unit_level``."""
    raw = read_records(src.path, src.name, ledger, layer=src.sheet)
    ledger.open_source(src.name, src.path, raw.read)
    frame, rows = raw.frame, raw.rows
    ucol = cols.resolve(frame.columns, src.unit, "unit", src.path, f"{src.name}.unit")
    ids = normalise_ids(frame[ucol])
    known = ids.isin(set(unit_ids)).to_numpy()
    ledger.add(src.name, rows[~known], "dropped", "unknown_unit",
               (f"{ucol} = '" + frame[ucol].astype(str).str.slice(0, 40) + f"' is not a {src.unit_level} id").to_numpy(dtype=object)[~known])
    dup = known & ids.where(known).duplicated(keep="first").to_numpy() & ids.where(known).notna().to_numpy()
    ledger.add(src.name, rows[dup], "dropped", "duplicate_unit", "the unit appears in an earlier row")
    keep = known & ~dup
    out = pd.DataFrame({"unit_id": ids.to_numpy(dtype=object)})
    for name in src.columns:
        c = cols.resolve(frame.columns, name, "covariate", src.path, f"{src.name}.columns")
        text = frame[c].astype(str).str.strip().str.replace(",", "", regex=False)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, copy=True)
        blank = frame[c].isna().to_numpy() | text.isin(["", "nan", "NaN", "NA", "None"]).to_numpy()
        bad = keep & ~np.isfinite(values) & ~blank
        ledger.add(src.name, rows[bad], "changed", "invalid_covariate",
                   (f"{c} = '" + frame[c].astype(str).str.slice(0, 30) + "' is not a number; missing for this unit").to_numpy(dtype=object)[bad])
        values[~np.isfinite(values)] = np.nan
        out[name] = values
    result = out[keep].sort_values("unit_id", kind="stable").reset_index(drop=True)
    ledger.close_source(src.name, len(result))
    return result
