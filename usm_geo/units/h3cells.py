"""H3 cells for points and polygons, vectorised.

Coordinates are longitude/latitude in degrees (EPSG:4326, the CRS of H3). Cells are ``uint64`` H3
indexes throughout; :func:`cells_to_str` gives the usual hexadecimal strings (``h3.int_to_str``).
Points are indexed by :mod:`usm_geo.units.h3index` (point-in-hexagon on the icosahedron faces in
numba, h3-py for points within micrometres of a cell edge); polygons, strings and neighbours by
``h3ronpy`` (Rust). Both agree exactly with the reference ``h3`` (h3-py) library; the tests check
that cell by cell.

Geometry of cells (:func:`cell_polygons`, ``cover="touch"``) is the usual planar lon/lat hexagon
through the cell's boundary vertices, as GIS software draws it. Cells crossing the antimeridian are
not handled specially (a city-scale study area never contains one).
"""

from __future__ import annotations

import os

import numpy as np
import shapely

from usm_geo.errors import CoordinateError
from usm_geo.units.h3index import cells_of_points

__all__ = ["cell_polygons", "cells_to_str", "parent_cells", "points_to_cells", "polygon_to_cells"]

# Points per kernel call when indexing points in threads (the numba kernel releases the GIL).
_CHUNK = 500_000

# Layout of an H3 cell index: resolution in bits 52–55, then 15 digits of 3 bits (digit r in bits
# 3*(15-r) .. 3*(15-r)+2); digits finer than the resolution are 7 (all ones).
_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


def _check_resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not (
        0 <= resolution <= 15
    ):
        raise ValueError(f"H3 resolution must be an integer from 0 to 15, got {resolution!r}")
    return int(resolution)


def points_to_cells(lon: np.ndarray, lat: np.ndarray, resolution: int, *,
                    threads: int | None = None) -> np.ndarray:
    """H3 cell of each point, as ``uint64`` (equal to ``h3.latlng_to_cell``).

    Parameters
    ----------
    lon, lat : array-like of float
        Degrees, EPSG:4326, same shape. Callers pass only valid points: intake drops or ledgers
        unusable coordinates first. Non-finite values raise :class:`~usm_geo.errors.CoordinateError`
        (H3 has no cell for them); longitudes outside ±180 wrap as in H3.
    resolution : int
        H3 resolution, 0–15.
    threads : int, optional
        Threads for large inputs (the kernel releases the GIL); default: the number of CPUs. The
        result does not depend on it.

    Returns
    -------
    numpy.ndarray of uint64, same shape as ``lon``.
    """
    res = _check_resolution(resolution)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if lon.shape != lat.shape:
        raise ValueError(f"lon and lat must have the same shape, got {lon.shape} and {lat.shape}")
    shape = lon.shape
    lon = np.ascontiguousarray(lon).reshape(-1)
    lat = np.ascontiguousarray(lat).reshape(-1)
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CoordinateError(
            f"{int(bad.sum())} point(s) have no finite lon/lat (first at position {first}: "
            f"lon={lon[first]!r}, lat={lat[first]!r}); H3 has no cell for them",
            fix="drop them (intake lists them in the ledger) before indexing",
        )
    if threads is None:
        threads = os.cpu_count() or 1
    return cells_of_points(lat, lon, res, threads=threads, chunk=_CHUNK).reshape(shape)


# h3 and h3ronpy are imported where they are used: a run without H3 cells (``usm-geo aggregate``
# onto polygons) does not pay their import (22 ms of a 1.2 s process).

def _coords_to_cells(lat, lon, res):
    import h3ronpy.vector as h3v

    return np.asarray(h3v.coordinates_to_cells(lat, lon, res), dtype=np.uint64)


def cells_to_str(cells: np.ndarray) -> np.ndarray:
    """Hexadecimal string ids (``h3.int_to_str``) of ``uint64`` cells, as an object array.
    The H3 null index 0 becomes None."""
    cells = np.asarray(cells, dtype=np.uint64)
    shape = cells.shape
    flat = cells.reshape(-1)
    out = np.full(flat.shape[0], None, dtype=object)
    valid = flat != 0
    if valid.any():
        import h3ronpy

        out[valid] = h3ronpy.cells_to_string(np.ascontiguousarray(flat[valid])).to_numpy()
    return out.reshape(shape)


def parent_cells(cells: np.ndarray, resolution: int) -> np.ndarray:
    """Parent of each cell at ``resolution`` (equal to ``h3.cell_to_parent``), by bit operations.

    Every cell must be at ``resolution`` or finer (ValueError otherwise). The null index 0 stays 0.
    To roll counts up, count the fine cells first and take the parents of the ~10k distinct cells
    rather than of every point.
    """
    res = _check_resolution(resolution)
    cells = np.asarray(cells, dtype=np.uint64)
    valid = cells != 0
    cell_res = (cells & _RES_MASK) >> _RES_SHIFT
    if (cell_res[valid] < res).any():
        raise ValueError(
            f"cannot take the resolution-{res} parent of cells at resolution "
            f"{int(cell_res[valid].min())}; parents must be coarser than their cells"
        )
    finer_digits = np.uint64((1 << (3 * (15 - res))) - 1)
    parent = (cells & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT) | finer_digits
    return np.where(valid, parent, np.uint64(0))


