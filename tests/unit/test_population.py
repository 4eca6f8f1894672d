"""Population denominators (usm_geo.population), each checked against a hand calculation in the test.

Coordinates are metres in EPSG:32633 (UTM 33N) unless stated; populations are persons.
"""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from usm_geo import population
from usm_geo.errors import BoundaryError, CRSError, UsmGeoError
from usm_geo.intake.ledger import Ledger
from usm_geo.population import from_areas, from_points, from_raster, from_table, roll_up

X0, Y0 = 500_000.0, 5_000_000.0  # lower-left corner of the hand raster (UTM 33N, on the central meridian)
CELL = 100.0
NODATA = -1.0
# Persons per 100 m cell; row 0 is the top row (y from Y0+300 to Y0+400). Cell (row 2, col 2) is nodata.
VALUES = np.array([
    [40, 80, 120, 160],
    [20, 40, 60, 80],
    [4, 8, NODATA, 16],
    [100, 200, 300, 400],
], dtype=np.float32)
TOTAL = 400 + 200 + (4 + 8 + 16) + 1000  # = 1628 persons (nodata not counted)


def _poly(*local):
    """Polygon from (x, y) offsets in metres from (X0, Y0)."""
    return shapely.Polygon([(X0 + a, Y0 + b) for a, b in local])


def _units(ids, geoms, crs=32633):
    return gpd.GeoDataFrame({"unit_id": ids, "name": ids, "parent_id": "city"}, geometry=list(geoms), crs=crs)


