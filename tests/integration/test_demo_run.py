"""`usm-geo demo` end to end: the planted bad records are found where they were planted, every
record is accounted for, and a rerun of the written study gives the same bytes."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from usm_geo.cli import main

# what the pipeline must say about each kind of planted bad record: (status, reason)
EXPECTED = {
    "zero_coordinates": ("dropped", "null_island"),
    "empty_coordinates": ("dropped", "missing_coordinates"),
    "non_numeric_coordinate": ("dropped", "missing_coordinates"),  # "n/a" is a missing-value marker
    "duplicate": ("kept", "duplicate"),
    "swapped_coordinates": ("changed", "lat_lon_swapped"),
    "outside_city": ("dropped", "outside_study_area"),
    "impossible_date": ("dropped", "unparseable_date"),
    "negative_weight": ("dropped", "invalid_weight"),
    "unknown_answer": ("changed", "unknown_answer"),
}


def test_demo_writes_inputs_and_outputs(demo):
    out, output = demo
    for name in ("study.toml", "planted_truths.json", "incidents.csv", "survey.csv", "demo_city.gpkg", "population.tif"):
        assert (out / "inputs" / name).is_file()
    assert (out / "ledger.csv").is_file() and (out / "run.json").is_file()
    assert "incidents: read 198,246, used 198,238, dropped 8" in output


def test_planted_bad_records_are_in_the_ledger_where_planted(demo):
    out, _ = demo
    truths = json.loads((out / "inputs" / "planted_truths.json").read_text())
    ledger = pd.read_csv(out / "ledger.csv")
    for source in ("incidents", "survey"):
        planted = truths["bad_records"][source]["rows"]
        assert planted
        for record in planted:
            status, reason = EXPECTED[record["kind"]]
            hit = ledger[(ledger.source == source) & (ledger.row == record["row"])]
            assert (hit.status == status).any() and (hit.reason == reason).any(), (record, hit)
        # nothing else was flagged: every ledger row of the source is a planted one
        rows = ledger[(ledger.source == source) & (ledger.status != "note")]
        assert set(rows.row) == {r["row"] for r in planted}


def test_every_record_is_accounted_for(demo):
    out, _ = demo
    info = json.loads((out / "run.json").read_text())
    raw = pd.read_csv(out / "inputs" / "incidents.csv", dtype=str, keep_default_na=False)
    survey = pd.read_csv(out / "inputs" / "survey.csv", dtype=str, keep_default_na=False)
    assert info["sources"]["incidents"]["read"] == len(raw)
    assert info["sources"]["survey"]["read"] == len(survey)
    for totals in info["sources"].values():
        assert totals["read"] == totals["used"] + totals["dropped"]
    assert info["working_crs"] == "EPSG:32633"
    assert info["study"]["name"] == "Demo City"


def test_rerun_of_written_study_is_byte_identical(demo, tmp_path):
    out, _ = demo
    again = tmp_path / "again"
    result = CliRunner().invoke(main, ["run", str(out / "inputs" / "study.toml"), "--out", str(again), "--quiet"])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "run.json")
    assert {"ledger.csv", "measures.csv", "indicators.csv", "hotspots.gpkg", "kde.tif"} <= set(files)
    assert files == sorted(p.name for p in again.iterdir() if p.is_file() and p.name != "run.json")
    for name in files:  # same inputs and seed → the same bytes (maps and GeoPackages included)
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    a, b = (json.loads((d / "run.json").read_text()) for d in (out, again))
    for info in (a, b):
        info.pop("timings_s"), info.pop("started_at")
    assert a == b


def test_run_refuses_to_replace_its_own_inputs(demo):
    out, _ = demo
    result = CliRunner().invoke(main, ["run", str(out / "inputs" / "study.toml"), "--out", str(out)])
    assert result.exit_code == 2
    assert "holds the study's inputs" in result.output and "Traceback" not in result.output
    assert (out / "inputs" / "study.toml").is_file()


def test_city_equals_the_sum_of_every_level(demo):
    """city = Σ districts = Σ neighbourhoods = Σ hexes, per period and category, and = incidents used."""
    out, _ = demo
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str, "flags": str})
    counts = m[m.measure == "count"]
    by_level = counts.groupby(["level", "period", "category"])["value"].sum().unstack("level")
    assert set(by_level.columns) == {"h3_9", "neighbourhood", "district", "city"}
    for level in ("h3_9", "neighbourhood", "district"):
        assert (by_level[level] == by_level["city"]).all(), level
    info = json.loads((out / "run.json").read_text())
    assert by_level.loc[(slice(None), "all"), "city"].sum() == info["sources"]["incidents"]["used"]
    assert all(r["max_abs_difference"] == 0 for r in info["rollup_check"])
    # every neighbourhood listed for every year and category, zeros included
    nb = counts[counts.level == "neighbourhood"]
    assert len(nb) == 60 * 5 * nb.category.nunique()
    pop = m[(m.measure == "population") & (m.period == "2019")].groupby("level")["value"].sum()
    assert pop["city"] == pop["district"] == pop["neighbourhood"]  # the census table rolled up
    assert abs(pop["h3_9"] - pop["city"]) / pop["city"] < 0.005  # the raster, conserved within 0.5 %


def test_time_patterns_match_a_pandas_groupby_of_the_inputs(demo):
    """time_patterns.csv: the city's and each neighbourhood's hour × weekday, month and month-of-year
    counts equal a pandas groupby of the Demo City's own incidents.csv (the records the ledger does not
    drop), and the totals equal the number of incidents with a time."""
    import json

    import geopandas as gpd

    out, _ = demo
    tp = pd.read_csv(out / "time_patterns.csv", dtype={"unit_id": str, "month": str, "category": str})
    raw = pd.read_csv(out / "inputs" / "incidents.csv", dtype=str)
    ledger = pd.read_csv(out / "ledger.csv", dtype={"source": str, "status": str})
    dropped = set(ledger[(ledger.source == "incidents") & (ledger.status == "dropped")]["row"].astype(int))
    used = raw[~(pd.RangeIndex(1, len(raw) + 1).isin(dropped))].copy()
    t = pd.to_datetime(used["occurred_at"])
    info = json.loads((out / "run.json").read_text())
    assert info["time_patterns"]["hour_weekday"]["counted"] == len(used) == info["sources"]["incidents"]["used"]
    city = tp[(tp.level == "city") & (tp.category == "all")]
    hw = city[city.pattern == "hour_weekday"].astype({"weekday": int, "hour": int}).set_index(["weekday", "hour"])["count"]
    ref = t.groupby([t.dt.day_of_week, t.dt.hour]).size().reindex(hw.index, fill_value=0)
    assert hw.sum() == len(used) and (hw.to_numpy() == ref.to_numpy()).all()
    by_cat = tp[(tp.level == "city") & (tp.pattern == "month_of_year") & (tp.category != "all")]
    ref_cat = used.groupby([used.category, t.dt.month]).size()
    got_cat = by_cat[by_cat["count"] > 0].astype({"month": int}).set_index(["category", "month"])["count"]
    assert got_cat.sort_index().to_dict() == ref_cat.sort_index().to_dict()
    # each neighbourhood: an independent point-in-polygon of the raw coordinates
    units = gpd.read_file(out / "units.gpkg", layer="neighbourhood")
    pts = gpd.GeoDataFrame(used, geometry=gpd.points_from_xy(used.longitude.astype(float), used.latitude.astype(float)),
                           crs="EPSG:4326").to_crs(units.crs)
    joined = gpd.sjoin(pts, units[["unit_id", "geometry"]], predicate="within", how="inner")
    ref_m = joined.groupby([joined.unit_id, pd.to_datetime(joined.occurred_at).dt.strftime("%Y-%m")]).size()
    got_m = tp[(tp.level == "neighbourhood") & (tp.pattern == "month") & (tp.category == "all") & (tp["count"] > 0)]
    got_m = got_m.set_index(["unit_id", "month"])["count"]
    diff = got_m.sub(ref_m, fill_value=0).abs()
    assert diff.sum() <= 2  # points exactly on a shared boundary: sjoin may give both or neither unit
    assert set(tp.pattern) == {"hour_weekday", "month", "month_of_year"}


def test_sppt_csv_and_its_summary_in_run_json(demo):
    """sppt.csv: every unit of every H3 and polygon level for `all` and each category; its counts equal
    measures.csv's, and run.json's S-indices are the means of its `similar` column (robust: over units
    with an incident in either period)."""
    out, _ = demo
    info = json.loads((out / "run.json").read_text())
    s = info["sppt"]
    assert (s["baseline"], s["current"], s["draws"], s["sample"], s["level"]) == ("2019", "2023", 200, 0.85, 0.95)
    table = pd.read_csv(out / "sppt.csv", dtype={"unit_id": str, "baseline": str, "current": str})
    units = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str})
    counts = units[units.measure == "count"]
    assert set(table.level) == set(s["levels"]) == {"h3_9", "neighbourhood", "district"}
    for (lv, cat), sub in table.groupby(["level", "category"]):
        got = s["levels"][lv][cat]
        assert got["units"] == len(sub) == info["units"][lv]
        assert got["s_index"] == sub.similar.mean()
        assert got["robust_s_index"] == sub.similar[sub.base_count + sub.test_count > 0].mean()
        for col, period in (("base_count", "2019"), ("test_count", "2023")):
            want = counts[(counts.level == lv) & (counts.category == cat) & (counts.period == period)]
            merged = sub.merge(want, on="unit_id")
            assert len(merged) == len(sub) and (merged[col] == merged["value"]).all()
