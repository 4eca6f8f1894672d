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
