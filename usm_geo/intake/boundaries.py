"""Intake of boundary levels: polygons with a unit id, a name and optionally a parent id.

Returned layers are GeoDataFrames in the working CRS with columns ``unit_id`` (string),
``name``, ``parent_id`` (string or None) and ``geometry`` (Polygon/MultiPolygon), sorted by
``unit_id``. Invalid polygons are repaired with ``make_valid`` and listed in the ledger;
problems that make a level unusable (duplicate ids, empty or non-polygon geometry, unknown
parents, no CRS) raise :class:`BoundaryError`/:class:`CRSError` naming the row and the fix.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from usm_geo.errors import BoundaryError, CRSError, where
from usm_geo.intake import columns as cols
from usm_geo.intake.crs import WGS84, crs_label, same_crs, utm_for
from usm_geo.intake.files import detect_format, read_records, read_spatial
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import normalise_ids
from usm_geo.study import BoundaryLevel

POLYGONAL = (3, 6)  # shapely type ids: Polygon, MultiPolygon


def _polygonal_part(geom):
    """The polygonal part of a repaired geometry (make_valid may add lines or points)."""
    parts = shapely.get_parts(geom)
    polys = parts[np.isin(shapely.get_type_id(parts), POLYGONAL)]
    if len(polys) == 0:
        return shapely.Polygon()
    merged = shapely.union_all(polys)
    return merged


def level_source(level: str) -> str:
    return f"boundaries.{level}"


#: Overlaps smaller than this share of the smaller unit are digitising slivers: counted in one note.
SLIVER_SHARE = 0.001
#: DE-9IM pattern: the interiors of two polygons share some area (they overlap or one holds the other).
INTERIORS_MEET = "T********"


def _ledger_overlaps(geom: np.ndarray, ids: np.ndarray, rows: np.ndarray, source: str, ledger: Ledger) -> None:
    """Units of one level that overlap (or contain one another) are kept, with a ledger line per pair:
    a point in the overlap is counted once, in the unit whose id sorts first (the exact assignment's
    rule), so the level is not a partition there. Slivers below :data:`SLIVER_SHARE` get one note."""
    # Candidates from the bounding boxes only, then one DE-9IM test per candidate pair: "interiors
    # meet" is overlaps, contains or within in either order. Asking the tree for "overlaps" and
    # "contains" instead evaluated every box-neighbour twice (0.64 s vs 0.06 s on Chicago's 77 areas).
    pairs = shapely.STRtree(geom).query(geom)
    pairs = pairs[:, pairs[0] < pairs[1]]
    # prepared, each polygon is indexed once for all its neighbours (0.025 s instead of 0.044 s on
    # Chicago; the same relate); the layer's geometries are handed back unprepared, as they came
    fresh = ~shapely.is_prepared(geom)
    shapely.prepare(geom)
    try:
        pairs = pairs[:, shapely.relate_pattern(geom[pairs[0]], geom[pairs[1]], INTERIORS_MEET)]
    finally:
        shapely.destroy_prepared(geom[fresh])
    if not pairs.size:
        return
    pairs = np.unique(pairs, axis=1)  # sorted by (i, j): the ledger lines keep one order
    i, j = pairs
    shared = shapely.area(shapely.intersection(geom[i], geom[j]))
    share = shared / np.maximum(np.minimum(shapely.area(geom[i]), shapely.area(geom[j])), np.finfo(float).tiny)
    big = share >= SLIVER_SHARE
    if (~big & (shared > 0)).any():
        ledger.note(source, "overlap_slivers", f"{int((~big & (shared > 0)).sum())} pair(s) of units overlap by less "
                                               f"than {SLIVER_SHARE:.1%} of the smaller unit (digitising slivers)")
    i, j, share = i[big], j[big], share[big]
    if not len(i):
        return
    first = np.where(ids[i] <= ids[j], ids[i], ids[j])
    detail = [f"unit {a} and unit {b} (row {r}) overlap on {s:.1%} of the smaller; a point there is counted once, in {f}"
              for a, b, r, s, f in zip(ids[i], ids[j], rows[j], share, first)]
    ledger.add(source, rows[i], "kept", "overlapping_units", np.array(detail, dtype=object))


def read_boundary_level(spec: BoundaryLevel, ledger: Ledger, working_crs: CRS | None) -> gpd.GeoDataFrame:
    """Read one polygon level; reproject to ``working_crs`` (stated in the ledger) when it differs.

    ``working_crs=None`` keeps the layer's own CRS (used before the working CRS is known).
    """
    source = level_source(spec.level)
    raw = read_records(spec.path, source, ledger, layer=spec.layer)
    path = spec.path
    frame = raw.frame
    if not raw.spatial:
        raise BoundaryError("the file has no geometry", where=path, fix="boundaries must be a polygon layer (GPKG, SHP, GeoJSON, KML)")
    ledger.open_source(source, path, raw.read)
    if raw.read == 0:
        raise BoundaryError("the layer has no features", where=path, fix="check the layer name and that the file is complete")
    id_col = cols.resolve(frame.columns, spec.id, "id", path, f"inputs.boundaries.{spec.level}.id")
    ids = normalise_ids(frame[id_col])
    blank = (ids == "") | frame[id_col].isna().to_numpy()
    if blank.any():
        row = int(raw.rows[np.flatnonzero(blank)[0]])
        raise BoundaryError(f"{int(blank.sum())} feature(s) have no id", where=where(path, row, id_col), fix="give every feature an id")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup].iloc[0]
        rows = raw.rows[(ids == first).to_numpy()]
        raise BoundaryError(f"unit id '{first}' appears {len(rows)} times (rows {', '.join(map(str, rows[:5]))}); "
                            f"{ids[dup].nunique()} id(s) are duplicated in all",
                            where=where(path, int(rows[0]), id_col), fix="unit ids must be unique: dissolve the parts into one feature or renumber")
    name_col = cols.resolve(frame.columns, spec.name, "name", path, f"inputs.boundaries.{spec.level}.name") if spec.name else None
    names = frame[name_col].astype(str).str.strip().where(frame[name_col].notna(), ids) if name_col else ids
    parent_col = cols.resolve(frame.columns, spec.parent, "parent", path, f"inputs.boundaries.{spec.level}.parent") if spec.parent else None
    parents = normalise_ids(frame[parent_col]) if parent_col else pd.Series([None] * len(frame), dtype=object)

    geom = frame.geometry.to_numpy()
    missing = shapely.is_missing(geom) | shapely.is_empty(geom)
    if missing.any():
        i = np.flatnonzero(missing)[0]
        raise BoundaryError(f"unit '{ids.iloc[i]}' has an empty geometry ({int(missing.sum())} in all)",
                            where=where(path, int(raw.rows[i])), fix="draw the unit's polygon or remove the feature")
    if shapely.has_z(geom).any():
        geom = shapely.force_2d(geom)
        ledger.note(source, "3d_geometry", "Z coordinates dropped")
    kind = shapely.get_type_id(geom)
    bad_kind = ~np.isin(kind, POLYGONAL + (7,))  # 7: GeometryCollection, checked after repair
    if bad_kind.any():
        i = np.flatnonzero(bad_kind)[0]
        raise BoundaryError(f"unit '{ids.iloc[i]}' is a {geom[i].geom_type}, not a polygon",
                            where=where(path, int(raw.rows[i])), fix="boundaries must be polygons or multipolygons")
    invalid = ~shapely.is_valid(geom) | (kind == 7)
    if invalid.any():
        reasons = shapely.is_valid_reason(geom[invalid])
        repaired = np.array([_polygonal_part(g) for g in shapely.make_valid(geom[invalid])], dtype=object)
        geom = geom.copy()
        geom[invalid] = repaired
        ledger.add(source, raw.rows[invalid], "changed", "invalid_geometry_repaired",
                   np.char.add("unit ", np.char.add(ids[invalid].to_numpy().astype(str), np.char.add(": ", reasons.astype(str)))))
        gone = shapely.is_empty(geom)
        if gone.any():
            i = np.flatnonzero(gone)[0]
            raise BoundaryError(f"unit '{ids.iloc[i]}' has no area left after repairing its geometry",
                                where=where(path, int(raw.rows[i])), fix="redraw the polygon")
    _ledger_overlaps(geom, ids.to_numpy(dtype=object).astype(str), raw.rows, source, ledger)
    crs = raw.crs if raw.crs is not None else (CRS.from_user_input(spec.crs) if spec.crs else None)
    if crs is None:
        raise CRSError(f"boundary level '{spec.level}' has no CRS", where=path,
                       fix=f'add crs = "EPSG:...." to [[inputs.boundaries]] level "{spec.level}", or ship the .prj file')
    layer = gpd.GeoDataFrame(
        {"unit_id": ids.to_numpy(dtype=object), "name": names.to_numpy(dtype=object), "parent_id": parents.to_numpy(dtype=object)},
        geometry=gpd.GeoSeries(geom, crs=crs), crs=crs,
    )
    layer["row"] = raw.rows
    if working_crs is not None and not same_crs(crs, working_crs):
        layer = layer.to_crs(working_crs)
        ledger.note(source, "reprojected", f"from {crs_label(crs)} to {crs_label(working_crs)}")
    ledger.close_source(source, len(layer))
    return layer.sort_values("unit_id", kind="stable").reset_index(drop=True)


def check_parents(levels: dict[str, gpd.GeoDataFrame], specs: tuple[BoundaryLevel, ...]) -> None:
    """Every parent id (the ``parent`` column) names a unit of the level it refers to (``parent_level``:
    the next coarser level for the string form, any coarser level for the table form)."""
    for spec in specs:
        if spec.parent is None:
            continue
        child, parent = levels[spec.level], levels[spec.parent_level]
        has = child["parent_id"].astype(str) != ""
        if not has.all():
            r = int(child.loc[~has, "row"].iloc[0])
            raise BoundaryError(f"unit '{child.loc[~has, 'unit_id'].iloc[0]}' has no parent id ({int((~has).sum())} unit(s) in all)",
                                where=where(spec.path, r, spec.parent),
                                fix=f"give every {spec.level} the id of its {spec.parent_level}")
        unknown = ~child["parent_id"].isin(set(parent["unit_id"]))
        if unknown.any():
            bad = child.loc[unknown]
            ids = pd.unique(bad["parent_id"].astype(str))
            shown = ", ".join(f"'{v}'" for v in ids[:5]) + (", …" if len(ids) > 5 else "")
            raise BoundaryError(
                f"{len(ids)} parent id(s) in column '{spec.parent}' name no {spec.parent_level} unit: {shown} "
                f"({int(unknown.sum())} {spec.level} unit(s) in all; first: unit '{bad['unit_id'].iloc[0]}')",
                where=where(spec.path, int(bad["row"].iloc[0]), spec.parent),
                fix=f"use ids from the {spec.parent_level} layer ({', '.join(parent['unit_id'].head(5))}, …), "
                    f"or point parent.level at the level these codes belong to")


def utm_of_layer(layer: gpd.GeoDataFrame):
    """The local UTM zone (metres) of a layer's lon/lat bounding box; the layer may be in any CRS."""
    b = layer.to_crs(WGS84).total_bounds
    return utm_for(np.array([b[0], b[2]]), np.array([b[1], b[3]]))


def polygons_in(path: Path, crs, layer: str | None = None, what: str = "area"):
    """The union of a polygon file's features, in ``crs`` (its coordinates in that CRS's units, metres for a working CRS)."""
    raw = read_spatial(Path(path), fmt=detect_format(Path(path)), layer=layer)
    if raw.crs is None:
        raise CRSError(f"the {what} layer has no CRS", where=path, fix="add a .prj file or use a GeoPackage")
    geom = gpd.GeoSeries(raw.frame.geometry.to_numpy(), crs=raw.crs).to_crs(crs).to_numpy()
    return shapely.union_all(shapely.make_valid(geom))
