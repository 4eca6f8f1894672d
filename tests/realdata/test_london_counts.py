"""London area-coded counts end to end (issue #18 item 3 and its "Done when"): the Metropolitan
Police's annual recorded crime per LSOA, 2011–2021, three wide files (robbery, burglary, violence;
counts written as floats), over 428 LSOAs that belong to four boroughs by the code column LAD11CD,
with population at two levels (ONS LSOA estimates CSV, ONS borough projections TSV). See
tests/data/london/SOURCE.md. City of London has its own police force: the MPS files have no row for
its 6 LSOAs, which must be reported as not in the source — never as zeros.

Run with `usm-geo run`; expectations come from pandas on the raw CSVs in the test (melt + groupby),
from the TSV's printed values, and from GDAL's ogrinfo.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

LONDON = Path(__file__).resolve().parents[1] / "data" / "london"
OFFENCES = ("robbery", "burglary", "violence")
YEARS = [str(y) for y in range(2011, 2022)]
CITY_OF_LONDON = "E09000001"
CITY_LSOAS = {"E01000001", "E01000002", "E01000003", "E01000005", "E01032739", "E01032740"}  # SOURCE.md
BOROUGH_2019 = {"E09000001": 8_709, "E09000007": 267_424, "E09000012": 282_822, "E09000014": 271_330}  # TSV, as printed


def _header(profile: str = "internal") -> str:
    return f"""
[study]
name = "Inner London"
timezone = "Europe/London"
working_crs = "EPSG:27700"

[[inputs.boundaries]]
level = "lsoa"
path = "{(LONDON / 'lsoa2011.shp').as_posix()}"
id = "LSOA11CD"
name = "LSOA11NM"
parent = {{ level = "borough", column = "LAD11CD" }}

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
h3_resolution = [8]

[periods]
frequency = "year"
baseline = "2015"
current = "2021"

[outputs]
formats = ["gpkg", "shp", "csv"]
profile = "{profile}"
"""


def wide_study(profile: str = "internal") -> str:
    parts = [_header(profile)]
    for offence in OFFENCES:
        parts.append(f"""