def cell_polygons(cells: np.ndarray) -> np.ndarray:
    """Hexagon (or pentagon) of each cell as a shapely Polygon in lon/lat (EPSG:4326), through the
    cell's boundary vertices (as ``h3.cell_to_boundary``, with lon/lat order)."""
    cells = np.ascontiguousarray(np.asarray(cells, dtype=np.uint64).reshape(-1))
    if cells.shape[0] == 0:
        return np.empty(0, dtype=object)
    import h3ronpy.vector as h3v

    wkb = h3v.cells_to_wkb_polygons(cells).to_numpy()
    return shapely.from_wkb(wkb)


def polygon_to_cells(polygon_lonlat, resolution: int, cover: str = "centre") -> np.ndarray:
    """Cells covering a polygon in lon/lat (EPSG:4326), sorted and unique, ``uint64``.

    Parameters
    ----------
    polygon_lonlat : shapely Polygon or MultiPolygon
        Degrees, EPSG:4326 (e.g. the study area reprojected with ``to_crs(4326)``). A
        GeometryCollection is reduced to its polygonal parts.
    resolution : int
        H3 resolution, 0–15.
    cover : {"centre", "touch"}
        ``"centre"``: cells whose centre lies inside the polygon (same set as
        ``h3.polygon_to_cells``/``h3.geo_to_cells``). ``"touch"``: every cell whose hexagon
        (:func:`cell_polygons`) intersects the polygon, boundary contact included; a superset of
        ``"centre"``.
    """
    res = _check_resolution(resolution)
    if cover not in ("centre", "touch"):
        raise ValueError(f"cover must be 'centre' or 'touch', got {cover!r}")
    geom = polygon_lonlat
    if isinstance(geom, shapely.GeometryCollection) and not isinstance(geom, shapely.MultiPolygon):
        # A union of a messy layer may come back as a collection with stray lines or points.
        parts = [g for g in shapely.get_parts(geom) if isinstance(g, (shapely.Polygon, shapely.MultiPolygon))]
        geom = shapely.MultiPolygon(list(shapely.get_parts(parts))) if parts else shapely.MultiPolygon()
    if not isinstance(geom, (shapely.Polygon, shapely.MultiPolygon)):
        raise TypeError(f"expected a shapely Polygon or MultiPolygon, got {type(geom).__name__}")
    if geom.is_empty:
        return np.empty(0, dtype=np.uint64)
    import h3ronpy.vector as h3v

    centre = np.unique(np.asarray(h3v.geometry_to_cells(geom, res), dtype=np.uint64))
    if cover == "centre":
        return centre
    return _touching_cells(geom, res, centre)


def _touching_cells(geom, res, centre):
    """Cells whose hexagon intersects ``geom``: the centre cells plus every boundary cell.

    A cell that intersects the polygon either lies in its interior (then its centre is inside, so
    it is in ``centre``) or contains part of the polygon's boundary. Along each ring the boundary
    cells form a chain of edge-adjacent hexagons (hexagons that share a vertex share an edge), so a
    flood fill that starts at the rings' vertices and steps only through boundary cells reaches
    them all, without visiting the interior. Seeding with points spaced half a hexagon edge along
    the boundary keeps the fill to a few rounds.
    """
    import h3

    shapely.prepare(geom)
    # Half the average edge length, in degrees of latitude (a shorter step in longitude, which is
    # only more seeds, never fewer).
    step = h3.average_hexagon_edge_length(res, unit="km") / 111.32 / 2
    boundary = shapely.segmentize(shapely.boundary(geom), step)
    lonlat = shapely.get_coordinates(boundary)
    seeds = np.unique(_coords_to_cells(np.ascontiguousarray(lonlat[:, 1]),
                                       np.ascontiguousarray(lonlat[:, 0]), res))
    # The planar hexagon holding a boundary point may be a neighbour of the cell H3 assigns the
    # point to (planar lon/lat hexagon and true cell differ by a hair): start from the rings.
    frontier = _disk(seeds)
    seen = np.empty(0, dtype=np.uint64)
    found = [centre]
    while len(frontier):
        frontier = np.setdiff1d(frontier, seen, assume_unique=True)
        if not len(frontier):
            break
        seen = np.union1d(seen, frontier)
        hexes = cell_polygons(frontier)
        hit = shapely.intersects(geom, hexes)
        found.append(frontier[hit])
        on_boundary = hit & ~shapely.contains_properly(geom, hexes)
        frontier = _disk(frontier[on_boundary])
    return np.unique(np.concatenate(found))


def _disk(cells):
    """Unique cells within one grid step of ``cells`` (the cells included)."""
    if not len(cells):
        return cells
    import h3ronpy

    return np.unique(np.asarray(h3ronpy.grid_disk(cells, 1, flatten=True), dtype=np.uint64))
