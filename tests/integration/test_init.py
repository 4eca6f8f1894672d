"""`usm-geo init FILES… --out study.toml`: files classified by content, columns and the CRS of bare
x/y detected, a commented study that `validate` accepts, never overwritten without --force."""

from __future__ import annotations

import gzip
import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, need_shared
from usm_geo.cli import main
from usm_geo.intake.draft import classify, guess_crs

VANCOUVER = Path(__file__).resolve().parents[1] / "data" / "vancouver"
VAN_CSV = VANCOUVER / "crimedata_csv_AllNeighbourhoods_2022.csv.gz"
VAN_AREAS = VANCOUVER / "local-area-boundary.geojson"


def _init(tmp_path, *files, out="study.toml", extra=()):
    target = tmp_path / out
    result = CliRunner().invoke(main, ["init", *map(str, files), "--out", str(target), *extra])
    return result, target


def _guessed(text: str) -> dict[str, str]:
    """key → comment of every `# guessed` line."""
    out = {}
    for line in text.splitlines():
        if "# guessed:" in line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip()
            out[key] = line.split("# guessed:", 1)[1]
    return out


def _london(tmp_path):
    """Two boxes over central London (EPSG:4326 GeoJSON) and points in British National Grid x/y."""
    areas = gpd.GeoDataFrame({"ward_code": ["E1", "E2"], "ward_name": ["West", "East"]},
                             geometry=[shapely.box(-0.20, 51.48, -0.12, 51.54), shapely.box(-0.12, 51.48, -0.04, 51.54)],
                             crs="EPSG:4326")
    areas.to_file(tmp_path / "wards.geojson", engine="pyogrio")
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-0.19, -0.05, 200), rng.uniform(51.49, 51.53, 200)
    bng = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs="EPSG:4326").to_crs("EPSG:27700")
    dates = pd.date_range("2021-01-01", periods=200, freq="3D").strftime("%Y-%m-%d %H:%M")
    pd.DataFrame({"Easting": bng.x.round(1), "Northing": bng.y.round(1), "offence_date": dates,
                  "crime_type": np.where(np.arange(200) % 3 == 0, "burglary", "theft")}).to_csv(tmp_path / "crimes.csv", index=False)
    pd.DataFrame({"ward": ["E1", "E2"], "population": [10_500, 8_200]}).to_csv(tmp_path / "pop.csv", index=False)
    return areas, bng


def test_guess_crs_picks_the_grid_that_puts_the_points_inside(tmp_path):
    areas, bng = _london(tmp_path)
    code, inside, tried, scores = guess_crs(bng.x.to_numpy(), bng.y.to_numpy(), areas.geometry.to_numpy(), areas.crs)
    assert code == "EPSG:27700"
    # independent count: the points in their true CRS joined to the polygons
    pts = gpd.GeoDataFrame(geometry=bng.to_crs("EPSG:4326"))
    expected = len(gpd.sjoin(pts, areas, predicate="within"))
    assert inside == expected == 200 and tried == 200
    assert dict(scores)["EPSG:32630"] == 0  # UTM 30N puts none of them in London


def test_init_writes_a_commented_study_that_validate_accepts(tmp_path):
    _london(tmp_path)
    result, study = _init(tmp_path, tmp_path / "crimes.csv", tmp_path / "wards.geojson", tmp_path / "pop.csv")
    assert result.exit_code == 0, result.output
    text = study.read_text(encoding="utf-8")
    spec = tomllib.loads(text)
    inc = spec["inputs"]["incidents"]
    assert (inc["x"], inc["y"], inc["crs"], inc["datetime"], inc["category"]) == (
        "Easting", "Northing", "EPSG:27700", "offence_date", "crime_type")
    assert inc["path"] == "crimes.csv"  # relative to the study's folder
    (level,) = spec["inputs"]["boundaries"]
    assert (level["id"], level["name"]) == ("ward_code", "ward_name")
    pop = spec["inputs"]["population"]
    assert (pop["path"], pop["id"], pop["column"], pop["level"]) == ("pop.csv", "ward", "population", level["level"])
    assert spec["periods"]["start"].isoformat() == "2021-01-01"
    assert spec["periods"]["end"].isoformat() == (pd.Timestamp("2021-01-01") + pd.Timedelta(days=3 * 199)).date().isoformat()
    guessed = _guessed(text)
    for key in ("x", "y", "crs", "datetime", "category", "id", "name", "column", "timezone", "start", "end"):
        assert key in guessed and guessed[key].rstrip().endswith(", check"), key
    assert "200 of 200 points" in guessed["crs"]
    check = CliRunner().invoke(main, ["validate", str(study), "--quiet"])
    assert check.exit_code == 0, check.output
    assert "incidents: read 200, used 200, dropped 0" in check.output
    assert f"total {10_500 + 8_200:,}" in check.output


def test_init_never_overwrites_without_force(tmp_path):
    _london(tmp_path)
    (tmp_path / "study.toml").write_text("# mine\n", encoding="utf-8")
    result, study = _init(tmp_path, tmp_path / "crimes.csv", tmp_path / "wards.geojson")
    assert result.exit_code == 2 and "does not overwrite" in result.output and "--force" in result.output
    assert study.read_text(encoding="utf-8") == "# mine\n"
    result, study = _init(tmp_path, tmp_path / "crimes.csv", tmp_path / "wards.geojson", extra=("--force",))
    assert result.exit_code == 0 and "[inputs.incidents]" in study.read_text(encoding="utf-8")


