"""Units: named levels, finest first (``h3_9 → neighbourhood → district → city``), and the
crosswalk that maps every fine unit to exactly one unit of each coarser level.

Every level is a GeoDataFrame in the working CRS (metres) with ``unit_id`` (str), ``name``,
``parent_id`` (str or None) and ``geometry``, sorted by ``unit_id``.

Rules (DESIGN.md "Hierarchy")
-----------------------------
* Polygon → polygon: each fine unit maps to the coarse unit holding the largest share of its area.
  The pair *nests* when every fine unit has ≥ 1 − ``nest_tolerance`` (default 99 %) of its area in
  that unit. A ``parent`` column (*parent by code*, any coarser level) is authoritative: the crosswalk
  to that level is the code, and units whose geometry disagrees are listed in a note. A parent level
  declared without a column must nest by geometry (else :class:`BoundaryError`). A geography that
  does not nest (Chicago's police districts over community areas) stays a separate level: counts at
  every polygon level always come from direct point assignment, never through the crosswalk.
* H3 → polygon: the polygon holding the cell centre (largest overlap for a cell whose centre is
  in no polygon), with ``overlap_share`` = the share of the cell's area in that polygon.
* H3 → H3: the H3 parent. Anything → ``city``: the single unit ``city``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from usm_geo.errors import BoundaryError
from usm_geo.intake.crs import WGS84
from usm_geo.units import h3cells
from usm_geo.units.assign import PolygonIndex

#: Default share of a unit's area that may lie outside its parent (``[units] nest_tolerance``).
NEST_TOLERANCE = 0.01
CROSSWALK_COLUMNS = ["level", "unit_id", "to_level", "to_unit_id", "overlap_share"]


def h3_level(resolution: int) -> str:
    return f"h3_{resolution}"


@dataclass
class UnitSet:
    """All levels of a study, finest first, with their crosswalk.

    ``kinds[level]`` is ``"h3"``, ``"polygon"`` or ``"city"``; ``nested[(fine, coarse)]`` says
    whether counts may be rolled up from ``fine`` to ``coarse`` through the crosswalk.
    """

    levels: dict[str, gpd.GeoDataFrame]
    kinds: dict[str, str]
    crosswalk: pd.DataFrame
    nested: dict[tuple[str, str], bool]
    crs: object
    # how the levels nest: the tolerance, each polygon pair's worst units and notes (run.json "hierarchy")
    report: dict = field(default_factory=dict)
    _indexes: dict[str, PolygonIndex] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.levels)

    def index(self, level: str) -> PolygonIndex:
        """The point-in-polygon index of a polygon level (built once, then reused)."""
        if level not in self._indexes:
            self._indexes[level] = PolygonIndex.build(self.levels[level].geometry.to_numpy())
        return self._indexes[level]

    def parents(self, level: str, to_level: str) -> pd.Series:
        """unit_id → to_unit_id for every unit of ``level`` (index: unit_id)."""
        cw = self.crosswalk
        sel = cw[(cw.level == level) & (cw.to_level == to_level)]
        return pd.Series(sel["to_unit_id"].to_numpy(), index=sel["unit_id"].to_numpy())


def _largest_overlap(fine: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each fine polygon: position of the coarse polygon holding most of its area, and that share.

    -1 and 0 where a fine polygon overlaps no coarse polygon.
    """
    tree = shapely.STRtree(coarse)
    a, b = tree.query(fine, predicate="intersects")
    target = np.full(len(fine), -1, dtype=np.int64)
    share = np.zeros(len(fine))
    if len(a) == 0:
        return target, share
    inter = shapely.area(shapely.intersection(fine[a], coarse[b]))
    frac = inter / np.maximum(shapely.area(fine[a]), 1e-300)
    order = np.lexsort((b, -frac, a))  # per fine unit: largest share first, lowest position on ties
    a, b, frac = a[order], b[order], frac[order]
    first = np.r_[True, a[1:] != a[:-1]]
    target[a[first]] = b[first]
    share[a[first]] = frac[first]
    return target, share


def _crosswalk_rows(level: str, ids, to_level: str, to_ids, share) -> pd.DataFrame:
    return pd.DataFrame({"level": level, "unit_id": np.asarray(ids, dtype=object), "to_level": to_level,
                         "to_unit_id": np.asarray(to_ids, dtype=object), "overlap_share": np.round(np.asarray(share, float), 6)})


def _city(area, name: str, crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"unit_id": ["city"], "name": [name], "parent_id": [None]}, geometry=[area], crs=crs)


