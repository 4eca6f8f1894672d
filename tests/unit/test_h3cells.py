"""H3 helpers (usm_geo.units.h3cells) against the reference h3-py library, cell by cell."""

from __future__ import annotations

import h3
import h3ronpy
import numpy as np
import pytest
import shapely

from usm_geo.errors import CoordinateError
from usm_geo.units import h3cells
from usm_geo.units.h3cells import (
    cell_polygons,
    cells_to_str,
    parent_cells,
    points_to_cells,
    polygon_to_cells,
)


def h3_loop(lon, lat, res) -> np.ndarray:
    return np.array([h3.str_to_int(h3.latlng_to_cell(a, b, res)) for a, b in zip(lat, lon)],
                    dtype=np.uint64)


@pytest.fixture(scope="module")
def lonlat():
    """10k points: 8k in a city (Berlin-sized box), 2k anywhere on Earth."""
    rng = np.random.default_rng(0)
    lon = np.concatenate([rng.uniform(13.1, 13.7, 8_000), rng.uniform(-180, 180, 2_000)])
    lat = np.concatenate([rng.uniform(52.3, 52.7, 8_000), rng.uniform(-89.9, 89.9, 2_000)])
    return lon, lat


@pytest.fixture(scope="module")
def study_area():
    """An irregular polygon with a hole, in lon/lat."""
    return shapely.Polygon(
        [(13.30, 52.45), (13.42, 52.47), (13.45, 52.55), (13.35, 52.56), (13.32, 52.50)],
        holes=[[(13.36, 52.49), (13.40, 52.49), (13.38, 52.52)]],
    )


# ----------------------------------------------------------------------------- points
@pytest.mark.parametrize("res", [9, 0, 5, 15])
def test_points_to_cells_equals_h3_loop(lonlat, res):
    lon, lat = lonlat
    got = points_to_cells(lon, lat, res)
    assert got.dtype == np.uint64 and got.shape == lon.shape
    np.testing.assert_array_equal(got, h3_loop(lon, lat, res))


def test_points_to_cells_threads_and_shapes(lonlat, monkeypatch):
    lon, lat = lonlat
    expected = points_to_cells(lon, lat, 9, threads=1)
    monkeypatch.setattr(h3cells, "_CHUNK", 999)  # force many chunks over the thread pool
    np.testing.assert_array_equal(points_to_cells(lon, lat, 9, threads=2), expected)
    np.testing.assert_array_equal(points_to_cells(lon.reshape(100, 100), lat.reshape(100, 100), 9),
                                  expected.reshape(100, 100))
    assert points_to_cells(np.array([]), np.array([]), 9).shape == (0,)
    assert points_to_cells([13.4], [52.5], 9)[0] == h3.str_to_int(h3.latlng_to_cell(52.5, 13.4, 9))


def test_points_to_cells_rejects_bad_input():
    with pytest.raises(CoordinateError, match="position 1"):
        points_to_cells(np.array([13.4, np.nan]), np.array([52.5, 52.5]), 9)
    with pytest.raises(CoordinateError):
        points_to_cells(np.array([13.4]), np.array([np.inf]), 9)
    with pytest.raises(ValueError):
        points_to_cells(np.array([13.4]), np.array([52.5]), 16)
    with pytest.raises(ValueError):
        points_to_cells(np.array([13.4]), np.array([52.5]), 9.0)
    with pytest.raises(ValueError):
        points_to_cells(np.zeros(2), np.zeros(3), 9)


# ----------------------------------------------------------------------------- ids and parents
def test_cells_to_str_equals_h3(lonlat):
    lon, lat = lonlat
    cells = np.concatenate([points_to_cells(lon, lat, 9), points_to_cells(lon[:500], lat[:500], 0)])
    got = cells_to_str(cells)
    assert got.dtype == object
    assert got.tolist() == [h3.int_to_str(int(c)) for c in cells]
    with_null = cells_to_str(np.array([0, cells[0]], dtype=np.uint64))
    assert with_null[0] is None and with_null[1] == h3.int_to_str(int(cells[0]))
    assert cells_to_str(cells[:6].reshape(2, 3)).shape == (2, 3)


def test_parent_cells_equals_h3(lonlat):
    lon, lat = lonlat
    cells = points_to_cells(lon, lat, 9)
    for res in range(10):
        expected = np.array([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res)) for c in cells],
                            dtype=np.uint64)
        np.testing.assert_array_equal(parent_cells(cells, res), expected)
    np.testing.assert_array_equal(parent_cells(np.array([0, cells[0]], dtype=np.uint64), 7)[0], 0)
    with pytest.raises(ValueError, match="coarser"):
        parent_cells(cells, 10)
    # Also from a mix of resolutions.
    mixed = np.concatenate([cells[:50], points_to_cells(lon[:50], lat[:50], 12)])
    np.testing.assert_array_equal(parent_cells(mixed, 6),
                                  [h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), 6)) for c in mixed])


