"""The numpy route of point assignment (usm_geo.units.assign_numpy) against the numba kernels:
the same index (cell labels, packed blocks, statistics) and the same labels, bit for bit, on
every case the assignment tests use — points on vertices, on edge midpoints and one ulp either
side, holes, MultiPolygons, overlapping polygons (lowest position), NaN/inf, outside the grid,
empty geometries — and on random Voronoi layers with random points and points on their edges.
The routes are independent implementations of the same arithmetic (a loop in numba, array
expansions in numpy), so agreement on points exactly on and one ulp off edges shows that neither
rounds differently (no FMA contraction in the kernels). Correctness itself (against GEOS/sjoin and
the hand-worked boundary rule) is tested in test_assign.py and test_assign_grid.py; the subprocess
tests check that numba is not imported where it is not used, and that kernels still run once it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numba
import numpy as np
import pytest
import shapely

import usm_geo.units.assign as assign_mod
from usm_geo.errors import UsmGeoError
from usm_geo.units import jit
from usm_geo.units.assign import PolygonIndex, assign_engine

from test_assign import X0, Y0, SIZE, exact_partition, holes_and_multipolygons, random_points, voronoi
from test_assign_threads import hard_points

REPO = Path(__file__).resolve().parents[2]


def both_builds(layer, cell_size=None) -> PolygonIndex:
    """Build with each route; assert the indexes are identical; return the numpy-built one."""
    a = PolygonIndex.build(layer, cell_size=cell_size, engine="numba")
    b = PolygonIndex.build(layer, cell_size=cell_size, engine="numpy")
    assert a._cell_label.tobytes() == b._cell_label.tobytes()
    assert a._block.tobytes() == b._block.tobytes()
    assert a.stats == b.stats and a.shape == b.shape and a.origin == b.origin and a.cell_size == b.cell_size
    return b


def same_labels(index: PolygonIndex, x, y) -> np.ndarray:
    """Assign with each route; assert identical int64 labels; return them."""
    ref = index.assign(x, y, engine="numba", threads=1)
    got = index.assign(x, y, engine="numpy")
    assert got.dtype == ref.dtype == np.int64 and got.shape == ref.shape
    assert got.tobytes() == ref.tobytes(), f"{int((got != ref).sum())} labels differ"
    return got


def ulp_neighbours(xy: np.ndarray) -> np.ndarray:
    """Each point, and the point one ulp off in each of the four directions."""
    x, y = xy[:, 0], xy[:, 1]
    out = [xy]
    for dx, dy in ((np.inf, None), (-np.inf, None), (None, np.inf), (None, -np.inf)):
        nx = np.nextafter(x, dx) if dx is not None else x
        ny = np.nextafter(y, dy) if dy is not None else y
        out.append(np.column_stack([nx, ny]))
    return np.concatenate(out)


def on_edges(layer, seed: int, per_edge=(0.1, 0.5, 0.9)) -> np.ndarray:
    """Vertices and points along every ring edge (rounded onto or a rounding error off it), plus
    points where the kernel's own crossing formula puts them on a sloped edge, with their ulp
    neighbours."""
    rng = np.random.default_rng(seed)
    rings = shapely.get_rings(shapely.get_parts(np.asarray([g for g in layer if g is not None], dtype=object)))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    a, b = xy[:-1][same], xy[1:][same]
    along = [a + t * (b - a) for t in per_edge]
    # x on the edge at a random y, computed exactly as the kernel does (the decision boundary of
    # px < xi): these and their ulp neighbours are where any difference in rounding would show
    sloped = a[:, 1] != b[:, 1]
    lo = np.where((a[:, 1] < b[:, 1])[:, None], a, b)[sloped]
    hi = np.where((a[:, 1] < b[:, 1])[:, None], b, a)[sloped]
    py = lo[:, 1] + rng.uniform(0, 1, len(lo)) * (hi[:, 1] - lo[:, 1])
    xi = lo[:, 0] + (py - lo[:, 1]) * (hi[:, 0] - lo[:, 0]) / (hi[:, 1] - lo[:, 1])
    pts = np.concatenate([a, *along, np.column_stack([xi, py])])
    return ulp_neighbours(pts)


# ----------------------------------------------------------------------------- the test cases of test_assign.py
@pytest.fixture(scope="module")
def vor200():
    return voronoi(200)


@pytest.mark.parametrize("cell_size", [None, 100.0, 777.7, 5000.0])
def test_voronoi_random_and_edge_points(vor200, cell_size):
    idx = both_builds(vor200, cell_size)
    x, y = random_points(50_000, seed=1)
    same_labels(idx, x, y)
    pts = on_edges(vor200, seed=2)
    got = same_labels(idx, pts[:, 0], pts[:, 1])
    assert (got >= 0).mean() > 0.9  # mostly inner edges: assigned, not vacuous
    # rings run the other way: the same labels, by both routes
    assert same_labels(both_builds(shapely.reverse(vor200), cell_size), pts[:, 0], pts[:, 1]).tobytes() == got.tobytes()


@pytest.mark.parametrize("cell_size", [None, 250.0, 3000.0])
def test_holes_multipolygons_and_empty_geometries(cell_size):
    layer = np.array(holes_and_multipolygons(), dtype=object)  # includes None and an empty Polygon
    idx = both_builds(layer, cell_size)
    rng = np.random.default_rng(3)
    x = rng.uniform(X0 - 1_000, X0 + 24_000, 30_000)
    y = rng.uniform(Y0 - 1_000, Y0 + 17_000, 30_000)
    got = same_labels(idx, x, y)
    assert set(np.unique(got)) == {-1, 0, 1, 3}
    pts = on_edges(layer, seed=4)
    got = same_labels(idx, pts[:, 0], pts[:, 1])
    assert not np.isin(got, [2, 4]).any()  # the missing and the empty geometry never receive points


def test_only_empty_geometries():
    idx = both_builds([None, shapely.Polygon()])
    x, y = random_points(100, seed=5)
    assert (same_labels(idx, x, y) == -1).all()


@pytest.mark.parametrize("cell_size", [None, 0.7, 5.0])
def test_overlapping_polygons_lowest_position(cell_size):
    layer = [shapely.box(5, 5, 15, 15), shapely.box(0, 0, 10, 10), shapely.box(2, 2, 3, 3), shapely.box(6, 1, 8, 3)]
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-2, 17, 20_000), rng.uniform(-2, 17, 20_000)
    for lay in (layer, layer[::-1]):
        idx = both_builds(lay, cell_size)
        got = same_labels(idx, x, y)
        pts = on_edges(lay, seed=6, per_edge=(0.25, 0.5, 0.75))
        same_labels(idx, pts[:, 0], pts[:, 1])
    # the hand case of test_assign.py: lowest position wins where boxes overlap
    idx = both_builds(layer, 0.7)
    pts = np.array([[7, 7], [1, 1], [2.5, 2.5], [12, 12], [20, 20], [7, 2], [9, 9]], dtype=float)
    np.testing.assert_array_equal(same_labels(idx, pts[:, 0], pts[:, 1]), [0, 1, 1, 0, -1, 1, 0])
    assert (got >= 0).any()


@pytest.mark.parametrize("cell_size", [None, 1.0, 0.5, 0.3, 0.7, 3.0, 5.0])
def test_exact_partitions_on_vertices_midpoints_and_ulps(cell_size):
    squares = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)]
    for layer in (squares, exact_partition()):
        idx = both_builds(layer, cell_size)
        coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(layer), return_index=True)
        same = ring[1:] == ring[:-1]
        a, b = coords[:-1][same], coords[1:][same]
        pts = ulp_neighbours(np.unique(np.vstack([a, b, (a + b) / 2, (3 * a + b) / 4]), axis=0))
        same_labels(idx, pts[:, 0], pts[:, 1])
    # the documented hand case: (1, 0.5) → 1, (0.5, 0) → 0, (0.5, 1) → -1, (1, 1) → -1
    idx = both_builds(squares, cell_size)
    np.testing.assert_array_equal(same_labels(idx, np.array([1.0, 0.5, 0.5, 1.0]), np.array([0.5, 0.0, 1.0, 1.0])),
                                  [1, 0, -1, -1])


def test_nan_inf_and_outside_the_grid(vor200):
    idx = both_builds(vor200)
    x = np.array([np.nan, X0 + 100, np.inf, -np.inf, 0.0, 1e300, -1e300, X0 + 100, X0 - 1e-9, X0 + SIZE])
    y = np.array([Y0 + 100, np.nan, Y0 + 100, Y0 + 100, 0.0, 1e300, Y0, Y0 + 100, Y0 + 5, Y0 + SIZE])
    got = same_labels(idx, x, y)
    np.testing.assert_array_equal(got[:7], -1)
    assert got[7] >= 0
    assert same_labels(idx, np.zeros(0), np.zeros(0)).shape == (0,)
    grid = idx.assign(x.reshape(2, 5), y.reshape(2, 5), engine="numpy")
    np.testing.assert_array_equal(grid.ravel(), got)


# ----------------------------------------------------------------------------- test_assign_grid.py's layer, random layers
def test_grid_layer_with_holes_and_multipolygon_fine_and_coarse():
    polys = voronoi(800, seed=21)
    c = shapely.centroid(polys[:2])
    polys[:2] = shapely.difference(polys[:2], shapely.buffer(c, 40.0))
    polys[2] = shapely.union(polys[2], polys[500])
    x, y = hard_points(polys, 100_000, seed=7)  # vertices, midpoints, ulps, NaN, far away
    for cs in (7.5, 15.0, 400.0, None):
        same_labels(both_builds(polys, cs), x, y)


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_random_voronoi_layers(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 3_000))
    layer = voronoi(n, seed=seed)
    idx = both_builds(layer, None if seed != 32 else float(rng.uniform(20, 400)))
    x = rng.uniform(X0 - 200, X0 + SIZE + 200, 100_000)
    y = rng.uniform(Y0 - 200, Y0 + SIZE + 200, 100_000)
    same_labels(idx, x, y)
    # points sampled on random edges at random positions along them, and their ulp neighbours
    xy, ring = shapely.get_coordinates(shapely.get_exterior_ring(layer), return_index=True)
    same = np.flatnonzero(ring[1:] == ring[:-1])
    pick = rng.choice(same, 20_000)
    t = rng.uniform(0, 1, (len(pick), 1))
    pts = ulp_neighbours(xy[pick] + t * (xy[pick + 1] - xy[pick]))
    got = same_labels(idx, pts[:, 0], pts[:, 1])
    assert (got >= 0).mean() > 0.9


def test_numpy_route_in_steps_equals_one_step(vor200, monkeypatch):
    """The numpy route works through mixed points in steps of (point, edge) pairs; the step size
    changes nothing."""
    idx = both_builds(vor200)
    x, y = hard_points(vor200, 30_000, seed=8)
    ref = idx.assign(x, y, engine="numba", threads=1)
    import usm_geo.units.assign_numpy as anp

    for step in (1, 997, 50_000):
        monkeypatch.setattr(anp, "_PAIRS_PER_STEP", step)
        fresh = PolygonIndex.build(vor200, engine="numpy")
        assert fresh.assign(x, y, engine="numpy").tobytes() == ref.tobytes()


def test_kernel_arithmetic_is_not_fused():
    """numba without fastmath computes ``a + b * c`` as a rounded product then a rounded sum, as
    numpy does (an FMA would round once). Checked on random operands where the two differ."""

    @numba.njit(nogil=True)
    def mul_add(a, b, c, out):
        for i in range(a.shape[0]):
            out[i] = a[i] + b[i] * c[i]

    rng = np.random.default_rng(9)
    a = rng.uniform(4e5, 6e6, 200_000)
    b = rng.integers(0, 3000, 200_000).astype(np.float64)
    c = rng.uniform(1, 100, 200_000)
    out = np.empty_like(a)
    mul_add(a, b, c, out)
    assert out.tobytes() == (a + b * c).tobytes()
    # the check has power: on some of these operands a single rounding (exact a + b*c, rounded
    # once, as an FMA would) gives a different double
    exact = [float(Fraction(a[i]) + Fraction(b[i]) * Fraction(c[i])) for i in range(2_000)]
    assert (np.array(exact) != out[:2_000]).any()


# ----------------------------------------------------------------------------- routes and threads
def test_engine_choice_and_validation(vor200, monkeypatch):
    assert assign_engine(10, "numpy") == "numpy" and assign_engine(10**9, "numba") == "numba"
    monkeypatch.setattr(assign_mod, "NUMPY_MAX_POINTS", 1_000)
    monkeypatch.setattr(assign_mod.jit, "compiled", lambda kernel: False)
    assert assign_engine(1_000) == "numpy"
    assert assign_engine(1_001) == "numba"
    assert assign_engine(10, threaded=True) == "numba"
    monkeypatch.setattr(assign_mod.jit, "compiled", lambda kernel: True)  # kernel already loaded
    assert assign_engine(10) == "numba"
    with pytest.raises(UsmGeoError, match="engine"):
        PolygonIndex.build(vor200, engine="fast")
    with pytest.raises(UsmGeoError, match="engine"):
        PolygonIndex.build(vor200).assign([X0], [Y0], engine="gpu")


def test_thread_limit_without_numba(monkeypatch):
    """jit.max_threads: numba's limit when loaded; the caller thread's own cap (a Dask worker)."""
    assert jit.max_threads() == numba.get_num_threads()  # numba is imported by this test module
    jit.limit_threads(1)
    try:
        assert jit.max_threads() == 1
        assert assign_mod._resolve_threads(2) == 1
    finally:
        jit.limit_threads(None)
    assert assign_mod._resolve_threads(1) == 1


# ----------------------------------------------------------------------------- numba loaded lazily
def _python(code: str, tmp_path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_aggregate_and_pipeline_import_do_not_import_numba(tmp_path):
    """``usm-geo aggregate`` onto polygons in a fresh process: numba (1.5 s) and h3 (22 ms) are
    not imported."""
    import geopandas as gpd
    import pandas as pd

    areas = gpd.GeoDataFrame({"code": ["A", "B"]}, geometry=[shapely.box(X0, Y0, X0 + 1000, Y0 + 1000),
                                                            shapely.box(X0 + 1000, Y0, X0 + 2000, Y0 + 1000)],
                             crs="EPSG:32633")
    areas.to_file(tmp_path / "areas.gpkg")
    ll = gpd.GeoSeries(gpd.points_from_xy([X0 + 10, X0 + 500, X0 + 1500], [Y0 + 10, Y0 + 500, Y0 + 500]),
                       crs=32633).to_crs(4326)
    pd.DataFrame({"lon": ll.x, "lat": ll.y}).to_csv(tmp_path / "pts.csv", index=False)
    code = ("import sys\n"
            "from usm_geo.cli import main\n"
            "try:\n"
            "    main(['aggregate', 'pts.csv', '--units', 'areas.gpkg:code', '--out', 'counts.csv'])\n"
            "except SystemExit as exc:\n"
            "    assert exc.code in (0, None), exc.code\n"
            "print('numba' in sys.modules, 'h3' in sys.modules, 'h3ronpy' in sys.modules)\n")
    assert _python(code, tmp_path).splitlines()[-1] == "False False False"  # no H3 asked for: no h3 either
    counts = pd.read_csv(tmp_path / "counts.csv")
    assert dict(zip(counts.unit_id, counts["count"])) == {"A": 2, "B": 1}
    assert _python("import sys, usm_geo.pipeline; print('numba' in sys.modules)", tmp_path) == "False"


def test_kernels_work_after_lazy_loading(tmp_path):
    """In a fresh process: kernels calling inlined kernels (assignment), the H3 point kernel and the
    weights kernel run, and numba is imported only by them."""
    code = ("import sys, numpy as np, shapely\n"
            "from usm_geo.units.assign import PolygonIndex\n"
            "from usm_geo.units import h3cells, weights, jit\n"
            "import usm_geo.population, usm_geo.hotspots.near_repeat\n"
            "before = 'numba' in sys.modules\n"
            "idx = PolygonIndex.build([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], engine='numba')\n"
            "lab = idx.assign(np.array([1.0, 0.5, 0.5]), np.array([0.5, 0.0, 1.0]), engine='numba')\n"
            "import h3\n"
            "cells = h3cells.points_to_cells(np.array([-87.63]), np.array([41.88]), 9)\n"
            "w = weights.h3_rings(cells)\n"
            "print(lab.tolist(), h3cells.cells_to_str(cells)[0] == h3.latlng_to_cell(41.88, -87.63, 9),\n"
            "      w.sparse.shape, before, 'numba' in sys.modules, jit.compiled(PolygonIndex.assign.__globals__['_assign_serial']))\n")
    assert _python(code, tmp_path) == "[1, 0, -1] True (1, 1) False True True"
