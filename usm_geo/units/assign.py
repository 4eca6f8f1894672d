"""Exact, fast point → polygon assignment.

All coordinates are planar, in the polygons' (projected, metre-based) working CRS: the points
``x, y`` must be in the same CRS as the polygons. Nothing here reprojects.

How it works
------------
:meth:`PolygonIndex.build` lays a regular grid over the layer's bounds. The rings of every polygon
(exteriors and holes, MultiPolygons exploded) are flattened into numpy edge arrays. Each grid cell
is then one of

* **mixed** – some ring passes through it or within a rounding slack of it (found by walking every
  edge across the grid rows, an exact padded "supercover"): the cell keeps the sorted list of
  candidate polygons (those whose rings touch it plus those containing its centre);
* **direct** – no ring touches it, so it lies wholly inside (or outside) each polygon, and the
  polygon containing its centre (scanline fill along each row's centre line with the same crossing
  rule; lowest position if several) labels all its points directly;
* **empty** – no ring touches it and no polygon contains it: its points get ``-1`` directly.

Each sloped edge is also filed under every grid *row* its y-range reaches, per polygon, sorted by
its largest x. A kernel bins each point; in a mixed cell it runs an even-odd crossing-number
test against only the candidate's edges filed under the point's row (an edge that does not reach
the row cannot cross the point's horizontal ray), stopping at the first edge that lies wholly left
of the point. No shapely point objects are created; per point only the int64 result is allocated.
Building is linear in the number of edges and grid cells (no GEOS predicates), typically
0.1–0.5 s.

Two routes: every numba kernel here has a vectorised numpy twin in
:mod:`usm_geo.units.assign_numpy` with the same floating-point operations in the same order, so
both give the same index and the same labels, bit for bit. ``engine="auto"`` takes numpy for
builds and for up to :data:`NUMPY_MAX_POINTS` points (no numba import: a process that never runs a
kernel does not pay numba's 1.0–1.7 s start-up), numba for more points, for threads, and whenever
its kernels are already loaded in the process; ``engine="numpy"|"numba"`` forces one.

Threads: the points are cut into chunks of 131,072 that ``threads`` Python threads take in turn
as each finishes its last one; the kernel releases the GIL, so the threads run on separate cores
and a thread slowed down by other processes simply takes fewer chunks. Every point gets the same
arithmetic whichever thread handles it, so the result is identical, bit for bit, for any thread
count (``USM_GEO_THREADS`` or ``threads=``; default: the CPUs this process may use).

Boundary rule (one point, one polygon)
--------------------------------------
A point ``(px, py)`` is inside a polygon when a ray from it towards +x crosses the polygon's rings an
odd number of times, where an edge ``(x1, y1) → (x2, y2)`` counts when ``(y1 > py) != (y2 > py)`` and
``px < x_intersect`` (half-open crossing number). Consequences:

* The rule gives the same answer as testing the point moved by an infinitesimal ``(+ε, +ε²)``:
  to the right, and a hair up.
* In a **planar partition** (neighbouring polygons share edges with identical coordinates) a point
  lying exactly on a shared edge or on a shared vertex is therefore assigned to exactly one of the
  polygons that touch it: along a non-horizontal shared edge the polygon on the edge's **right**
  (+x side); along a horizontal shared edge the polygon **above** it (+y side); at a shared vertex
  the polygon just right of it (just above-right when a horizontal edge starts there). E.g. unit
  squares ``[0,1]²`` (position 0) and ``[1,2]×[0,1]`` (position 1): ``(1, 0.5)`` → 1,
  ``(1, 0)`` → 1, ``(0.5, 0)`` → 0, ``(0.5, 1)`` → ``-1`` (nothing above), ``(1, 1)`` → ``-1``.
* On the **outer boundary of the layer** the same rule applies: a point on a left or bottom outer
  edge is inside, a point on a right or top outer edge is outside (``-1``).
* A point not on any boundary gets the polygon that contains it (identical to
  ``geopandas.sjoin(predicate="within")``), up to floating-point rounding for points within about
  1e-9 of an edge in layer units.
* **Overlapping polygons** (not a partition): the point goes to the containing candidate with the
  **lowest position** in the layer (deterministic), not to all of them.
* Points with NaN or infinite coordinates get ``-1``; so do points outside the grid.
* "Shared" means identical vertex coordinates, as in a topologically clean layer. Where
  neighbours' boundaries differ slightly (slivers, gaps, a vertex on one side only), a point in a
  gap gets ``-1`` and a point in an overlap the lowest position, as for any other point.
* Empty or missing geometries never receive points. Rings are used as given (even-odd over all
  rings of a polygon), so an invalid polygon (self-intersecting ring) still gets a defined,
  deterministic answer; validity is checked at intake, not here.
"""

from __future__ import annotations

import itertools
import math
import os
import threading

import numpy as np
import shapely

from usm_geo.errors import BoundaryError, UsmGeoError
from usm_geo.io import bar
from usm_geo.units import assign_numpy, jit

__all__ = ["PolygonIndex", "assign_engine", "assign_points", "default_threads"]

#: Largest grid the default cell size allows (cells). 2**19 cells cost 2 MB of labels and build in
#: ~0.1–0.5 s; finer grids buy little, because with unsorted points a larger index means more
#: cache misses per point (measured: 10M points × 10k polygons is no faster at 20 m than at 40 m).
MAX_DEFAULT_CELLS = 2**19

