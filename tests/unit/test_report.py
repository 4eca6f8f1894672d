"""usm_geo.report: report.html of the Demo City run, checked against the raw incidents (pandas), the
run's own tables, hand-rounded values and the disclosure rules. Browser and PDF checks are in
tests/browser/test_report_browser.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.disclosure import profile_time_patterns
from usm_geo.io import read_table
from usm_geo.indicators.report_card import round_public
from usm_geo.report import build_report
from usm_geo.report.figures import nice_length

CELL = re.compile(r'<td class="num n( usm-supp)?" data-weekday="(\d)" data-hour="(\d+)"[^>]*>([^<]*)</td>')
MONTH_CELL = re.compile(r'<td class="num n( usm-supp)?" data-month="(\d{4}-\d\d)"[^>]*>([^<]*)</td>')


@pytest.fixture(scope="module")
def run_dir(demo):
    return demo[0]


@pytest.fixture(scope="module")
def used_incidents(run_dir):
    """The Demo City's incidents as the test reads them: the input CSV minus the ledger's dropped records."""
    raw = pd.read_csv(run_dir / "inputs" / "incidents.csv", dtype=str)
    ledger = pd.read_csv(run_dir / "ledger.csv", dtype=str)
    dropped = set(ledger.loc[(ledger.source == "incidents") & (ledger.status == "dropped"), "record_id"])
    used = raw[~raw["incident_id"].isin(dropped)].copy()
    used["t"] = pd.to_datetime(used["occurred_at"], format="%Y-%m-%d %H:%M")
    return used


@pytest.fixture(scope="module")
def internal_html(run_dir):
    return build_report(run_dir, profile="internal")


def _cells(html):
    return {(int(w), int(h)): (bool(s), text) for s, w, h, text in CELL.findall(html)}


def test_time_tables_equal_a_pandas_groupby_of_the_incidents(internal_html, used_incidents):
    cells = _cells(internal_html)
    assert len(cells) == 168
    expected = used_incidents.groupby([used_incidents.t.dt.day_of_week, used_incidents.t.dt.hour]).size()
    for (w, h), (supp, text) in cells.items():
        assert not supp and int(text) == expected.get((w, h), 0), (w, h)
    grand = re.search(r'data-total="all">(\d+)<', internal_html).group(1)
    assert int(grand) == len(used_incidents) == 198_238
    for d in range(7):
        row = re.search(rf'data-total="weekday" data-weekday="{d}">(\d+)<', internal_html).group(1)
        assert int(row) == int((used_incidents.t.dt.day_of_week == d).sum())
    months = used_incidents.groupby(used_incidents.t.dt.strftime("%Y-%m")).size()
    got = {m: int(text.replace(",", "")) for _, m, text in MONTH_CELL.findall(internal_html)}
    assert len(got) == 60 and got == months.to_dict()
    for y in range(2019, 2024):
        total = re.search(rf'data-total="year" data-year="{y}">([\d,]+)<', internal_html).group(1)
        assert int(total.replace(",", "")) == int((used_incidents.t.dt.year == y).sum())


def test_every_section_and_figure(internal_html, run_dir):
    for key in ("card", "maps", "hotspots", "impact", "time", "quality", "methods"):
        assert internal_html.count(f'data-section="{key}"') == 1
    # one choropleth per level but the city (H3 cells as PNG, polygons as SVG), plus the Gi* map
    assert internal_html.count('<figure class="usm-map">') == 4
    assert internal_html.count("data:image/png;base64,") == 1
    # scale bar of each SVG map (the H3 PNG has its own in the pixels): the Demo City is ~30 km
    # across, so a fifth of it rounds down to 5 km; and a north arrow
    assert internal_html.count(">5 km<") == 3 and internal_html.count(">N<") == 3
    # the page loads nothing: no script, no external reference
    assert "<script" not in internal_html and not re.search(r'(src|href)="(?!data:|#)', internal_html)
    # the internal impact table holds impact.json's counts
    imp = json.loads((run_dir / "impact.json").read_text())
    for area in ("treated", "buffer", "control"):
        assert f"{imp['counts'][area]['after']:,}" in internal_html


def test_ledger_section_matches_the_ledger(internal_html, run_dir):
    ledger = pd.read_csv(run_dir / "ledger.csv", dtype=str)
    by = ledger.groupby(["source", "status", "reason"]).size()
    for (source, status, reason), n in by.items():
        row = f"<tr><td>{source}</td><td>{status}</td><td>{reason.replace('_', ' ')}</td><td class='num'>{n}</td></tr>"
        assert row in internal_html


def test_public_report_shows_no_small_count(run_dir):
    """With k = 1000 many city cells fall below k: each must show '–', never its number, and the
    margins that would give them back are left out."""
    k = 1000
    html = build_report(run_dir, profile="public", k=k)
    raw = read_table(run_dir / "time_patterns.csv")
    city = raw[(raw.level == "city") & (raw.category == "all") & (raw.pattern == "hour_weekday")]
    truth = {(int(w), int(h)): int(c) for w, h, c in zip(city.weekday, city.hour, city["count"])}
    cells = _cells(html)
    small = [key for key, c in truth.items() if 1 <= c < k]
    assert len(small) > 20  # the test bites
    for key in small:
        assert cells[key] == (True, "–"), key
    # no published count cell anywhere in the report holds 1 … k−1
    for text in re.findall(r'<td class="num n"[^>]*>([^<]*)</td>', html):
        assert not 1 <= int(text.replace(",", "")) < k
    assert 'data-total="all"' not in html and 'data-total="weekday"' not in html
    # intervention counts withheld
    imp = json.loads((run_dir / "impact.json").read_text())
    assert f"{imp['counts']['treated']['after']:,}" not in html and "counts withheld" in html


def test_public_time_patterns_hide_small_counts_and_cannot_be_differenced(run_dir):
    raw = read_table(run_dir / "time_patterns.csv")
    out, report = profile_time_patterns(raw, read_table(run_dir / "crosswalk.csv"), profile="public", k=5)
    raw_all = raw[raw.category == "all"].reset_index(drop=True)
    assert (out.category == "all").all() and len(out) == len(raw_all)  # categories are not published
    shown, supp = out["count"], out["suppressed"].to_numpy()
    assert supp.sum() > 1000
    assert not ((shown >= 1) & (shown <= 4)).any()
    assert (raw_all["count"][~supp].to_numpy() == shown[~supp].to_numpy()).all()  # published cells exact
    def text(col):
        return out[col].astype(object).where(out[col].notna(), "").astype(str)

    o = out.assign(group=np.where(out.pattern == "month", text("month").str[:4], out.pattern),
                   cell=text("weekday") + "|" + text("hour") + "|" + text("month"))
    body = o[o.pattern != "month_of_year"]
    # along the time axis (the margin, a unit's total per year or of timed records, is known from the
    # published yearly counts): never exactly one suppressed cell in a unit's day grid or year
    per_group = body.groupby(["level", "unit_id", "group"])["suppressed"].sum()
    assert per_group.max() > 1 and not (per_group == 1).any()
    # across units (they add up to the city in every cell): never exactly one suppressed unit
    per_cell = body[body.level != "city"].groupby(["group", "cell"])["suppressed"].sum()
    city = body[body.level == "city"].set_index(["group", "cell"])["suppressed"].reindex(per_cell.index)
    assert not ((per_cell == 1) & ~city.to_numpy()).any()
    # month of year, a sum across years: withheld for every unit, the city's published when whole
    moy = o[o.pattern == "month_of_year"]
    assert moy[moy.level != "city"]["suppressed"].all()
    city_moy = moy[moy.level == "city"]
    assert (~city_moy["suppressed"]).all()
    assert city_moy["count"].sum() == raw_all[(raw_all.level == "city") & (raw_all.pattern == "month")]["count"].sum()


def test_public_card_is_rounded():
    card = pd.DataFrame({"indicator": ["a", "b"], "value": [33.039105329550644, 0.11977550654132532],
                         "lower": [32.71167127580541, 0.10588209687722172], "upper": [38920.4, np.nan],
                         "baseline_value": [4.159599591849902, 0.0], "target_value": [4.568343919089846, np.nan],
                         "change": [-0.024463605373972297, np.nan], "change_lower": [-0.03801586620403907, np.nan],
                         "change_upper": [-0.010721016014265894, np.nan], "trend_per_year": [-0.007816132091185077, np.nan]})
    r = round_public(card)
    assert r["value"].tolist() == [33.04, 0.1198]
    assert r["lower"].tolist() == [32.71, 0.1059]
    assert r["upper"][0] == 38920.0 and np.isnan(r["upper"][1])
    assert r["baseline_value"].tolist() == [4.16, 0.0] and r["target_value"][0] == 4.568
    assert r["change"][0] == -0.024 and r["change_lower"][0] == -0.038 and r["change_upper"][0] == -0.011
    assert r["trend_per_year"][0] == -0.008


def test_public_export_card_files_are_rounded(run_dir, tmp_path):
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(tmp_path / "pub"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    pub = pd.read_csv(tmp_path / "pub" / "report_card.csv").set_index("indicator")
    internal = pd.read_csv(run_dir / "report_card.csv").set_index("indicator")
    for col in ("value", "lower", "upper", "baseline_value"):
        for ind in internal.index:
            a, b = internal.at[ind, col], pub.at[ind, col]
            if pd.isna(a):
                continue
            assert b == float(f"{a:.4g}")  # 4 significant digits
            assert len(re.sub(r"[-.]|e.*$", "", f"{b:.15g}").strip("0")) <= 4
    recs = json.loads((tmp_path / "pub" / "report_card.json").read_text())
    assert {r["indicator"]: r["value"] for r in recs} == pub["value"].to_dict()


def test_nice_scale_bar_lengths():
    assert nice_length(30_000) == 5000  # 6 km → 5 km
    assert nice_length(12_000) == 2000  # 2.4 km → 2 km
    assert nice_length(4_000) == 500  # 800 m → 500 m
    assert nice_length(1_000) == 200


def test_strings_are_escaped(run_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for f in run_dir.iterdir():
        if f.is_file() and f.name != "run.json":
            (folder / f.name).symlink_to(f)
    info = json.loads((run_dir / "run.json").read_text())
    info["study"]["name"] = "<img src=x onerror=alert(1)>`${alert(2)}`"
    (folder / "run.json").write_text(json.dumps(info))
    html = build_report(folder, profile="internal")
    assert "<img src=x" not in html and "${alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&#96;&#36;{alert(2)}&#96;" in html


def test_cli_report_and_missing_chromium(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(out), "--profile", "internal"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == build_report(run_dir, profile="internal").encode()  # same inputs, same bytes
    import usm_geo.report.pdf as pdf

    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(tmp_path / "p.html"), "--pdf"])
    assert result.exit_code == 2
    assert "no Chromium was found" in result.output and "apt-get install chromium" in result.output
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(tmp_path / "p.pdf")])
    assert result.exit_code == 2 and "HTML file" in result.output


def test_run_writes_and_lists_the_report(run_dir):
    info = json.loads((run_dir / "run.json").read_text())
    assert "report.html" in info["outputs"]["files"]
    html = (run_dir / "report.html").read_text()
    assert "internal profile" in html  # the run's own profile (the Demo City's is internal)