def test_an_integer_month_column_is_a_date_part_not_the_date(tmp_path):
    frame = pd.DataFrame({"lon": [15.03, 15.10], "lat": [52.38, 52.41], "YEAR": [2021, 2021], "MONTH": [5, 6], "DAY": [1, 2]})
    frame.to_csv(tmp_path / "parts.csv", index=False)
    g = classify(tmp_path / "parts.csv")
    assert g.kind == "points"
    assert "datetime" not in g.keys
    assert (g.keys["year"], g.keys["month"], g.keys["day"]) == ("YEAR", "MONTH", "DAY")


def test_vancouver_bare_utm_xy_and_date_parts(tmp_path):
    result, study = _init(tmp_path, VAN_CSV, VAN_AREAS)
    assert result.exit_code == 0, result.output
    text = study.read_text(encoding="utf-8")
    inc = tomllib.loads(text)["inputs"]["incidents"]
    assert inc["crs"] in ("EPSG:26910", "EPSG:32610")  # UTM 10N on NAD83 or WGS 84
    assert (inc["x"], inc["y"], inc["year"], inc["month"], inc["day"], inc["hour"], inc["minute"], inc["category"]) == (
        "X", "Y", "YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "TYPE")
    # independent count of the points the chosen CRS puts in the local areas (X = Y = 0 left out)
    raw = pd.read_csv(gzip.open(VAN_CSV))
    raw = raw[raw.X.notna() & ~((raw.X == 0) & (raw.Y == 0))]
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.X, raw.Y), crs=inc["crs"]).to_crs("EPSG:4326")
    areas = gpd.read_file(VAN_AREAS)
    inside = len(gpd.sjoin(pts, areas[["geometry"]], predicate="within"))
    assert inside / len(raw) > 0.99
    assert "crs" in _guessed(text)
    assert tomllib.loads(text)["inputs"]["boundaries"][0]["id"] == "name"


def test_vancouver_study_from_init_passes_validate(tmp_path):
    _, study = _init(tmp_path, VAN_CSV, VAN_AREAS)
    check = CliRunner().invoke(main, ["validate", str(study), "--quiet"])
    assert check.exit_code == 0, check.output


def test_chicago_lonlat_date_community_area_id_and_population(tmp_path):
    result, study = _init(tmp_path, need_shared(*CHICAGO_ASSAULTS), need_shared(*CHICAGO_AREAS))
    assert result.exit_code == 0, result.output
    text = study.read_text(encoding="utf-8")
    spec = tomllib.loads(text)
    inc = spec["inputs"]["incidents"]
    assert (inc["lon"], inc["lat"], inc["datetime"], inc["category"]) == ("longitude", "latitude", "date", "loc_cat")
    (level,) = spec["inputs"]["boundaries"]
    assert (level["id"], level["name"]) == ("area_num_1", "community")
    assert spec["inputs"]["population"]["column"] == "TOT_POP"
    assert (spec["periods"]["start"].isoformat(), spec["periods"]["end"].isoformat()) == ("2010-01-01", "2019-12-31")
    areas = gpd.read_file(f"zip://{need_shared(*CHICAGO_AREAS)}")
    assert f"total {areas.TOT_POP.sum():,.0f}" in _guessed(text)["column"]
    check = CliRunner().invoke(main, ["validate", str(study), "--quiet"])
    assert check.exit_code == 0, check.output
    assert "incidents: read 148,636, used 148,536, dropped 100" in check.output


def test_northumbria_ward_code_and_population_workbook(tmp_path):
    folder = need_shared("uk-northumbria-asb-2022")
    files = [folder / "northumbria_asb.tab", folder / "northumbria_wards.gpkg", folder / "northumbria_ward_pop.xlsx"]
    result, study = _init(tmp_path, *files)
    assert result.exit_code == 0, result.output
    text = study.read_text(encoding="utf-8")
    spec = tomllib.loads(text)
    (level,) = spec["inputs"]["boundaries"]
    assert level["id"] == "ward_code"
    pop = spec["inputs"]["population"]
    assert (Path(pop["path"]).name, pop["id"], pop["column"], pop["level"]) == (
        "northumbria_ward_pop.xlsx", "gss_code", "population", level["level"])
    # 173 of the workbook's 177 codes are 2022 wards (DESIGN.md): computed here independently
    wards = set(gpd.read_file(files[1]).ward_code)
    codes = set(pd.read_excel(files[2]).gss_code)
    assert f"{len(wards & codes):,} of its values are ids" in _guessed(text)["id"] and len(wards & codes) == 173
    assert spec["inputs"]["incidents"]["datetime"] == "month"
    assert spec["periods"]["end"].isoformat() == "2022-11-30"  # month-only dates: the last month whole
    assert "lsoa_code look like area codes" in text
    check = CliRunner().invoke(main, ["validate", str(study), "--quiet"])
    assert check.exit_code == 0, check.output
    assert "population: read 177, used 173, dropped 4" in check.output


def test_a_survey_is_recognised_by_its_design_weights_and_left_for_the_user(tmp_path):
    _london(tmp_path)
    pd.DataFrame({"lon": [-0.15, -0.08], "lat": [51.50, 51.51], "interview_date": ["2021-03-01", "2021-03-02"],
                  "design_weight": [1.2, 0.8], "q_safe_dark": ["very safe", "very unsafe"]}).to_csv(tmp_path / "survey.csv", index=False)
    assert classify(tmp_path / "survey.csv").kind == "survey"
    result, study = _init(tmp_path, tmp_path / "crimes.csv", tmp_path / "wards.geojson", tmp_path / "survey.csv")
    assert result.exit_code == 0, result.output
    text = study.read_text(encoding="utf-8")
    assert "survey" not in tomllib.loads(text)["inputs"]  # commented out: its questions are the user's
    assert '# weight = "design_weight"  # guessed: numeric, named like a design weight, check' in text
    assert "q_safe_dark" in text
    assert CliRunner().invoke(main, ["validate", str(study), "--quiet"]).exit_code == 0
