"""Tests of the Demo City generator (usm_geo.demo).

The inputs are generated once per module (a few seconds); the checks then read the written files
the way a user would, and compare them with planted_truths.json and with hand calculations.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Transformer

from usm_geo.demo import DEMO_SEED, build_boundaries, generate_demo_inputs
from usm_geo.demo.city import main as city_main

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "data" / "boundaries" / "demo_city.gpkg"
FILES = ("demo_city.gpkg", "population.tif", "population.csv", "incidents.csv", "intervention.gpkg",
         "survey.csv", "study.toml", "planted_truths.json")
SAFE_ANSWERS = {"very safe", "safe", "unsafe", "very unsafe", "never go out alone after dark", "don't know"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo_a") / "inputs"  # not existing yet: must be created
    study = generate_demo_inputs(folder)
    assert study == folder / "study.toml"
    return folder


@pytest.fixture(scope="module")
def truths(demo) -> dict:
    return json.loads((demo / "planted_truths.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def boundaries():
    return build_boundaries()


@pytest.fixture(scope="module")
def incidents(demo) -> pd.DataFrame:
    return pd.read_csv(demo / "incidents.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def survey(demo) -> pd.DataFrame:
    return pd.read_csv(demo / "survey.csv", dtype=str, keep_default_na=False)


# ----------------------------------------------------------------------------- determinism


def test_every_file_is_written(demo):
    assert sorted(p.name for p in demo.iterdir()) == sorted(FILES)


def test_same_seed_gives_byte_identical_files(demo, tmp_path_factory):
    again = tmp_path_factory.mktemp("demo_b")
    generate_demo_inputs(again, seed=DEMO_SEED)
    assert sorted(p.name for p in again.iterdir()) == sorted(FILES)
    for name in FILES:
        assert sha256(demo / name) == sha256(again / name), name


def test_other_seed_gives_other_incidents(demo, tmp_path_factory):
    other = tmp_path_factory.mktemp("demo_c")
    generate_demo_inputs(other, seed=DEMO_SEED + 1)
    assert sha256(other / "incidents.csv") != sha256(demo / "incidents.csv")
    assert json.loads((other / "planted_truths.json").read_text(encoding="utf-8"))["seed"] == DEMO_SEED + 1


def test_city_command_writes_the_same_boundaries(demo, tmp_path):
    out = tmp_path / "city.gpkg"
    assert city_main([str(out)]) == 0
    assert sha256(out) == sha256(demo / "demo_city.gpkg")


def test_study_toml(demo, truths):
    study = tomllib.loads((demo / "study.toml").read_text(encoding="utf-8"))
    assert study["study"]["seed"] == truths["seed"] == DEMO_SEED
    assert study["study"]["working_crs"] == "EPSG:32633"
    assert set(study["inputs"]) == {"incidents", "survey", "boundaries", "population"}
    assert set(study["inputs"]["survey"]["questions"]["safe_after_dark"]["answers"]) == SAFE_ANSWERS
    assert [b["level"] for b in study["inputs"]["boundaries"]] == ["neighbourhood", "district"]
    assert study["intervention"]["start"] == truths["intervention"]["start"] == "2022-01-01"
    assert study["intervention"]["buffer"] == 400
    for section in (study["inputs"]["incidents"], study["inputs"]["survey"], study["inputs"]["population"],
                    study["intervention"]):
        assert (demo / section["path"]).exists()


# ----------------------------------------------------------------------------- boundaries


def test_boundaries_shape(boundaries):
    nbhd, districts = boundaries
    assert 55 <= len(nbhd) <= 65 and 5 <= len(districts) <= 7
    assert list(nbhd.columns) == ["nbhd_id", "name", "district_id", "geometry"]
    assert list(districts.columns) == ["district_id", "name", "geometry"]
    assert nbhd.crs.equals("EPSG:32633") and districts.crs.equals("EPSG:32633")
    assert list(nbhd["nbhd_id"]) == sorted(nbhd["nbhd_id"]) and nbhd["nbhd_id"].is_unique
    assert list(districts["district_id"]) == sorted(districts["district_id"])
    assert nbhd["name"].is_unique and districts["name"].is_unique
    assert any(not n.isascii() for n in nbhd["name"]) and any(not n.isascii() for n in districts["name"])
    assert set(nbhd["district_id"]) == set(districts["district_id"])
    assert nbhd.is_valid.all() and districts.is_valid.all()
    assert (nbhd.geom_type == "Polygon").all()
    # ~30 km across, centred near (400 000, 5 800 000)
    minx, miny, maxx, maxy = nbhd.total_bounds
    assert 25_000 < maxx - minx < 35_000 and 25_000 < maxy - miny < 35_000
    assert abs((minx + maxx) / 2 - 400_000) < 5_000 and abs((miny + maxy) / 2 - 5_800_000) < 5_000


def test_neighbourhoods_do_not_overlap(boundaries):
    nbhd, _ = boundaries
    union = shapely.union_all(nbhd.geometry.values)
    assert nbhd.area.sum() == pytest.approx(union.area, rel=1e-6)
    assert shapely.coverage_is_valid(nbhd.geometry.values)


def test_districts_are_unions_of_their_neighbourhoods(boundaries):
    nbhd, districts = boundaries
    for row in districts.itertuples():
        members = shapely.union_all(nbhd.geometry[nbhd["district_id"] == row.district_id].values)
        assert shapely.symmetric_difference(members, row.geometry).area < 1.0, row.district_id


def test_committed_boundaries_match_the_generator(boundaries):
    nbhd, districts = boundaries
    layers = (("neighbourhoods", nbhd, "nbhd_id"), ("districts", districts, "district_id"))
    for layer, expected, key in layers:
        committed = gpd.read_file(COMMITTED, layer=layer, engine="pyogrio")
        assert committed.crs.equals("EPSG:32633")
        pd.testing.assert_frame_equal(
            pd.DataFrame(committed.drop(columns="geometry")), pd.DataFrame(expected.drop(columns="geometry")),
            check_dtype=False)
        same = shapely.equals_exact(committed.geometry.values, expected.geometry.values, tolerance=1e-6)
        assert same.all(), list(committed[key][~same])


def test_other_seed_gives_other_boundaries(boundaries):
    nbhd, _ = boundaries
    other, _ = build_boundaries(DEMO_SEED + 1)
    assert not shapely.equals_exact(nbhd.geometry.values[0], other.geometry.values[0], tolerance=1.0)


# ----------------------------------------------------------------------------- population


def test_population_table_matches_raster(demo, truths, boundaries):
    table = pd.read_csv(demo / "population.csv", dtype={"nbhd_id": str})
    assert list(table.columns) == ["nbhd_id", "population"]
    assert table["population"].dtype.kind == "i"
    assert list(table["nbhd_id"]) == list(boundaries[0]["nbhd_id"])
    with rasterio.open(demo / "population.tif") as src:
        assert src.crs.to_epsg() == 32633 and src.res == (100.0, 100.0)
        assert src.dtypes[0] == "float32" and src.nodata is not None
        raster_total = float(src.read(1, masked=True).astype(np.float64).sum())
    assert 1.0e6 <= raster_total <= 1.3e6
    assert table["population"].sum() == pytest.approx(raster_total, rel=0.005)
    assert truths["population"]["total"] == pytest.approx(raster_total, rel=1e-6)


# ----------------------------------------------------------------------------- incidents


def _bad_rows(truths, source):
    return {r["row"]: r for r in truths["bad_records"][source]["rows"]}


def test_incident_rows_and_columns(incidents, truths):
    assert list(incidents.columns) == ["incident_id", "occurred_at", "category", "longitude", "latitude"]
    assert 190_000 <= len(incidents) <= 210_000
    assert len(incidents) == truths["incidents"]["n_rows_written"]
    assert set(incidents["category"]) == set(truths["incidents"]["counts_by_category_year"])
    homicides = truths["incidents"]["counts_by_category_year"]["homicide"]
    assert all(30 <= n <= 60 for n in homicides.values())


def test_planted_bad_incident_rows(incidents, truths):
    bad = _bad_rows(truths, "incidents")
    kinds = sorted(r["kind"] for r in bad.values())
    assert kinds == sorted(["zero_coordinates"] * 3 + ["empty_coordinates", "non_numeric_coordinate",
                                                      "swapped_coordinates", "outside_city",
                                                      "impossible_date", "impossible_date",
                                                      "duplicate", "duplicate"])
    for row, rec in bad.items():
        got = incidents.iloc[row - 1]  # data rows are 1-based
        for col in incidents.columns:
            assert got[col] == rec[col], (row, col)
    dates = {r["occurred_at"] for r in bad.values() if r["kind"] == "impossible_date"}
    assert dates == {"2021-02-30 25:61", "not recorded"}
    for rec in bad.values():
        if rec["kind"] == "zero_coordinates":
            assert float(rec["longitude"]) == 0 and float(rec["latitude"]) == 0
        if rec["kind"] == "swapped_coordinates":
            assert float(rec["longitude"]) > 50 and float(rec["latitude"]) < 20
        if rec["kind"] == "outside_city":
            x, y = Transformer.from_crs(4326, 32633, always_xy=True).transform(
                float(rec["longitude"]), float(rec["latitude"]))
            assert np.hypot(x - 400_000, y - 5_800_000) > 50_000


def test_duplicates_are_exact_and_ids_otherwise_unique(incidents, truths):
    bad = _bad_rows(truths, "incidents")
    dups = [r for r in bad.values() if r["kind"] == "duplicate"]
    assert len(dups) == 2
    for rec in dups:
        original = rec["duplicate_of_row"]
        assert incidents.iloc[original - 1].equals(incidents.iloc[rec["row"] - 1])
    assert incidents.duplicated().sum() == 2
    assert incidents["incident_id"].duplicated().sum() == 2


def _clean(incidents, truths) -> pd.DataFrame:
    bad = np.array(sorted(_bad_rows(truths, "incidents"))) - 1
    keep = np.ones(len(incidents), dtype=bool)
    keep[bad] = False
    return incidents[keep]


def test_clean_incidents_sorted_and_counted(incidents, truths):
    clean = _clean(incidents, truths)
    when = pd.to_datetime(clean["occurred_at"], format="%Y-%m-%d %H:%M")
    assert when.is_monotonic_increasing
    assert when.min() >= pd.Timestamp("2019-01-01") and when.max() < pd.Timestamp("2024-01-01")
    counts = clean.groupby([clean["category"], when.dt.year.astype(str)]).size()
    for cat, by_year in truths["incidents"]["counts_by_category_year"].items():
        for year, n in by_year.items():
            assert counts.get((cat, year), 0) == n
    assert len(clean) == truths["incidents"]["n_clean"]


def test_intervention_effect_by_hand(demo, incidents, truths):
    clean = _clean(incidents, truths)
    x, y = Transformer.from_crs(4326, 32633, always_xy=True).transform(
        clean["longitude"].astype(float).to_numpy(), clean["latitude"].astype(float).to_numpy())
    treated = gpd.read_file(demo / "intervention.gpkg", layer="treated", engine="pyogrio")
    assert treated.crs.equals("EPSG:32633") and list(treated.columns) == ["name", "geometry"]
    area = treated.geometry.values[0]
    ring = shapely.difference(shapely.buffer(area, 400.0), area)
    year = clean["occurred_at"].str[:4].to_numpy()
    in_area, in_ring = shapely.contains_xy(area, x, y), shapely.contains_xy(ring, x, y)
    planted = truths["intervention"]
    by_year = {"treated": {}, "buffer": {}}
    for yr in ("2019", "2020", "2021", "2022", "2023"):
        by_year["treated"][yr] = int(np.sum(in_area & (year == yr)))
        by_year["buffer"][yr] = int(np.sum(in_ring & (year == yr)))
        assert by_year["treated"][yr] == planted["observed_counts_by_year"]["treated"][yr]
        assert by_year["buffer"][yr] == planted["observed_counts_by_year"]["buffer"][yr]

    def mean(area_counts, years):
        return np.mean([area_counts[y] for y in years])

    before, after = ("2019", "2020", "2021"), ("2022", "2023")
    drop = 1 - mean(by_year["treated"], after) / mean(by_year["treated"], before)
    assert drop == pytest.approx(planted["reduction_fraction"], abs=0.06)
    assert mean(by_year["buffer"], after) > 1.2 * mean(by_year["buffer"], before)
    assert planted["n_displaced"] == round(planted["displacement_fraction"] * planted["n_removed"])


def test_hotspots_are_inside_the_city(truths, boundaries):
    nbhd, _ = boundaries
    city = shapely.union_all(nbhd.geometry.values)
    spots = truths["incidents"]["hotspots"]
    assert len(spots) == 12 and sum(s["treated"] for s in spots) == 1
    assert all(150 <= s["sigma_m"] <= 600 for s in spots)
    assert shapely.contains_xy(city, [s["x"] for s in spots], [s["y"] for s in spots]).all()
    assert sum(s["expected_share"] for s in spots) == pytest.approx(0.7, abs=1e-4)
    assert len(truths["incidents"]["top5_planted_rate"]) == 5


# ----------------------------------------------------------------------------- survey


def test_survey_rows_weights_and_answers(survey, truths):
    assert list(survey.columns) == ["respondent_id", "interview_date", "district_id", "nbhd_id",
                                    "design_weight", "q_safe_after_dark", "q_harassment_12m", "sex",
                                    "age_group"]
    assert 4_900 <= len(survey) <= 5_100
    assert survey["respondent_id"].is_unique
    bad = _bad_rows(truths, "survey")
    assert sorted(r["kind"] for r in bad.values()) == ["negative_weight", "unknown_answer"]
    for row, rec in bad.items():
        got = survey.iloc[row - 1]
        for col in survey.columns:
            assert got[col] == rec[col], (row, col)
    weight = survey["design_weight"].astype(float)
    rows_of = {kind: [r for r, b in bad.items() if b["kind"] == kind]
               for kind in ("negative_weight", "unknown_answer")}
    assert list(np.flatnonzero(weight <= 0) + 1) == rows_of["negative_weight"]
    wrong = ~survey["q_safe_after_dark"].isin(SAFE_ANSWERS)
    assert list(np.flatnonzero(wrong) + 1) == rows_of["unknown_answer"]
    assert survey["q_harassment_12m"].isin({"yes", "no", "refused"}).all()


def test_survey_design(survey, truths):
    bad = np.array(sorted(_bad_rows(truths, "survey"))) - 1
    clean = survey.drop(index=bad)
    clean = clean.assign(weight=clean["design_weight"].astype(float), wave=clean["interview_date"].str[:4])
    assert sorted(clean["wave"].unique()) == ["2019", "2023"]
    per = clean.groupby(["wave", "district_id"]).size()
    assert per.nunique() == 1  # equal sample size per district and wave
    assert (clean.groupby("district_id")["weight"].nunique() == 1).all()  # one weight per district
    adults = truths["survey"]["district_adult_population"]
    sums = clean.groupby(["wave", "district_id"])["weight"].sum()
    for (wave, district), total in sums.items():
        assert total == pytest.approx(adults[district], rel=1e-5)
    for wave, stats in truths["survey"]["by_wave"].items():
        rows = clean[clean["wave"] == wave]
        safe = rows["q_safe_after_dark"].isin({"very safe", "safe"})
        share = float((rows["weight"] * safe).sum() / rows["weight"].sum())
        assert share == pytest.approx(stats["safe_share_observed_weighted"], abs=1e-6)
        # the estimate lands near the planted population share (n ≈ 2,500, design effect ≈ 1.3)
        assert share == pytest.approx(stats["safe_share_population"], abs=0.05)
