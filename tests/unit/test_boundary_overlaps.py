"""The overlap check of a boundary level (intake.boundaries._ledger_overlaps) against a pair-by-pair
reference: every pair whose polygons overlap, or where one holds the other, and no other pair."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from usm_geo.intake.boundaries import _ledger_overlaps
from usm_geo.intake.ledger import Ledger

CCA = Path(__file__).resolve().parents[3] / "shared" / "data" / "chicago-community-areas-population-geoda" / "Chi-CCA.zip"


def _lines(geom, ids):
    ledger = Ledger()
    ledger.open_source("b", "b.gpkg", len(geom))
    _ledger_overlaps(np.asarray(geom, dtype=object), np.asarray(ids, dtype=object), np.arange(1, len(geom) + 1), "b", ledger)
    entries = ledger.to_frame()
    return entries[entries["reason"] == "overlapping_units"][["row", "detail"]].values.tolist()


def _reference_pairs(geom):
    # shapely's scalar predicates, one pair at a time, both orders of contains
    return [(i + 1, j + 1) for i in range(len(geom)) for j in range(i + 1, len(geom))
            if geom[i].overlaps(geom[j]) or geom[i].contains(geom[j]) or geom[j].contains(geom[i])]


def test_a_unit_holding_a_lower_numbered_one_is_listed():
    # row 2 (0..10 km) holds row 1 (2..3 km); row 3 only touches row 2; row 4 overlaps row 3 by 1/4
    geom = [box(2000, 2000, 3000, 3000), box(0, 0, 10000, 10000), box(10000, 0, 12000, 2000), box(11000, 0, 13000, 2000)]
    lines = _lines(geom, ["A", "B", "C", "D"])
    assert [(r, d) for r, d in lines] == [
        (1, "unit A and unit B (row 2) overlap on 100.0% of the smaller; a point there is counted once, in A"),
        (3, "unit C and unit D (row 4) overlap on 50.0% of the smaller; a point there is counted once, in C")]
    assert [(r, int(d.split("row ")[1].split(")")[0])) for r, d in lines] == _reference_pairs(geom)


def test_random_boxes_match_the_pairwise_reference():
    rng = np.random.default_rng(7)
    lo = rng.uniform(0, 100, (60, 2))
    geom = [box(x, y, x + w, y + h) for (x, y), (w, h) in zip(lo, rng.uniform(1, 30, (60, 2)))]
    ids = [f"U{k:02d}" for k in range(60)]
    lines = _lines(geom, ids)
    # share ≥ 0.1 % of the smaller unit, as the ledger lists them
    want = [(i, j) for i, j in _reference_pairs(geom)
            if (geom[i - 1].intersection(geom[j - 1]).area / min(geom[i - 1].area, geom[j - 1].area)) >= 0.001]
    assert [(r, int(d.split("row ")[1].split(")")[0])) for r, d in lines] == want
    assert len(want) > 20


@pytest.mark.skipif(not CCA.exists(), reason="needs ../shared/data")
def test_chicago_community_areas_have_no_overlap():
    areas = gpd.read_file(f"zip://{CCA}!Chicago_2020.shp").to_crs(32616).geometry.to_numpy()
    assert _lines(areas, [str(k) for k in range(len(areas))]) == _reference_pairs(areas) == []
