"""Point → polygon assignment (usm_geo.units.assign).

Reference: ``geopandas.sjoin(predicate="within")`` (GEOS) for points off every boundary; the
documented half-open crossing rule, worked out by hand, for points on boundaries.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import shapely.affinity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usm_geo.errors import BoundaryError
from usm_geo.units.assign import PolygonIndex, assign_points, default_cell_size

X0, Y0, SIZE = 400_000.0, 5_800_000.0, 30_000.0  # a 30 km square in EPSG:32633


def voronoi(n: int, seed: int = 0) -> np.ndarray:
    """Planar partition of the 30 km square into ``n`` Voronoi polygons (EPSG:32633 metres)."""
    rng = np.random.default_rng(seed)
    seeds = shapely.multipoints(rng.uniform([X0, Y0], [X0 + SIZE, Y0 + SIZE], (n, 2)))
    square = shapely.box(X0, Y0, X0 + SIZE, Y0 + SIZE)
    return shapely.intersection(
        shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=square)), square)


def sjoin_reference(x, y, polygons) -> np.ndarray:
    """Position of the containing polygon per geopandas/GEOS, lowest position if several."""
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=32633)
    layer = gpd.GeoDataFrame(geometry=list(polygons), crs=32633)
    joined = gpd.sjoin(pts, layer, predicate="within")
    ref = np.full(len(x), -1, dtype=np.int64)
    lowest = joined["index_right"].groupby(level=0).min()
    ref[lowest.index.to_numpy()] = lowest.to_numpy()
    return ref


def near_boundary(x, y, polygons, tol) -> np.ndarray:
    """True for points within ``tol`` of any polygon boundary."""
    tree = shapely.STRtree(shapely.boundary(np.asarray(polygons, dtype=object)))
    hit = tree.query(shapely.points(x, y), predicate="dwithin", distance=tol)[0]
    out = np.zeros(len(x), dtype=bool)
    out[hit] = True
    return out


def random_points(n, seed, pad=500.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(X0 - pad, X0 + SIZE + pad, n)
    y = rng.uniform(Y0 - pad, Y0 + SIZE + pad, n)
    # Some clustered points too, as in crime data.
    k = n // 4
    x[:k] = X0 + 12_000 + rng.normal(0, 300, k)
    y[:k] = Y0 + 9_000 + rng.normal(0, 300, k)
    return x, y


@pytest.fixture(scope="module")
def vor200():
    return voronoi(200, seed=7)


# ----------------------------------------------------------------------------- against sjoin
@pytest.mark.parametrize("cell_size", [None, 100.0, 777.7, 5000.0])
def test_voronoi_partition_matches_sjoin(vor200, cell_size):
    x, y = random_points(20_000, seed=1)
    got = assign_points(x, y, vor200, cell_size=cell_size)
    assert got.dtype == np.int64 and got.shape == x.shape
    off = ~near_boundary(x, y, vor200, 1e-6)
    np.testing.assert_array_equal(got[off], sjoin_reference(x, y, vor200)[off])
    assert (got[(x < X0) | (y < Y0) | (x > X0 + SIZE) | (y > Y0 + SIZE)] == -1).all()


def test_parallel_and_serial_identical(vor200):
    x, y = random_points(300_000, seed=2)
    idx = PolygonIndex.build(vor200)
    expected = idx.assign(x, y, parallel=False)
    np.testing.assert_array_equal(idx.assign(x, y, parallel=True), expected)
    # Several Python threads at once (dask's threaded scheduler does this), both kernels.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda par: idx.assign(x, y, parallel=par), [True, False, True, False]))
    for got in results:
        np.testing.assert_array_equal(got, expected)


def holes_and_multipolygons() -> list:
    """A city with holes, islands in holes, MultiPolygons and a gap (in no polygon)."""
    ring = shapely.Polygon(
        [(X0, Y0), (X0 + 10_000, Y0), (X0 + 10_000, Y0 + 10_000), (X0, Y0 + 10_000)],
        holes=[
            [(X0 + 1_000, Y0 + 1_000), (X0 + 4_000, Y0 + 1_000), (X0 + 4_000, Y0 + 4_000), (X0 + 1_000, Y0 + 4_000)],
            [(X0 + 6_000, Y0 + 6_000), (X0 + 9_000, Y0 + 6_500), (X0 + 7_000, Y0 + 9_000)],
        ],
    )
    # An island inside the first hole, and a second part far away: one MultiPolygon.
    island = shapely.MultiPolygon([
        shapely.Point(X0 + 2_500, Y0 + 2_500).buffer(800, quad_segs=16),
        shapely.box(X0 + 12_000, Y0 + 12_000, X0 + 14_000, Y0 + 13_000),
    ])
    # A donut MultiPolygon east of the ring (parts with holes), leaving a gap between them.
    donut = shapely.Point(X0 + 16_000, Y0 + 5_000).buffer(3_000).difference(
        shapely.Point(X0 + 16_000, Y0 + 5_000).buffer(1_000))
    donuts = shapely.MultiPolygon([donut, shapely.affinity.translate(donut, 4_000, 8_000)])
    return [ring, island, None, donuts, shapely.Polygon()]


@pytest.mark.parametrize("cell_size", [None, 250.0, 3000.0])
def test_holes_and_multipolygons_match_sjoin(cell_size):
    layer = holes_and_multipolygons()
    rng = np.random.default_rng(3)
    x = rng.uniform(X0 - 1_000, X0 + 24_000, 30_000)
    y = rng.uniform(Y0 - 1_000, Y0 + 17_000, 30_000)
    got = assign_points(x, y, np.array(layer, dtype=object), cell_size=cell_size)
    usable = [g for g in layer if g is not None and not g.is_empty]
    off = ~near_boundary(x, y, usable, 1e-6)
    ref = sjoin_reference(x, y, [g if g is not None else shapely.Polygon() for g in layer])
    np.testing.assert_array_equal(got[off], ref[off])
    # Every kind of answer occurs: ring, island, donut, and points in holes / gaps.
    assert set(np.unique(got)) == {-1, 0, 1, 3}
    # Hand checks: centre of the first hole is on the island; a point in the hole but off the
    # island is in nothing; the donut's hole is in nothing.
    pts = np.array([[X0 + 2_500, Y0 + 2_500], [X0 + 1_200, Y0 + 3_800], [X0 + 16_000, Y0 + 5_000],
                    [X0 + 18_500, Y0 + 5_000], [X0 + 13_000, Y0 + 12_500], [X0 + 500, Y0 + 500]])
    np.testing.assert_array_equal(assign_points(pts[:, 0], pts[:, 1], layer), [1, -1, -1, 3, 1, 0])


def test_overlapping_polygons_lowest_position_wins():
    b = shapely.box(5, 5, 15, 15)   # position 0
    a = shapely.box(0, 0, 10, 10)   # position 1
    c = shapely.box(2, 2, 3, 3)     # position 2, inside a: never wins over a
    d = shapely.box(6, 1, 8, 3)     # position 3, inside a too
    layer = [b, a, c, d]
    pts = np.array([[7, 7], [1, 1], [2.5, 2.5], [12, 12], [20, 20], [7, 2], [9, 9]])
    got = assign_points(pts[:, 0], pts[:, 1], layer, cell_size=0.7)
    np.testing.assert_array_equal(got, [0, 1, 1, 0, -1, 1, 0])
    # Reversed layer: now the small boxes come first and win inside themselves.
    got = assign_points(pts[:, 0], pts[:, 1], layer[::-1], cell_size=0.7)
    np.testing.assert_array_equal(got, [2, 2, 1, 3, -1, 0, 2])
    # And at random points: lowest of the containing positions, as from sjoin.
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-2, 17, 20_000), rng.uniform(-2, 17, 20_000)
    off = ~near_boundary(x, y, layer, 1e-9)
    for cs in (None, 0.7, 5.0):
        got = assign_points(x, y, layer, cell_size=cs)
        np.testing.assert_array_equal(got[off], sjoin_reference(x, y, layer)[off])


# ----------------------------------------------------------------------------- boundary rule
def test_two_unit_squares_hand_case():
    """Squares [0,1]² (position 0) and [1,2]×[0,1] (position 1), worked out by hand.

    Ray to +x, an edge counts when (y1 > py) != (y2 > py) and px < x_intersect:
    (1, 0.5): left square's right edge x=1 is not > 1 → 0 crossings; right square: its left edge
    x=1 does not count either, its right edge x=2 does → 1 crossing → position 1.
    """
    layer = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)]
    cases = {
        (1.0, 0.5): 1,    # shared edge → the polygon on its right (+x)
        (0.5, 0.5): 0,
        (1.5, 0.5): 1,
        (0.0, 0.5): 0,    # outer left edge: inside
        (2.0, 0.5): -1,   # outer right edge: outside
        (0.5, 0.0): 0,    # outer bottom edge: inside
        (0.5, 1.0): -1,   # outer top edge: outside
        (1.0, 0.0): 1,    # shared bottom vertex → right square
        (1.0, 1.0): -1,   # shared top vertex is on the outer top edge
        (0.0, 0.0): 0,    # lower-left corner
        (2.0, 1.0): -1,
    }
    pts = np.array(list(cases))
    for cs in (None, 1.0, 0.5, 0.3, 5.0):
        got = assign_points(pts[:, 0], pts[:, 1], layer, cell_size=cs)
        assert dict(zip(cases, got.tolist())) == cases, cs


def exact_partition():
    """A planar partition of [0,4]² with sloped and axis-parallel shared edges; all vertices are
    integers, so edge midpoints (k + 0.5) lie exactly on the edges."""
    return [
        shapely.Polygon([(0, 0), (2, 0), (1, 2), (0, 2)]),
        shapely.Polygon([(2, 0), (4, 0), (4, 2), (3, 2), (1, 2)]),
        shapely.Polygon([(0, 2), (1, 2), (3, 2), (2, 4), (0, 4)]),
        shapely.Polygon([(3, 2), (4, 2), (4, 4), (2, 4)]),
    ]


@pytest.mark.parametrize("cell_size", [None, 1.0, 0.5, 0.7, 3.0])
def test_points_on_shared_edges_follow_the_rule(cell_size):
    layer = exact_partition()
    idx = PolygonIndex.build(layer, cell_size=cell_size)
    assert shapely.area(shapely.union_all(layer)) == pytest.approx(16.0)
    # Midpoints and vertices of every edge of every polygon.
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(layer), return_index=True)
    same = ring[1:] == ring[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    pts = np.unique(np.vstack([a, b, (a + b) / 2, (3 * a + b) / 4]), axis=0)
    got = idx.assign(pts[:, 0], pts[:, 1])
    touching = shapely.intersects(np.array(layer)[:, None], shapely.points(pts)[None, :])
    for (px, py), lab, col in zip(pts, got, touching.T):
        on_outer_right_or_top = px == 4 or py == 4
        if on_outer_right_or_top:
            assert lab == -1, (px, py)
            continue
        assert lab >= 0, (px, py)
        assert col[lab], f"({px}, {py}) assigned to {lab}, which does not touch it"
        # The rule equals testing the point moved by (+eps, +eps**2): right, and a hair up.
        nudged = idx.assign(np.array([px + 1e-7]), np.array([py + 1e-12]))[0]
        assert lab == nudged, (px, py, lab, nudged)


def test_voronoi_vertices_and_edge_midpoints_get_exactly_one_touching_polygon(vor200):
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(vor200), return_index=True)
    same = ring[1:] == ring[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    # Vertices, and points along every edge, each within a rounding error of the edge; the two
    # neighbours sharing an edge run it in opposite directions.
    along = [a + t * (b - a) for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
    pts = np.unique(np.vstack([a, *along]), axis=0)
    inner = (pts[:, 0] > X0) & (pts[:, 0] < X0 + SIZE) & (pts[:, 1] > Y0) & (pts[:, 1] < Y0 + SIZE)
    pts = pts[inner]
    assert len(pts) > 2000
    got = assign_points(pts[:, 0], pts[:, 1], vor200)
    assert (got >= 0).all()  # no point on an inner edge or vertex falls through the cracks
    # Ring orientation does not matter.
    np.testing.assert_array_equal(assign_points(pts[:, 0], pts[:, 1], shapely.reverse(vor200)), got)
    # The assigned polygon touches the point (a midpoint may sit a rounding error off the edge).
    assert shapely.dwithin(vor200[got], shapely.points(pts), 1e-6).all()
    # Points on the outer boundary: left/bottom inside, right/top outside.
    outer = np.array([[X0, Y0 + 1234.5], [X0 + 1234.5, Y0], [X0 + SIZE, Y0 + 1234.5],
                      [X0 + 1234.5, Y0 + SIZE]])
    got = assign_points(outer[:, 0], outer[:, 1], vor200)
    assert (got[:2] >= 0).all() and (got[2:] == -1).all()


def test_nan_far_outside_empty_and_shapes(vor200):
    idx = PolygonIndex.build(vor200)
    x = np.array([np.nan, X0 + 100, np.inf, -np.inf, 0.0, 1e300, X0 + 100])
    y = np.array([Y0 + 100, np.nan, Y0 + 100, Y0 + 100, 0.0, 1e300, Y0 + 100])
    got = idx.assign(x, y)
    np.testing.assert_array_equal(got[:6], -1)
    assert got[6] >= 0
    assert idx.assign(np.array([]), np.array([])).shape == (0,)
    xx, yy = random_points(12, seed=5)
    grid = idx.assign(xx.reshape(3, 4), yy.reshape(3, 4))
    assert grid.shape == (3, 4)
    np.testing.assert_array_equal(grid.ravel(), idx.assign(xx, yy))
    # Lists and float32 are accepted.
    assert idx.assign([X0 + 100], [Y0 + 100])[0] == got[6]
    with pytest.raises(ValueError):
        idx.assign(np.zeros(3), np.zeros(4))


def test_inputs_and_reported_cell_size(vor200):
    series = gpd.GeoSeries(vor200, crs=32633)
    frame = gpd.GeoDataFrame({"id": range(len(vor200))}, geometry=series)
    idx = PolygonIndex.build(frame)
    assert idx.cell_size == default_cell_size(vor200) > 0
    assert idx.n_polygons == 200
    assert "cell_size" in repr(idx)
    x, y = random_points(2_000, seed=6)
    np.testing.assert_array_equal(idx.assign(x, y), PolygonIndex.build(series).assign(x, y))
    with pytest.raises(BoundaryError):
        PolygonIndex.build([shapely.box(0, 0, 1, 1), shapely.LineString([(0, 0), (1, 1)])])
    with pytest.raises(BoundaryError):
        PolygonIndex.build(vor200, cell_size=0)
    with pytest.raises(BoundaryError):
        PolygonIndex.build(vor200, cell_size=0.01)  # 3M × 3M cells
    nothing = PolygonIndex.build([None, shapely.Polygon()])
    np.testing.assert_array_equal(nothing.assign(x[:5], y[:5]), -1)


def test_direct_cells_agree_with_geos():
    """Cross-check of the index itself: a cell labelled directly lies inside its polygon and
    touches no other; an empty cell touches no polygon (GEOS predicates on the cell boxes)."""
    layer = np.array(list(voronoi(40, seed=9)) + [shapely.box(X0 + 3e3, Y0 + 3e3, X0 + 9e3, Y0 + 6e3)],
                     dtype=object)
    layer = np.append(layer, shapely.Point(X0 + 40_000, Y0 + 10_000).buffer(5_000))  # leaves empty cells
    idx = PolygonIndex.build(layer, cell_size=700.0)
    ny, nx = idx.shape
    lab = idx._cell_label
    cells = np.arange(nx * ny)
    bx = idx.origin[0] + (cells % nx) * idx.cell_size
    by = idx.origin[1] + (cells // nx) * idx.cell_size
    boxes = shapely.box(bx, by, bx + idx.cell_size, by + idx.cell_size)
    direct = lab >= 0
    assert direct.sum() > 100 and (lab == -1).sum() > 100 and (lab < -1).sum() > 100
    assert shapely.contains_properly(layer[lab[direct]], boxes[direct]).all()
    b, p = shapely.STRtree(layer).query(boxes, predicate="intersects")
    assert (lab[b] != -1).all()  # an empty cell touches no polygon
    # Every polygon meeting a direct cell contains it properly (no boundary inside the cell), and
    # the label is the lowest of them (the big box overlaps the Voronoi cells).
    d = direct[b]
    assert shapely.contains_properly(layer[p[d]], boxes[b[d]]).all()
    assert (p[d] >= lab[b[d]]).all()
    assert (p[d] > lab[b[d]]).any()


# ----------------------------------------------------------------------------- property
_PROP_LAYER = np.array(list(voronoi(25, seed=11)) + [shapely.Point(X0 + 15e3, Y0 + 15e3).buffer(4e3)],
                       dtype=object)
_PROP_INDEX = PolygonIndex.build(_PROP_LAYER)
_PROP_BOUNDARY = shapely.boundary(_PROP_LAYER)
shapely.prepare(_PROP_LAYER)

coord_x = st.floats(X0 - 100, X0 + SIZE + 100, allow_nan=False)
coord_y = st.floats(Y0 - 100, Y0 + SIZE + 100, allow_nan=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(coord_x, coord_y), min_size=1, max_size=200))
def test_property_one_label_agrees_with_contains_xy(points):
    pts = np.array(points, dtype=np.float64)
    x, y = pts[:, 0], pts[:, 1]
    got = _PROP_INDEX.assign(x, y)
    assert got.shape == (len(x),) and got.dtype == np.int64
    assert ((got >= -1) & (got < len(_PROP_LAYER))).all()
    # A function: the same point always gets the same label, whatever batch it is in.
    np.testing.assert_array_equal(got, [_PROP_INDEX.assign(x[i:i + 1], y[i:i + 1])[0] for i in range(len(x))])
    inside = shapely.contains_xy(_PROP_LAYER[:, None], x[None, :], y[None, :])  # (polygon, point)
    expected = np.where(inside.any(axis=0), inside.argmax(axis=0), -1)  # lowest position
    pt = shapely.points(x, y)
    far = ~shapely.dwithin(_PROP_BOUNDARY[:, None], pt[None, :], 1e-9).any(axis=0)
    np.testing.assert_array_equal(got[far], expected[far])