[[inputs.counts]]
path = "{(LONDON / f'crime_{offence}_2011_2021.csv').as_posix()}"
unit = "LSOA11CD"
unit_level = "lsoa"
periods = "20*"
category_value = "{offence}"
""")
    return "\n".join(parts)


def raw_long() -> pd.DataFrame:
    """The three MPS files as one long table (pandas.melt): LSOA11CD, LAD11CD, year, category, count."""
    frames = []
    for offence in OFFENCES:
        wide = pd.read_csv(LONDON / f"crime_{offence}_2011_2021.csv", dtype={c: str for c in ("LSOA11CD", "LAD11CD")})
        long = wide.melt(id_vars=["LSOA11CD", "LAD11CD"], value_vars=YEARS, var_name="year", value_name="count")
        frames.append(long.assign(category=offence))
    out = pd.concat(frames, ignore_index=True)
    assert (out["count"] == out["count"].round()).all()  # floats such as 5.0, all whole
    return out.assign(count=out["count"].astype(np.int64))


def _run(folder: Path, text: str) -> tuple[Path, str]:
    (folder / "study.toml").write_text(text, encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["run", str(folder / "study.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("london_counts"), wide_study())


def _counts(out: Path) -> pd.DataFrame:
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str}, keep_default_na=True)
    return m[m.measure == "count"]


def test_counts_per_lsoa_year_and_category_equal_a_pandas_groupby(wide_run):
    out, _ = wide_run
    expected = raw_long().groupby(["LSOA11CD", "year", "category"])["count"].sum()
    c = _counts(out)
    got = c[(c.level == "lsoa") & (c.category != "all")].set_index(["unit_id", "period", "category"])["value"]
    reported = got.dropna()
    assert len(reported) == 422 * 11 * 3 and len(got) == 428 * 11 * 3
    pd.testing.assert_series_equal(reported.sort_index(), expected.astype(float).rename_axis(reported.index.names).sort_index(),
                                   check_names=False)
    all_ = c[(c.level == "lsoa") & (c.category == "all")].set_index(["unit_id", "period"])["value"].dropna()
    by_all = raw_long().groupby(["LSOA11CD", "year"])["count"].sum()
    assert (all_.sort_index().to_numpy() == by_all.sort_index().to_numpy()).all()


def test_counts_per_borough_and_city_equal_a_groupby_by_the_code_column(wide_run):
    out, _ = wide_run
    raw = raw_long()
    expected = raw.groupby(["LAD11CD", "year", "category"])["count"].sum()
    c = _counts(out)
    b = c[(c.level == "borough") & (c.category != "all")].set_index(["unit_id", "period", "category"])
    for key, value in expected.items():
        assert b.loc[key, "value"] == value, key
    assert set(b.loc[list(expected.index), "flags"]) == {"rolled_up"}  # the three MPS boroughs are complete
    col = b.xs(CITY_OF_LONDON, level="unit_id")
    assert col["value"].isna().all() and set(col["flags"]) == {"not_in_source;rolled_up"}
    city = c[(c.level == "city") & (c.category == "all")].set_index("period")
    assert (city["value"] == raw.groupby("year")["count"].sum().reindex(city.index)).all()
    assert set(city["flags"]) == {"partial;rolled_up"}


def test_city_of_london_is_not_in_the_source_not_zero(wide_run):
    out, stdout = wide_run
    c = _counts(out)
    lsoa = c[c.level == "lsoa"]
    missing = lsoa[lsoa["value"].isna()]
    assert set(missing.unit_id) == CITY_LSOAS
    assert set(missing["flags"]) == {"not_in_source"} and (missing["n"] == 0).all()
    assert not (lsoa[lsoa.unit_id.isin(CITY_LSOAS)]["value"] == 0).any()
    info = json.loads((out / "run.json").read_text())
    assert set(info["counts"]["not_in_source"]["lsoa"]) == CITY_LSOAS
    assert info["counts"]["not_in_source"]["borough"] == {CITY_OF_LONDON: {"missing": 6, "of": 6}}
    assert info["counts"]["not_in_source"]["city"] == {"city": {"missing": 6, "of": 428}}
    assert "6 unit(s) without a count from the count files" in stdout and "City of London 001A" in stdout
    html = (out / "map.html").read_text(encoding="utf-8")
    assert "not reported: the count files have no row for this area" in html
    assert "not reported" in html


def test_h3_and_kde_get_no_counts_and_the_run_says_so(wide_run):
    out, stdout = wide_run
    c = _counts(out)
    assert not c.level.str.startswith("h3_").any()
    info = json.loads((out / "run.json").read_text())
    assert "cannot be placed in H3 cells" in info["counts"]["not_counted"]["h3_8"]
    assert info["counts"]["levels"] == ["lsoa", "borough", "city"]
    assert "counts h3_8: no counts" in stdout and "counts kde: not computed" in stdout
    assert not (out / "kde.tif").exists()


def test_the_ledger_adds_up_in_rows_and_events(wide_run):
    out, _ = wide_run
    info = json.loads((out / "run.json").read_text())
    raw = raw_long()
    for offence in OFFENCES:
        t = info["sources"][f"counts/crime_{offence}_2011_2021.csv"]
        events = int(raw.loc[raw.category == offence, "count"].sum())
        assert t == {"read": 422, "used": 422, "dropped": 0, "events_read": events, "events_used": events, "events_dropped": 0}
    led = pd.read_csv(out / "ledger.csv")
    assert led[led.source.str.startswith("counts/")]["events"].sum() == 0


def test_rates_use_each_levels_population_and_partial_units_their_reported_people(wide_run):
    out, _ = wide_run
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str})
    rate = m[(m.measure == "incident_rate") & (m.category == "all") & (m.period == "2019")].set_index(["level", "unit_id"])
    raw = raw_long()
    y2019 = raw[raw.year == "2019"]
    for code, people in BOROUGH_2019.items():
        if code == CITY_OF_LONDON:
            assert np.isnan(rate.loc[("borough", code), "value"])
            continue
        events = y2019.loc[y2019.LAD11CD == code, "count"].sum()
        assert rate.loc[("borough", code), "value"] == pytest.approx(events / people * 1000)
    pop = pd.read_csv(LONDON / "lsoa_population_mid2019.csv")
    reported_people = pop.loc[pop.LAD11CD != CITY_OF_LONDON, "Persons_All-Ages"].sum()
    assert rate.loc[("city", "city"), "value"] == pytest.approx(y2019["count"].sum() / reported_people * 1000)
    lsoa = pop.set_index("LSOA11CD")["Persons_All-Ages"]
    one = y2019[y2019.LSOA11CD == "E01000842"]["count"].sum()
    assert rate.loc[("lsoa", "E01000842"), "value"] == pytest.approx(one / lsoa["E01000842"] * 1000)


def test_hotspots_and_progress_on_a_count_study(wide_run):
    out, _ = wide_run
    info = json.loads((out / "run.json").read_text())
    rep = info["hotspots"]["report"]["lsoa"]
    assert not rep.get("refused") and "6 unit(s) not reported" in rep["not_in_source"]
    assert "h3_8" not in info["hotspots"]["report"]
    prog = pd.read_csv(out / "progress.csv", dtype={"unit_id": str})
    city = prog[(prog.level == "city") & (prog.indicator == "incident_rate")].iloc[0]
    raw = raw_long()
    pop = pd.read_csv(LONDON / "lsoa_population_mid2019.csv")
    people = pop.loc[pop.LAD11CD != CITY_OF_LONDON, "Persons_All-Ages"].sum()
    by_year = raw.groupby("year")["count"].sum() / people * 1000
    assert city["baseline_value"] == pytest.approx(by_year["2015"]) and city["current_value"] == pytest.approx(by_year["2021"])


def test_every_exported_layer_passes_ogrinfo(wide_run, tmp_path):
    out, _ = wide_run
    layers = 0
    for gpkg in sorted(out.glob("*.gpkg")):
        proc = subprocess.run(["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        layers += proc.stdout.count("Feature Count")
    with zipfile.ZipFile(out / "shapefiles.zip") as z:
        z.extractall(tmp_path / "shp")
    for shp in sorted((tmp_path / "shp").glob("*.shp")):
        proc = subprocess.run(["ogrinfo", "-so", "-al", str(shp)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "Feature Count" in proc.stdout
        layers += 1
    assert layers >= 3 + 3 + 3  # units.gpkg and areas.gpkg (lsoa, borough, city), the shapefiles, hot spots
    assert (out / "map.html").stat().st_size > 10_000


def test_long_form_from_the_same_files_gives_the_same_counts(wide_run, tmp_path):
    """The three files melted into ONE long table in this test (pandas.melt: LSOA11CD, year, offence,
    count) — the long form of the same real counts — must give the same measures."""
    out_wide, _ = wide_run
    raw_long().rename(columns={"year": "period", "category": "offence"}).to_csv(tmp_path / "long.csv", index=False)
    text = _header() + f"""
