"""Chicago's police districts over its community areas (../shared/data): a level that does not nest
(DESIGN.md) gets population — the community areas' TOT_POP shared out by area — and so real rates,
where it used to get none and empty rates (issue #18 item 5). Every level, H3 included, adds up to
the same population. The expected district populations come from geopandas.overlay in the test."""

from __future__ import annotations

import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, need_shared
from usm_geo import pipeline
from usm_geo.study import load_study

UTM = "EPSG:32616"


@pytest.fixture(scope="module")
def chicago(tmp_path_factory):
    cca = need_shared(*CHICAGO_AREAS)
    folder = tmp_path_factory.mktemp("chicago")
    # district 31 comes in 3 parts: dissolved into one feature per district, as usm_geo's error asks
    raw = gpd.read_file(need_shared(CHICAGO_ASSAULTS[0], "chicago_police_districts.kml"))
    kml = folder / "police_districts.gpkg"
    raw[["Name", "geometry"]].dissolve(by="Name", as_index=False).to_file(kml)
    text = textwrap.dedent(f"""
        [study]
        name = "Chicago"
        timezone = "America/Chicago"
        working_crs = "{UTM}"

        [inputs.incidents]
        path = "{need_shared(*CHICAGO_ASSAULTS)}"
        datetime = "date"
        lon = "longitude"
        lat = "latitude"

        [[inputs.boundaries]]
        level = "community_area"
        path = "{cca}"
        id = "area_num_1"
        name = "community"

        [[inputs.boundaries]]
        level = "police_district"
        path = "{kml}"
        id = "Name"

        [inputs.population]
        path = "{cca}"
        level = "community_area"
        id = "area_num_1"
        column = "TOT_POP"

        [units]
        h3_resolution = [9]

        [periods]
        start = 2018-01-01
        end = 2019-12-31
    """)
    study_file = folder / "study.toml"
    study_file.write_text(text, encoding="utf-8")
    study = load_study(study_file)
    intake = pipeline.run_intake(study)
    located = pipeline.run_units(intake)
    pop = pipeline.run_population(intake, located)
    return intake, located, pop, cca, kml


def test_police_districts_do_not_nest_and_get_population_by_area(chicago):
    intake, located, pop, cca, kml = chicago
    assert not located.units.nested[("community_area", "police_district")]
    assert pipeline.population_methods(pop)["police_district"] == "areal_interpolation:community_area"
    # independent: overlay of the two layers in the working CRS; each area's TOT_POP shared over its
    # pieces in proportion to their area (within the districts that cover it)
    areas = gpd.read_file(f"zip://{cca}!Chicago_2020.shp").to_crs(UTM)
    areas["area_id"] = areas["area_num_1"].astype(float).astype(int).astype(str)
    districts = gpd.read_file(kml).to_crs(UTM)  # the dissolved districts
    pieces = gpd.overlay(areas[["area_id", "TOT_POP", "geometry"]], districts[["Name", "geometry"]], how="intersection",
                         keep_geom_type=True)
    pieces["a"] = pieces.area
    pieces = pieces[pieces["a"] > 0]
    pieces["persons"] = pieces["TOT_POP"] * pieces["a"] / pieces.groupby("area_id")["a"].transform("sum")
    expected = pieces.groupby("Name")["persons"].sum()
    ours = pop["police_district"].set_index("unit_id")["population"]
    ours = ours[ours > 0]
    pd.testing.assert_index_equal(ours.sort_index().index, expected.sort_index().index, check_names=False)
    np.testing.assert_allclose(ours.sort_index().to_numpy(), expected.sort_index().to_numpy(), rtol=1e-6)


def test_every_level_adds_up_to_the_same_population(chicago):
    _, _, pop, cca, _ = chicago
    total = float(gpd.read_file(f"zip://{cca}!Chicago_2020.shp")["TOT_POP"].sum())  # independent: the file
    for level in ("h3_9", "community_area", "police_district", "city"):
        assert abs(pop[level]["population"].sum() - total) <= 1e-6 * total, level
    assert pipeline.population_methods(pop)["h3_9"] == "disaggregated_area"


def test_police_district_rates_are_computed(chicago):
    intake, located, pop, _, _ = chicago
    measures = pipeline.run_measures(intake, located, pop)
    ind = pipeline.run_indicators(intake, located, measures)
    rate = ind.rows[(ind.rows.measure == "incident_rate") & (ind.rows.level == "police_district")
                    & (ind.rows.category == "all") & (ind.rows.period == "2019")].set_index("unit_id")
    counts = measures[(measures.measure == "count") & (measures.level == "police_district") & (measures.category == "all")
                      & (measures.period == "2019")].set_index("unit_id")["value"]
    people = pop["police_district"].set_index("unit_id")["population"]
    lived = people[people > 0].index
    assert len(lived) >= 20 and np.isfinite(rate.loc[lived, "value"]).all()
    np.testing.assert_allclose(rate.loc[lived, "value"], counts[lived] / people[lived] * 1000, rtol=1e-9)
