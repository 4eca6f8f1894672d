"""London (tests/data/london, see its SOURCE.md): 428 LSOAs (2011) that belong to four boroughs by the
code column LAD11CD while the borough layer (2022) was generalised on its own, and population at two
levels from two publishers (ONS mid-2019 LSOA estimates; ONS 2018-based borough projections in a TSV
with thousands separators). The incidents are the City of London Police's police.uk points of
2019-01…03 (tests/data/city-of-london), real points inside and around the City.

Run end to end with `usm-geo run`; every expectation comes from pandas/geopandas on the raw files
in the test, or from the TSV's printed values written out below.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from usm_geo import pipeline
from usm_geo.cli import main
from usm_geo.errors import BoundaryError
from usm_geo.study import load_study

DATA = Path(__file__).resolve().parents[1] / "data"
LONDON = DATA / "london"
FILES = [DATA / "city-of-london" / f"2019-0{m}-city-of-london-street.csv" for m in (1, 2, 3)]
# borough_population_projection.tsv, column 2019, as printed ("267,424")
BOROUGH_2019 = {"E09000001": 8_709, "E09000007": 267_424, "E09000012": 282_822, "E09000014": 271_330}
SLIVER = "E01033699"  # the LSOA with 98.3 % of its area in the borough its code names (SOURCE.md)


def study_text(parent: str = '{ level = "borough", column = "LAD11CD" }', units: str = "") -> str:
    paths = ", ".join(f'"{f.as_posix()}"' for f in FILES)
    return f"""
[study]
name = "Inner London"
timezone = "Europe/London"
working_crs = "EPSG:27700"

[[inputs.incidents]]
path = [{paths}]
lon = "Longitude"
lat = "Latitude"
datetime = "Month"
category = "Crime type"
id = "Crime ID"

[[inputs.boundaries]]
level = "lsoa"
path = "{(LONDON / 'lsoa2011.shp').as_posix()}"
id = "LSOA11CD"
name = "LSOA11NM"
parent = {parent}

[[inputs.boundaries]]
level = "borough"
path = "{(LONDON / 'boroughs2022.shp').as_posix()}"
id = "LAD22CD"
name = "LAD22NM"

[[inputs.population]]
path = "{(LONDON / 'lsoa_population_mid2019.csv').as_posix()}"
level = "lsoa"
id = "LSOA11CD"
column = "Persons_All-Ages"

[[inputs.population]]
path = "{(LONDON / 'borough_population_projection.tsv').as_posix()}"
level = "borough"
id = "CODE"
column = "2019"

[units]
h3_resolution = [9]
{units}