def _write_raster(path, values, transform, crs, nodata):
    with rasterio.open(path, "w", driver="GTiff", height=values.shape[0], width=values.shape[1], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(values.astype(np.float32), 1)
    return path


@pytest.fixture
def hand_raster(tmp_path):
    return _write_raster(tmp_path / "hand.tif", VALUES, from_origin(X0, Y0 + 400, CELL, CELL), "EPSG:32633", NODATA)


# Local coordinates: x right from X0, y up from Y0; row r covers y in [300 - 100 r, 400 - 100 r].
HAND_UNITS = {
    # A: x 0–150, full height. Column 0 whole: 40+20+4+100 = 164; column 1 (80+40+8+200 = 328) cut in half: 164.
    "A": (_poly((0, 0), (150, 0), (150, 400), (0, 400)), 164 + 328 / 2),
    # B: x 150–400, y 250–400. Row 0: half of 80 + 120 + 160 = 320. Row 1 (y 200–300) top half:
    #    a quarter of 40 (half width × half height) = 10, half of 60 = 30, half of 80 = 40 → 80.
    "B": (_poly((150, 250), (400, 250), (400, 400), (150, 400)), 320 + 80),
    # C: triangle (200,0)–(400,0)–(400,100); hypotenuse y = (x − 200)/2 runs corner to mid-edge:
    #    cell (3,2) = 300: part below the line = ½·100·50 / 100² = ¼ → 75;
    #    cell (3,3) = 400: trapezoid 100·(50+100)/2 / 100² = ¾ → 300.
    "C": (_poly((200, 0), (400, 0), (400, 100)), 75 + 300),
    # D: the rest of x 150–400, y 0–250. Row 1 bottom half: 10 + 30 + 40 = 80. Row 2: half of 8 = 4,
    #    nodata, 16 → 20. Row 3: half of 200 = 100, 300 − 75 = 225, 400 − 300 = 100 → 425.
    "D": (_poly((150, 0), (200, 0), (400, 100), (400, 250), (150, 250)), 80 + 20 + 425),
}


def _hand_layer():
    ids = sorted(HAND_UNITS)
    return _units(ids, [HAND_UNITS[i][0] for i in ids]), np.array([HAND_UNITS[i][1] for i in ids], dtype=float)


def test_hand_values_add_up():
    _, expected = _hand_layer()
    assert expected.tolist() == [328, 400, 375, 525]
    assert expected.sum() == TOTAL == 1628  # A–D tile the raster's square: nothing outside


@pytest.mark.parametrize("subdivide", [None, 2, 4, 8, 12])
def test_raster_fractional_cells_by_hand(hand_raster, subdivide):
    """Every cut in this layer runs along a cell's half line or along a slope-½ line through a cell
    corner, which pass between sub-cell centres for any even s: the sums are exact up to float
    rounding (tolerance 1e-9 persons). The raster total is conserved exactly."""
    layer, expected = _hand_layer()
    out = from_raster(hand_raster, layer, subdivide=subdivide)
    assert out["unit_id"].tolist() == ["A", "B", "C", "D"]
    np.testing.assert_allclose(out["population"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert (out["flags"] == "").all()
    assert out.attrs["total"] == pytest.approx(TOTAL, abs=1e-9)
    assert out.attrs["assigned"] == pytest.approx(TOTAL, abs=1e-9)
    assert out.attrs["outside"] == pytest.approx(0.0, abs=1e-9)
    assert out.attrs["nodata_cells"] == 1 and out.attrs["cells_used"] == 15
    if subdivide is None:
        # default: cell 100 m, unit size √(median area) = √((37,500 + 52,500)/2) ≈ 212 m → 50·100/212 = 23.6 → 24
        assert out.attrs["subdivide"] == 24
        assert out.attrs["cell_size_m"] == pytest.approx(100.0)


def test_raster_diagonal_cut_error_bound(hand_raster):
    """Two triangles split the square along its diagonal y = x. Cells with row + col ≥ 4 lie wholly
    below (T1), row + col ≤ 2 wholly above (T2), and the four diagonal cells (100, 8, 60, 160; sum 328)
    are halved: T1 = 80+16+200+300+400 + 328/2 = 1160, T2 = 40+80+120+20+40+4 + 164 = 468.
    s sub-cell centres of each diagonal cell lie *on* the diagonal and go to one side (half-open
    rule), the documented worst case: |error| ≤ Σ v/(2s) = 328/(2s)."""
    layer = _units(["T1", "T2"], [_poly((0, 0), (400, 0), (400, 400)), _poly((0, 0), (400, 400), (0, 400))])
    for s in (8, 10, 16):
        out = from_raster(hand_raster, layer, subdivide=s)
        got = out["population"].to_numpy()
        bound = 328 / (2 * s) + 1e-9
        assert abs(got[0] - 1160) <= bound and abs(got[1] - 468) <= bound
        assert got.sum() == pytest.approx(TOTAL, abs=1e-9)  # conserved exactly anyway


def _lonlat_copy(path):
    """The hand raster rebuilt on a lon/lat (EPSG:4326) grid of 0.0002° × 0.00015° (≈ 16 × 17 m) with a margin of zeros,
    mass-conserving by construction: each lon/lat cell holds Σ (UTM cell density × area of the
    overlap), with the lon/lat cell's corners projected to UTM and overlaps computed by shapely."""
    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    to_ll = Transformer.from_crs(32633, 4326, always_xy=True)
    r, c = np.nonzero(VALUES != NODATA)
    boxes = shapely.box(X0 + c * CELL, Y0 + 300 - r * CELL, X0 + (c + 1) * CELL, Y0 + 400 - r * CELL)
    density = VALUES[r, c].astype(float) / CELL**2  # persons per m²
    lon, lat = to_ll.transform(X0 + np.array([0, 400, 400, 0]), Y0 + np.array([0, 0, 400, 400]))
    dlon, dlat = 0.0002, 0.00015
    pad = 6  # cells of zeros around the square (≥ 90 m), so units reaching 50 m beyond it are covered
    west, north = np.floor(min(lon) / dlon) * dlon - pad * dlon, np.ceil(max(lat) / dlat) * dlat + pad * dlat
    width = int(np.ceil((max(lon) + pad * dlon - west) / dlon))
    height = int(np.ceil((north - (min(lat) - pad * dlat)) / dlat))
    jj, ii = np.meshgrid(np.arange(width + 1), np.arange(height + 1))
    cx, cy = to_utm.transform(west + jj * dlon, north - ii * dlat)
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    i, j = i.ravel(), j.ravel()
    rings = np.stack([np.stack([cx[i, j], cx[i, j + 1], cx[i + 1, j + 1], cx[i + 1, j]], -1),
                      np.stack([cy[i, j], cy[i, j + 1], cy[i + 1, j + 1], cy[i + 1, j]], -1)], -1)
    cells = shapely.polygons(rings)
    a, b = shapely.STRtree(boxes).query(cells, predicate="intersects")
    mass = density[b] * shapely.area(shapely.intersection(cells[a], boxes[b]))
    out = np.bincount(a, weights=mass, minlength=len(cells)).reshape(height, width)
    assert out.sum() == pytest.approx(TOTAL, rel=1e-9)
    return _write_raster(path, out, from_origin(west, north, dlon, dlat), "EPSG:4326", -9999.0)


def test_raster_in_lonlat_matches_hand_values(tmp_path):
    """The same population on a lon/lat grid (≈ 16 m cells), read into the UTM units.

    The lon/lat raster spreads each of its cells' persons evenly over that cell, so where a
    lon/lat cell straddles the edge of the populated square, part of its persons now lie outside
    the square (≈ 3 % here). To measure the method and not that smearing, the outer units reach
    50 m beyond the square (no one lives there, so the hand values are unchanged); the internal
    boundaries run through the middle of UTM cells, where density does not jump.

    Checks: (1) against an exact reference on the same lon/lat raster — each lon/lat cell's
    persons × the share of its (projected) area inside the unit, by shapely — within 0.5 %;
    (2) against the hand values within 1 %; (3) the raster total conserved within 0.5 %
    (here: exactly, every sub-cell lands in a unit)."""
    lonlat = _lonlat_copy(tmp_path / "hand_4326.tif")
    m = 50
    layer = _units(["A", "B", "C", "D"], [
        _poly((-m, -m), (150, -m), (150, 400 + m), (-m, 400 + m)),
        _poly((150, 250), (400 + m, 250), (400 + m, 400 + m), (150, 400 + m)),
        _poly((200, -m), (400 + m, -m), (400 + m, 100), (400, 100), (200, 0)),
        _poly((150, -m), (200, -m), (200, 0), (400, 100), (400 + m, 100), (400 + m, 250), (150, 250)),
    ])
    expected = np.array([328, 400, 375, 525], dtype=float)
    out = from_raster(lonlat, layer)

    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    with rasterio.open(lonlat) as src:
        v, t = src.read(1), src.transform
    jj, ii = np.meshgrid(np.arange(v.shape[1] + 1), np.arange(v.shape[0] + 1))
    cx, cy = to_utm.transform(t.c + t.a * jj, t.f + t.e * ii)
    i, j = np.meshgrid(np.arange(v.shape[0]), np.arange(v.shape[1]), indexing="ij")
    cells = shapely.polygons(np.stack([np.stack([cx[i, j], cx[i, j + 1], cx[i + 1, j + 1], cx[i + 1, j]], -1),
                                       np.stack([cy[i, j], cy[i, j + 1], cy[i + 1, j + 1], cy[i + 1, j]], -1)], -1))
    reference = np.array([(v * shapely.area(shapely.intersection(cells, g)) / shapely.area(cells)).sum()
                          for g in layer.geometry.values])
    np.testing.assert_allclose(out["population"].to_numpy(), reference, rtol=0.005)
    np.testing.assert_allclose(out["population"].to_numpy(), expected, rtol=0.01)
    assert out.attrs["raster_crs"] == "EPSG:4326"
    assert out.attrs["total"] == pytest.approx(TOTAL, rel=1e-6)
    assert out.attrs["assigned"] == pytest.approx(out.attrs["total"], rel=0.005)
    assert out.attrs["assigned"] + out.attrs["outside"] == pytest.approx(out.attrs["total"], rel=1e-12)
    assert (out["flags"] == "").all()


def test_raster_h3_hexagons_constant_density(tmp_path):
    """H3 res-9 hexagons (a cell and its 6 neighbours, near 48.2° N 15.1° E) over a constant
    0.01 persons/m² raster (100 persons per 100 m cell): each hexagon gets 0.01 × its area
    (projected polygon area in EPSG:32633) within 1 %."""
    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    cells = sorted(h3.grid_disk(h3.latlng_to_cell(48.2, 15.1, 9), 1))
    polys = []
    for cell in cells:
        latlng = np.array(h3.cell_to_boundary(cell))
        x, y = to_utm.transform(latlng[:, 1], latlng[:, 0])
        polys.append(shapely.Polygon(np.column_stack([x, y])))
    layer = _units(cells, polys)
    minx, miny, maxx, maxy = layer.total_bounds
    west, north = np.floor(minx / CELL) * CELL - CELL, np.ceil(maxy / CELL) * CELL + CELL
    shape = (int((north - miny) // CELL) + 2, int((maxx - west) // CELL) + 2)
    raster = _write_raster(tmp_path / "flat.tif", np.full(shape, 100.0), from_origin(west, north, CELL, CELL),
                           "EPSG:32633", -1.0)
    out = from_raster(raster, layer)
    expected = 0.01 * shapely.area(np.array(polys, dtype=object))
    order = np.argsort(cells)
    np.testing.assert_allclose(out["population"].to_numpy(), expected[order], rtol=0.01)
    assert out.attrs["total"] == pytest.approx(100.0 * shape[0] * shape[1])
    assert out.attrs["assigned"] + out.attrs["outside"] == pytest.approx(out.attrs["total"], rel=1e-12)


def test_raster_partial_missing_zero_and_negative(tmp_path):
    """Cell (2,2) is −5 here (negative: ignored and counted). Units:
    a_left  x 0–200: columns 0 and 1 = 164 + 328 = 492;
    b_neg   exactly the −5 cell → 0, flagged population_zero;
    c_half  x 300–500: half outside the raster → column 3 = 160+80+16+400 = 656, population_partial;
    d_far   x 1000–1100: the raster does not reach it → NaN, population_missing.
    In no unit: column 2 without the −5 cell = 120 + 60 + 300 = 480."""
    values = VALUES.copy()
    values[2, 2] = -5
    raster = _write_raster(tmp_path / "neg.tif", values, from_origin(X0, Y0 + 400, CELL, CELL), "EPSG:32633", -9999.0)
    layer = _units(["a_left", "b_neg", "c_half", "d_far"], [
        _poly((0, 0), (200, 0), (200, 400), (0, 400)),
        _poly((200, 100), (300, 100), (300, 200), (200, 200)),
        _poly((300, 0), (500, 0), (500, 400), (300, 400)),
        _poly((1000, 0), (1100, 0), (1100, 100), (1000, 100)),
    ])
    out = from_raster(raster, layer, subdivide=4)
    got = out.set_index("unit_id")
    assert got.loc["a_left", "population"] == pytest.approx(492)
    assert got.loc["b_neg", "population"] == 0 and got.loc["b_neg", "flags"] == "population_zero"
    assert got.loc["c_half", "population"] == pytest.approx(656)
    assert got.loc["c_half", "flags"] == "population_partial"
    assert np.isnan(got.loc["d_far", "population"]) and got.loc["d_far", "flags"] == "population_missing"
    assert out.attrs["negative_cells"] == 1 and out.attrs["nodata_cells"] == 0
    assert out.attrs["total"] == pytest.approx(TOTAL)  # 1628: the −5 is not counted
    assert out.attrs["outside"] == pytest.approx(480)
    assert out.attrs["assigned"] == pytest.approx(492 + 656)


def test_raster_chunking_gives_the_same_sums(hand_raster, monkeypatch):
    """Tiny read blocks (1 row) and batches (3 cells of 8×8 sub-cells) give the same sums."""
    layer, expected = _hand_layer()
    whole = from_raster(hand_raster, layer, subdivide=8)
    monkeypatch.setattr(population, "READ_BLOCK_CELLS", 4)
    monkeypatch.setattr(population, "SUBCELL_BATCH", 3 * 64)
    chunked = from_raster(hand_raster, layer, subdivide=8)
    np.testing.assert_allclose(chunked["population"], whole["population"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(chunked["population"], expected, rtol=0, atol=1e-9)


def test_raster_crs_errors(tmp_path, hand_raster):
    layer, _ = _hand_layer()
    with pytest.raises(CRSError):
        from_raster(hand_raster, layer.set_crs(None, allow_override=True))
    bare = tmp_path / "nocrs.tif"
    with rasterio.open(bare, "w", driver="GTiff", height=4, width=4, count=1, dtype="float32",
                       transform=from_origin(X0, Y0 + 400, CELL, CELL)) as dst:
        dst.write(VALUES, 1)
    with pytest.raises(CRSError, match="no CRS"):
        from_raster(bare, layer)


def test_default_subdivide_rule():
    # s = 4·ceil(max(50 r, min(12, 400 r)) / 4), clipped to [4, 64], r = cell / unit
    assert population.default_subdivide(100, 2000) == 12    # r = 0.05: max(2.5, min(12, 20)) = 12
    assert population.default_subdivide(100, 5000) == 8     # r = 0.02: max(1, min(12, 8)) = 8
    assert population.default_subdivide(10, 1500) == 4      # r ≈ 0.0067: 2.7 → 4
    assert population.default_subdivide(100, 320) == 16     # r ≈ 0.31: 15.6 → 16
    assert population.default_subdivide(250, 320) == 40     # 39.1 → 40
    assert population.default_subdivide(1000, 100) == 64    # 500 → cap 64


# --------------------------------------------------------------------------- tables
TABLE_ROWS = [  # code, pop  (data row numbers 1..10)
    ("1", "100"),      # 1 used
    ("2", "0"),        # 2 used: population 0 → population_zero
    ("99", "50"),      # 3 unknown_unit
    ("3", "abc"),      # 4 invalid_population
    ("3", "-4"),       # 5 invalid_population
    ("35.0", "1,234"), # 6 used: id 35.0 → "35", thousands separator → 1234
    ("1", "120"),      # 7 duplicate_unit: row 1 wins (100), values differ → population_conflict
    ("", "7"),         # 8 missing_unit
    ("2", "0"),        # 9 duplicate_unit, same value: no conflict
]


def _table_layer():
    return _units(["1", "2", "3", "35", "4"], [_poly((i, 0), (i + 1, 0), (i + 1, 1)) for i in range(5)])


def test_from_table_flags_and_ledger(tmp_path):
    path = tmp_path / "pop.csv"
    lines = ["code,pop"] + [f'{a},"{b}"' for a, b in TABLE_ROWS] + ["4,5,6"]  # row 10: malformed (3 fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ledger = Ledger()
    out = from_table(path, _table_layer(), id_column="code", value_column="pop", ledger=ledger)
    got = out.set_index("unit_id")
    assert out["unit_id"].tolist() == ["1", "2", "3", "35", "4"]
    assert got.loc["1", "population"] == 100 and got.loc["1", "flags"] == "population_conflict"
    assert got.loc["2", "population"] == 0 and got.loc["2", "flags"] == "population_zero"
    assert np.isnan(got.loc["3", "population"]) and got.loc["3", "flags"] == "population_missing"
    assert got.loc["35", "population"] == 1234 and got.loc["35", "flags"] == ""
    assert np.isnan(got.loc["4", "population"]) and got.loc["4", "flags"] == "population_missing"

    frame = ledger.to_frame()
    dropped = frame[frame["status"] == "dropped"].set_index("row")["reason"].to_dict()
    assert dropped == {3: "unknown_unit", 4: "invalid_population", 5: "invalid_population",
                       7: "duplicate_unit", 8: "missing_unit", 9: "duplicate_unit", 10: "malformed_row"}
    assert "row 1" in frame.loc[frame["row"] == 7, "detail"].iloc[0]
    assert (frame["reason"] == "thousands_separator").sum() == 1
    # invariant: read 10 = used 3 (rows 1, 2, 6) + dropped 7
    assert ledger.totals()["population"] == {"read": 10, "used": 3, "dropped": 7}
    assert out.attrs["total"] == 100 + 0 + 1234 and out.attrs["units_missing"] == 2


def test_from_table_xlsx_numeric_ids(tmp_path):
    """An .xlsx keyed by numeric ids (35.0 → "35"), column names differing in case."""
    path = tmp_path / "pop.xlsx"
    pd.DataFrame({"Area": [1.0, 35.0, 2.0], "Population": [10, 20, 30]}).to_excel(path, index=False)
    ledger = Ledger()
    out = from_table(path, _table_layer(), id_column="area", value_column="population", ledger=ledger,
                     source="pop_xlsx")
    got = out.set_index("unit_id")["population"]
    assert got["1"] == 10 and got["35"] == 20 and got["2"] == 30
    assert np.isnan(got["3"]) and np.isnan(got["4"])
    assert ledger.totals()["pop_xlsx"] == {"read": 3, "used": 3, "dropped": 0}


# --------------------------------------------------------------------------- points
def test_from_points_two_squares():
    """Squares a = [0,10]², b = [10,20]×[0,10], c = [0,10]×[10,20] (metres).
    (5,5) 10 persons → a; (15,5) 20 → b; (10,5) 4 lies on the a|b edge → b only (half-open rule: the
    polygon to the right); (25,5) 7 and (NaN,1) 3 → no unit. a = 10, b = 24, c = 0 (flag), outside 10."""
    layer = _units(["a", "b", "c"], [shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10), shapely.box(0, 10, 10, 20)])
    x = [5, 15, 10, 25, np.nan]
    y = [5, 5, 5, 5, 1]
    out, outside = from_points(x, y, [10, 20, 4, 7, 3], layer, return_outside=True)
    assert out["population"].tolist() == [10, 24, 0]
    assert out["flags"].tolist() == ["", "", "population_zero"]
    assert outside.tolist() == [3, 4]
    assert out.attrs["total"] == 44 and out.attrs["assigned"] == 34 and out.attrs["outside"] == 10
    assert out.attrs["n_outside"] == 2
    counted = from_points(x, y, None, layer)  # values None: one person per point
    assert counted["population"].tolist() == [1, 2, 0]
    with pytest.raises(UsmGeoError, match="negative"):
        from_points([1], [1], [-1], layer)


# --------------------------------------------------------------------------- areas
def test_from_areas_split_by_area():
    """Targets L = [0,100]×[0,100], R = [100,200]×[0,100], Z = [500,600]×[0,100] (m).
    s1 = [50,150]×[0,100], 1000 persons: half its area in L, half in R → 500 each.
    s2 = [150,250]×[0,50], 80: 2,500 of its 5,000 m² in R → 40; the other 2,500 m² (40) outside.
    s3 = [0,50]×[0,100], value missing: L keeps 500 and is flagged population_missing.
    R is covered by s1 (5,000 m²) + s2 (2,500 m²) = 75 % → population_partial; Z: no source → NaN."""
    targets = _units(["L", "R", "Z"], [shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100),
                                       shapely.box(500, 0, 600, 100)])
    sources = gpd.GeoDataFrame({"pop": [1000.0, 80.0, np.nan]},
                               geometry=[shapely.box(50, 0, 150, 100), shapely.box(150, 0, 250, 50),
                                         shapely.box(0, 0, 50, 100)], crs=32633)
    out = from_areas(sources, "pop", targets)
    got = out.set_index("unit_id")
    assert got.loc["L", "population"] == pytest.approx(500) and got.loc["L", "flags"] == "population_missing"
    assert got.loc["R", "population"] == pytest.approx(540) and got.loc["R", "flags"] == "population_partial"
    assert np.isnan(got.loc["Z", "population"]) and got.loc["Z", "flags"] == "population_missing"
    assert out.attrs["total"] == pytest.approx(1080)
    assert out.attrs["assigned"] == pytest.approx(1040)
    assert out.attrs["outside"] == pytest.approx(40)
    assert out.attrs["outside_area_m2"] == pytest.approx(2500)
    assert out.attrs["sources_missing"] == 1
    # The same sources in lon/lat are transformed to the targets' CRS first: same answer.
    again = from_areas(sources.to_crs(4326), "pop", targets)
    np.testing.assert_allclose(again["population"], out["population"], rtol=1e-6)
    with pytest.raises(CRSError, match="not projected"):
        from_areas(sources, "pop", targets.to_crs(4326))


# --------------------------------------------------------------------------- roll-up
def test_roll_up_lower_bound_and_flags():
    """P = a 10 + b NaN → 10 (lower bound, population_missing); Q = c 5 (partial passes up);
    R = d 0 + e (absent from pop) → 0, population_missing and population_zero; S = f NaN → NaN."""
    pop = pd.DataFrame({"unit_id": ["a", "b", "c", "d", "f"], "population": [10, np.nan, 5, 0, np.nan],
                        "flags": ["", "population_missing", "population_partial", "population_zero",
                                  "population_missing"]})
    cw = pd.DataFrame({"unit_id": ["a", "b", "c", "d", "e", "f"], "parent_id": ["P", "P", "Q", "R", "R", "S"]})
    out = roll_up(pop, cw)
    assert out["unit_id"].tolist() == ["P", "Q", "R", "S"]
    np.testing.assert_array_equal(out["population"].to_numpy(), [10, 5, 0, np.nan])
    assert out["flags"].tolist() == ["population_missing", "population_partial",
                                     "population_missing;population_zero", "population_missing"]
    with pytest.raises(BoundaryError, match="no parent"):
        roll_up(pop, cw[cw["unit_id"] != "a"])
    with pytest.raises(BoundaryError, match="more than one parent"):
        roll_up(pop, pd.concat([cw, pd.DataFrame({"unit_id": ["a"], "parent_id": ["Q"]})]))
