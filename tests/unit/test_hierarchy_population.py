"""Hierarchy by code, nest_tolerance and population at several levels (issue #18 items 5 and 6) on a
hand-made geography whose every expected value is worked out by hand in the test.

Four 1 km squares in a row, A1 A2 | B1 B2 (EPSG:32633), coded into districts A and B; a "patrol"
level P = x 0–1.5 km, Q = 1.5–4 km that does not nest (it cuts A2 in half).
"""

from __future__ import annotations

import json
import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from usm_geo import pipeline
from usm_geo.cli import main
from usm_geo.errors import BoundaryError, StudyError
from usm_geo.study import load_study

CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 5_800_000.0
POP = {"A1": 100, "A2": 200, "B1": 300, "B2": 400}


def _box(a: float, b: float):
    return shapely.box(X0 + a, Y0, X0 + b, Y0 + 1000)


def _write(folder, *, nbhd_parent='"district"', district_pop: str | None = None, patrol: bool = True,
           units: str = "", population: str | None = None):
    gpd.GeoDataFrame({"nb": ["A1", "A2", "B1", "B2"], "dist": ["A", "A", "B", "B"]},
                     geometry=[_box(i * 1000, (i + 1) * 1000) for i in range(4)], crs=CRS).to_file(folder / "nb.gpkg")
    gpd.GeoDataFrame({"d": ["A", "B"]}, geometry=[_box(0, 2000), _box(2000, 4000)], crs=CRS).to_file(folder / "dist.gpkg")
    gpd.GeoDataFrame({"p": ["P", "Q"]}, geometry=[_box(0, 1500), _box(1500, 4000)], crs=CRS).to_file(folder / "patrol.gpkg")
    pd.DataFrame({"nb": list(POP), "people": list(POP.values())}).to_csv(folder / "pop.csv", index=False)
    # 3 incidents in A1, 2 in the east half of A2 (patrol Q), 1 in B2; all in 2020 (the study runs to 2021:
    # a one-year study trips a RuntimeWarning in indicators/progress.py's trend, not ours to fix here)
    xy = [(100, 500), (200, 500), (300, 500), (1700, 500), (1800, 400), (3500, 500)]
    ll = gpd.GeoSeries(gpd.points_from_xy([X0 + x for x, _ in xy], [Y0 + y for _, y in xy]), crs=CRS).to_crs(4326)
    pd.DataFrame({"lon": ll.x.round(7), "lat": ll.y.round(7), "date": "2020-05-01", "category": "theft"}).to_csv(
        folder / "inc.csv", index=False)
    patrol_level = ('[[inputs.boundaries]]\nlevel = "patrol"\npath = "patrol.gpkg"\nid = "p"\n') if patrol else ""
    pop = population if population is not None else (
        '[[inputs.population]]\npath = "pop.csv"\nlevel = "neighbourhood"\nid = "nb"\ncolumn = "people"\n'
        + (f"\n{district_pop}" if district_pop else ""))
    text = textwrap.dedent("""
        [study]
        name = "Squares"
        working_crs = "EPSG:32633"

        [inputs.incidents]
        path = "inc.csv"
        lon = "lon"
        lat = "lat"
        date = "date"
        category = "category"

        [[inputs.boundaries]]
        level = "neighbourhood"
        path = "nb.gpkg"
        id = "nb"
        parent = {parent}

        [[inputs.boundaries]]
        level = "district"
        path = "dist.gpkg"
        id = "d"

        """).replace("{parent}", nbhd_parent) + patrol_level + "\n" + pop + "\n" + units + "\n[periods]\nstart = 2020-01-01\nend = 2021-12-31\n"
    (folder / "study.toml").write_text(text, encoding="utf-8")
    return folder / "study.toml"


def _stages(study_file):
    study = load_study(study_file)
    intake = pipeline.run_intake(study)
    located = pipeline.run_units(intake)
    pop = pipeline.run_population(intake, located)
    return intake, located, pop


