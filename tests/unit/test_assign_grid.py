"""Point → polygon assignment (usm_geo.units.assign): the grid's cell size and the threaded
chunking change only how fast an answer is found, never the answer. A fine grid (most cells
resolved without a crossing test) gives bit for bit the labels of a coarse one, and any chunk size
and thread count give those of the single-threaded kernel — on random points and on points
exactly on shared edges and vertices (and one ulp either side), in a layer with holes and a
MultiPolygon. GEOS is the independent check away from the boundaries; the boundary rule itself is
checked against hand cases and geopandas.sjoin in test_assign.py."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import shapely

import usm_geo.units.assign as assign_mod
from usm_geo.units.assign import PolygonIndex

from test_assign_threads import hard_points, voronoi


@pytest.fixture(scope="module")
def layer():
    # two Voronoi cells get a hole, two others become one MultiPolygon
    polys = voronoi(800, seed=21)
    c = shapely.centroid(polys[:2])
    polys[:2] = shapely.difference(polys[:2], shapely.buffer(c, 40.0))
    polys[2] = shapely.union(polys[2], polys[500])
    return polys


@pytest.fixture(scope="module")
def points(layer):
    return hard_points(layer, 200_000, seed=7)


@pytest.mark.parametrize("fine, coarse", [(15.0, 400.0), (7.5, 1_000.0)])
def test_fine_grid_equals_coarse_grid(layer, points, fine, coarse):
    x, y = points
    # plus 400 points in and around the two holes (radius 40 m): too small for random points
    rng = np.random.default_rng(8)
    centres = shapely.get_coordinates(shapely.centroid(voronoi(800, seed=21)[:2]))
    around = centres[rng.integers(0, 2, 400)] + rng.uniform(-45, 45, (400, 2))
    x, y = np.concatenate([x, around[:, 0]]), np.concatenate([y, around[:, 1]])
    a = PolygonIndex.build(layer, cell_size=fine)
    b = PolygonIndex.build(layer, cell_size=coarse)
    assert a.stats["direct_cells"] > 10 * b.stats["direct_cells"]
    la = a.assign(x, y, threads=1)
    lb = b.assign(x, y, threads=1)
    assert la.tobytes() == lb.tobytes()
    # Independent check off the boundaries: GEOS agrees wherever a point is ≥ 1 mm from every edge
    finite = np.isfinite(x) & np.isfinite(y)
    pts = shapely.points(np.where(finite, x, 0.0), np.where(finite, y, 0.0))
    boundary = shapely.union_all(shapely.boundary(layer))
    away = finite & ~shapely.dwithin(boundary, pts, 1e-3)
    assert away.sum() > 190_000
    inside = la[away] >= 0
    assert shapely.contains_xy(layer[la[away][inside]], x[away][inside], y[away][inside]).all()
    tree = shapely.STRtree(layer)
    assert len(tree.query(pts[away][~inside], predicate="within")[0]) == 0
    # holes and the MultiPolygon are exercised: the holes' points are in no polygon; the Voronoi
    # cell merged into polygon 2 overlaps polygon 500, and overlaps go to the lowest position
    in_hole = shapely.contains_xy(shapely.union_all(shapely.buffer(shapely.points(centres), 39.0)), x, y)
    assert in_hole.sum() > 100 and (la[in_hole] == -1).all()
    assert (la == 2).sum() > 0 and (la == 500).sum() == 0


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba allows one thread only here")
@pytest.mark.parametrize("chunk", [1_000, 7_919, 131_072])
def test_threaded_chunks_equal_single_thread(layer, points, monkeypatch, chunk):
    """Threads take chunks in whatever order they finish; odd chunk sizes leave a short last chunk.
    The labels are those of one thread, bit for bit, for 2 and 3 threads."""
    x, y = points
    idx = PolygonIndex.build(layer)
    ref = idx.assign(x, y, threads=1)
    monkeypatch.setattr(assign_mod, "_THREAD_CHUNK", chunk)
    for threads in (2, 3):
        got = idx.assign(x, y, threads=threads, parallel=True)
        assert got.tobytes() == ref.tobytes(), (chunk, threads)


def test_error_in_a_thread_reaches_the_caller():
    calls = []

    def run(lo, hi):
        calls.append(lo)
        if lo == 3 * assign_mod._THREAD_CHUNK:
            raise RuntimeError("chunk failed")

    class Progress:
        def update(self, k):
            pass

    with pytest.raises(RuntimeError, match="chunk failed"):
        assign_mod._run_threaded(run, 10 * assign_mod._THREAD_CHUNK, 2, Progress())
    assert 3 * assign_mod._THREAD_CHUNK in calls
