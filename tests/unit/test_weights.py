"""Spatial weights (usm_geo.units.weights) checked by hand and against libpysal.

References:
* Hand-drawn layouts (a 3 × 3 grid of unit squares, corner-touching squares, a T-junction).
* libpysal 4.14 ``Queen``/``Rook.from_dataframe`` on its builtin Columbus (49 polygons) and
  St Louis (78 counties) examples, shipped inside the libpysal wheel: identical neighbour sets.
* libpysal ``DistanceBand``/``KNN`` and scipy on seeded random points; ``h3.grid_ring`` loops.
"""

from __future__ import annotations

import warnings

import h3
import numpy as np
import pytest
import scipy.sparse as sp
import shapely

from usm_geo.units.weights import (
    Weights,
    distance_band,
    from_sparse,
    h3_rings,
    knn,
    queen,
    rook,
    row_standardise,
    with_self,
)


def neighbour_sets(w: Weights) -> dict:
    m = w.sparse
    return {w.ids[i]: set(w.ids[m.indices[m.indptr[i] : m.indptr[i + 1]]]) for i in range(w.n)}


def grid_squares(rows=3, cols=3):
    """Unit squares numbered row by row: 0 1 2 / 3 4 5 / 6 7 8."""
    return [shapely.box(c, -r, c + 1, -r + 1) for r in range(rows) for c in range(cols)]


# ----------------------------------------------------------------------------- contiguity by hand
@pytest.mark.parametrize("method", ["vertex", "geometry"])
def test_queen_and_rook_on_a_3x3_grid(method):
    squares = grid_squares()
    q = neighbour_sets(queen(squares, method=method))
    r = neighbour_sets(rook(squares, method=method))
    assert q[4] == {0, 1, 2, 3, 5, 6, 7, 8}  # centre: all eight
    assert r[4] == {1, 3, 5, 7}  # centre: the four sharing an edge
    assert q[0] == {1, 3, 4} and r[0] == {1, 3}  # corner
    assert q[1] == {0, 2, 3, 4, 5} and r[1] == {0, 2, 4}  # edge middle
    w = queen(squares, method=method)
    assert (w.sparse != w.sparse.T).nnz == 0  # symmetric
    assert w.sparse.diagonal().sum() == 0  # no self-loops
    assert set(w.sparse.data) == {1.0}
    assert w.report["links"] == 40 and w.report["islands"] == [] and w.kind == "queen"


def test_corner_contact_is_queen_but_not_rook():
    a, b = shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)
    assert neighbour_sets(queen([a, b])) == {0: {1}, 1: {0}}
    assert neighbour_sets(rook([a, b])) == {0: set(), 1: set()}
    assert rook([a, b]).report["islands"] == [0, 1]


def test_t_junction_vertex_versus_geometry():
    """Left square's right edge is one segment; the right side is split in two squares whose shared
    corner (1, 1) lies in the middle of that edge, not on a vertex of the left square."""
    left = shapely.Polygon([(0, 0), (1, 0), (1, 2), (0, 2)])
    low = shapely.box(1, 0, 2, 1)
    high = shapely.box(1, 1, 2, 2)
    geoms = [left, low, high]
    # vertex rule (libpysal): left shares corners (1,0) / (1,2) but no whole edge with either square
    assert neighbour_sets(queen(geoms)) == {0: {1, 2}, 1: {0, 2}, 2: {0, 1}}
    assert neighbour_sets(rook(geoms)) == {0: set(), 1: {2}, 2: {1}}
    # geometry rule: the borders overlap along a stretch of length 1
    assert neighbour_sets(rook(geoms, method="geometry")) == {0: {1, 2}, 1: {0, 2}, 2: {0, 1}}


def test_islands_empty_geometries_and_ids():
    gpd = pytest.importorskip("geopandas")
    geoms = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(5, 5, 6, 6), None, shapely.Polygon()]
    gdf = gpd.GeoDataFrame({"unit_id": ["a", "b", "far", "none", "empty"]}, geometry=geoms)
    w = queen(gdf)
    assert list(w.ids) == ["a", "b", "far", "none", "empty"]  # the unit_id column
    assert w.report["islands"] == ["far", "none", "empty"]
    assert list(w.islands) == [2, 3, 4]
    assert list(w.cardinalities) == [1, 1, 0, 0, 0]
    w2 = queen(gdf.set_index("unit_id").rename_axis("code"))
    assert list(w2.ids) == ["a", "b", "far", "none", "empty"]  # falls back to the index
    multi = gpd.GeoDataFrame({"k": [1, 2]}, geometry=[shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(3, 0, 4, 1)]),
                                                       shapely.box(4, 0, 5, 1)])
    assert neighbour_sets(rook(multi, ids="k")) == {1: {2}, 2: {1}}  # the far part of unit 1 touches unit 2


def test_contiguity_rejects_points():
    with pytest.raises(TypeError, match="polygons"):
        queen([shapely.Point(0, 0), shapely.box(0, 0, 1, 1)])
    with pytest.raises(ValueError, match="method"):
        queen(grid_squares(), method="fuzzy")


# ----------------------------------------------------------------------------- vs libpysal
@pytest.fixture(scope="module", params=["columbus.shp", "stl_hom.shp"])
def builtin_polygons(request):
    libpysal = pytest.importorskip("libpysal")
    gpd = pytest.importorskip("geopandas")
    return gpd.read_file(libpysal.examples.get_path(request.param))


