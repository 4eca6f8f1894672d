"""Threaded point → polygon assignment (usm_geo.units.assign, ``threads=``): the result is the
same, bit for bit, for any thread count, including points exactly on shared edges and vertices,
and the thread setting (argument, USM_GEO_THREADS) is validated."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import shapely

from usm_geo.errors import UsmGeoError
from usm_geo.units.assign import THREADS_ENV, PolygonIndex, assign_points, default_threads

X0, Y0, SIZE = 400_000.0, 5_800_000.0, 30_000.0  # a 30 km square in EPSG:32633


def voronoi(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seeds = shapely.multipoints(rng.uniform([X0, Y0], [X0 + SIZE, Y0 + SIZE], (n, 2)))
    square = shapely.box(X0, Y0, X0 + SIZE, Y0 + SIZE)
    return shapely.intersection(shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=square)), square)


def hard_points(polys: np.ndarray, n_random: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points plus every polygon vertex, every edge midpoint and points a few ulps either
    side of vertices, shuffled; NaN and far-away points too."""
    rng = np.random.default_rng(seed)
    xy = shapely.get_coordinates(shapely.boundary(polys))
    mid = (xy[:-1] + xy[1:]) / 2  # midpoints of consecutive coordinates (some span two rings: fine)
    ulp = np.nextafter(xy, np.inf) - xy
    parts = [xy, mid, xy + ulp, xy - ulp,
             rng.uniform([X0 - 300, Y0 - 300], [X0 + SIZE + 300, Y0 + SIZE + 300], (n_random, 2)),
             np.array([[np.nan, Y0 + 10.0], [X0 + 10.0, np.inf], [0.0, 0.0]])]
    pts = np.concatenate(parts)
    pts = pts[rng.permutation(len(pts))]
    return pts[:, 0].copy(), pts[:, 1].copy()


@pytest.fixture(scope="module")
def layer():
    return voronoi(500, seed=11)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba allows one thread only here")
@pytest.mark.parametrize("cell_size", [None, 120.0])
def test_threads_give_identical_results_on_edges_and_vertices(layer, cell_size):
    x, y = hard_points(layer, 400_000, seed=3)
    assert len(x) > 2 * 200_000  # above the parallel threshold, several chunks of work per thread
    idx = PolygonIndex.build(layer, cell_size=cell_size)
    one = idx.assign(x, y, threads=1)
    assert one.dtype == np.int64
    for kwargs in ({"threads": 2}, {"threads": 2, "parallel": True}, {"parallel": False},
                   {"threads": numba.config.NUMBA_NUM_THREADS}, {}):
        got = idx.assign(x, y, **kwargs)
        assert got.tobytes() == one.tobytes(), kwargs
    # The boundary points really are hard cases: vertices and midpoints all land in one polygon
    # (inside the square's lower-left boundary rule) or -1, never anything else.
    assert ((one >= -1) & (one < len(layer))).all()
    assert (one == -1).sum() < len(x)
    # Independent check (GEOS): an assigned point is inside its polygon or on / within rounding
    # (1e-6 m) of its boundary.
    got = one >= 0
    pts = shapely.points(x[got], y[got])
    inner = shapely.contains(layer[one[got]], pts)
    near = shapely.dwithin(shapely.boundary(layer[one[got]]), pts, 1e-6)
    assert (inner | near).all()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba allows one thread only here")
def test_caller_thread_limit_respected_and_restored(layer):
    """A dask worker calls numba.set_num_threads(1); assignment must not raise it, and must put
    the caller's setting back after a threaded launch."""
    x, y = hard_points(layer, 250_000, seed=4)
    idx = PolygonIndex.build(layer)
    ref = idx.assign(x, y, threads=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert idx.assign(x, y).tobytes() == ref.tobytes()  # default capped at the caller's 1
        assert numba.get_num_threads() == 1
        numba.set_num_threads(2)
        assert idx.assign(x, y, threads=2).tobytes() == ref.tobytes()
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


def test_default_threads_follows_environment(monkeypatch):
    import os

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(THREADS_ENV, "1")
    assert default_threads() == 1
    monkeypatch.setenv(THREADS_ENV, " 3 ")
    assert default_threads() == 3
    monkeypatch.setenv(THREADS_ENV, "")
    assert default_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_bad_environment_thread_count_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(THREADS_ENV, raw)
    with pytest.raises(UsmGeoError) as err:
        default_threads()
    assert THREADS_ENV in str(err.value) and repr(raw) in str(err.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_threads_argument(layer, bad):
    with pytest.raises(UsmGeoError, match="threads must be a positive whole number"):
        assign_points(np.array([X0 + 1.0]), np.array([Y0 + 1.0]), layer, threads=bad)