[[inputs.counts]]
path = "{(tmp_path / 'long.csv').as_posix()}"
unit = "LSOA11CD"
unit_level = "lsoa"
count = "count"
period = "period"
category = "offence"
"""
    out_long, _ = _run(tmp_path, text)
    a, b = _counts(out_wide), _counts(out_long)
    key = ["level", "unit_id", "period", "category"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key + ["value", "n", "flags"]], b[key + ["value", "n", "flags"]])
    info = json.loads((out_long / "run.json").read_text())
    t = info["sources"]["counts/long.csv"]
    assert t["read"] == 422 * 11 * 3 and t["events_read"] == int(raw_long()["count"].sum())


def test_public_profile_suppresses_small_counts(tmp_path):
    out, _ = _run(tmp_path, wide_study("public"))
    import geopandas as gpd

    layer = gpd.read_file(out / "areas.gpkg", layer="lsoa")
    raw = raw_long()
    r2021 = raw[(raw.year == "2021")].groupby("LSOA11CD")["count"].sum()
    row = layer[layer.period.astype(str) == "2021"].set_index("unit_id")
    assert "incident_rate" in row.columns
    small = r2021[(r2021 > 0) & (r2021 < 5)].index
    for code in small:  # a small count's rate would give it back: suppressed
        assert np.isnan(row.loc[code, "incident_rate"]) and "suppressed" in str(row.loc[code, "incident_rate_flags"])
    for code in CITY_LSOAS:
        assert "not_in_source" in str(row.loc[code, "incident_rate_flags"])


def test_monthly_long_counts_from_the_city_of_london_police(tmp_path):
    """A monthly, long-form count table over real codes: the City of London Police's police.uk
    records of 2019-01…03 (tests/data/city-of-london) counted per `LSOA code` × `Month` × `Crime type`
    *in this test* (pandas groupby — police.uk publishes the records with their LSOA code, not the
    table), read as `[[inputs.counts]]` with monthly periods. The City force's records include LSOAs
    outside the four boroughs (unknown_unit, with their events) and records without a code."""
    import geopandas as gpd

    files = sorted((LONDON.parent / "city-of-london").glob("2019-0?-city-of-london-street.csv"))
    raw = pd.concat([pd.read_csv(f, dtype=str) for f in files], ignore_index=True)
    raw["LSOA code"] = raw["LSOA code"].fillna("")
    table = raw.groupby(["LSOA code", "Month", "Crime type"]).size().rename("n").reset_index()
    table.to_csv(tmp_path / "city_monthly.csv", index=False)
    text = _header().replace('frequency = "year"\nbaseline = "2015"\ncurrent = "2021"', 'frequency = "month"') + f"""