#: Default cell size = (layer bbox area / total ring length) × this factor. The share of the area
#: in mixed cells is roughly ``1.3 × total ring length × cell size / area``, so a factor of 0.25
#: puts a sixth to a third of the area in mixed cells (15 % for 1,000 and 32 % for 10,000 Voronoi
#: polygons over 30 × 30 km), where a point is tested against a few edges per candidate.
DEFAULT_SIZE_FACTOR = 0.25

#: ... but at most this many times the mean edge length, so that a mixed cell of a layer with
#: detailed boundaries holds a few vertices rather than dozens (Chicago's 77 community areas, 20 m
#: mean edge: 79 m instead of 340 m, 2.7× faster assignment).
DEFAULT_EDGE_FACTOR = 4.0

_PARALLEL_MIN_POINTS = 200_000

_PROGRESS_CHUNK = 2_000_000  # points per kernel call (progress bar steps)

#: Points per work item of the threaded path. Threads take the next item from a shared counter as
#: they finish the last one (dynamic scheduling): on a machine whose cores are shared with other
#: processes a thread that is descheduled simply takes fewer items, where a static half-and-half
#: split (numba ``prange``, used before) has to wait for the slower half (a likely, not a proven,
#: reason why it scaled so little). Measured
#: back to back in one process, 10 M points, median of 3, 2-core machine at load 0.1 (1 thread /
#: 2 threads): ``prange`` 1.05× (1,000 Voronoi polygons) and 1.09× (10,000); these chunks 1.35× and
#: 1.57× (benchmarks/bench_assign.py ``--threads 1 2`` times both counts the same way).
_THREAD_CHUNK = 131_072


#: Most points :meth:`PolygonIndex.assign` sends down the numpy route when ``engine="auto"``.
#: Measured (docs/scale.md, "Two routes"): the numba route's first call in a process costs 1.0-1.7 s
#: (import numba, its CPU target, loading the cached kernel); the numpy route costs 0.2-1.0 µs per
#: point more than the kernel (1,000 and 10,000 Voronoi polygons, Chicago's 77 detailed community
#: areas), so up to ~2 M points it is done before numba would have started.
NUMPY_MAX_POINTS = 2_000_000

_ENGINES = ("auto", "numpy", "numba")


def _check_engine(engine) -> str:
    if engine not in _ENGINES:
        raise UsmGeoError(f"engine must be one of {', '.join(_ENGINES)}, got {engine!r}",
                          fix='leave it unset ("auto"), or pass "numpy" or "numba"')
    return engine


def _build_engine(engine) -> str:
    """``engine`` itself, or for ``"auto"``: numba when its build kernels are already loaded in
    this process, else numpy (measured: 1.2-2× the warm kernels' time, e.g. 0.39 s vs 0.27 s for
    10,000 Voronoi polygons, but no numba start-up of 1.0-1.7 s)."""
    engine = _check_engine(engine)
    if engine != "auto":
        return engine
    return "numba" if jit.compiled(_touch_kernel) else "numpy"


def assign_engine(n_points: int, engine: str = "auto", *, threaded: bool = False) -> str:
    """The route :meth:`PolygonIndex.assign` takes for ``n_points`` points: ``engine`` itself, or
    for ``"auto"``: ``"numba"`` when there are more than :data:`NUMPY_MAX_POINTS` points, when the
    caller asks for threads (``threaded``: ``parallel=True`` or ``threads`` > 1 given; only the
    numba route runs in threads) or when the compiled kernel is already loaded in this process (its
    start-up cost is paid), else ``"numpy"``. Both give the same result, bit for bit."""
    engine = _check_engine(engine)
    if engine != "auto":
        return engine
    if n_points > NUMPY_MAX_POINTS or threaded or jit.compiled(_assign_serial):
        return "numba"
    return "numpy"


def _as_geometry_array(polygons) -> np.ndarray:
    """Shapely object array from a GeoSeries / GeoDataFrame / array-like of Polygons."""
    geoms = getattr(polygons, "geometry", polygons)
    geoms = np.asarray(getattr(geoms, "values", geoms), dtype=object)
    if geoms.ndim != 1:
        raise BoundaryError(
            f"polygons must be a 1-d array of geometries, got shape {geoms.shape}",
            fix="pass a GeoSeries, a GeoDataFrame or a 1-d array of shapely Polygons",
        )
    # GeometryArray → numpy object array of shapely geometries (None allowed).
    type_id = shapely.get_type_id(geoms)
    ok = (type_id == 3) | (type_id == 6) | (type_id == -1) | shapely.is_empty(geoms)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise BoundaryError(
            f"geometry at position {bad} is a {geoms[bad].geom_type}, not a Polygon or MultiPolygon",
            fix="keep only polygon features in the unit layer",
        )
    return geoms


