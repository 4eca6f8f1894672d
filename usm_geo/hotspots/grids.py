"""Regular grids over a study area: square cells in the working CRS and H3 hexagons.

Every function returns its result **and** a ``report`` dict of the values it chose automatically
and the rule it used (sfhotspot style); nothing is printed, the CLI prints the report.

Square cells (:func:`square_grid`, :func:`count_points_square`) are in the *working CRS*, metres.
A grid is described by its lower-left corner ``origin = (x0, y0)``, its ``cell_size`` (metres) and
its ``shape = (rows, cols)``; arrays over the grid are in raster order (row 0 is the *top*, the
northernmost row), so that they can be written as a GeoTIFF with
``Affine(cell, 0, x0, 0, -cell, y0 + rows·cell)``. Cell ``(r, c)`` covers
``x0 + c·cell <= x < x0 + (c+1)·cell`` and ``y0 + (rows-1-r)·cell <= y < y0 + (rows-r)·cell``:
half-open, so a point on an edge between two cells goes to the cell on its right (east) or above
(north). Grids are aligned to whole multiples of the cell size, so that two grids with the same
cell size line up.

Automatic cell size (squares): the shorter side of the area's bounding box / 50, rounded *down* to
a "nice" value (1, 2, 2.5 or 5 × 10^k metres), so that there are at least 50 cells across the
shorter side. This is sfhotspot's rule (``set_cell_size``: 1/50 of the shorter side of the
bounding box), which rounds down to a multiple of 100 instead.

Automatic H3 resolution: the resolution whose average hexagon edge
(``h3.average_hexagon_edge_length(res, unit="m")``) is closest, on a log scale, to the automatic
square cell size of the same area (measured geodesically on WGS 84). A hexagon with edge ``e`` has
area ``2.598·e²``, so those hexagons are about 2.6 times larger than the squares.
"""

from __future__ import annotations

import math

import geopandas as gpd
import h3
import numpy as np
import shapely

from usm_geo.errors import CRSError, UsmGeoError
from usm_geo.io import bar

__all__ = [
    "count_points_square",
    "h3_cells_estimate",
    "h3_grid",
    "nice_floor",
    "square_cell_size",
    "square_grid",
]

NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)
CELLS_ACROSS = 50           # automatic square cell size = shorter side / 50
MAX_CELLS = 250_000         # default cell budget for square_grid and h3_grid
_CHUNK_CELLS = 1_000_000    # candidate cells tested per chunk (bounds memory for any bbox)

SQUARE_RULE = ("shorter side of the area's bounding box / 50, rounded down to 1, 2, 2.5 or 5 x 10^k m "
               "(sfhotspot's rule, at least 50 cells across)")
H3_RULE = ("resolution whose average hexagon edge (h3.average_hexagon_edge_length) is closest on a "
           "log scale to the automatic square cell size (shorter side of the geodesic bounding box / 50, "
           "rounded down to 1, 2, 2.5 or 5 x 10^k m)")


# --------------------------------------------------------------------------------------------
# helpers shared with kde.py
# --------------------------------------------------------------------------------------------