@pytest.mark.parametrize("method", ["vertex", "geometry"])
@pytest.mark.parametrize("kind", ["queen", "rook"])
def test_contiguity_equals_libpysal(builtin_polygons, kind, method):
    from libpysal.weights import Queen, Rook

    ours = (queen if kind == "queen" else rook)(builtin_polygons, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = (Queen if kind == "queen" else Rook).from_dataframe(builtin_polygons, use_index=False)
    expected = sp.csr_array(theirs.sparse)  # id_order = 0..n-1 = row order
    assert ours.n == theirs.n
    assert (ours.sparse != (expected != 0)).nnz == 0
    assert ours.report["islands"] == []


# ----------------------------------------------------------------------------- points
def random_points(n=300, seed=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)


def test_distance_band_default_threshold_is_the_largest_nearest_neighbour_distance():
    from scipy.spatial import distance_matrix

    x, y = random_points()
    w = distance_band(x, y)
    d = distance_matrix(np.c_[x, y], np.c_[x, y])
    np.fill_diagonal(d, np.inf)
    assert w.report["threshold"] == pytest.approx(d.min(axis=1).max(), rel=1e-12)
    assert w.report["threshold_chosen"] is True
    assert w.report["islands"] == [] and w.cardinalities.min() >= 1
    expected = d <= w.report["threshold"]
    assert (w.sparse.toarray().astype(bool) == expected).all()


def test_distance_band_explicit_threshold_reports_islands_and_matches_libpysal():
    libpysal = pytest.importorskip("libpysal")
    x, y = random_points()
    x = np.append(x, 5000.0)  # far away: an island
    y = np.append(y, 5000.0)
    w = distance_band(x, y, threshold=80.0)
    assert w.report["threshold_chosen"] is False and w.report["threshold"] == 80.0
    assert 300 in w.report["islands"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lw = libpysal.weights.DistanceBand(np.c_[x, y], threshold=80.0, binary=True, silence_warnings=True)
    assert (w.sparse != (sp.csr_array(lw.sparse) != 0)).nnz == 0


def test_knn_matches_libpysal_and_is_not_symmetric():
    libpysal = pytest.importorskip("libpysal")
    x, y = random_points()
    w = knn(x, y, 4)
    assert (w.cardinalities == 4).all() and w.report["k"] == 4
    lw = libpysal.weights.KNN(np.c_[x, y], k=4)
    assert (w.sparse != (sp.csr_array(lw.sparse) != 0)).nnz == 0
    assert (w.sparse != w.sparse.T).nnz > 0


def test_knn_with_duplicate_points_never_lists_self():
    x = np.array([0.0, 0.0, 0.0, 10.0, 20.0])
    y = np.zeros(5)
    w = knn(x, y, 2)
    assert w.sparse.diagonal().sum() == 0 and (w.cardinalities == 2).all()
    assert neighbour_sets(w)[0] == {1, 2}
    with pytest.raises(ValueError, match="k="):
        knn(x, y, 5)


# ----------------------------------------------------------------------------- H3
def test_h3_rings_equal_a_grid_ring_loop():
    centre = h3.latlng_to_cell(52.52, 13.405, 9)
    cells = sorted(h3.grid_disk(centre, 4))
    w = h3_rings(cells, 1)  # string ids in, string ids out
    expected = {c: {d for d in h3.grid_ring(c, 1) if d in set(cells)} for c in cells}
    assert neighbour_sets(w) == expected
    assert w.cardinalities.max() == 6 and w.cardinalities.min() == 3  # corners of the big hexagon
    as_int = np.array([h3.str_to_int(c) for c in cells], dtype=np.uint64)
    wi = h3_rings(as_int, 1)
    assert (wi.sparse != w.sparse).nnz == 0
    assert wi.report["outside_links"] == 6 * 3 + 18 * 2  # outer ring: 6 corners × 3, 18 edge cells × 2
    w2 = h3_rings(cells, 2)
    expected2 = {c: {d for d in h3.grid_disk(c, 2) if d in set(cells)} - {c} for c in cells}
    assert neighbour_sets(w2) == expected2


def test_h3_rings_islands_and_duplicates():
    a = h3.latlng_to_cell(52.52, 13.405, 9)
    far = h3.latlng_to_cell(48.85, 2.35, 9)
    w = h3_rings([a, h3.grid_ring(a, 1)[0], far])
    assert w.report["islands"] == [far]
    with pytest.raises(ValueError, match="distinct"):
        h3_rings([a, a])


# ----------------------------------------------------------------------------- helpers
def test_row_standardise_with_self_and_from_sparse():
    dense = np.array([[0, 2, 1, 0], [1, 0, 0, 0], [1, 0, 5, 0], [0, 0, 0, 0]], dtype=float)
    w = from_sparse(sp.csr_array(dense), ids=list("abcd"))
    assert w.sparse.toarray().tolist() == [[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]  # binary, no diagonal
    assert w.report["islands"] == ["d"]
    r = w.row_standardised().toarray()
    assert np.allclose(r.sum(axis=1), [1, 1, 1, 0])
    assert np.allclose(r[0], [0, 0.5, 0.5, 0])
    s = with_self(w.sparse).toarray()
    assert np.allclose(np.diag(s), 1) and np.allclose(s - np.eye(4), w.sparse.toarray())
    rs = row_standardise(with_self(w.sparse)).toarray()
    assert np.allclose(rs[0], [1 / 3] * 3 + [0]) and rs[3, 3] == 1.0  # Gi*: w_ii = 1/(k+1)
    with pytest.raises(ValueError, match="square"):
        Weights(sp.csr_array(np.ones((2, 3))), ids=[0, 1])
