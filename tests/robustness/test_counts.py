"""Area-coded counts (``[[inputs.counts]]``, issue #18 item 3) on small tables written here: long and
wide forms, bad values, unknown codes, periods outside the study, the ledger in rows and in events,
and the measures (not reported ≠ zero, partial parents, roll-up by the crosswalk, no H3 rows).

Geography: four neighbourhoods A1, A2 (district D1, west) and B1, B2 (district D2, east), squares of
2.5 × 5 km in EPSG:32633. Every expectation is worked out by hand in the test.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.errors import InputFileError, StudyError
from usm_geo.pipeline import run_intake, run_measures, run_population, run_units
from usm_geo.study import load_study

CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 5_800_000.0


def _geography(folder: Path) -> None:
    w = 2_500.0
    nb = gpd.GeoDataFrame({"nid": ["A1", "A2", "B1", "B2"], "name": ["A one", "A two", "B one", "B two"]},
                          geometry=[shapely.box(X0 + i * w, Y0, X0 + (i + 1) * w, Y0 + 5_000) for i in range(4)], crs=CRS)
    nb.to_file(folder / "nbhd.gpkg", engine="pyogrio")
    dist = gpd.GeoDataFrame({"did": ["D1", "D2"]}, geometry=[shapely.box(X0, Y0, X0 + 2 * w, Y0 + 5_000),
                                                          shapely.box(X0 + 2 * w, Y0, X0 + 4 * w, Y0 + 5_000)], crs=CRS)
    dist.to_file(folder / "dist.gpkg", engine="pyogrio")
    pd.DataFrame({"nid": ["A1", "A2", "B1", "B2"], "pop": [1000, 2000, 3000, 4000]}).to_csv(folder / "pop.csv", index=False)


def _study(folder: Path, counts: str, periods: str = 'frequency = "year"', h3: bool = False, extra: str = "",
           population: bool = True) -> Path:
    _geography(folder)
    text = f"""
    [study]
    name = "Counts"
    working_crs = "{CRS}"

    [[inputs.boundaries]]
    level = "neighbourhood"
    path = "nbhd.gpkg"
    id = "nid"
    name = "name"

    [[inputs.boundaries]]
    level = "district"
    path = "dist.gpkg"
    id = "did"

    [inputs.population]
    path = "pop.csv"
    level = "neighbourhood"
    id = "nid"
    column = "pop"
    {"[units]" + chr(10) + "    h3_resolution = [8]" if h3 else ""}

    [periods]
    {periods}
    {extra}
    """
    if not population:
        text = text.replace('[inputs.population]\n    path = "pop.csv"\n    level = "neighbourhood"\n    id = "nid"\n    column = "pop"', "")
    path = folder / "study.toml"
    path.write_text(textwrap.dedent(text) + "\n" + textwrap.dedent(counts), encoding="utf-8")
    return path


WIDE = """\
code,name,2019,2020,2021
A1,a,5.0,1.0,2.0
A2,b,3,5.5,0
B1,c,-1,oops,
ZZ9,d,7,8,9
"""


def _wide_study(tmp_path, periods='frequency = "year"', **kw):
    (tmp_path / "robbery.csv").write_text(WIDE, encoding="utf-8")
    return _study(tmp_path, """
    [[inputs.counts]]
    path = "robbery.csv"
    unit = "code"
    unit_level = "neighbourhood"
    periods = "20*"
    category_value = "robbery"
    """, periods, **kw)


def test_wide_counts_ledger_in_rows_and_events(tmp_path):
    intake = run_intake(load_study(_wide_study(tmp_path)))
    t = intake.counts
    # used values: A1 2019-2021 (5, 1, 2), A2 2019 (3) and 2021 (0); B1 has no valid value; ZZ9 is unknown
    used = t[~t["missing"]]
    got = {(u, p): c for u, p, c in zip(used.unit_id, used.period, used["count"])}
    assert got == {("A1", "2019"): 5, ("A1", "2020"): 1, ("A1", "2021"): 2, ("A2", "2019"): 3, ("A2", "2021"): 0}
    # values that are not counts mark their cells as having no count from the file: A2's 5.5 in
    # 2020 and B1's three (B1's row is dropped whole)
    assert sorted(map(tuple, t[t["missing"]][["unit_id", "period"]].values.tolist())) == [
        ("A2", "2020"), ("B1", "2019"), ("B1", "2020"), ("B1", "2021")]
    assert set(t.category) == {"robbery"} and set(t.source) == {"counts/robbery.csv"}
    led = intake.ledger.to_frame()
    led = led[led.source == "counts/robbery.csv"]
    by = {(r.row, r.status, r.reason): (r.events, r.detail) for r in led.itertuples()}
    # row 2 (A2): 5.5 is not a count, the row is still used → changed
    assert by[(2, "changed", "invalid_count")][0] == 0 and "'5.5'" in by[(2, "changed", "invalid_count")][1]
    # row 3 (B1): -1, text and a blank: no value used → the row is dropped, three entries, no events
    assert sorted(r.detail.split("'")[1] for r in led[(led.row == 3)].itertuples()) == ["2019", "2020", "2021"]
    assert set(led[led.row == 3].status) == {"dropped"} and led[led.row == 3].events.sum() == 0
    # row 4 (ZZ9): unknown code, dropped with its 7 + 8 + 9 = 24 events
    assert by[(4, "dropped", "unknown_unit")][0] == 24 and "24 events" in by[(4, "dropped", "unknown_unit")][1]
    totals = intake.ledger.totals()["counts/robbery.csv"]
    # rows: 4 read, A1 and A2 used, B1 and ZZ9 dropped; events: every valid count read 5+1+2+3+0+7+8+9 = 35
    assert totals == {"read": 4, "used": 2, "dropped": 2, "events_read": 35, "events_used": 11, "events_dropped": 24}


def test_periods_outside_the_study_period_go_to_the_ledger_with_their_events(tmp_path):
    intake = run_intake(load_study(_wide_study(tmp_path, 'frequency = "year"\nstart = 2020-01-01\nend = 2021-12-31')))
    led = intake.ledger.to_frame()
    out = led[(led.source == "counts/robbery.csv") & (led.reason == "outside_study_period")]
    # A1's 2019 (5) and A2's 2019 (3) are outside; B1's 2019 is -1 (invalid first); ZZ9's row is dropped whole
    assert sorted(zip(out.row, out.status, out.events)) == [(1, "changed", 5), (2, "changed", 3)]
    t = intake.ledger.totals()["counts/robbery.csv"]
    assert (t["events_read"], t["events_used"], t["events_dropped"]) == (35, 3, 32)  # used: 1 + 2 + 0


def test_long_form_monthly_counts_to_a_yearly_study(tmp_path):
    (tmp_path / "long.csv").write_text(textwrap.dedent("""\
        area;month;offence;n
        A1;2020-01;burglary;2
        A1;2020-02;burglary;3
        A1;2020-02;theft;4
        B2;2021-12;theft;1
        B2;2019-13;theft;6
         A2 ;2020-03;theft;1
        """), encoding="utf-8")
    study = _study(tmp_path, """
    [[inputs.counts]]
    path = "long.csv"
    unit = "area"
    unit_level = "neighbourhood"
    count = "n"
    period = "month"
    category = "offence"
    """)
    intake = run_intake(load_study(study))
    t = intake.counts
    # months are summed into the study's years; " A2 " is stripped to A2; 2019-13 is no period
    assert t.groupby(["unit_id", "period", "category"])["count"].sum().to_dict() == {
        ("A1", "2020", "burglary"): 5, ("A1", "2020", "theft"): 4, ("A2", "2020", "theft"): 1, ("B2", "2021", "theft"): 1}
    led = intake.ledger.to_frame()
    bad = led[led.reason == "unparseable_period"]
    assert list(zip(bad.row, bad.status, bad.events)) == [(5, "dropped", 6)]
    assert intake.ledger.totals()["counts/long.csv"] == {"read": 6, "used": 5, "dropped": 1, "events_read": 17,
                                                          "events_used": 11, "events_dropped": 6}


def test_yearly_counts_cannot_be_split_into_months(tmp_path):
    with pytest.raises(InputFileError) as exc:
        run_intake(load_study(_wide_study(tmp_path, 'frequency = "month"')))
    assert "spans more than one month" in exc.value.what and 'frequency = "year"' in exc.value.fix


def test_measures_not_reported_is_not_zero_and_parents_are_partial(tmp_path):
    study = load_study(_wide_study(tmp_path, h3=True))
    intake = run_intake(study)
    located = run_units(intake)
    pop = run_population(intake, located)
    m = run_measures(intake, located, pop)
    c = m[(m.measure == "count") & (m.category == "all")].set_index(["level", "unit_id", "period"])
    # no H3 rows: area-coded counts are never placed in cells
    assert not m[m.level.str.startswith("h3_")].measure.isin(["count"]).any()
    assert c.loc[("neighbourhood", "A1", "2019"), "value"] == 5
    assert c.loc[("neighbourhood", "A2", "2021"), "value"] == 0  # a real zero
    a2 = c.loc[("neighbourhood", "A2", "2020")]  # 5.5 is not a count: not reported, not zero
    assert np.isnan(a2["value"]) and a2["flags"] == "not_in_source"
    d1 = c.loc[("district", "D1", "2020")]
    assert d1["value"] == 1 and d1["flags"] == "partial;rolled_up"
    for unit in ("B1", "B2"):  # B1: every value invalid (row dropped); B2: no row at all
        row = c.loc[("neighbourhood", unit, "2019")]
        assert np.isnan(row["value"]) and row["flags"] == "not_in_source" and row["n"] == 0
    d1 = c.loc[("district", "D1", "2019")]
    assert d1["value"] == 5 + 3 and d1["flags"] == "rolled_up"
    d2 = c.loc[("district", "D2", "2019")]
    assert np.isnan(d2["value"]) and d2["flags"] == "not_in_source;rolled_up"
    city = c.loc[("city", "city", "2019")]
    assert city["value"] == 8 and city["flags"] == "partial;rolled_up"
    report = intake.count_report
    # the most units missing in one period: 2020 (A2's 5.5, B1, B2)
    assert report["not_in_source"]["city"] == {"city": {"missing": 3, "of": 4}}
    assert report["not_in_source"]["district"] == {"D1": {"missing": 1, "of": 2}, "D2": {"missing": 2, "of": 2}}
    assert "H3" in report["not_counted"]["h3_8"]
    # the partial city's population is that of A1 and A2 only (1,000 + 2,000), for its rate
    rp = m[(m.measure == "population_reported") & (m.level == "city")].set_index("period")["value"]
    assert rp.to_dict() == {"2019": 3000.0, "2020": 1000.0, "2021": 3000.0}


def test_run_end_to_end_rates_of_partial_units_and_hotspots(tmp_path):
    study = _wide_study(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "counts neighbourhood: 3 unit(s) without a count from the count files" in result.output
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str})
    rate = m[(m.measure == "incident_rate") & (m.category == "all")].set_index(["level", "unit_id", "period"])
    per = 1000.0  # incident_rate is per 1,000 residents
    assert rate.loc[("city", "city", "2019"), "value"] == pytest.approx(8 / 3000 * per)  # not 8 / 10,000
    assert "partial" in rate.loc[("city", "city", "2019"), "flags"]
    assert np.isnan(rate.loc[("neighbourhood", "B2", "2019"), "value"])
    assert "not_in_source" in rate.loc[("neighbourhood", "B2", "2019"), "flags"]
    info = json.loads((out / "run.json").read_text())
    assert info["counts"]["levels"] == ["neighbourhood", "district", "city"]
    assert info["sources"]["counts/robbery.csv"]["events_used"] == 11
    led = pd.read_csv(out / "ledger.csv")
    assert "events" in led.columns


def test_study_refuses_points_with_counts_and_bad_keys(tmp_path):
    (tmp_path / "robbery.csv").write_text(WIDE, encoding="utf-8")
    (tmp_path / "points.csv").write_text("lon,lat,date\n15.0,52.4,2020-01-01\n", encoding="utf-8")
    base = """
    [[inputs.counts]]
    path = "robbery.csv"
    unit = "code"
    unit_level = "neighbourhood"
    """
    cases = [
        (base + 'periods = "20*"\n[inputs.incidents]\npath = "points.csv"\n', "both point incidents and area-coded counts"),
        (base, "needs either count (long form) or periods (wide form)"),
        (base + 'periods = "20*"\ncount = "n"\n', "names both count and periods"),
        (base + 'count = "n"\n', "needs a column of period labels"),
        (base + 'periods = "20*"\ncategory = "x"\ncategory_value = "y"\n', "cannot be combined with category"),
        (base.replace('"neighbourhood"', '"ward"') + 'periods = "20*"\n', "which is not a boundary level"),
    ]
    for i, (text, said) in enumerate(cases):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        for f in ("robbery.csv", "points.csv"):
            (folder / f).write_bytes((tmp_path / f).read_bytes())
        with pytest.raises(StudyError) as exc:
            load_study(_study(folder, text))
        assert said in str(exc.value), (i, str(exc.value))


def test_a_pattern_that_matches_no_column_names_the_columns(tmp_path):
    (tmp_path / "robbery.csv").write_text(WIDE, encoding="utf-8")
    study = _study(tmp_path, """
    [[inputs.counts]]
    path = "robbery.csv"
    unit = "code"
    unit_level = "neighbourhood"
    periods = "FY*"
    """)
    with pytest.raises(InputFileError) as exc:
        run_intake(load_study(study))
    assert "no column matches periods = 'FY*'" in exc.value.what and "2019" in exc.value.fix


def test_counts_at_a_coarser_level_reach_only_it_and_the_city(tmp_path):
    (tmp_path / "d.csv").write_text("did,2020\nD1,7\nD2,3\n", encoding="utf-8")
    study = _study(tmp_path, """
    [[inputs.counts]]
    path = "d.csv"
    unit = "did"
    unit_level = "district"
    periods = ["2020"]
    """)
    intake = run_intake(load_study(study))
    located = run_units(intake)
    m = run_measures(intake, located, run_population(intake, located))
    c = m[(m.measure == "count") & (m.category == "all")]
    assert set(c.level) == {"district", "city"}  # never spread down to neighbourhoods
    assert c.set_index(["level", "unit_id"])["value"].to_dict() == {("district", "D1"): 7, ("district", "D2"): 3, ("city", "city"): 10}
    assert "finer than district" in intake.count_report["not_counted"]["neighbourhood"]
    assert set(m[m.measure == "count"].category) == {"all", "uncategorised"}


def test_harm_of_area_coded_counts_is_count_times_weight(tmp_path):
    (tmp_path / "harm.csv").write_text("label,harm_days\nrobbery,10\n", encoding="utf-8")
    study = load_study(_wide_study(tmp_path, extra='[indicators]\nharm = "harm.csv"'))
    intake = run_intake(study)
    located = run_units(intake)
    m = run_measures(intake, located, run_population(intake, located))
    h = m[(m.measure == "harm")].set_index(["level", "unit_id", "period", "category"])
    assert h.loc[("neighbourhood", "A1", "2019", "robbery"), "value"] == 5 * 10
    assert h.loc[("neighbourhood", "A1", "2019", "all"), "value"] == 5 * 10
    assert h.loc[("district", "D1", "2019", "all"), "value"] == (5 + 3) * 10
    assert np.isnan(h.loc[("neighbourhood", "B2", "2019", "all"), "value"])
    assert h.loc[("neighbourhood", "B2", "2019", "all"), "flags"] == "not_in_source"


def test_a_count_study_without_population_maps_counts(tmp_path):
    study = _wide_study(tmp_path, population=False)
    assert "inputs.population" not in study.read_text()
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    html = (out / "map.html").read_text(encoding="utf-8")
    assert "Incidents (count)" in html and "not reported" in html
    layer = gpd.read_file(out / "areas.gpkg", layer="neighbourhood")
    b2 = layer[(layer.unit_id == "B2") & (layer.period.astype(str) == "2019")].iloc[0]
    assert np.isnan(b2["count"]) and b2["count_flags"] == "not_in_source"
    info = json.loads((out / "run.json").read_text())
    assert info["rollup_check"] and all(r["max_abs_difference"] == 0 for r in info["rollup_check"])
