"""Square and H3 grids (usm_geo.hotspots.grids): automatic sizes, covers, exact binning."""

from __future__ import annotations

import math

import geopandas as gpd
import h3
import numpy as np
import pytest
import shapely

from usm_geo.errors import CRSError, UsmGeoError
from usm_geo.hotspots.grids import count_points_square, h3_grid, nice_floor, square_grid


@pytest.mark.parametrize("value, expected", [
    (1, 1), (1.99, 1), (2, 2), (2.4, 2), (2.5, 2.5), (4.99, 2.5), (5, 5), (9.99, 5), (10, 10),
    (120, 100), (249, 200), (250, 250), (0.3, 0.25), (0.001, 0.001), (7e5, 5e5),
])
def test_nice_floor(value, expected):
    assert nice_floor(value) == expected


def test_square_grid_auto_cell_size_and_centre_cover():
    # 10 km x 6 km: shorter side 6000 / 50 = 120 m, rounded down to 100 m
    cells, report = square_grid(shapely.box(0, 0, 10_000, 6_000))
    assert report["cell_size"] == 100.0 and report["cell_size_raw"] == 120.0 and report["cell_size_auto"]
    assert "50" in report["cell_size_rule"]
    assert report["origin"] == (0.0, 0.0)
    assert len(cells) == report["cells"] == 100 * 60
    assert list(cells.columns) == ["unit_id", "row", "col", "geometry"]
    assert cells["unit_id"].is_unique and cells["unit_id"].is_monotonic_increasing
    assert cells["unit_id"].iloc[0] == "r0001c0000"  # row 0 (y 6000–6100) has its centres outside
    np.testing.assert_allclose(cells.area, 100.0 ** 2)
    assert math.isclose(cells.union_all().area, 60e6)
    assert report["flags"] == []


def test_square_grid_touch_cover_and_circle():
    circle = shapely.Point(1_234.0, 5_678.0).buffer(1_000, quad_segs=64)
    centre, _rc = square_grid(circle, cell_size=100)
    touch, rt = square_grid(circle, cell_size=100, cover="touch")
    assert set(centre["unit_id"]) < set(touch["unit_id"])
    # every touching cell overlaps the circle with positive area; the others do not
    boxes = touch.geometry.values
    assert (shapely.area(shapely.intersection(boxes, circle)) > 0).all()
    # centres inside
    c = shapely.centroid(centre.geometry.values)
    assert shapely.intersects(circle, c).all()
    # every cell of the full grid overlapping the circle is in "touch"
    (x0, y0), (rows, cols) = rt["origin"], rt["shape"]
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    allboxes = shapely.box(x0 + cc.ravel() * 100, y0 + (rows - 1 - rr.ravel()) * 100,
                           x0 + cc.ravel() * 100 + 100, y0 + (rows - rr.ravel()) * 100)
    overlap = shapely.area(shapely.intersection(allboxes, circle)) > 0
    assert overlap.sum() == len(touch)
    assert abs(len(centre) * 1e4 - circle.area) / circle.area < 0.02


def test_square_grid_rectangle_on_grid_lines_touch_equals_inside():
    cells, _ = square_grid(shapely.box(0, 0, 1_000, 500), cell_size=100, cover="touch")
    assert len(cells) == 50  # edge-only contacts left out


def test_square_grid_geodataframe_crs_and_geographic_refused():
    area = gpd.GeoDataFrame(geometry=[shapely.box(500_000, 5_000_000, 503_000, 5_002_000)], crs=32633)
    cells, report = square_grid(area, cell_size=250)
    assert cells.crs.equals(area.crs)
    assert report["cells"] == 12 * 8
    with pytest.raises(CRSError):
        square_grid(area.to_crs(4326))


def test_square_grid_budget():
    area = shapely.box(0, 0, 30_000, 30_000)
    with pytest.raises(UsmGeoError, match="pass a larger cell size"):
        square_grid(area, cell_size=10, max_cells=250_000)
    # automatic: 30000 / 50 = 600 -> 500 m = 3600 cells; a tiny budget coarsens it
    cells, report = square_grid(area, max_cells=1_000)
    assert report["cell_size"] == 1_000.0 and "cell_size_coarsened" in report["flags"]
    assert len(cells) == 900
    _, report = square_grid(area, cell_size=500, max_cells=5_000)
    assert "large_grid" in report["flags"]