def test_non_nesting_level_gets_rates_not_empty_ones(tmp_path):
    """Regression (fails on main, where patrol's incident_rate is NaN everywhere): the level that does
    not nest gets the neighbourhood table interpolated by area, and so real rates."""
    single = '[inputs.population]\npath = "pop.csv"\nlevel = "neighbourhood"\nid = "nb"\ncolumn = "people"\n'
    intake, located, pop = _stages(_write(tmp_path, nbhd_parent='"dist"', population=single))  # a study main reads
    assert not located.units.nested[("neighbourhood", "patrol")]
    # by hand: P = A1 + ½·A2 = 100 + 100; Q = ½·A2 + B1 + B2 = 100 + 300 + 400
    assert pop["patrol"].set_index("unit_id")["population"].to_dict() == pytest.approx({"P": 200.0, "Q": 800.0})
    assert pipeline.population_methods(pop) == {"neighbourhood": "table", "district": "rolled_up:neighbourhood",
                                                "city": "rolled_up:neighbourhood", "patrol": "areal_interpolation:neighbourhood"}
    measures = pipeline.run_measures(intake, located, pop)
    ind = pipeline.run_indicators(intake, located, measures)
    rate = ind.rows[(ind.rows.measure == "incident_rate") & (ind.rows.level == "patrol") & (ind.rows.category == "all")
                    & (ind.rows.period == "2020")]
    rate = rate.set_index("unit_id")
    # P holds the 3 incidents of A1; Q the 2 of A2's east half and the 1 of B2: per 1,000 residents
    assert rate["value"].to_dict() == pytest.approx({"P": 3 / 200 * 1000, "Q": 3 / 800 * 1000})
    # every level adds up to the table's total
    for level in ("neighbourhood", "district", "patrol", "city"):
        assert pop[level]["population"].sum() == pytest.approx(sum(POP.values())), level


def test_parent_by_code_at_a_coarser_level_than_the_next(tmp_path):
    """neighbourhood → district by code although patrol comes first after neighbourhood would not
    matter: the table form names the level. Here the order is neighbourhood, patrol, district."""
    study_file = _write(tmp_path, nbhd_parent='{ level = "district", column = "dist" }', patrol=False)
    text = study_file.read_text()
    # move the patrol level between neighbourhood and district
    patrol = '[[inputs.boundaries]]\nlevel = "patrol"\npath = "patrol.gpkg"\nid = "p"\n\n'
    text = text.replace('[[inputs.boundaries]]\nlevel = "district"', patrol + '[[inputs.boundaries]]\nlevel = "district"')
    study_file.write_text(text)
    study = load_study(study_file)
    assert [(b.level, b.parent, b.parent_level) for b in study.boundaries] == [
        ("neighbourhood", "dist", "district"), ("patrol", None, None), ("district", None, None)]
    intake, located, pop = _stages(study_file)
    units = located.units
    assert units.parents("neighbourhood", "district").to_dict() == {"A1": "A", "A2": "A", "B1": "B", "B2": "B"}
    assert units.nested[("neighbourhood", "district")] and not units.nested[("neighbourhood", "patrol")]
    assert pop["district"].set_index("unit_id")["population"].to_dict() == {"A": 300.0, "B": 700.0}


def test_string_parent_keeps_meaning_the_next_level(tmp_path):
    study = load_study(_write(tmp_path, nbhd_parent='"dist"', patrol=False))
    assert study.boundaries[0].parent == "dist" and study.boundaries[0].parent_level == "district"
    assert study.units.nest_tolerance == 0.01


def test_unknown_parent_codes_are_listed(tmp_path):
    study_file = _write(tmp_path, nbhd_parent='{ level = "district", column = "dist" }', patrol=False)
    nb = gpd.read_file(tmp_path / "nb.gpkg")
    nb["dist"] = ["A", "X9", "B", "X7"]
    nb.to_file(tmp_path / "nb.gpkg")
    with pytest.raises(BoundaryError) as err:
        pipeline.run_intake(load_study(study_file))
    msg = str(err.value)
    assert "nb.gpkg:2, column 'dist'" in msg
    assert "2 parent id(s) in column 'dist' name no district unit: 'X9', 'X7'" in msg
    assert "use ids from the district layer (A, B" in msg


@pytest.mark.parametrize("parent, why", [
    ('{ level = "neighbourhood", column = "dist" }', "is the level itself"),
    ('{ level = "wards", column = "dist" }', "is not a boundary level"),
])
def test_parent_level_must_be_a_coarser_boundary_level(tmp_path, parent, why):
    with pytest.raises(StudyError, match=f"'inputs.boundaries\\[0\\].parent.level' = '[a-z]+' {why}"):
        load_study(_write(tmp_path, nbhd_parent=parent, patrol=False))


def test_declared_parent_by_geometry_that_does_not_nest_names_the_worst_units(tmp_path):
    # neighbourhood → patrol declared by geometry: A2 has only 50 % in P (and 50 % in Q)
    study_file = _write(tmp_path, nbhd_parent='{ level = "patrol" }', patrol=True)
    text = study_file.read_text()
    patrol = '[[inputs.boundaries]]\nlevel = "patrol"\npath = "patrol.gpkg"\nid = "p"\n'
    text = text.replace(patrol, "").replace('[[inputs.boundaries]]\nlevel = "district"', patrol + '\n[[inputs.boundaries]]\nlevel = "district"')
    study_file.write_text(text)
    with pytest.raises(BoundaryError, match=r"neighbourhood is declared to nest in patrol, but 1 of 4 unit\(s\) have less than "
                                            r"99% of their area in one patrol unit; worst: 'A2' \(50.0%\)") as err:
        _stages(study_file)
    assert 'parent = { level = "patrol", column = "..." }' in err.value.fix


