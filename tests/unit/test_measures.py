"""Units, crosswalk, counts and rollups on hand-built geographies, checked by hand."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from usm_geo.errors import BoundaryError
from usm_geo.measures import check_rollups, count_measures, roll_up
from usm_geo.units.hierarchy import build_units
from usm_geo.units.locate import locate_points

CRS = "EPSG:32633"
X0, Y0 = 400_000.0, 5_800_000.0


def _squares():
    """Four 1 km squares in a row (A1 A2 | B1 B2) → districts A and B → city."""
    boxes = [shapely.box(X0 + i * 1000, Y0, X0 + (i + 1) * 1000, Y0 + 1000) for i in range(4)]
    nb = gpd.GeoDataFrame({"unit_id": ["A1", "A2", "B1", "B2"], "name": ["a1", "a2", "b1", "b2"],
                           "parent_id": ["A", "A", "B", "B"]}, geometry=boxes, crs=CRS)
    dist = gpd.GeoDataFrame({"unit_id": ["A", "B"], "name": ["Nord", "Süd"], "parent_id": [None, None]},
                            geometry=[shapely.union_all(boxes[:2]), shapely.union_all(boxes[2:])], crs=CRS)
    area = shapely.union_all(boxes)
    return {"neighbourhood": nb, "district": dist}, area


def _records(x, y):
    ll = gpd.GeoSeries(gpd.points_from_xy(x, y), crs=CRS).to_crs(4326)
    return pd.DataFrame({"row": np.arange(1, len(x) + 1), "x": x, "y": y, "lon": ll.x, "lat": ll.y})


def test_crosswalk_and_nesting():
    levels, area = _squares()
    units = build_units(levels, study_area=area, crs=CRS, declared_parents={"neighbourhood": "district"})
    assert units.names == ["neighbourhood", "district", "city"]
    assert units.parents("neighbourhood", "district").to_dict() == {"A1": "A", "A2": "A", "B1": "B", "B2": "B"}
    assert units.nested[("neighbourhood", "district")] and units.nested[("district", "city")]
    cw = units.crosswalk
    assert (cw.loc[cw.level == "neighbourhood", "overlap_share"] == 1.0).all()


def test_parent_code_that_disagrees_with_geometry_is_used_and_noted():
    # the code is authoritative (issue #18 item 5): A2 lies wholly in A but its code says B
    levels, area = _squares()
    levels["neighbourhood"].loc[1, "parent_id"] = "B"
    units = build_units(levels, study_area=area, crs=CRS, declared_parents={"neighbourhood": "district"})
    assert units.parents("neighbourhood", "district").to_dict() == {"A1": "A", "A2": "B", "B1": "B", "B2": "B"}
    assert units.nested[("neighbourhood", "district")]
    pair = next(p for p in units.report["pairs"] if p["coarse"] == "district")
    assert pair["by"] == "code" and pair["worst"] == [{"unit_id": "A2", "share": 0.0}]
    assert units.report["notes"] == [pair["note"]] and "A2 (0.0%)" in pair["note"]


def test_declared_parent_by_geometry_beyond_tolerance_is_an_error():
    levels, area = _squares()
    levels["neighbourhood"]["parent_id"] = None  # parent = { level = "district" }: by geometry
    # A2 reaches 30 m (3 % of its area) into B
    levels["neighbourhood"].loc[1, "geometry"] = shapely.box(X0 + 1000, Y0, X0 + 2030, Y0 + 1000)
    with pytest.raises(BoundaryError, match=r"neighbourhood is declared to nest in district, but 1 of 4 unit\(s\) have less "
                                            r"than 99% of their area in one district unit; worst: 'A2' \(97.1%\)") as err:
        build_units(levels, study_area=area, crs=CRS, declared_parents={"neighbourhood": "district"})
    assert "raise [units] nest_tolerance above 0.029" in err.value.fix
    units = build_units(levels, study_area=area, crs=CRS, declared_parents={"neighbourhood": "district"}, nest_tolerance=0.03)
    assert units.nested[("neighbourhood", "district")]  # 1000/1030 = 97.09 % ≥ 97 %


def test_non_nesting_level_is_separate():
    levels, area = _squares()
    # a "police district" straddling A2 and B1 half and half: not a parent of anything
    levels["district"] = gpd.GeoDataFrame({"unit_id": ["P", "Q"], "name": ["p", "q"], "parent_id": [None, None]},
                                          geometry=[shapely.box(X0, Y0, X0 + 1500, Y0 + 1000), shapely.box(X0 + 1500, Y0, X0 + 4000, Y0 + 1000)], crs=CRS)
    units = build_units(levels, study_area=area, crs=CRS)
    assert not units.nested[("neighbourhood", "district")]
    shares = units.crosswalk.query("level == 'neighbourhood' and to_level == 'district'").set_index("unit_id")["overlap_share"]
    assert shares["A2"] == 0.5 and shares["A1"] == 1.0


def test_counts_by_hand_with_zeros_and_boundary_points():
    levels, area = _squares()
    units = build_units(levels, study_area=area, crs=CRS)
    # 3 points in A1; 1 on the A1|A2 edge (x = X0+1000: goes right, to A2); 2 in B2; 1 in B1
    x = np.array([X0 + 100, X0 + 200, X0 + 300, X0 + 1000, X0 + 3500, X0 + 3600, X0 + 2500])
    y = np.full(7, Y0 + 500)
    rec = _records(x, y)
    loc = locate_points(rec, units)
    assert loc["neighbourhood"].tolist() == ["A1", "A1", "A1", "A2", "B2", "B2", "B1"]
    period = np.array(["2020", "2020", "2021", "2021", "2020", "2021", "2021"], dtype=object)
    category = np.array(["theft", "assault", "theft", "theft", "theft", "theft", "assault"], dtype=object)
    weight = np.array([1.0, 10.0, 1.0, 1.0, 1.0, 1.0, 10.0])
    m = count_measures(loc, units, period=period, periods=["2019", "2020", "2021"], category=category, weight=weight)
    counts = m[m.measure == "count"].set_index(["level", "unit_id", "period", "category"])["value"]
    assert counts[("neighbourhood", "A1", "2020", "all")] == 2
    assert counts[("neighbourhood", "A1", "2019", "theft")] == 0  # zeros listed for every period
    assert counts[("neighbourhood", "A2", "2021", "theft")] == 1
    assert counts[("district", "A", "2021", "all")] == 2
    assert counts[("district", "B", "2021", "assault")] == 1
    assert counts[("city", "city", "2021", "all")] == 4 and counts[("city", "city", "2020", "all")] == 3
    harm = m[m.measure == "harm"].set_index(["level", "unit_id", "period", "category"])["value"]
    assert harm[("district", "A", "2020", "all")] == 11.0  # 1 theft + 10 assault
    # 4 units × 3 periods × 3 categories (2 + all) rows at the finest level
    assert len(counts.loc["neighbourhood"]) == 4 * 3 * 3
    assert all(r["max_abs_difference"] == 0 for r in check_rollups(m, units))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 4000), st.floats(0, 1000), st.sampled_from(["2020", "2021"]),
                          st.sampled_from(["a", "b", "c"])), min_size=1, max_size=60))
def test_rollup_additivity(points):
    """At every level the totals equal the points assigned; city = Σ districts = Σ neighbourhoods."""
    levels, area = _squares()
    units = build_units(levels, study_area=area, crs=CRS)
    x = X0 + np.array([p[0] for p in points])
    y = Y0 + np.array([p[1] for p in points])
    rec = _records(x, y)
    loc = locate_points(rec, units)
    m = count_measures(loc, units, period=np.array([p[2] for p in points], dtype=object), periods=["2020", "2021"],
                       category=np.array([p[3] for p in points], dtype=object))
    totals = m[(m.measure == "count") & (m.category == "all")].groupby("level")["value"].sum()
    for level in units.names:
        assert totals[level] == loc[level].notna().sum()
    assert totals["city"] == len(points)
    inside_partition = loc["neighbourhood"].notna().sum()
    assert totals["district"] == inside_partition  # the same points are on the outer edge of both
    rolled = roll_up(m[m.measure == "count"], units, "neighbourhood", "district")
    direct = m[(m.measure == "count") & (m.level == "district")]
    assert rolled.set_index(["unit_id", "period", "category"])["value"].equals(
        direct.set_index(["unit_id", "period", "category"])["value"])