def test_count_points_square_exact_and_edges():
    origin, cell, shape = (0.0, 0.0), 100.0, (3, 4)  # x 0–400, y 0–300
    x = np.array([0.0, 100.0, 99.999, 250.0, 399.0, 400.0, -0.001, 50.0, 50.0])
    y = np.array([0.0, 100.0, 99.999, 299.0, 0.0, 10.0, 10.0, 300.0, 200.0])
    counts, report = count_points_square(x, y, origin, cell, shape)
    expected = np.zeros(shape, dtype=np.int64)
    expected[2, 0] += 1   # (0, 0): bottom-left cell (row 2 from the top)
    expected[1, 1] += 1   # (100, 100) on a corner -> the cell above/right
    expected[2, 0] += 1   # (99.999, 99.999)
    expected[0, 2] += 1   # (250, 299)
    expected[2, 3] += 1   # (399, 0)
    expected[0, 0] += 1   # (50, 200) on the top edge of row 1 -> row 0
    np.testing.assert_array_equal(counts, expected)
    # (400, 10), (-0.001, 10) and (50, 300) are off the half-open grid
    assert report == {"points": 9, "inside": 6, "outside": 3, "total": 6.0}


def test_count_points_square_matches_histogram2d_and_weights():
    rng = np.random.default_rng(1)
    x = rng.uniform(-50, 1_050, 20_000)
    y = rng.uniform(-50, 750, 20_000)
    w = rng.uniform(0, 3, 20_000)
    counts, rep = count_points_square(x, y, (0, 0), 50, (14, 20), weights=w)
    h, _, _ = np.histogram2d(x, y, bins=[np.arange(0, 1_001, 50), np.arange(0, 701, 50)], weights=w)
    np.testing.assert_allclose(counts, h.T[::-1], rtol=1e-12)  # histogram2d: x along axis 0, y upwards
    inside = (x >= 0) & (x < 1_000) & (y >= 0) & (y < 700)
    assert rep["inside"] == inside.sum()


def test_square_grid_lines_up_with_counts():
    area = shapely.Point(0, 0).buffer(1_000)
    cells, rep = square_grid(area, cell_size=100)
    cx = shapely.get_x(shapely.centroid(cells.geometry.values))
    cy = shapely.get_y(shapely.centroid(cells.geometry.values))
    counts, _ = count_points_square(cx, cy, rep["origin"], rep["cell_size"], rep["shape"])
    assert (counts[cells["row"], cells["col"]] == 1).all()
    assert counts.sum() == len(cells)


# a ~30 km x 22 km box around Berlin
BERLIN = shapely.box(13.2, 52.4, 13.64, 52.6)


def test_h3_grid_auto_resolution():
    cells, report = h3_grid(BERLIN)
    # geodesic shorter side ~22.2 km / 50 = 445 m -> 250 m; closest edge on a log scale: res 9 (201 m)
    edges = {r: h3.average_hexagon_edge_length(r, unit="m") for r in range(16)}
    assert report["target_edge_m"] == 250.0
    assert report["resolution"] == min(edges, key=lambda r: abs(math.log(edges[r] / 250.0)))
    assert report["resolution"] == 9 and report["resolution_auto"]
    assert report["hex_edge_m"] == edges[9]
    expected = set(h3.geo_to_cells(BERLIN, 9))
    assert set(cells["unit_id"]) == expected
    assert cells.crs.equals("EPSG:4326")
    assert abs(report["cells_estimate"] - len(cells)) / len(cells) < 0.05


def test_h3_grid_given_cell_size_and_resolution_and_budget():
    _, report = h3_grid(BERLIN, cell_size=500)
    assert report["resolution"] == 8  # 531 m
    cells, report = h3_grid(BERLIN, resolution=7)
    assert report["resolution_rule"] == "given" and len(cells) == report["cells"]
    with pytest.raises(UsmGeoError, match="coarser"):
        h3_grid(BERLIN, resolution=12)
    _, report = h3_grid(BERLIN, max_cells=500)
    assert report["resolution"] == 7 and "resolution_coarsened" in report["flags"]


def test_h3_grid_reprojects_frames_and_refuses_metres():
    frame = gpd.GeoDataFrame(geometry=[BERLIN], crs=4326).to_crs(32633)
    cells, _report = h3_grid(frame, resolution=8)
    direct, _ = h3_grid(BERLIN, resolution=8)
    assert abs(len(cells) - len(direct)) <= 2  # the reprojected box edges bend slightly
    with pytest.raises(CRSError):
        h3_grid(shapely.box(500_000, 5_000_000, 510_000, 5_010_000))
