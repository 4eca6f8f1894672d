"""Peer review across cities (issue 21 point 1): `usm-geo compare` on three real runs and an edited card.

Runs: the Demo City (2019–2022, current 2022), Northumbria (anti-social behaviour 2022, 177 wards with
ONS ward populations) and Chicago (aggravated assaults 2017–2019, current 2019), each exported in the
public profile with `usm-geo export`; plus a copy of the Demo City's card whose `incident_rate`
source was edited to `health`. Expectations are written from the cards themselves (pandas), not
from usm_geo.compare.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import textwrap

import pandas as pd
import pytest
from click.testing import CliRunner

from shared_data import chicago_rate_run, need_shared
from usm_geo.cli import main

pytestmark = pytest.mark.realdata


def _export(run_dir, out):
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def cards(tmp_path_factory, demo):
    base = tmp_path_factory.mktemp("compare")
    demo_out, _ = demo
    # the Demo City again, current 2022: peer review needs the same period in every city
    study = (demo_out / "inputs" / "study.toml").read_text(encoding="utf-8")
    study = study.replace('end = "2023-12-31"', 'end = "2022-12-31"').replace('current = "2023"', 'current = "2022"')
    inputs = base / "demo-inputs"
    shutil.copytree(demo_out / "inputs", inputs)
    (inputs / "study.toml").write_text(study, encoding="utf-8")
    r = CliRunner().invoke(main, ["run", str(inputs / "study.toml"), "--out", str(base / "demo-run"), "--quiet"])
    assert r.exit_code == 0, r.output
    demo_card = _export(base / "demo-run", base / "demo")

    (base / "north").mkdir()
    north_study = base / "north" / "study.toml"
    north_study.write_text(textwrap.dedent(f"""
        [study]
        name = "Northumbria"
        timezone = "Europe/London"
        working_crs = "EPSG:27700"

        [inputs.incidents]
        path = "{need_shared("uk-northumbria-asb-2022", "northumbria_asb.tab")}"
        date = "month"
        lon = "longitude"
        lat = "latitude"

        [[inputs.boundaries]]
        level = "ward"
        path = "{need_shared("uk-northumbria-asb-2022", "northumbria_wards.gpkg")}"
        id = "ward_code"
        name = "ward_name"

        [inputs.population]
        path = "{need_shared("uk-northumbria-asb-2022", "northumbria_ward_pop.xlsx")}"
        level = "ward"
        id = "gss_code"
        column = "population"

        [periods]
        frequency = "year"
        start = 2022-01-01
        end = 2022-12-31
        baseline = "2022"
        current = "2022"
        """), encoding="utf-8")
    r = CliRunner().invoke(main, ["run", str(north_study), "--out", str(base / "north-run"), "--quiet"])
    assert r.exit_code == 0, r.output
    north_card = _export(base / "north-run", base / "north-public")

    (base / "chicago").mkdir()
    chicago_card = _export(chicago_rate_run(base / "chicago", 2017), base / "chicago-public")

    edited = base / "edited"
    shutil.copytree(demo_card, edited)
    card = json.loads((edited / "report_card.json").read_text(encoding="utf-8"))
    for row in card:
        row["city"] = "Demo City (health records)"
        if row["indicator"] == "incident_rate":
            row["source"] = "health"
    (edited / "report_card.json").write_text(json.dumps(card), encoding="utf-8")
    return {"demo": demo_card, "north": north_card, "chicago": chicago_card, "edited": edited}


def _card(folder):
    return pd.DataFrame(json.loads((folder / "report_card.json").read_text(encoding="utf-8")))


def test_compare_three_real_runs_and_an_edited_card(cards, tmp_path):
    out = tmp_path / "peer"
    args = ["compare", str(cards["demo"]), str(cards["north"]), str(cards["chicago"]), str(cards["edited"]), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "comparison.csv", dtype={"period": str, "baseline_period": str})
    demo, north, chicago = _card(cards["demo"]), _card(cards["north"]), _card(cards["chicago"])

    rate = table[table["indicator"] == "incident_rate"].set_index("city")
    # every city that reports incident_rate is listed, by name
    assert list(table[table["indicator"] == "incident_rate"]["city"]) == sorted(
        ["Demo City", "Northumbria", "Chicago", "Demo City (health records)"])
    # values are the cards' own
    for name, card in (("Demo City", demo), ("Northumbria", north), ("Chicago", chicago)):
        want = card.set_index("indicator").loc["incident_rate"]
        assert rate.loc[name, "value"] == pytest.approx(want["value"], rel=1e-12)
        assert rate.loc[name, "period"] == want["period"]
    # Chicago's current period is 2019, the others 2022: not comparable, and the reason says so
    assert not rate.loc["Chicago", "comparable"]
    assert "period: 2019, others 2022" in rate.loc["Chicago", "not_comparable_reason"]
    # the edited card: the source differs
    assert not rate.loc["Demo City (health records)", "comparable"]
    assert "source: health, others police" in rate.loc["Demo City (health records)", "not_comparable_reason"]
    # Demo City and Northumbria measure incident_rate the same way (police, per 1,000, 2022, all categories)
    assert rate.loc["Demo City", "comparable"] and rate.loc["Northumbria", "comparable"]
    d, n = rate.loc["Demo City"], rate.loc["Northumbria"]
    apart = not (d["lower"] <= n["upper"] and n["lower"] <= d["upper"])
    assert (rate.loc["Demo City", "distinct_from"] == "Northumbria") == apart
    # own progress is each card's own change, never a rank
    assert "rank" not in table.columns
    want = demo.set_index("indicator").loc["incident_rate", "change"]
    got = rate.loc["Demo City", "change"]
    assert (want is None and math.isnan(got)) or got == pytest.approx(want, rel=1e-12)
    html = (out / "comparison.html").read_text(encoding="utf-8")
    assert "source: health, others police" in html and "<script" not in html
    assert html.count('<svg class="chart"') == table.loc[table["comparable"], "indicator"].nunique()


def test_compare_refuses_internal_cards_and_ranks_only_on_request(cards, demo, tmp_path):
    demo_out, _ = demo
    result = CliRunner().invoke(main, ["compare", str(demo_out), str(cards["north"]), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "internal profile" in result.output and "usm-geo export" in result.output
    result = CliRunner().invoke(main, ["compare", str(cards["demo"]), str(cards["north"]), "--rank", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "b" / "comparison.csv")
    rate = table[(table["indicator"] == "incident_rate") & table["comparable"]]
    lower_first = rate.sort_values("value")["city"].tolist()  # incident_rate: lower is better
    assert rate.sort_values("rank")["city"].tolist() == lower_first
    assert "ranking orders values whose intervals may overlap" in (tmp_path / "b" / "comparison.html").read_text(encoding="utf-8")