# ----------------------------------------------------------------------------- polygons
def test_cell_polygons_match_h3_boundary(lonlat):
    lon, lat = lonlat
    cells = np.unique(points_to_cells(lon[:300], lat[:300], 9))
    polys = cell_polygons(cells)
    assert len(polys) == len(cells)
    for c, poly in zip(cells, polys):
        ring = np.array([(b, a) for a, b in h3.cell_to_boundary(h3.int_to_str(int(c)))])
        got = shapely.get_coordinates(poly)[:-1]
        assert got.shape == ring.shape
        np.testing.assert_allclose(got, ring, atol=1e-9)  # 1e-9 degree ≈ 0.1 mm
    assert cell_polygons(np.array([], dtype=np.uint64)).shape == (0,)


@pytest.mark.parametrize("res", [7, 9, 10])
def test_polygon_to_cells_centre_equals_h3(study_area, res):
    got = polygon_to_cells(study_area, res)
    expected = np.array(sorted(h3.str_to_int(c) for c in h3.geo_to_cells(study_area, res)), dtype=np.uint64)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, expected)
    assert (np.diff(got.astype(np.int64)) > 0).all()  # sorted, unique (H3 ids < 2**63)


def test_polygon_to_cells_centre_multipolygon_equals_h3(study_area):
    multi = shapely.MultiPolygon([study_area, shapely.box(13.5, 52.40, 13.53, 52.42)])
    expected = np.array(sorted(h3.str_to_int(c) for c in h3.geo_to_cells(multi, 9)), dtype=np.uint64)
    np.testing.assert_array_equal(polygon_to_cells(multi, 9), expected)


@pytest.mark.parametrize("res", [7, 9, 11])
def test_polygon_to_cells_touch(study_area, res):
    centre = polygon_to_cells(study_area, res, cover="centre")
    touch = polygon_to_cells(study_area, res, cover="touch")
    assert np.isin(centre, touch).all()
    assert len(np.unique(touch)) == len(touch) and (np.diff(touch.astype(np.int64)) > 0).all()
    added = np.setdiff1d(touch, centre)
    assert len(added) > 0
    assert shapely.intersects(study_area, cell_polygons(added)).all()
    # Complete: brute force over the 3 rings around the centre cells (every touching cell of this
    # polygon lies within them) finds nothing more.
    around = np.unique(np.asarray(h3ronpy.grid_disk(centre, 3, flatten=True), dtype=np.uint64))
    brute = around[shapely.intersects(study_area, cell_polygons(around))]
    np.testing.assert_array_equal(touch, brute)


def test_polygon_to_cells_small_and_thin_shapes():
    # Smaller than one hexagon: no centre inside, but it touches at least the cell holding it.
    tiny = shapely.Point(13.4, 52.5).buffer(0.0002)
    assert len(polygon_to_cells(tiny, 9)) == 0
    touch = polygon_to_cells(tiny, 9, cover="touch")
    assert h3.str_to_int(h3.latlng_to_cell(52.5, 13.4, 9)) in touch
    assert shapely.intersects(tiny, cell_polygons(touch)).all()
    # A long thin sliver crossing many cells without covering their centres.
    sliver = shapely.Polygon([(13.30, 52.500), (13.50, 52.5002), (13.50, 52.5003), (13.30, 52.5001)])
    touch = polygon_to_cells(sliver, 9, cover="touch")
    around = np.unique(np.asarray(h3ronpy.grid_disk(touch, 2, flatten=True), dtype=np.uint64))
    np.testing.assert_array_equal(touch, around[shapely.intersects(sliver, cell_polygons(around))])
    assert len(touch) > 50
    # Empty, collections and bad arguments.
    assert polygon_to_cells(shapely.Polygon(), 9).shape == (0,)
    coll = shapely.GeometryCollection([tiny, shapely.LineString([(0, 0), (1, 1)])])
    np.testing.assert_array_equal(polygon_to_cells(coll, 9, cover="touch"),
                                  polygon_to_cells(tiny, 9, cover="touch"))
    with pytest.raises(ValueError):
        polygon_to_cells(tiny, 9, cover="all")
    with pytest.raises(TypeError):
        polygon_to_cells(shapely.Point(0, 0), 9)