def nice_floor(value: float) -> float:
    """Largest "nice" number (1, 2, 2.5 or 5 × 10^k) that is ≤ ``value`` (> 0)."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected a positive finite number, got {value!r}")
    k = math.floor(math.log10(value))
    best = None
    for kk in (k - 1, k, k + 1):  # guard against log10 rounding at exact powers of ten
        for m in NICE_MANTISSAS:
            cand = float(f"{m * 10.0 ** kk:.12g}")
            if cand <= value * (1 + 1e-12) and (best is None or cand > best):
                best = cand
    return best


def _polygonal(geom):
    """Reduce a GeometryCollection to its polygonal parts; check the type."""
    if isinstance(geom, shapely.GeometryCollection) and not isinstance(geom, shapely.MultiPolygon):
        parts = [g for g in shapely.get_parts(geom) if isinstance(g, (shapely.Polygon, shapely.MultiPolygon))]
        geom = shapely.MultiPolygon(list(shapely.get_parts(parts))) if parts else shapely.MultiPolygon()
    if not isinstance(geom, (shapely.Polygon, shapely.MultiPolygon)):
        raise TypeError(f"expected a Polygon or MultiPolygon (or a GeoSeries/GeoDataFrame of them), "
                        f"got {type(geom).__name__}")
    return geom


def _area_geometry(area, crs=None, *, projected=True):
    """``(geometry, crs)`` of a study area given as a shapely (Multi)Polygon, a GeoSeries or a
    GeoDataFrame (unioned). ``crs`` overrides a missing CRS; a conflicting CRS is an error. With
    ``projected=True`` a geographic CRS is refused (distances and areas need metres)."""
    from pyproj import CRS

    if isinstance(area, (gpd.GeoDataFrame, gpd.GeoSeries)):
        frame_crs = area.crs
        if crs is not None and frame_crs is not None and not CRS.from_user_input(crs).equals(
                frame_crs, ignore_axis_order=True):
            raise CRSError(f"the area is in {frame_crs.to_string()} but crs={crs!r} was given",
                           fix="reproject the area with .to_crs(...) or drop the crs argument")
        crs = frame_crs if frame_crs is not None else crs
        geom = area.geometry.union_all() if len(area) else shapely.MultiPolygon()
    else:
        geom = area
    geom = _polygonal(geom)
    if geom.is_empty:
        raise UsmGeoError("the study area is empty", fix="pass a polygon with a positive area")
    if crs is not None:
        crs = CRS.from_user_input(crs)
        if projected and crs.is_geographic:
            raise CRSError(f"the area is in a geographic CRS ({crs.to_string()}); cell sizes are metres",
                           fix="reproject it to the working CRS (projected, metres) first")
    return geom, crs


def square_cell_size(bounds, cells_across: int = CELLS_ACROSS) -> tuple[float, float]:
    """Automatic square cell size for ``bounds = (xmin, ymin, xmax, ymax)`` (metres):
    ``(nice, raw)`` with ``raw = min(width, height) / cells_across`` and ``nice = nice_floor(raw)``.
    A degenerate box (zero width or height) uses its longer side."""
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    w, h = xmax - xmin, ymax - ymin
    short = min(w, h) if min(w, h) > 0 else max(w, h)
    if not short > 0:
        raise UsmGeoError("cannot choose a cell size automatically: the area has no extent",
                          fix="pass cell_size= (metres)")
    raw = short / cells_across
    return nice_floor(raw), raw


def _check_cell_size(cell_size) -> float:
    if isinstance(cell_size, bool):
        raise TypeError("cell_size must be a number of metres")
    cell = float(cell_size)
    if not (math.isfinite(cell) and cell > 0):
        raise ValueError(f"cell_size must be a positive number of metres, got {cell_size!r}")
    return cell


def _aligned(bounds, cell):
    """Lower-left origin and (rows, cols) of the grid aligned to multiples of ``cell`` that holds
    the closed box ``bounds`` (its max edges included, as interior points of the last cells)."""
    xmin, ymin, xmax, ymax = bounds
    x0 = math.floor(xmin / cell) * cell
    y0 = math.floor(ymin / cell) * cell
    cols = math.floor((xmax - x0) / cell) + 1
    rows = math.floor((ymax - y0) / cell) + 1
    return (float(x0), float(y0)), (rows, cols)


def _unit_ids(rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    r = np.char.zfill(rows.astype(str), width)
    c = np.char.zfill(cols.astype(str), width)
    return np.char.add(np.char.add("r", r), np.char.add("c", c)).astype(object)


# --------------------------------------------------------------------------------------------
# square grid
# --------------------------------------------------------------------------------------------

def square_grid(area_polygon, cell_size: float | None = None, max_cells: int = MAX_CELLS, *,
                cover: str = "centre", crs=None):
    """Square cells covering a study area, in the working CRS (metres).

    Parameters
    ----------
    area_polygon : shapely Polygon/MultiPolygon, GeoSeries or GeoDataFrame
        The study area in the working CRS (projected, metres). A GeoSeries/GeoDataFrame is unioned
        and gives its CRS to the result; a geographic CRS is refused (:class:`~usm_geo.errors.CRSError`).
    cell_size : float, optional
        Side of a cell in metres. Default: the automatic rule of the module docstring (shorter side
        of the bounding box / 50, rounded down to a nice value).
    max_cells : int
        Cell budget. The number of cells is estimated before the grid is built (area / cell² for
        ``"centre"``, plus perimeter / cell for ``"touch"``). Above the budget, a cell size that was
        given raises :class:`~usm_geo.errors.UsmGeoError` ("pass a larger cell size"); an automatic
        cell size is instead coarsened to the next nice value that fits, and the report says so
        (flag ``cell_size_coarsened``). The flag ``large_grid`` marks grids above half the budget.
    cover : {"centre", "touch"}
        ``"centre"``: cells whose centre lies in the area, its boundary included (as the H3
        "centre" cover). ``"touch"``: cells whose square overlaps the area with a positive area;
        cells that meet it only along an edge or at a corner are left out, so that a rectangle
        drawn on the grid lines gets exactly the cells inside it.
    crs : optional
        CRS of a bare shapely geometry (ignored when the area carries one; a conflicting one is
        refused).

    Returns
    -------
    (cells, report)
        ``cells``: GeoDataFrame with ``unit_id`` (``"r0012c0034"``: row from the top, column from
        the left, zero-padded to at least 4 digits; sorting by ``unit_id`` gives raster order),
        ``row``, ``col`` (int64) and the square ``geometry``; rows sorted by ``unit_id``.
        ``report``: ``cell_size``, ``cell_size_rule``, ``cell_size_auto``, ``cell_size_raw`` (the
        unrounded automatic value, None when given), ``origin`` (lower-left x, y), ``shape``
        (rows, cols of the full grid), ``cover``, ``cells``, ``cells_estimate``, ``max_cells``,
        ``flags``. ``count_points_square(x, y, report["origin"], report["cell_size"],
        report["shape"])`` counts points on the same grid; ``counts[cells.row, cells.col]`` lines the
        counts up with the cells.
    """
    if cover not in ("centre", "touch"):
        raise ValueError(f"cover must be 'centre' or 'touch', got {cover!r}")
    max_cells = int(max_cells)
    if max_cells < 1:
        raise ValueError(f"max_cells must be a positive integer, got {max_cells!r}")
    geom, crs = _area_geometry(area_polygon, crs)
    bounds = geom.bounds
    flags: list[str] = []
    area, perimeter = float(geom.area), float(geom.length)

    def estimate(cell):
        n = area / cell ** 2
        if cover == "touch":
            n += perimeter / cell
        return math.ceil(n)

    if cell_size is None:
        cell, raw = square_cell_size(bounds)
        auto, rule = True, SQUARE_RULE
        while estimate(cell) > max_cells:
            cell = nice_floor(cell * 2.01)  # next nice value up (×2, ×1.25 or ×2)
            if "cell_size_coarsened" not in flags:
                flags.append("cell_size_coarsened")
        if flags:
            rule += f"; coarsened to fit the budget of {max_cells:,} cells"
    else:
        cell, raw, auto, rule = _check_cell_size(cell_size), None, False, "given"
        if estimate(cell) > max_cells:
            raise UsmGeoError(
                f"a {cell:g} m grid over this area would have about {estimate(cell):,} cells, more than "
                f"the budget of {max_cells:,}",
                fix=f"pass a larger cell size (at least {math.sqrt(area / max_cells):.0f} m) or raise the cell budget "
                    f"to {estimate(cell):,} (max_cells; `usm-geo hotspots --max-cells {estimate(cell)}`)")
    est = estimate(cell)
    if est > max_cells / 2:
        flags.append("large_grid")

    origin, shape = _aligned(bounds, cell)
    rows_n, cols_n = shape
    shapely.prepare(geom)
    keep_r, keep_c = [], []
    rows_per_chunk = max(1, _CHUNK_CELLS // cols_n)
    col_idx = np.arange(cols_n, dtype=np.int64)
    with bar(rows_n * cols_n, "grid cells tested", unit="cells") as progress:
        for start in range(0, rows_n, rows_per_chunk):
            rr = np.arange(start, min(rows_n, start + rows_per_chunk), dtype=np.int64)
            r, c = (a.ravel() for a in np.meshgrid(rr, col_idx, indexing="ij"))
            cx = origin[0] + (c + 0.5) * cell
            cy = origin[1] + (rows_n - r - 0.5) * cell
            inside = shapely.intersects_xy(geom, cx, cy)
            if cover == "touch":
                rest = np.flatnonzero(~inside)
                if len(rest):
                    boxes = shapely.box(cx[rest] - cell / 2, cy[rest] - cell / 2, cx[rest] + cell / 2,
                                        cy[rest] + cell / 2)
                    hit = shapely.intersects(geom, boxes)
                    hit[hit] = ~shapely.touches(geom, boxes[hit])
                    inside[rest[hit]] = True
            keep_r.append(r[inside])
            keep_c.append(c[inside])
            progress.update(rr.size * cols_n)
    r = np.concatenate(keep_r) if keep_r else np.empty(0, np.int64)
    c = np.concatenate(keep_c) if keep_c else np.empty(0, np.int64)
    width = max(4, len(str(max(rows_n, cols_n) - 1)))
    x_left = origin[0] + c * cell
    y_bottom = origin[1] + (rows_n - 1 - r) * cell
    cells = gpd.GeoDataFrame(
        {"unit_id": _unit_ids(r, c, width), "row": r, "col": c},
        geometry=shapely.box(x_left, y_bottom, x_left + cell, y_bottom + cell), crs=crs)
    # meshgrid with indexing="ij" already yields raster order, which is unit_id order
    report = {
        "cell_size": cell,
        "cell_size_rule": rule,
        "cell_size_auto": auto,
        "cell_size_raw": raw,
        "origin": origin,
        "shape": shape,
        "cover": cover,
        "cells": len(cells),
        "cells_estimate": est,
        "max_cells": max_cells,
        "flags": flags,
    }
    return cells, report


def count_points_square(x, y, origin, cell_size: float, shape, *, weights=None):
    """Count (or sum ``weights`` of) points per square cell, vectorised and exact.

    Each point goes to cell ``col = floor((x − x0) / cell)``, ``row_from_bottom = floor((y − y0) /
    cell)``; the counts are returned in raster order (row 0 at the top). Cells are half-open, so a
    point exactly on an edge between two cells goes to the cell on its **right** (east) or **above**
    (north), and a point on the grid's right or top outer edge is outside. The binning is exact
    (``np.floor`` + ``np.bincount``, no ``histogram2d`` edge ambiguity) up to the rounding of
    ``(x − x0) / cell``, which is exact when coordinates, origin and cell size are whole metres.

    Parameters
    ----------
    x, y : array-like of float
        Working-CRS coordinates, metres. Non-finite points count as outside.
    origin : (float, float)
        Lower-left corner ``(x0, y0)`` of the grid, metres.
    cell_size : float
        Cell side, metres.
    shape : (int, int)
        ``(rows, cols)``.
    weights : array-like of float, optional
        Sum these instead of counting (e.g. harm weights).

    Returns
    -------
    (counts, report)
        ``counts``: float64 array of ``shape`` (int64 when unweighted). ``report``: ``points``,
        ``inside``, ``outside`` (points off the grid), ``total`` (count or weight inside).
    """
    cell = _check_cell_size(cell_size)
    rows, cols = (int(v) for v in shape)
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.shape != x.shape:
            raise ValueError(f"weights must have one value per point ({x.shape[0]}), got {weights.shape[0]}")
    with np.errstate(invalid="ignore"):
        fc = np.floor((x - float(origin[0])) / cell)
        fr = np.floor((y - float(origin[1])) / cell)
        ok = (fc >= 0) & (fc < cols) & (fr >= 0) & (fr < rows)
    idx = (rows - 1 - fr[ok].astype(np.int64)) * cols + fc[ok].astype(np.int64)
    w = weights[ok] if weights is not None else None
    counts = np.bincount(idx, weights=w, minlength=rows * cols).reshape(rows, cols)
    inside = int(ok.sum())
    report = {"points": int(x.shape[0]), "inside": inside, "outside": int(x.shape[0] - inside),
              "total": float(counts.sum())}
    return counts, report


# --------------------------------------------------------------------------------------------
# H3 grid
# --------------------------------------------------------------------------------------------

def _geodesic_bounds_size(geom) -> tuple[float, float]:
    """Width and height (metres, WGS 84 geodesics) of a lon/lat polygon's bounding box, measured
    along its middle parallel and middle meridian."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    xmin, ymin, xmax, ymax = geom.bounds
    ym, xm = (ymin + ymax) / 2, (xmin + xmax) / 2
    _, _, width = geod.inv(xmin, ym, xmax, ym)
    _, _, height = geod.inv(xm, ymin, xm, ymax)
    return float(width), float(height)


