"""Intake on real public data in ../shared/data (skipped when absent; fails under CI=true).

Every expectation is checked against an independent computation in the test (pandas on the raw
file, geopandas.sjoin on the raw polygons), not against usm_geo itself.
"""

from __future__ import annotations

import datetime as dt
import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, chicago_study_text, need_shared
from usm_geo.pipeline import run_intake
from usm_geo.study import load_study

NOW = dt.datetime(2026, 1, 1)


def _study(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(text))
    return load_study(path)


@pytest.fixture(scope="module")
def chicago(tmp_path_factory):
    csv, cca = need_shared(*CHICAGO_ASSAULTS), need_shared(*CHICAGO_AREAS)
    study = _study(tmp_path_factory.mktemp("chicago"), chicago_study_text(study='working_crs = "auto"'))
    return run_intake(study, now=NOW), csv, cca


def test_chicago_every_row_accounted_for(chicago):
    intake, csv, _ = chicago
    raw = pd.read_csv(csv)
    assert len(raw) == 148_636
    totals = intake.ledger.totals()["incidents"]
    assert totals["read"] == len(raw)
    assert totals["read"] == totals["used"] + totals["dropped"]
    assert len(intake.incidents) == totals["used"]
    assert intake.incidents["row"].is_unique


def test_chicago_outside_points_match_an_independent_sjoin(chicago):
    intake, csv, cca = chicago
    raw = pd.read_csv(csv)
    areas = gpd.read_file(f"zip://{cca}!Chicago_2020.shp")
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs="EPSG:4326")
    hit = gpd.sjoin(pts, areas.to_crs("EPSG:4326")[["geometry"]], predicate="intersects", how="left")
    outside_rows = np.sort(hit.index[hit["index_right"].isna()].unique().to_numpy() + 1)  # 1-based data rows
    assert len(outside_rows) == 100  # DESIGN.md: 100 of the 148,636 assaults fall in no community area
    ledger = intake.ledger.to_frame()
    ours = np.sort(ledger.loc[ledger.reason == "outside_study_area", "row"].to_numpy())
    assert np.array_equal(ours, outside_rows)
    assert intake.ledger.totals()["incidents"]["dropped"] == 100


def test_chicago_duplicates_kept_and_listed(chicago):
    intake, csv, _ = chicago
    raw = pd.read_csv(csv, dtype=str)
    ledger = intake.ledger.to_frame()
    outside = set(ledger.loc[ledger.reason == "outside_study_area", "row"])
    inside = raw[~(raw.index + 1).isin(outside)]
    expected = np.sort(inside.index[inside.duplicated(keep="first")].to_numpy() + 1)
    dup = ledger[ledger.reason == "duplicate"]
    assert (dup.status == "kept").all()
    assert np.array_equal(np.sort(dup["row"].to_numpy()), expected)
    assert set(expected) <= set(intake.incidents["row"])  # kept means used


def test_chicago_local_times_on_dst_changes_are_kept(chicago):
    intake, csv, _ = chicago
    raw = pd.read_csv(csv)
    t = pd.to_datetime(raw["date"])
    local = t.dt.tz_localize("America/Chicago", nonexistent="NaT", ambiguous="NaT")
    dst_rows = set(raw.index[local.isna()] + 1)
    assert len(dst_rows) == 43  # DESIGN.md: 43 timestamps fall on daylight-saving changes
    used = intake.incidents.set_index("row")
    kept = dst_rows & set(used.index)
    assert len(kept) == len(dst_rows - set(intake.ledger.to_frame().query("status == 'dropped'")["row"]))
    some = sorted(kept)[0]
    assert used.loc[some, "occurred_at"] == t.iloc[some - 1]  # naive local time, unchanged


def test_chicago_working_crs_is_local_utm(chicago):
    intake, _, _ = chicago
    assert intake.working_crs.to_epsg() == 32616  # UTM 16N holds Chicago
    inc = intake.incidents
    assert inc["x"].between(420_000, 460_000).all() and inc["y"].between(4_610_000, 4_660_000).all()


def test_northumbria_tab_file_with_month_dates_and_bng_wards(tmp_path):
    tab = need_shared("uk-northumbria-asb-2022", "northumbria_asb.tab")
    wards = need_shared("uk-northumbria-asb-2022", "northumbria_wards.gpkg")
    study = _study(tmp_path, f"""
        [study]
        timezone = "Europe/London"
        working_crs = "EPSG:27700"
        [inputs.incidents]
        path = "{tab}"
        [[inputs.boundaries]]
        level = "ward"
        path = "{wards}"
        id = "ward_code"
        name = "ward_name"
    """)
    intake = run_intake(study, now=NOW)
    raw = pd.read_csv(tab, sep="\t", dtype=str)
    assert len(raw) == 39_706
    t = intake.ledger.totals()["incidents"]
    assert t["read"] == 39_706 and t["read"] == t["used"] + t["dropped"]
    ledger = intake.ledger.to_frame()
    # police.uk duplicates are real, distinct incidents: kept and listed (DESIGN.md: 14,005)
    assert (ledger.reason == "duplicate").sum() == int(raw.duplicated().sum()) == 14_005
    # wards are already in the working CRS: no reprojection note
    assert not ((ledger.source == "boundaries.ward") & (ledger.reason == "reprojected")).any()
    layer = intake.levels["ward"]
    assert len(layer) == 177 and layer.crs.to_epsg() == 27700
    # the points outside every ward, by an independent sjoin in British National Grid
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.longitude.astype(float), raw.latitude.astype(float)),
                           crs="EPSG:4326").to_crs(27700)
    hit = gpd.sjoin(pts, gpd.read_file(wards)[["geometry"]], predicate="intersects", how="left")
    outside = np.sort(hit.index[hit["index_right"].isna()].unique().to_numpy() + 1)
    assert np.array_equal(np.sort(ledger.loc[ledger.reason == "outside_study_area", "row"]), outside)
    inc = intake.incidents
    assert (inc["date_precision"] == "month").all()  # a month column of first days covers the month
    assert inc["occurred_at"].min() == pd.Timestamp("2022-01-01")
    assert inc["category"].eq("uncategorised").all()