def h3_units(resolution: int, area, crs, extra_cells: np.ndarray | None = None, cover: str = "centre") -> gpd.GeoDataFrame:
    """H3 cells covering ``area`` (working CRS) by ``cover`` rule, plus ``extra_cells`` (cells that
    hold a point but are not in the cover; flagged ``edge_cell``). Sorted by unit_id.

    ``cover="clip"``: every cell whose hexagon intersects ``area``, its geometry clipped to ``area``
    (in the working CRS); cells not wholly inside are flagged ``edge_cell``. The clipped cells tile
    the study area, so every point and every resident inside it is in exactly one cell.
    """
    clip = cover == "clip" and area is not None
    if area is not None:
        area_ll = gpd.GeoSeries([area], crs=crs).to_crs(WGS84).iloc[0]
        cells = h3cells.polygon_to_cells(area_ll, resolution, cover="touch" if clip else cover)
    else:  # no study area: only the cells that hold a point (DESIGN.md "Zeros")
        cells = np.zeros(0, dtype=np.uint64)
    edge = np.zeros(len(cells), dtype=bool)
    if extra_cells is not None and len(extra_cells):
        extra = np.setdiff1d(np.unique(extra_cells), cells)
        cells = np.concatenate([cells, extra])
        edge = np.concatenate([edge, np.full(len(extra), area is not None)])
    ids = h3cells.cells_to_str(cells)
    order = np.argsort(ids, kind="stable")
    cells, ids, edge = cells[order], ids[order], edge[order]
    geom = gpd.GeoSeries(h3cells.cell_polygons(cells), crs=WGS84).to_crs(crs).to_numpy()
    if clip:
        cells, ids, edge, geom = _clip_cells(cells, ids, edge, geom, area, extra_cells)
    frame = gpd.GeoDataFrame({"unit_id": ids, "name": ids, "parent_id": None, "flags": np.where(edge, "edge_cell", "")},
                             geometry=geom, crs=crs)
    frame.attrs["cells"] = cells
    frame.attrs["cover"] = cover if area is not None else "points"
    return frame