def default_cell_size(polygons) -> float:
    """The cell size (layer units, metres) :meth:`PolygonIndex.build` picks when none is given.

    Rule: ``max(min(DEFAULT_SIZE_FACTOR × bbox_area / ring_length, DEFAULT_EDGE_FACTOR ×
    ring_length / n_edges), sqrt(bbox_area / MAX_DEFAULT_CELLS))``, at most 1/16 of the layer's
    larger side, rounded down to 2 significant digits. The first term follows the typical spacing
    of boundaries, so that a sixth to a third of the area falls in mixed cells whatever the number
    of polygons; the second keeps a few vertices per mixed cell for detailed boundaries; the third
    caps the grid at ``MAX_DEFAULT_CELLS`` cells (memory, build time, cache misses). Examples: 58 m
    for 1,000 and 41 m for 10,000 Voronoi polygons over 30 × 30 km; 79 m for Chicago's 77
    community areas (52,641 vertices).
    """
    geoms = _as_geometry_array(polygons)
    return _default_cell_size(geoms)


def _default_cell_size(geoms: np.ndarray) -> float:
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    width, height = maxx - minx, maxy - miny
    if not np.isfinite(width) or width <= 0 or height <= 0:
        return 1.0
    area = width * height
    # Ring length (exterior + holes) is shapely.length of a polygon.
    length = float(np.nansum(shapely.length(geoms)))
    # Edges = vertices - rings (each ring repeats its first vertex). Only MultiPolygons are split
    # into parts (get_parts copies every geometry: 30 ms for 10,000 polygons, once is enough).
    multi = shapely.get_type_id(geoms) == 6
    parts = np.concatenate([geoms[~multi], shapely.get_parts(geoms[multi])]) if multi.any() else geoms
    n_edges = int(shapely.get_num_coordinates(geoms).sum()) - int(
        shapely.get_num_interior_rings(parts).sum() + len(parts))
    by_spacing = DEFAULT_SIZE_FACTOR * area / length if length > 0 else math.inf
    by_edges = DEFAULT_EDGE_FACTOR * length / n_edges if n_edges > 0 else math.inf
    by_cap = math.sqrt(area / MAX_DEFAULT_CELLS)
    size = max(min(by_spacing, by_edges), by_cap)
    # At least 16 cells across (a 1-polygon layer would otherwise get very few).
    size = min(size, max(width, height) / 16)
    digits = 1 - math.floor(math.log10(size))
    rounded = math.floor(size * 10**digits) / 10**digits
    return rounded if rounded > 0 else size


