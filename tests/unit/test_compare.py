"""`usm-geo compare` on hand-made report cards: comparability rules, overlap, ordering, escaping.
Every expected value is worked out here from the cards written in the test."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.compare import compare_cards, definition_hash, load_card

RATE_DEF = {"kind": "rate", "source": "police", "categories": ["*"], "per": 1000.0, "question": None, "yes": [],
            "exclude": [], "never_go_out_rule": "unsafe", "name": "Recorded incidents per 1,000 residents"}
SHARE_DEF = {"kind": "share", "source": "survey", "categories": ["*"], "per": 1000.0, "question": "safe_dark",
             "yes": ["safe"], "exclude": [], "never_go_out_rule": "unsafe", "name": "Feel safe after dark"}


def _row(city, ind, value, lo, hi, **kw):
    base = {"city": city, "level": "city", "unit_id": "city", "indicator": ind, "name": ind, "sdg": None,
            "source": "police", "kind": "rate", "unit": "per 1,000 residents", "lower_is_better": True,
            "period": "2022", "value": value, "lower": lo, "upper": hi, "n": 100, "flags": "",
            "baseline_period": "2019", "baseline_value": value * 1.1, "change": -1 / 11, "change_lower": -0.2,
            "change_upper": 0.02, "trend_per_year": None, "target_year": None, "target_value": None,
            "target_status": None, "status_reason": None}
    base.update(kw)
    return base


def _write(folder, rows, defs, profile="public"):
    folder.mkdir()
    (folder / "report_card.json").write_text(json.dumps(rows), encoding="utf-8")
    (folder / "metadata.json").write_text(json.dumps({"profile": profile, "indicators": defs}), encoding="utf-8")
    return folder


@pytest.fixture
def cards(tmp_path):
    a = _write(tmp_path / "a", [_row("Aberdale", "incident_rate", 30.0, 28.0, 32.0),
                                _row("Aberdale", "safe_share", 0.5, 0.45, 0.55, source="survey", kind="share",
                                     unit="proportion of residents (0-1)", lower_is_better=False)],
               {"incident_rate": RATE_DEF, "safe_share": SHARE_DEF})
    b = _write(tmp_path / "b", [_row("<b>Bexmoor</b>", "incident_rate", 40.0, 37.0, 43.0),
                                _row("<b>Bexmoor</b>", "safe_share", 0.52, 0.40, 0.64, source="survey", kind="share",
                                     unit="proportion of residents (0-1)", lower_is_better=False)],
               {"incident_rate": RATE_DEF, "safe_share": {**SHARE_DEF, "question": "safe_night"}})
    c = _write(tmp_path / "c", [_row("Cranford", "incident_rate", 31.0, 29.5, 32.5),
                                _row("Cranford", "homicide_rate", 2.0, 1.0, 3.5)],
               {"incident_rate": {**RATE_DEF, "categories": ["01", "02"]}, "homicide_rate": RATE_DEF})
    return a, b, c


def test_comparability_overlap_and_order(cards):
    table = compare_cards([load_card(p) for p in cards])
    rate = table[table["indicator"] == "incident_rate"].set_index("city")
    # listed by city name (the '<b>' sorts first), never by value
    assert list(table[table["indicator"] == "incident_rate"]["city"]) == ["<b>Bexmoor</b>", "Aberdale", "Cranford"]
    # Cranford counts only ICCS 01-02: another definition
    assert not rate.loc["Cranford", "comparable"]
    assert rate.loc["Cranford", "not_comparable_reason"].startswith("categories: 01,02, others *")
    assert "definition:" in rate.loc["Cranford", "not_comparable_reason"]
    # Aberdale 28–32 and Bexmoor 37–43 do not overlap
    assert rate.loc["Aberdale", "distinct_from"] == "<b>Bexmoor</b>"
    assert rate.loc["<b>Bexmoor</b>", "distinct_from"] == "Aberdale"
    assert rate.loc["Cranford", "distinct_from"] == ""  # not comparable: not compared
    # the survey question differs: neither share is comparable (1 vs 1, no majority; the first city by
    # name is the reference the other is described against)
    share = table[table["indicator"] == "safe_share"].set_index("city")
    assert not share["comparable"].any()
    assert "question: safe_dark, others safe_night" in share.loc["Aberdale", "not_comparable_reason"]
    assert share.loc["<b>Bexmoor</b>", "not_comparable_reason"].startswith("no other city measures it the same way")
    # only Cranford reports homicide_rate
    hom = table[table["indicator"] == "homicide_rate"].iloc[0]
    assert not hom["comparable"] and hom["not_comparable_reason"] == "only one city reports this indicator"


def test_definition_hash_ignores_names_only():
    assert definition_hash(RATE_DEF) == definition_hash({**RATE_DEF, "name": "Other words", "theme": "Crime"})
    assert definition_hash(RATE_DEF) != definition_hash({**RATE_DEF, "per": 100000.0})


def test_cli_writes_escaped_page_and_csv(cards, tmp_path):
    out = tmp_path / "peer"
    result = CliRunner().invoke(main, ["compare", *map(str, cards), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "comparison.html").read_text(encoding="utf-8")
    assert "<b>Bexmoor</b>" not in html and "&lt;b&gt;Bexmoor&lt;/b&gt;" in html
    assert "<script" not in html and "http" not in html  # self-contained, nothing to fetch
    assert html.count('<svg class="chart"') == 1  # only incident_rate has comparable values
    csv = pd.read_csv(out / "comparison.csv")
    assert len(csv) == 6 and set(csv["city"]) == {"Aberdale", "<b>Bexmoor</b>", "Cranford"}


def test_rank_only_on_request(cards, tmp_path):
    table = compare_cards([load_card(p) for p in cards], rank=True)
    rate = table[(table["indicator"] == "incident_rate") & table["comparable"]]
    assert rate.set_index("city")["rank"].to_dict() == {"Aberdale": 1, "<b>Bexmoor</b>": 2}


def test_refusals(cards, tmp_path):
    internal = _write(tmp_path / "i", [_row("Dunmore", "incident_rate", 30.0, 28.0, 32.0)], {"incident_rate": RATE_DEF},
                      profile="internal")
    result = CliRunner().invoke(main, ["compare", str(cards[0]), str(internal), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "internal profile" in result.output
    result = CliRunner().invoke(main, ["compare", str(cards[0]), str(internal), "--profile", "internal", "--out", str(tmp_path / "y")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["compare", str(cards[0]), "--out", str(tmp_path / "z")])
    assert result.exit_code == 2 and "at least two" in result.output
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(main, ["compare", str(cards[0]), str(tmp_path / "bad.json"), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "not a report card" in result.output


def test_population_base_year_differs_and_unknown(tmp_path):
    """Rates on 2011 vs 2021 population counts are not comparable and the reason names both years;
    a card that does not say its base year is compared on the others' year and flagged."""
    defs = {"incident_rate": RATE_DEF}
    a = _write(tmp_path / "a", [_row("Aberdale", "incident_rate", 30.0, 28.0, 32.0, population_year="2021")], defs)
    b = _write(tmp_path / "b", [_row("Bexmoor", "incident_rate", 40.0, 37.0, 43.0, population_year="2021")], defs)
    c = _write(tmp_path / "c", [_row("Cranford", "incident_rate", 31.0, 29.5, 32.5, population_year="2011")], defs)
    d = _write(tmp_path / "d", [_row("Dunmore", "incident_rate", 33.0, 31.0, 35.0)], defs)  # no population_year
    rate = compare_cards([load_card(p) for p in (a, b, c, d)]).set_index("city")
    assert not rate.loc["Cranford", "comparable"]
    assert rate.loc["Cranford", "not_comparable_reason"] == "population base year 2011 vs 2021"
    assert rate.loc["Aberdale", "comparable"] and rate.loc["Bexmoor", "comparable"]
    # unknown: comparable with a flag, and only rates (and only unknown cards) carry it
    assert rate.loc["Dunmore", "comparable"] and rate.loc["Dunmore", "not_comparable_reason"] == ""
    assert rate.loc["Dunmore", "flags"] == "population_base_year_unknown"
    assert rate.loc["Aberdale", "flags"] == ""
    # a JSON number is the same year as a string
    e = _write(tmp_path / "e", [_row("Eastwick", "incident_rate", 30.0, 28.0, 32.0, population_year=2021)], defs)
    rate = compare_cards([load_card(p) for p in (a, e)]).set_index("city")
    assert rate["comparable"].all()


def test_shares_ignore_the_population_base_year(tmp_path):
    share = dict(source="survey", kind="share", unit="proportion of residents (0-1)", lower_is_better=False)
    a = _write(tmp_path / "a", [_row("Aberdale", "safe_share", 0.5, 0.45, 0.55, population_year="2021", **share)],
               {"safe_share": SHARE_DEF})
    b = _write(tmp_path / "b", [_row("Bexmoor", "safe_share", 0.52, 0.40, 0.64, **share)], {"safe_share": SHARE_DEF})
    table = compare_cards([load_card(a), load_card(b)]).set_index("city")
    assert table["comparable"].all() and (table["flags"] == "").all()