[[inputs.counts]]
path = "{(tmp_path / 'city_monthly.csv').as_posix()}"
unit = "LSOA code"
unit_level = "lsoa"
count = "n"
period = "Month"
category = "Crime type"
"""
    out, _ = _run(tmp_path, text)
    lsoa = gpd.read_file(LONDON / "lsoa2011.shp")[["LSOA11CD", "LAD11CD"]]
    known = raw["LSOA code"].isin(set(lsoa.LSOA11CD))
    expected = raw[known].groupby(["LSOA code", "Month", "Crime type"]).size()
    c = _counts(out)
    got = c[(c.level == "lsoa") & (c.category != "all")].set_index(["unit_id", "period", "category"])["value"]
    assert (got.reindex(expected.index) == expected).all()
    listed = set(raw.loc[known, "LSOA code"])
    assert set(got.dropna().index.get_level_values(0)) == listed  # every other LSOA: not reported, not zero
    borough = raw[known].merge(lsoa, left_on="LSOA code", right_on="LSOA11CD").groupby(["LAD11CD", "Month"]).size()
    b = c[(c.level == "borough") & (c.category == "all")].set_index(["unit_id", "period"])["value"]
    assert (b.reindex(borough.index) == borough).all()
    info = json.loads((out / "run.json").read_text())
    t = info["sources"]["counts/city_monthly.csv"]
    unknown = int((~known & (raw["LSOA code"] != "")).sum())
    blank = int((raw["LSOA code"] == "").sum())
    assert (t["events_read"], t["events_used"], t["events_dropped"]) == (len(raw), int(known.sum()), unknown + blank)
    assert unknown > 0 and blank == 115  # SOURCE.md: records without a location have no LSOA code
    led = pd.read_csv(out / "ledger.csv")
    led = led[led.source == "counts/city_monthly.csv"]
    assert led.loc[led.reason == "unknown_unit", "events"].sum() == unknown
    assert led.loc[led.reason == "missing_unit", "events"].sum() == blank
    assert sorted(c.period.unique()) == ["2019-01", "2019-02", "2019-03"]