class PolygonIndex:
    """Grid-indexed exact point-in-polygon index over a polygon layer (a planar partition or not).

    Build once per layer with :meth:`build`, then call :meth:`assign` for any number of point
    batches. Coordinates are in the layer's projected CRS (metres). See the module docstring for
    the boundary rule.

    Attributes
    ----------
    cell_size : float
        Grid cell size in layer units (metres), chosen by :func:`default_cell_size` unless given.
    n_polygons : int
        Number of positions in the layer (including empty geometries).
    shape : tuple[int, int]
        Grid rows and columns.
    origin : tuple[float, float]
        Lower-left corner of the grid (the layer's minx, miny).
    stats : dict
        Counts of empty, direct and mixed cells, candidate pairs and row-band edge entries.
    """

    def __init__(self, *, cell_size, n_polygons, origin, shape, cell_label, block, stats):
        self.cell_size = float(cell_size)
        self.n_polygons = int(n_polygons)
        self.origin = (float(origin[0]), float(origin[1]))
        self.shape = (int(shape[0]), int(shape[1]))
        # Kernel arrays (see _pack_blocks): int32 label per cell (polygon, -1 empty, -2-o for a
        # mixed cell whose block starts at o) and the float64 blocks of the mixed cells.
        self._cell_label = cell_label
        self._block = block
        self._table = None  # assign_numpy.BlockTable, made on the numpy route's first use
        self.stats = stats

    def __repr__(self) -> str:
        return (f"PolygonIndex(n_polygons={self.n_polygons}, cell_size={self.cell_size:g}, "
                f"grid={self.shape[0]}×{self.shape[1]}, mixed_cells={self.stats['mixed_cells']})")

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, polygons, cell_size: float | None = None, *, engine: str = "auto") -> PolygonIndex:
        """Index a polygon layer.

        Parameters
        ----------
        polygons : GeoSeries, GeoDataFrame or 1-d array of shapely Polygon/MultiPolygon
            In a projected CRS (metres). Positions ``0..n-1`` are the labels :meth:`assign`
            returns. None or empty geometries are allowed and never receive points.
        cell_size : float, optional
            Grid cell size in layer units (metres). Default: :func:`default_cell_size` (reported in
            ``index.cell_size``).
        engine : {"auto", "numpy", "numba"}
            Which route builds the index; both give the same index, bit for bit. ``"auto"``: numba
            when its build kernels are already loaded in this process, else numpy (no numba import).
        """
        numba_build = _build_engine(engine) == "numba"
        geoms = _as_geometry_array(polygons)
        n = len(geoms)
        usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        if cell_size is None:
            cell_size = _default_cell_size(geoms[usable]) if usable.any() else 1.0
        cell_size = float(cell_size)
        if not (np.isfinite(cell_size) and cell_size > 0):
            raise BoundaryError(f"cell_size must be a positive number of metres, got {cell_size!r}")

        if not usable.any():
            return cls._empty(n, cell_size)

        minx, miny, maxx, maxy = shapely.total_bounds(geoms[usable])
        # floor(...) + 1 columns: every x in [minx, maxx) bins inside the grid even after rounding.
        nx = math.floor((maxx - minx) / cell_size) + 1
        ny = math.floor((maxy - miny) / cell_size) + 1
        if nx * ny > 2**31 - 2:
            raise BoundaryError(
                f"cell_size {cell_size:g} m gives a grid of {nx}×{ny} cells over the unit layer",
                fix="use a larger cell_size (or leave it unset for the automatic choice)",
            )

        pad = _pad(cell_size, minx, miny, maxx, maxy)
        x1, y1, x2, y2, epoly = _flatten_edges(geoms)
        n_cells = nx * ny
        # 1. Cells that some ring passes through or near (within `pad`): (cell, polygon) pairs.
        touch = _touch_pairs(x1, y1, x2, y2, epoly, minx, miny, cell_size, nx, ny, pad, n, numba_build)
        mixed = np.zeros(n_cells, dtype=np.bool_)
        mixed[touch // n] = True
        # 2. Non-horizontal edges filed under the grid rows they reach (the kernel's edge lists).
        sloped = y1 != y2
        ex1, ey1, ex2, ey2, emax, band_key, band_start, band_end = _row_bands(
            x1[sloped], y1[sloped], x2[sloped], y2[sloped], epoly[sloped], miny, cell_size, ny, n, pad)
        # 3. Scanline fill at each row's centre line: a cell that no ring touches is wholly inside
        #    or wholly outside each polygon, so its centre decides; overlaps → lowest position.
        #    Mixed cells also collect the polygons that contain their centre (they may contain the
        #    whole cell without touching it).
        cover_min = np.full(n_cells, _NONE, dtype=np.int32)
        if numba_build:
            counts = np.zeros(1, dtype=np.int64)
            _fill_rows(band_key, band_start, band_end, ex1, ey1, ex2, ey2, minx, miny, cell_size, nx, n,
                       mixed, cover_min, np.zeros(0, np.int64), counts, False)
            cover = np.empty(counts[0], dtype=np.int64)
            _fill_rows(band_key, band_start, band_end, ex1, ey1, ex2, ey2, minx, miny, cell_size, nx, n,
                       mixed, cover_min, cover, counts, True)
        else:
            cover = assign_numpy.fill_rows(band_key, band_start, band_end, ex1, ey1, ex2, ey2, minx, miny,
                                           cell_size, nx, n, mixed, cover_min)
        cell_label = np.where(cover_min == _NONE, -1, cover_min).astype(np.int32)
        del cover_min
        # Candidates of the mixed cells, sorted by cell then polygon position (lowest wins).
        pairs = _sorted_unique(np.concatenate([touch, cover]))
        del touch, cover
        cand_cell, cand_poly = pairs // n, pairs % n
        del pairs
        # Each (mixed cell, candidate) gets its own copy of the candidate's edges filed under the
        # cell's row, keeping only those reaching right of the cell's left side (the others can
        # never lie right of a point in the cell).
        want = (cand_cell // nx) * n + cand_poly
        lo = np.zeros(len(want), dtype=np.int64)
        hi = np.zeros(len(want), dtype=np.int64)
        if len(band_key):
            pos = np.minimum(np.searchsorted(band_key, want), len(band_key) - 1)
            # A candidate with no sloped edge filed under the cell's row cannot be crossed by any
            # ray from that row: zero crossings, "not inside", which is then the exact answer.
            found = band_key[pos] == want
            lo[found] = band_start[pos[found]]
            hi[found] = band_end[pos[found]]
            del pos, found
        del want
        thr = minx + (cand_cell % nx) * cell_size - pad
        hi = _prefix_end(emax, lo, hi, thr) if numba_build else assign_numpy.prefix_end(emax, lo, hi, thr)
        block, mixed_cells, header = _pack_blocks(
            cand_cell, cand_poly, lo, hi, (emax, ey1, ey2, ex1, ex2), numba_build)
        n_mixed = len(mixed_cells)
        if len(block) > 2**31 - 3:
            raise BoundaryError(
                f"the polygon index would need {len(block):,} entries (cell_size {cell_size:g} m)",
                fix="use a larger cell_size or simplify the polygons",
            )
        cell_label[mixed_cells] = (-2 - header).astype(np.int32)

        stats = {
            "cells": nx * ny,
            "empty_cells": int((cell_label == -1).sum()),
            "direct_cells": int((cell_label >= 0).sum()),
            "mixed_cells": int(n_mixed),
            "candidate_pairs": len(cand_poly),
            "index_bytes": int(cell_label.nbytes + block.nbytes),
            "edges": len(x1),
            "row_band_edges": len(ex1),
            "cell_edges": int((len(block) - n_mixed - 2 * len(cand_poly)) // 5),
        }
        return cls(cell_size=cell_size, n_polygons=n, origin=(minx, miny), shape=(ny, nx),
                   cell_label=cell_label, block=block, stats=stats)

    @classmethod
    def _empty(cls, n, cell_size):
        stats = {"cells": 1, "empty_cells": 1, "direct_cells": 0, "mixed_cells": 0,
                 "candidate_pairs": 0, "edges": 0, "row_band_edges": 0, "cell_edges": 0,
                 "index_bytes": 4}
        return cls(cell_size=cell_size, n_polygons=n, origin=(0.0, 0.0), shape=(1, 1),
                   cell_label=np.full(1, -1, np.int32), block=np.zeros(0, np.float64), stats=stats)

    # ----------------------------------------------------------------- assign
    def assign(self, x: np.ndarray, y: np.ndarray, *, parallel: bool | None = None,
               threads: int | None = None, engine: str = "auto") -> np.ndarray:
        """Position of the polygon containing each point, ``-1`` for none.

        Parameters
        ----------
        x, y : array-like of float
            Point coordinates in the layer's CRS (metres); same shape. NaN/inf → ``-1``.
        parallel : bool, optional
            ``False`` forces the single-threaded kernel, ``True`` the threaded one (when more than
            one thread is allowed). Default: threads when there are at least 200,000 points.
        threads : int, optional
            Number of threads sharing the points (chunks of 131,072 points handed out as threads
            become free; the numba kernel releases the GIL). Default: :func:`default_threads`
            (``USM_GEO_THREADS`` if set, else the CPUs this process may run on), never more than
            numba's per-thread limit (``numba.get_num_threads()``; 1 inside a dask worker).
            ``1`` runs the single-threaded kernel. The result does not depend on it, bit for bit.
            The numpy route runs in the calling thread.
        engine : {"auto", "numpy", "numba"}
            ``"numba"``: the compiled kernel (imports numba on first use); ``"numpy"``: the
            vectorised numpy route (no numba). Same result, bit for bit. ``"auto"``: see
            :func:`assign_engine`.

        Returns
        -------
        numpy.ndarray of int64, same shape as ``x``.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
        shape = x.shape
        xf = np.ascontiguousarray(x).reshape(-1)
        yf = np.ascontiguousarray(y).reshape(-1)
        out = np.empty(xf.shape[0], dtype=np.int64)
        n_threads = _resolve_threads(threads)
        ny, nx = self.shape
        n = xf.shape[0]
        asked = parallel is True or (threads is not None and n_threads > 1)
        if assign_engine(n, engine, threaded=asked) == "numpy":
            if self._table is None:  # the blocks read into flat arrays, once per index
                self._table = assign_numpy.BlockTable(self._cell_label, self._block)
            with bar(n if n > _PROGRESS_CHUNK else None, "assigning points", unit="points") as progress:
                for lo in range(0, n, _PROGRESS_CHUNK):
                    hi = min(n, lo + _PROGRESS_CHUNK)
                    out[lo:hi] = assign_numpy.assign_points(
                        xf[lo:hi], yf[lo:hi], self.origin[0], self.origin[1], self.cell_size, nx, ny,
                        self._cell_label, self._block, self._table)
                    progress.update(hi - lo)
            return out.reshape(shape)
        if parallel is None:
            parallel = xf.shape[0] >= _PARALLEL_MIN_POINTS and n_threads > 1
        # One thread allowed → the serial kernel (same result, no thread-pool launch).
        parallel = bool(parallel) and n_threads > 1
        grid = (self.origin[0], self.origin[1], self.cell_size, nx, ny, self._cell_label, self._block)

        def run(lo, hi):
            # the numba kernel releases the GIL: several of these run at once on separate cores
            _assign_serial(xf[lo:hi], yf[lo:hi], out[lo:hi], *grid)

        # The kernel is element-wise, so the result is the same bit for bit for any chunking and
        # any thread count; chunks exist for the progress bar and for sharing work between threads.
        with bar(n if n > _PROGRESS_CHUNK else None, "assigning points", unit="points") as progress:
            if parallel:
                _run_threaded(run, n, n_threads, progress)
            else:
                for lo in range(0, n, _PROGRESS_CHUNK):
                    hi = min(n, lo + _PROGRESS_CHUNK)
                    run(lo, hi)
                    progress.update(hi - lo)
        return out.reshape(shape)


#: Environment variable that sets the default number of assignment threads.
THREADS_ENV = "USM_GEO_THREADS"


def default_threads() -> int:
    """Default thread count for :meth:`PolygonIndex.assign`: ``USM_GEO_THREADS`` when set (a
    positive integer), else the number of CPUs this process may run on (``os.sched_getaffinity``,
    which honours ``taskset`` and container CPU sets; ``os.cpu_count`` where unavailable)."""
    raw = os.environ.get(THREADS_ENV)
    if raw is not None and raw.strip():
        try:
            value = int(raw.strip())
        except ValueError:
            value = 0
        if value < 1:
            raise UsmGeoError(
                f"environment variable {THREADS_ENV}={raw!r} is not a positive whole number of threads",
                fix=f"set {THREADS_ENV} to 1, 2, ... (or unset it to use every available CPU)",
            )
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _run_threaded(run, n: int, n_threads: int, progress) -> None:
    """Call ``run(lo, hi)`` over ``[0, n)`` in chunks of ``_THREAD_CHUNK`` from ``n_threads``
    threads (this one included), each taking the next chunk when it finishes one. ``run`` must
    release the GIL (a nogil numba kernel) and write only its own slice. The first error raised in
    a thread is re-raised here after all threads stop."""
    chunks = itertools.count()
    n_chunks = -(-n // _THREAD_CHUNK)
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = [0]

    def work():
        try:
            while not errors:
                c = next(chunks)  # atomic under the GIL
                if c >= n_chunks:
                    return
                lo = c * _THREAD_CHUNK
                hi = min(n, lo + _THREAD_CHUNK)
                run(lo, hi)
                with lock:  # the progress bar is not thread-safe; step it in whole 2M-point steps
                    done[0] += hi - lo
                    if done[0] >= _PROGRESS_CHUNK:
                        progress.update(done[0])
                        done[0] = 0
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)

    helpers = [threading.Thread(target=work, name=f"usm_geo-assign-{k}", daemon=True)
               for k in range(n_threads - 1)]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    if done[0]:
        progress.update(done[0])
    if errors:
        raise errors[0]


def _resolve_threads(threads) -> int:
    """The thread count to launch with: the request (or the default), capped by the calling
    thread's limit (:func:`usm_geo.units.jit.max_threads`: numba's ``NUMBA_NUM_THREADS`` or
    ``numba.set_num_threads``, and a Dask worker's one thread)."""
    if threads is None:
        threads = default_threads()
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise UsmGeoError(f"threads must be a positive whole number, got {threads!r}",
                          fix="pass threads=1 for one thread, or leave it unset for every available CPU")
    cap = jit.max_threads()
    return int(threads) if cap is None else int(min(int(threads), cap))


def assign_points(x, y, polygons, cell_size: float | None = None, *,
                  threads: int | None = None) -> np.ndarray:
    """Build a :class:`PolygonIndex` over ``polygons`` and assign the points ``x, y`` (same CRS,
    metres). Returns int64 positions into ``polygons``, ``-1`` where no polygon contains the point.
    ``threads`` as in :meth:`PolygonIndex.assign`. Build the index once and reuse it when assigning
    several batches to the same layer."""
    return PolygonIndex.build(polygons, cell_size=cell_size).assign(x, y, threads=threads)


# --------------------------------------------------------------------------- build helpers
def _flatten_edges(geoms: np.ndarray):
    """All ring edges of all polygons as arrays ``(x1, y1, x2, y2, polygon)``, each edge oriented
    upwards (``y1 <= y2``). Zero-length edges (repeated vertices) are dropped.
    """
    multi = shapely.get_type_id(geoms) == 6
    if multi.any():
        parts, part_poly = shapely.get_parts(geoms, return_index=True)
    else:  # Polygons only: no copies (get_parts clones every geometry)
        usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        part_poly = np.flatnonzero(usable)
        parts = geoms[part_poly]
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, coord_ring = shapely.get_coordinates(rings, return_index=True)
    same_ring = coord_ring[1:] == coord_ring[:-1]
    ring_poly = part_poly[ring_part]
    x1, y1 = xy[:-1, 0][same_ring], xy[:-1, 1][same_ring]
    x2, y2 = xy[1:, 0][same_ring], xy[1:, 1][same_ring]
    poly = ring_poly[coord_ring[:-1][same_ring]].astype(np.int64)
    keep = (x1 != x2) | (y1 != y2)
    x1, y1, x2, y2, poly = x1[keep], y1[keep], x2[keep], y2[keep], poly[keep]
    # Orient every edge upwards (lexicographically by (y, x)). A shared edge then has the same
    # (x1, y1, x2, y2) in both neighbours whichever way their rings run, so the kernel computes the
    # very same rounded crossing for both: a point on or a rounding error off a shared edge is in
    # exactly one of them, never in both or in neither.
    flip = (y1 > y2) | ((y1 == y2) & (x1 > x2))
    x1, x2 = np.where(flip, x2, x1), np.where(flip, x1, x2)
    y1, y2 = np.where(flip, y2, y1), np.where(flip, y1, y2)
    return x1, y1, x2, y2, poly


def _pad(cs, minx, miny, maxx, maxy) -> float:
    """Slack (layer units) added around cells and edges: far above floating-point rounding of the
    binning arithmetic (≥ ~250 ulps of the largest coordinate), far below any real distance."""
    big = max(abs(minx), abs(miny), abs(maxx), abs(maxy), cs)
    return max(cs * 1e-6, big * 5e-14)


_NONE = np.iinfo(np.int32).max


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int64 array (np.sort + mask: several times faster here than
    ``np.unique``, whose hash path dominated the build time)."""
    a = np.sort(a)
    if len(a):
        keep = np.empty(len(a), dtype=bool)
        keep[0] = True
        np.not_equal(a[1:], a[:-1], out=keep[1:])
        a = a[keep]
    return a


def _row_bands(x1, y1, x2, y2, poly, y0, cs, ny, n_polys, pad):
    """File each (sloped) edge under every grid row its y-range overlaps (padded).

    Returns edge arrays sorted by (row, polygon, -max x), the sorted unique keys
    ``row * n_polys + polygon`` and the [start, end) of each key's edges.
    """
    lo = np.floor((np.minimum(y1, y2) - pad - y0) / cs)
    hi = np.floor((np.maximum(y1, y2) + pad - y0) / cs)
    lo = np.clip(lo, 0, ny - 1).astype(np.int64)
    hi = np.clip(hi, 0, ny - 1).astype(np.int64)
    count = hi - lo + 1
    src = np.repeat(np.arange(len(x1)), count)
    start = np.repeat(np.cumsum(count) - count, count)
    row = lo[src] + (np.arange(len(src)) - start)
    key = row * n_polys + poly[src]
    emax_all = np.maximum(x1, x2)[src]
    order = np.lexsort((-emax_all, key))
    src, key = src[order], key[order]
    band_key, band_start, band_count = np.unique(key, return_index=True, return_counts=True)
    return (np.ascontiguousarray(x1[src]), np.ascontiguousarray(y1[src]),
            np.ascontiguousarray(x2[src]), np.ascontiguousarray(y2[src]),
            np.ascontiguousarray(emax_all[order]),
            band_key, band_start.astype(np.int64), (band_start + band_count).astype(np.int64))


def _pack_blocks(cand_cell, cand_poly, lo, hi, fields, numba_build=True):
    """Lay out every mixed cell's candidates and their edges in one contiguous float64 block.

    Block of a mixed cell: ``[n_candidates, (polygon, n_edges, n_edges × (max x, y1, y2, x1, x2))
    per candidate]``, candidates in increasing polygon position. A point in a mixed cell then reads
    one contiguous run of memory: with millions of unsorted points the kernel is bound by memory
    latency, and scattered lookups (cell → CSR → candidate → edge list) cost more.
    Integers are stored as float64, exact below 2**53. ``cand_*`` must be sorted by cell.
    Returns the block array, the mixed cells and the offset of each one's block.
    """
    count = hi - lo
    n_pairs = len(cand_cell)
    first = np.ones(n_pairs, dtype=bool)
    first[1:] = cand_cell[1:] != cand_cell[:-1]
    size = 2 + 5 * count + first
    end = np.cumsum(size)
    begin = end - size
    content = begin + first  # where the candidate's (polygon, n_edges) go
    block = np.empty(int(end[-1]) if n_pairs else 0, dtype=np.float64)
    header = begin[first]
    mixed_cells = cand_cell[first]
    block[header] = np.diff(np.append(np.flatnonzero(first), n_pairs))
    block[content] = cand_poly
    block[content + 1] = count
    if numba_build:
        _copy_edges(block, content, lo, count, *fields)
    else:
        assign_numpy.copy_edges(block, content, lo, count, *fields, headers=header)
    return block, mixed_cells, header


@jit.njit(cache=True, nogil=True)
def _copy_edges(block, content, lo, count, f0, f1, f2, f3, f4):
    """Copy each candidate's edges (``count[p]`` edges from ``lo[p]``, five fields each) into its
    block after its (polygon, n_edges) header. One pass in numba: the numpy version (repeat +
    fancy-index scatter per field) was half of the build time for 10,000 polygons."""
    for p in range(content.shape[0]):
        d = content[p] + 2
        for e in range(lo[p], lo[p] + count[p]):
            block[d] = f0[e]
            block[d + 1] = f1[e]
            block[d + 2] = f2[e]
            block[d + 3] = f3[e]
            block[d + 4] = f4[e]
            d += 5


@jit.njit(cache=True, nogil=True)
def _prefix_end(emax, lo, hi, thr):
    """For each range [lo, hi) of ``emax`` (sorted decreasing), the end of its prefix > thr."""
    out = lo.copy()
    for i in range(lo.shape[0]):
        k = lo[i]
        while k < hi[i] and emax[k] > thr[i]:
            k += 1
        out[i] = k
    return out


def _touch_pairs(x1, y1, x2, y2, poly, x0, y0, cs, nx, ny, pad, n_polys, numba_build=True):
    """Unique keys ``cell * n_polys + polygon`` of every cell an edge passes through or within
    ``pad`` of (an exact, padded supercover of each segment)."""
    if not numba_build:
        return _sorted_unique(assign_numpy.touch_keys(x1, y1, x2, y2, poly, x0, y0, cs, nx, ny, pad, n_polys))
    counts = np.zeros(1, dtype=np.int64)
    _touch_kernel(x1, y1, x2, y2, poly, x0, y0, cs, nx, ny, pad, n_polys,
                  np.zeros(0, np.int64), counts, False)
    out = np.empty(counts[0], dtype=np.int64)
    _touch_kernel(x1, y1, x2, y2, poly, x0, y0, cs, nx, ny, pad, n_polys, out, counts, True)
    return _sorted_unique(out)


@jit.njit(cache=True, nogil=True)
def _touch_kernel(x1, y1, x2, y2, poly, x0, y0, cs, nx, ny, pad, n_polys, out, counts, write):
    k = 0
    for e in range(x1.shape[0]):
        ax, ay, bx, by = x1[e], y1[e], x2[e], y2[e]
        ylo = min(ay, by)
        yhi = max(ay, by)
        r_lo = max(0, math.floor((ylo - pad - y0) / cs))
        r_hi = min(ny - 1, math.floor((yhi + pad - y0) / cs))
        for r in range(r_lo, r_hi + 1):
            # Part of the segment inside the (padded) row band → its x-range.
            if ay == by:
                xa = min(ax, bx)
                xb = max(ax, bx)
            else:
                b0 = min(max(y0 + r * cs - pad, ylo), yhi)
                b1 = min(max(y0 + (r + 1) * cs + pad, ylo), yhi)
                xa = ax + (b0 - ay) * (bx - ax) / (by - ay)
                xb = ax + (b1 - ay) * (bx - ax) / (by - ay)
                if xa > xb:
                    xa, xb = xb, xa
            c_lo = max(0, math.floor((xa - pad - x0) / cs))
            c_hi = min(nx - 1, math.floor((xb + pad - x0) / cs))
            for c in range(c_lo, c_hi + 1):
                if write:
                    out[k] = (r * nx + c) * n_polys + poly[e]
                k += 1
    counts[0] = k


@jit.njit(cache=True, nogil=True)
def _shell_sort(a, m):
    """Sort a[:m] in place. Usually m is 2–4 crossings; a hand-written sort compiles in a fraction
    of the time ``np.sort`` takes to compile in numba (seconds, paid on first use)."""
    gap = 1
    while gap < m // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, m):
            v = a[i]
            j = i
            while j >= gap and a[j - gap] > v:
                a[j] = a[j - gap]
                j -= gap
            a[j] = v
        gap //= 3


@jit.njit(cache=True, nogil=True)
def _fill_rows(band_key, band_start, band_end, ex1, ey1, ex2, ey2, x0, y0, cs, nx, n_polys,
               mixed, cover_min, out, counts, write):
    """Even-odd scanline fill of every polygon along each row's centre line (same half-open rule
    as the kernel). Unmixed cells keep the lowest covering polygon in ``cover_min``; for mixed cells
    the (cell, polygon) keys are written to ``out`` (second pass) and counted (first pass)."""
    maxlen = 0
    for g in range(band_key.shape[0]):
        maxlen = max(maxlen, band_end[g] - band_start[g])
    xs = np.empty(maxlen, dtype=np.float64)
    k = 0
    for g in range(band_key.shape[0]):
        row = band_key[g] // n_polys
        p = band_key[g] - row * n_polys
        yc = y0 + (row + 0.5) * cs
        m = 0
        for e in range(band_start[g], band_end[g]):
            a = ey1[e]
            b = ey2[e]
            if (a > yc) != (b > yc):
                xs[m] = ex1[e] + (yc - a) * (ex2[e] - ex1[e]) / (b - a)
                m += 1
        if m < 2:
            continue
        _shell_sort(xs, m)
        srt = xs
        # A centre xc is inside when an odd number of crossings lie strictly right of it, i.e.
        # xc in [srt[m-2], srt[m-1]), [srt[m-4], srt[m-3]), ...
        for j in range(m % 2, m - 1, 2):
            lo = srt[j]
            hi = srt[j + 1]
            c_lo = max(0, math.ceil((lo - x0) / cs - 0.5))
            c_hi = min(nx - 1, math.ceil((hi - x0) / cs - 0.5) - 1)
            for c in range(c_lo, c_hi + 1):
                cell = row * nx + c
                if mixed[cell]:
                    if write:
                        out[k] = cell * n_polys + p
                    k += 1
                elif not write and p < cover_min[cell]:
                    cover_min[cell] = p
    counts[0] = k


# --------------------------------------------------------------------------- kernel
@jit.njit(cache=True, nogil=True, inline="always")
def _cell_code(px, py, x0, y0, cs, nx, ny, cell_label):
    """The grid's answer for one point: a polygon position, ``-1`` (empty cell, outside the grid,
    NaN/inf), or ``-2 - q`` for a mixed cell whose block starts at ``q``."""
    if not (math.isfinite(px) and math.isfinite(py)):
        return -1
    fx = (px - x0) / cs
    fy = (py - y0) / cs
    if fx < 0.0 or fy < 0.0 or fx >= nx or fy >= ny:
        return -1
    return cell_label[int(fy) * nx + int(fx)]


@jit.njit(cache=True, nogil=True, inline="always")
def _locate(px, py, x0, y0, cs, nx, ny, cell_label, block):
    lab = _cell_code(px, py, x0, y0, cs, nx, ny, cell_label)
    if lab >= -1:
        return lab
    return _test_block(px, py, -lab - 2, block)


@jit.njit(cache=True, nogil=True, inline="always")
def _test_block(px, py, q, block):
    """Crossing-number test of one point against the candidates of the mixed cell whose block
    starts at ``q``: the first (lowest-position) candidate containing it, else ``-1``."""
    n_cand = int(block[q])
    q += 1
    for _ in range(n_cand):
        poly = int(block[q])
        n_edges = int(block[q + 1])
        q += 2
        inside = False
        for k in range(q, q + 5 * n_edges, 5):
            # Edges are sorted by decreasing max x: once an edge lies wholly at or left of the
            # point, so do all remaining ones, and none can satisfy px < x_intersect.
            if block[k] <= px:
                break
            y1 = block[k + 1]
            y2 = block[k + 2]
            if (y1 > py) != (y2 > py):
                x1 = block[k + 3]
                x2 = block[k + 4]
                xi = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
                # Clamp rounding so the intersection never leaves the edge's x-range (keeps the
                # early exit above exact).
                if x1 < x2:
                    xi = min(max(xi, x1), x2)
                else:
                    xi = min(max(xi, x2), x1)
                if px < xi:
                    inside = not inside
        if inside:
            return poly
        q += 5 * n_edges
    return -1


@jit.njit(cache=True, nogil=True)
def _assign_serial(x, y, out, x0, y0, cs, nx, ny, cell_label, block):
    for i in range(x.shape[0]):
        out[i] = _locate(x[i], y[i], x0, y0, cs, nx, ny, cell_label, block)
