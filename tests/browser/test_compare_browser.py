"""comparison.html (usm-geo compare) opened in headless Chromium with every network request blocked."""

from __future__ import annotations

import json

from click.testing import CliRunner

from usm_geo.cli import main


def test_comparison_page_offline(map_page, demo_run, tmp_path):
    public = tmp_path / "public"
    assert CliRunner().invoke(main, ["export", str(demo_run), "--out", str(public)]).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    for name in ("metadata.json", "run.json"):
        (other / name).write_bytes((public / name).read_bytes())
    card = json.loads((public / "report_card.json").read_text(encoding="utf-8"))
    for row in card:
        row["city"] = "Other <City>"
    (other / "report_card.json").write_text(json.dumps(card), encoding="utf-8")
    out = tmp_path / "peer"
    result = CliRunner().invoke(main, ["compare", str(public), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = map_page.page
    page.goto((out / "comparison.html").resolve().as_uri())
    page.wait_for_load_state("load")
    comparable = {r["indicator"] for r in card if r["value"] is not None}
    assert page.locator("svg.chart").count() == len(comparable)
    assert page.locator("svg.chart circle").count() == 2 * len(comparable)  # a dot per city
    assert page.locator("h2").count() == len({r["indicator"] for r in card})
    assert "Other <City>" in page.locator("body").inner_text()  # shown as text, not markup
    map_page.clean()
    assert map_page.requested == []