[periods]
frequency = "month"
"""


@pytest.fixture(scope="module")
def london(tmp_path_factory):
    folder = tmp_path_factory.mktemp("london")
    (folder / "study.toml").write_text(study_text(), encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["run", str(folder / "study.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output, json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def lsoa():
    return gpd.read_file(LONDON / "lsoa2011.shp")


@pytest.fixture(scope="module")
def boroughs():
    return gpd.read_file(LONDON / "boroughs2022.shp")


def _population(out: Path) -> pd.DataFrame:
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str})
    return m[(m.measure == "population") & (m.period == "2019-01")]


def test_crosswalk_is_the_code_column(london, lsoa):
    out, _, _ = london
    cw = pd.read_csv(out / "crosswalk.csv", dtype=str)
    ours = cw[(cw.level == "lsoa") & (cw.to_level == "borough")].set_index("unit_id")["to_unit_id"].sort_index()
    expected = lsoa.set_index("LSOA11CD")["LAD11CD"].sort_index()  # independent: the dbf itself
    assert len(ours) == 428
    pd.testing.assert_series_equal(ours, expected, check_names=False)
    assert set(cw.loc[(cw.level == "lsoa") & (cw.to_level == "borough"), "nested"]) == {"true"}


def test_population_at_both_levels_is_each_table(london):
    out, _, info = london
    pop = _population(out)
    csv = pd.read_csv(LONDON / "lsoa_population_mid2019.csv").set_index("LSOA11CD")["Persons_All-Ages"].astype(float)
    ours = pop[pop.level == "lsoa"].set_index("unit_id")["value"].sort_index()
    pd.testing.assert_series_equal(ours, csv.sort_index(), check_names=False)
    assert pop[pop.level == "borough"].set_index("unit_id")["value"].to_dict() == {k: float(v) for k, v in BOROUGH_2019.items()}
    # the city and the H3 cells take the finest table (the LSOA estimates): they add up to its total
    total = float(csv.sum())
    assert total == 829_517
    assert pop[pop.level == "city"]["value"].sum() == total
    assert abs(pop[pop.level == "h3_9"]["value"].sum() - total) <= 1e-6 * total
    assert info["population_method"] == {"lsoa": "table", "borough": "table", "city": "rolled_up:lsoa",
                                         "h3_9": "disaggregated_area"}


def test_the_two_tables_disagree_and_it_is_said(london):
    out, output, info = london
    lsoa_pop = pd.read_csv(LONDON / "lsoa_population_mid2019.csv").groupby("LAD11CD")["Persons_All-Ages"].sum()
    expected = {k: (v - lsoa_pop[k]) / lsoa_pop[k] for k, v in BOROUGH_2019.items()}  # City: 8,709 vs 9,721
    notes = info["population_notes"]["borough"]
    assert notes["level"] == "lsoa" and notes["units_differing"] == 4
    assert notes["relative_difference"] == pytest.approx(expected, abs=1e-6)
    assert notes["max_abs_relative_difference"] == pytest.approx(abs(expected["E09000001"]), abs=1e-6)
    assert "population: the borough table differs from the sum of the lsoa table in 4 of 4 units (up to 10.4%)" in output
    ledger = pd.read_csv(out / "ledger.csv", dtype=str)
    note = ledger[(ledger.source == "population.borough") & (ledger.reason == "population_tables_differ")]
    assert "E09000001 -10.4%" in note["detail"].iloc[0]
    thousands = ledger[(ledger.source == "population.borough") & (ledger.reason == "thousands_separator")]
    assert "4 values in column '2019'" in thousands["detail"].iloc[0]


def test_the_sliver_lsoa_is_reported(london, lsoa, boroughs):
    _, output, info = london
    # independent: each LSOA's area share in the borough its code names (shapely on the shapefiles)
    b = boroughs.set_index("LAD22CD").geometry
    share = shapely.area(shapely.intersection(lsoa.geometry.to_numpy(), b.loc[lsoa["LAD11CD"]].to_numpy())) / lsoa.area.to_numpy()
    below = lsoa.loc[share < 0.99, "LSOA11CD"].tolist()
    assert below == [SLIVER]
    pair = info["hierarchy"]["pairs"][0]
    assert (pair["fine"], pair["coarse"], pair["by"], pair["units_below"]) == ("lsoa", "borough", "code", 1)
    assert pair["worst"][0]["unit_id"] == SLIVER
    assert pair["worst"][0]["share"] == pytest.approx(share[lsoa["LSOA11CD"] == SLIVER][0], abs=1e-6)
    assert round(pair["worst"][0]["share"], 3) == 0.983
    assert info["hierarchy"]["nest_tolerance"] == 0.01
    assert f"hierarchy: lsoa → borough by code: 1 of 428 lsoa unit(s) have less than 99% of their area in the " \
           f"borough their code names: {SLIVER} (98.3%)" in output


def test_counts_are_direct_at_both_levels_and_the_rollup_is_checked(london, lsoa, boroughs):
    out, _, info = london
    raw = pd.concat([pd.read_csv(f) for f in FILES], ignore_index=True).dropna(subset=["Longitude", "Latitude"])
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.Longitude, raw.Latitude), crs=4326).to_crs(27700)
    in_lsoa = gpd.sjoin(pts, lsoa[["LSOA11CD", "LAD11CD", "geometry"]], predicate="within", how="inner")
    in_borough = gpd.sjoin(pts.loc[in_lsoa.index], boroughs[["LAD22CD", "geometry"]], predicate="within", how="inner")
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str})
    counts = m[(m.measure == "count") & (m.category == "all")].groupby(["level", "unit_id"])["value"].sum()
    expected_lsoa = in_lsoa.groupby("LSOA11CD").size()
    ours_lsoa = counts["lsoa"][counts["lsoa"] > 0]
    pd.testing.assert_series_equal(ours_lsoa.sort_index(), expected_lsoa.sort_index().astype(float),
                                   check_names=False, check_index_type=False)
    # borough counts are the points' own boroughs (direct assignment), not the LSOA codes' rollup
    expected_borough = in_borough.groupby("LAD22CD").size()
    ours_borough = counts["borough"][counts["borough"] > 0]
    pd.testing.assert_series_equal(ours_borough.sort_index(), expected_borough.sort_index().astype(float),
                                   check_names=False, check_index_type=False)
    # the rollup check compares the two: a point whose borough differs from its LSOA's code would show
    rolled = in_lsoa.groupby("LAD11CD").size()
    differing = int((expected_borough.sub(rolled, fill_value=0) != 0).sum())
    check = {(r["fine"], r["coarse"]): r for r in info["rollup_check"]}
    assert check[("lsoa", "borough")]["max_abs_difference"] == float(expected_borough.sub(rolled, fill_value=0).abs().max())
    assert differing == 0 and check[("lsoa", "borough")]["by"] == "code"
    totals = info["sources"]
    for f in FILES:
        t = totals[f"incidents/{f.name}"]
        assert t["read"] == t["used"] + t["dropped"]
    assert counts["city"].sum() == sum(totals[f"incidents/{f.name}"]["used"] for f in FILES) == len(in_lsoa)


def test_outputs_open_in_gdal(london):
    out, _, _ = london
    assert (out / "map.html").stat().st_size > 0
    info = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(out / "units.gpkg")], capture_output=True, text=True, check=True).stdout
    for layer, n in (("lsoa", 428), ("borough", 4), ("city", 1)):
        assert f"Layer name: {layer}\n" in info
    assert "Feature Count: 428" in info and "Feature Count: 4\n" in info


def test_by_geometry_alone_the_lsoas_do_not_nest_at_one_percent(tmp_path):
    """``parent = { level = "borough" }`` (no code): by geometry, the sliver LSOA (98.3 %) is refused
    at the default tolerance, and accepted at nest_tolerance = 0.02."""
    path = tmp_path / "study.toml"
    path.write_text(study_text(parent='{ level = "borough" }'), encoding="utf-8")
    intake = pipeline.run_intake(load_study(path))
    with pytest.raises(BoundaryError, match=rf"lsoa is declared to nest in borough, but 1 of 428 unit\(s\) have less than "
                                            rf"99% of their area in one borough unit; worst: '{SLIVER}' \(98.3%\)") as err:
        pipeline.run_units(intake)
    assert "raise [units] nest_tolerance above 0.017" in err.value.fix
    path.write_text(study_text(parent='{ level = "borough" }', units="nest_tolerance = 0.02"), encoding="utf-8")
    intake = pipeline.run_intake(load_study(path))
    located = pipeline.run_units(intake)
    assert located.units.nested[("lsoa", "borough")]
    assert located.units.report["pairs"][0]["by"] == "geometry"
    # by geometry every LSOA lands in the borough its code names (the code and the largest overlap agree)
    lsoa = gpd.read_file(LONDON / "lsoa2011.shp").set_index("LSOA11CD")["LAD11CD"]
    assert located.units.parents("lsoa", "borough").sort_index().to_dict() == lsoa.sort_index().to_dict()