def test_nest_tolerance_is_a_share(tmp_path):
    with pytest.raises(StudyError, match="'units.nest_tolerance' must be a share"):
        load_study(_write(tmp_path, units="[units]\nnest_tolerance = 5"))


def test_two_population_tables_disagreeing_are_both_kept_and_compared(tmp_path):
    # district table: A = 330 (10 % above 100 + 200), B = 700 (= 300 + 400); thousands separators in a TSV
    (tmp_path / "dpop.tsv").write_text("CODE\tPEOPLE\nA\t330\nB\t700\nZ\t1,234\n", encoding="utf-8")
    dpop = '[[inputs.population]]\npath = "dpop.tsv"\nlevel = "district"\nid = "CODE"\ncolumn = "PEOPLE"\n'
    intake, located, pop = _stages(_write(tmp_path, nbhd_parent='{ level = "district", column = "dist" }',
                                          district_pop=dpop, patrol=False))
    assert pop["district"].set_index("unit_id")["population"].to_dict() == {"A": 330.0, "B": 700.0}
    assert pipeline.population_methods(pop)["district"] == "table"
    assert pipeline.population_methods(pop)["city"] == "rolled_up:neighbourhood"  # the finest table
    assert pop["city"]["population"].sum() == 1000.0
    notes = pipeline.population_notes(pop)
    assert notes["district"]["level"] == "neighbourhood" and notes["district"]["units_differing"] == 1
    assert notes["district"]["relative_difference"] == {"A": pytest.approx(0.1), "B": 0.0}
    ledger = intake.ledger.to_frame()
    note = ledger[(ledger.source == "population.district") & (ledger.reason == "population_tables_differ")]
    assert len(note) == 1 and "A +10.0%" in note["detail"].iloc[0]
    # the code Z matches no district: in the ledger with its row, as population rows are
    unknown = ledger[(ledger.source == "population.district") & (ledger.reason == "unknown_unit")]
    assert unknown["row"].tolist() == [3]
    totals = intake.ledger.totals()["population.district"]
    assert (totals["read"], totals["used"], totals["dropped"]) == (3, 2, 1)


def test_two_tables_for_one_level_is_an_error(tmp_path):
    again = '[[inputs.population]]\npath = "pop.csv"\nlevel = "neighbourhood"\nid = "nb"\ncolumn = "people"\n'
    with pytest.raises(StudyError, match="two tables for the level 'neighbourhood'"):
        load_study(_write(tmp_path, district_pop=again, patrol=False))


def test_run_json_and_screen_report_hierarchy_and_population(tmp_path):
    (tmp_path / "dpop.tsv").write_text("CODE\tPEOPLE\nA\t330\nB\t700\n", encoding="utf-8")
    dpop = '[[inputs.population]]\npath = "dpop.tsv"\nlevel = "district"\nid = "CODE"\ncolumn = "PEOPLE"\n'
    study_file = _write(tmp_path, nbhd_parent='{ level = "district", column = "dist" }', district_pop=dpop)
    nb = gpd.read_file(tmp_path / "nb.gpkg")  # A2 reaches 20 m into B: 98.0 % of it in its coded district A
    nb.loc[1, "geometry"] = _box(1000, 2020)
    nb.loc[2, "geometry"] = _box(2020, 3000)
    nb.to_file(tmp_path / "nb.gpkg")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(study_file), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["hierarchy"]["nest_tolerance"] == 0.01
    pair = next(p for p in info["hierarchy"]["pairs"] if (p["fine"], p["coarse"]) == ("neighbourhood", "district"))
    assert pair["by"] == "code" and pair["worst"] == [{"unit_id": "A2", "share": pytest.approx(1000 / 1020, abs=1e-6)}]
    assert "hierarchy: neighbourhood → district by code: 1 of 4 neighbourhood unit(s)" in result.output
    assert "A2 (98.0%)" in result.output
    assert "population: the district table differs from the sum of the neighbourhood table in 1 of 2 units (up to 10.0%)" in result.output
    assert info["population_method"]["patrol"] == "areal_interpolation:neighbourhood"
    assert info["population_notes"]["district"]["relative_difference"]["A"] == pytest.approx(0.1)
    # the point at x = 2010 m? none here; the rollup check compares direct district counts with the code's rollup
    check = {(r["fine"], r["coarse"]): r for r in info["rollup_check"]}
    assert check[("neighbourhood", "district")]["max_abs_difference"] == 0.0
