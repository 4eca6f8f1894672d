"""Chicago assaults and the 77 community areas: the clipped H3 cover adds up to the city count, and
[units] snap moves exactly the points an independent geopandas.sjoin_nearest(max_distance) finds."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, chicago_study_text, need_shared
from usm_geo import pipeline
from usm_geo.study import load_study

SNAP = 30.0  # metres


@pytest.fixture(scope="module")
def chicago(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chicago_snap")
    text = chicago_study_text(study='working_crs = "EPSG:32616"').replace(
        "[periods]", f"[units]\nh3_resolution = [8]\nsnap = {SNAP}\n\n[periods]")
    (folder / "study.toml").write_text(text)
    intake = pipeline.run_intake(load_study(folder / "study.toml"))
    return intake, pipeline.run_units(intake)


def test_h3_counts_sum_to_city(chicago):
    intake, located = chicago
    loc = located.incidents
    assert loc["h3_8"].notna().all() and loc["community_area"].notna().all()
    by_h3 = loc.groupby("h3_8").size()
    assert by_h3.sum() == len(loc) == (loc["city"] == "city").sum()
    assert set(by_h3.index) <= set(located.units.levels["h3_8"].unit_id)


def test_snapped_points_match_sjoin_nearest(chicago):
    intake, located = chicago
    raw = pd.read_csv(need_shared(*CHICAGO_ASSAULTS))
    areas = gpd.read_file(f"zip://{need_shared(*CHICAGO_AREAS)}!Chicago_2020.shp").to_crs(32616)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs=4326).to_crs(32616)
    pts = pts[np.isfinite(raw.longitude) & np.isfinite(raw.latitude) & (raw.longitude != 0)]
    within = gpd.sjoin(pts, areas[["area_num_1", "geometry"]], predicate="within", how="inner")
    left = pts.loc[pts.index.difference(within.index)]
    near = gpd.sjoin_nearest(left, areas[["area_num_1", "geometry"]], max_distance=SNAP, distance_col="d")
    near = near[near.d > 0]  # points on a shared edge: in an area by the boundary rule, not snapped
    near = near[~near.index.duplicated()]

    ledger = intake.ledger.to_frame()
    snapped = ledger[ledger.reason == "snapped_to_boundary"]
    assert len(snapped) == len(near) > 0
    dist = snapped.detail.str.extract(r"moved ([0-9.]+) m")[0].astype(float)
    assert (dist <= SNAP).all()
    inc = intake.incidents
    offset = int(inc["row"].iloc[0])  # the first CSV record (position 0) is in the study area
    assert raw.index[0] in within.index
    got = located.incidents.loc[inc["row"].isin(snapped.row).to_numpy(), "community_area"]
    rows = inc.loc[inc["row"].isin(snapped.row), "row"].to_numpy() - offset
    assert sorted(rows) == sorted(near.index)
    want = near.area_num_1.astype(float).astype(int).astype(str).reindex(rows).to_numpy()
    assert (got.astype(str).to_numpy() == want).all()
    assert np.allclose(np.sort(dist.to_numpy()), np.sort(near.d.to_numpy()), atol=1e-3)
    # the rest of the 100 assaults in no community area stay outside_study_area
    assert (ledger.reason == "outside_study_area").sum() + len(snapped) == 100