def _clip_cells(cells, ids, edge, geom, area, extra_cells):
    """Hexagons (working CRS) clipped to ``area``: cells wholly inside keep their hexagon, edge cells
    get their part inside ``area`` (polygonal parts only) and the flag ``edge_cell``. A cell whose
    clipped part is empty (a hexagon that touches ``area`` only in lon/lat, not after projection) is
    dropped unless it holds a point."""
    shapely.prepare(area)
    inside = shapely.contains_properly(area, geom)
    part = geom.copy()
    if (~inside).any():
        part[~inside] = _polygonal(shapely.intersection(geom[~inside], area))
    held = np.isin(cells, np.asarray(extra_cells if extra_cells is not None else [], dtype=np.uint64))
    keep = ~shapely.is_empty(part) & (shapely.area(part) > 0) | held
    return cells[keep], ids[keep], (edge | ~inside)[keep], part[keep]


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Only the polygonal parts of each geometry (an intersection may add stray lines or points)."""
    out = geoms.copy()
    mixed = shapely.get_type_id(geoms) == 7  # GeometryCollection
    for i in np.flatnonzero(mixed):  # rare: a handful of edge cells at most
        polys = [g for g in shapely.get_parts(geoms[i]) if shapely.get_type_id(g) in (3, 6)]
        out[i] = shapely.union_all(polys) if polys else shapely.Polygon()
    return out


def build_units(levels: dict[str, gpd.GeoDataFrame], *, study_area, crs, city_name: str = "City",
                h3_resolutions=(), h3_cover: str = "centre", point_cells: dict[int, np.ndarray] | None = None,
                declared_parents: dict[str, str] | None = None, nest_tolerance: float = NEST_TOLERANCE) -> UnitSet:
    """Assemble every level (H3 finest first, then polygon levels as given, then ``city``) and the crosswalk.

    ``levels``: polygon levels from intake, finest first, in the working CRS ``crs``.
    ``point_cells``: per H3 resolution, the cells that hold used points (so that every point lands in
    a unit even where a cell's centre is outside the study area).
    ``declared_parents``: level → the coarser level the study declares as its parent. When the
    level's ``parent_id`` column holds ids (a ``parent`` column: *parent by code*), the crosswalk to
    that level is the code, which is authoritative: units with less than 1 − ``nest_tolerance`` of
    their area in their coded parent are listed in ``UnitSet.report["notes"]``, not refused. Without
    ids (*parent by geometry*) the level must nest within the tolerance, else :class:`BoundaryError`
    naming the worst units. Levels coarser than a coded parent that it nests in are reached through it.
    ``nest_tolerance``: the share of a unit's area (0.01 = 1 %) that may lie outside its parent for
    an undeclared pair to count as nested (``[units] nest_tolerance``).
    """
    out: dict[str, gpd.GeoDataFrame] = {}
    kinds: dict[str, str] = {}
    for res in sorted(set(h3_resolutions), reverse=True):
        out[h3_level(res)] = h3_units(res, study_area, crs, (point_cells or {}).get(res), h3_cover)
        kinds[h3_level(res)] = "h3"
    for name, layer in levels.items():
        out[name] = layer[["unit_id", "name", "parent_id", "geometry"]].copy()
        kinds[name] = "polygon"
    if study_area is None:  # no boundaries: the city is the union of the finest level's units
        study_area = shapely.union_all(next(iter(out.values())).geometry.to_numpy()) if out else shapely.Polygon()
    out["city"] = _city(study_area, city_name, crs)
    kinds["city"] = "city"
    declared = dict(declared_parents or {})
    by_code = {lv for lv in declared if out[lv]["parent_id"].notna().any()}

    parts: dict[tuple[str, str], pd.DataFrame] = {}
    nested: dict[tuple[str, str], bool] = {}
    pairs: list[dict] = []
    names = list(out)
    for i, fine in enumerate(names[:-1]):
        f = out[fine]
        for coarse in names[i + 1:]:
            c = out[coarse]
            if kinds[coarse] == "city":
                share = shapely.area(shapely.intersection(f.geometry.to_numpy(), study_area)) / shapely.area(f.geometry.to_numpy())
                parts[(fine, coarse)] = _crosswalk_rows(fine, f.unit_id, coarse, np.full(len(f), "city", dtype=object), share)
                nested[(fine, coarse)] = True
                continue
            if kinds[fine] == "h3" and kinds[coarse] == "h3":
                cells = h3cells.parent_cells(f.attrs["cells"], int(coarse.split("_")[1]))
                to_ids = h3cells.cells_to_str(cells)
                parts[(fine, coarse)] = _crosswalk_rows(fine, f.unit_id, coarse, to_ids, np.ones(len(f)))
                nested[(fine, coarse)] = True
                continue
            fg, cg = f.geometry.to_numpy(), c.geometry.to_numpy()
            if kinds[fine] == "polygon" and declared.get(fine) == coarse and fine in by_code:
                to_ids, share = _coded_parents(f, fine, c, coarse)
                parts[(fine, coarse)] = _crosswalk_rows(fine, f.unit_id, coarse, to_ids, share)
                nested[(fine, coarse)] = True
                pairs.append(_pair_report(fine, coarse, "code", f.unit_id.to_numpy(dtype=object), share, nest_tolerance))
                continue
            target, share = _largest_overlap(fg, cg)
            if kinds[fine] == "h3":
                centre = shapely.centroid(fg)
                by_centre = PolygonIndex.build(cg).assign(shapely.get_x(centre), shapely.get_y(centre))
                use = by_centre >= 0
                if use.any():
                    inter = shapely.area(shapely.intersection(fg[use], cg[by_centre[use]]))
                    share[use] = inter / shapely.area(fg[use])
                    target[use] = by_centre[use]
            to_ids = np.where(target >= 0, c.unit_id.to_numpy()[np.clip(target, 0, None)], None)
            parts[(fine, coarse)] = _crosswalk_rows(fine, f.unit_id, coarse, to_ids, share)
            nested[(fine, coarse)] = kinds[fine] == "polygon" and bool((share >= 1 - nest_tolerance).all())
            if kinds[fine] == "polygon":
                report = _pair_report(fine, coarse, "geometry", f.unit_id.to_numpy(dtype=object), share, nest_tolerance)
                pairs.append(report)
                if declared.get(fine) == coarse and not nested[(fine, coarse)]:
                    _refuse_declared(fine, coarse, report, nest_tolerance)
    for fine in sorted(by_code, key=names.index):  # beyond a coded parent: through it, where the parent nests further up
        _through_coded_parent(fine, declared[fine], out, kinds, parts, nested, pairs, nest_tolerance)
    crosswalk = pd.concat(parts.values(), ignore_index=True) if parts else pd.DataFrame(columns=CROSSWALK_COLUMNS)
    for name, frame in out.items():  # parent ids: the next level up where the study has none
        if kinds[name] != "city" and frame["parent_id"].isna().all():
            nxt = names[names.index(name) + 1]
            sel = crosswalk[(crosswalk.level == name) & (crosswalk.to_level == nxt)]
            frame["parent_id"] = frame["unit_id"].map(dict(zip(sel.unit_id, sel.to_unit_id)))
    report = {"nest_tolerance": float(nest_tolerance), "pairs": pairs,
              "notes": [p["note"] for p in pairs if p.get("note")]}
    return UnitSet(levels=out, kinds=kinds, crosswalk=crosswalk, nested=nested, crs=crs, report=report)


def _coded_parents(f: gpd.GeoDataFrame, fine: str, c: gpd.GeoDataFrame, coarse: str) -> tuple[np.ndarray, np.ndarray]:
    """The parent of each unit of ``f`` by its ``parent_id`` code, and the share of the unit's area
    that lies in that parent (how well the geometry agrees with the code)."""
    codes = f["parent_id"].astype(str).to_numpy(dtype=object)
    pos = pd.Index(c["unit_id"].astype(str)).get_indexer(codes)
    if (pos < 0).any():  # intake checks this with file and row (check_parents); a direct caller gets this
        bad = pd.unique(codes[pos < 0])
        raise BoundaryError(f"{len(bad)} parent id(s) of level {fine} name no {coarse} unit: "
                            + ", ".join(f"'{b}'" for b in bad[:5]), fix=f"use ids of the {coarse} layer")
    fg = f.geometry.to_numpy()
    share = shapely.area(shapely.intersection(fg, c.geometry.to_numpy()[pos])) / np.maximum(shapely.area(fg), 1e-300)
    return codes, share


def _pair_report(fine: str, coarse: str, by: str, ids: np.ndarray, share: np.ndarray, tolerance: float) -> dict:
    """How well ``fine`` nests in ``coarse``: the units with less than 1 − tolerance of their area in
    their parent (worst first, at most 10 listed) and, for a coded parent, a note saying so."""
    below = np.flatnonzero(share < 1 - tolerance)
    worst = below[np.lexsort((ids[below].astype(str), share[below]))]
    out = {"fine": fine, "coarse": coarse, "by": by, "units": int(len(ids)), "units_below": int(len(below)),
           "min_share": round(float(share.min()), 6) if len(share) else None,
           "worst": [{"unit_id": str(ids[k]), "share": round(float(share[k]), 6)} for k in worst[:10]]}
    if by == "code" and len(below):
        listed = ", ".join(f"{w['unit_id']} ({w['share']:.1%})" for w in out["worst"][:5])
        out["note"] = (f"{fine} → {coarse} by code: {len(below)} of {len(ids)} {fine} unit(s) have less than "
                       f"{1 - tolerance:.0%} of their area in the {coarse} their code names: {listed}"
                       f"{', …' if len(below) > 5 else ''} (the code is used; points in the slivers are counted "
                       f"in the {coarse} they fall in, see rollup_check)")
    return out


def _refuse_declared(fine: str, coarse: str, report: dict, tolerance: float) -> None:
    listed = ", ".join(f"'{w['unit_id']}' ({w['share']:.1%})" for w in report["worst"][:5])
    raise BoundaryError(
        f"{fine} is declared to nest in {coarse}, but {report['units_below']} of {report['units']} unit(s) have less "
        f"than {1 - tolerance:.0%} of their area in one {coarse} unit; worst: {listed}",
        fix=f"raise [units] nest_tolerance above {1 - report['worst'][0]['share']:.3f}, or give a column of {coarse} ids: "
            f'parent = {{ level = "{coarse}", column = "..." }}')


def _through_coded_parent(fine, parent, out, kinds, parts, nested, pairs, tolerance) -> None:
    """Levels coarser than ``parent`` that it nests in: ``fine`` maps to them through its coded
    parent (code, then the parent's crosswalk), so every coarser total of ``fine`` agrees with the
    code. The share is the geometric share of each unit in the unit reached."""
    names = list(out)
    f = out[fine]
    for coarse in names[names.index(parent) + 1:]:
        if kinds[coarse] == "city" or not nested.get((parent, coarse)):
            continue
        step = parts[(parent, coarse)].set_index("unit_id")["to_unit_id"]
        to_ids = step.reindex(parts[(fine, parent)]["to_unit_id"].to_numpy()).to_numpy(dtype=object)
        c = out[coarse]
        pos = pd.Index(c["unit_id"]).get_indexer(to_ids)
        fg = f.geometry.to_numpy()
        share = shapely.area(shapely.intersection(fg, c.geometry.to_numpy()[pos])) / np.maximum(shapely.area(fg), 1e-300)
        parts[(fine, coarse)] = _crosswalk_rows(fine, f.unit_id, coarse, to_ids, share)
        nested[(fine, coarse)] = True
        pairs[:] = [p for p in pairs if (p["fine"], p["coarse"]) != (fine, coarse)]
        pairs.append(_pair_report(fine, coarse, f"code via {parent}", f.unit_id.to_numpy(dtype=object), share, tolerance))


def polygon_units(levels: dict[str, gpd.GeoDataFrame], area, crs, index, **options) -> UnitSet:
    """The polygon levels and the city, their point-in-polygon indexes built (sent to Dask workers);
    ``index`` is the finest level's, when already built; ``options`` go to :func:`build_units`."""
    units = build_units(levels, study_area=area, crs=crs, **options)
    if index is not None:
        units._indexes[next(iter(levels))] = index
    for name, kind in units.kinds.items():
        if kind == "polygon":
            units.index(name)
    return units
