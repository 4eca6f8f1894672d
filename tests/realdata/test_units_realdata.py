"""Chicago: every aggravated assault assigned to one community area and one H3 r9 cell, checked
against independent routes (geopandas.sjoin; a loop over h3.latlng_to_cell)."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import h3
import pandas as pd
import pytest

from shared_data import need_shared
from usm_geo.cli_files import aggregate_points


@pytest.fixture(scope="module")
def chicago():
    csv = need_shared("chicago-aggravated-assaults-2010-2019", "chicago_aggravated_assaults.csv.gz")
    cca = need_shared("chicago-community-areas-population-geoda", "Chi-CCA.zip")
    return csv, cca


def test_every_assault_in_one_community_area_matching_sjoin(chicago):
    csv, cca = chicago
    agg = aggregate_points(csv, f"{cca}:area_num_1", lon="longitude", lat="latitude", now=dt.datetime(2026, 1, 1))
    totals = agg.ledger.totals()["points"]
    assert totals["read"] == 148_636
    assert len(agg.table) == 77  # every community area listed, zeros included
    assert agg.table["count"].sum() == totals["used"]  # the sum over the 77 areas = the number assigned
    ledger = agg.ledger.to_frame()
    assert set(ledger.loc[ledger.status == "dropped", "reason"]) == {"outside_study_area"}
    assert not (ledger.reason == "outside_units").any()  # used ⇒ assigned

    # independent: geopandas.sjoin(within) in the same UTM zone
    raw = pd.read_csv(csv)
    areas = gpd.read_file(f"zip://{cca}!Chicago_2020.shp").to_crs(32616)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs=4326).to_crs(32616)
    within = gpd.sjoin(pts, areas[["area_num_1", "geometry"]], predicate="within", how="inner")
    on_boundary = pts.index.difference(within.index)  # in no area's interior: outside, or on a shared edge
    expected = within.groupby("area_num_1").size()
    expected.index = expected.index.astype(float).astype(int).astype(str)  # Chicago stores 35.0; ids are "35"
    ours = agg.table.set_index("unit_id")["count"]
    # per area, ours counts the within-points plus its share of boundary points: never fewer
    diff = ours.sub(expected.reindex(ours.index, fill_value=0))
    assert (diff >= 0).all()
    assert diff.sum() == totals["used"] - len(within)
    assert diff.sum() <= len(on_boundary)


def test_every_assault_in_one_h3_cell_matching_h3_py(chicago):
    csv, _ = chicago
    agg = aggregate_points(csv, "h3:9", lon="longitude", lat="latitude", now=dt.datetime(2026, 1, 1))
    raw = pd.read_csv(csv)
    cells = pd.Series([h3.latlng_to_cell(a, b, 9) for a, b in zip(raw.latitude, raw.longitude)])
    expected = cells.value_counts().sort_index()
    ours = agg.table.set_index("unit_id")["count"].sort_index()
    assert ours.sum() == len(raw) == agg.ledger.totals()["points"]["used"]  # no study area: nothing outside
    pd.testing.assert_series_equal(ours, expected, check_names=False, check_index_type=False)