def h3_cells_estimate(area_m2: float, resolution: int) -> int:
    """About how many H3 cells of ``resolution`` cover ``area_m2`` square metres (area / the average
    hexagon area at that resolution; H3 cell areas vary by about ±30 % over the globe)."""
    return math.ceil(float(area_m2) / h3.average_hexagon_area(int(resolution), unit="m^2"))


def h3_grid(area_polygon_lonlat, resolution: int | None = None, *, cell_size: float | None = None,
            max_cells: int = MAX_CELLS, cover: str = "centre"):
    """H3 hexagons covering a study area given in lon/lat (EPSG:4326).

    Parameters
    ----------
    area_polygon_lonlat : shapely Polygon/MultiPolygon, GeoSeries or GeoDataFrame
        The study area in degrees, EPSG:4326 (a GeoSeries/GeoDataFrame in another CRS is
        reprojected to EPSG:4326 first).
    resolution : int, optional
        H3 resolution 0–15. Default: automatic (module docstring): the resolution whose average
        hexagon edge is closest on a log scale to ``cell_size`` — by default the automatic square
        cell size of the same area (shorter side of its geodesic bounding box / 50, rounded down to
        1, 2, 2.5 or 5 × 10^k m). Hexagons with that edge have about 2.6 × the area of the squares.
    cell_size : float, optional
        Target hexagon edge in metres for the automatic resolution, e.g. the ``cell_size`` of a
        :func:`square_grid` report. Ignored when ``resolution`` is given.
    max_cells : int
        Cell budget, estimated as geodesic area / area of the H3 cell at the area's
        ``representative_point``. Above it an explicit
        resolution raises :class:`~usm_geo.errors.UsmGeoError`; an automatic one is made coarser
        until it fits (flag ``resolution_coarsened``).
    cover : {"centre", "touch"}
        As :func:`usm_geo.units.h3cells.polygon_to_cells`.

    Returns
    -------
    (cells, report)
        ``cells``: GeoDataFrame (EPSG:4326) with ``unit_id`` (H3 hexadecimal string) and the
        hexagon ``geometry``, sorted by the uint64 cell index. ``report``: ``resolution``,
        ``resolution_rule``, ``resolution_auto``, ``hex_edge_m`` (average edge at that
        resolution), ``target_edge_m`` (None when the resolution was given), ``cells``,
        ``cells_estimate``, ``max_cells``, ``cover``, ``flags``.
    """
    from pyproj import Geod

    from usm_geo.units.h3cells import cell_polygons, cells_to_str, polygon_to_cells

    if isinstance(area_polygon_lonlat, (gpd.GeoDataFrame, gpd.GeoSeries)):
        frame = area_polygon_lonlat
        if frame.crs is not None and not frame.crs.equals("EPSG:4326", ignore_axis_order=True):
            frame = frame.to_crs(4326)
        geom, _ = _area_geometry(frame, projected=False)
    else:
        geom, _ = _area_geometry(area_polygon_lonlat, projected=False)
    xmin, ymin, xmax, ymax = geom.bounds
    if not (-180.0 <= xmin <= xmax <= 180.0 and -90.0 <= ymin <= ymax <= 90.0):
        raise CRSError(f"the area's bounds {geom.bounds} are not longitude/latitude degrees",
                       fix="reproject the area to EPSG:4326 with .to_crs(4326) first")
    max_cells = int(max_cells)
    area_m2 = abs(float(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0]))

    centre = geom.representative_point()

    def estimate(res):
        # H3 cell areas vary by about ±30 % over the globe: use the cell in the middle of the area
        local = h3.cell_area(h3.latlng_to_cell(centre.y, centre.x, res), unit="m^2")
        return math.ceil(area_m2 / local)

    flags: list[str] = []
    if resolution is None:
        if cell_size is None:
            target, _raw = square_cell_size((0.0, 0.0, *_geodesic_bounds_size(geom)))
        else:
            target = _check_cell_size(cell_size)
        edges = np.array([h3.average_hexagon_edge_length(r, unit="m") for r in range(16)])
        res = int(np.argmin(np.abs(np.log(edges / target))))
        auto, rule = True, H3_RULE if cell_size is None else (
            "resolution whose average hexagon edge is closest on a log scale to the given cell_size")
        while res > 0 and estimate(res) > max_cells:
            res -= 1
            if "resolution_coarsened" not in flags:
                flags.append("resolution_coarsened")
        if flags:
            rule += f"; coarsened to fit the budget of {max_cells:,} cells"
    else:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 0 <= resolution <= 15:
            raise ValueError(f"H3 resolution must be an integer from 0 to 15, got {resolution!r}")
        res, target, auto, rule = int(resolution), None, False, "given"
        if estimate(res) > max_cells:
            raise UsmGeoError(
                f"H3 resolution {res} over this area would give about {estimate(res):,} cells, more than "
                f"the budget of {max_cells:,}",
                fix="pass a coarser (smaller) resolution, or raise max_cells")
    est = estimate(res)
    if est > max_cells / 2:
        flags.append("large_grid")
    ids = polygon_to_cells(geom, res, cover=cover)
    cells = gpd.GeoDataFrame({"unit_id": cells_to_str(ids)}, geometry=cell_polygons(ids), crs="EPSG:4326")
    report = {
        "resolution": res,
        "resolution_rule": rule,
        "resolution_auto": auto,
        "hex_edge_m": float(h3.average_hexagon_edge_length(res, unit="m")),
        "target_edge_m": target,
        "cover": cover,
        "cells": len(cells),
        "cells_estimate": est,
        "max_cells": max_cells,
        "flags": flags,
    }
    return cells, report
