"""A unit's time patterns in map.html's tooltip (hour × weekday grid, month-of-year bars), checked
cell by cell against time_patterns.csv, and suppressed in the public profile."""

from __future__ import annotations

import geopandas as gpd
import pytest
from click.testing import CliRunner

from test_maps_browser import expect, hover_at, inside
from usm_geo.cli import main
from usm_geo.io import read_table


@pytest.fixture(scope="module")
def patterns(demo_run):
    tp = read_table(demo_run / "time_patterns.csv")
    return tp[(tp.level == "neighbourhood") & (tp.category == "all")]


@pytest.fixture(scope="module")
def neighbourhoods(demo_run):
    return gpd.read_file(demo_run / "units.gpkg", layer="neighbourhood")


def _tooltip_cells(page):
    hw = page.evaluate("""() => [...document.querySelectorAll('.usm-tooltip svg.usm-tp-hw rect.usm-tp-cell')]
        .map(r => [+r.dataset.w, +r.dataset.h, r.dataset.n, r.getAttribute('fill')])""")
    moy = page.evaluate("""() => [...document.querySelectorAll('.usm-tooltip svg.usm-tp-moy rect.usm-tp-month')]
        .map(r => [+r.dataset.m, r.dataset.n])""")
    return hw, moy


def test_run_map_tooltip_draws_the_units_time_pattern(map_page, demo_run, patterns, neighbourhoods):
    page = map_page.open(demo_run / "map.html")
    hover_at(page, "main", *inside(neighbourhoods, "N02"))
    tip = page.locator(".leaflet-tooltip.usm-tooltip")
    expect(tip.locator("svg.usm-tp-hw")).to_have_count(1)
    hw, moy = _tooltip_cells(page)
    mine = patterns[patterns.unit_id == "N02"]
    truth = {(int(w), int(h)): int(c) for w, h, c in
             mine[mine.pattern == "hour_weekday"][["weekday", "hour", "count"]].itertuples(index=False)}
    assert len(hw) == 168 and {(w, h): int(n) for w, h, n, _ in hw} == truth
    months = {int(m): int(c) for m, c in mine[mine.pattern == "month_of_year"][["month", "count"]].itertuples(index=False)}
    assert len(moy) == 12 and {m: int(n) for m, n in moy} == months
    # the busiest cell takes the darkest colour
    top = max(truth, key=truth.get)
    assert [f for w, h, _, f in hw if (w, h) == top] == ["#bd0026"]
    expect(tip).to_contain_text(f"{sum(truth.values()):,} incidents with a time")
    map_page.clean()


def test_public_map_suppresses_small_time_cells(map_page, demo_run, patterns, neighbourhoods, tmp_path):
    out = tmp_path / "public"
    result = CliRunner().invoke(main, ["export", str(demo_run), "--out", str(out), "--format", "html"])
    assert result.exit_code == 0, result.output
    hw_all = patterns[patterns.pattern == "hour_weekday"]
    small = hw_all[(hw_all["count"] >= 1) & (hw_all["count"] <= 4)]
    unit = small["unit_id"].value_counts().index[0]  # the unit with the most small cells
    page = map_page.open(out / "map.html")
    hover_at(page, "main", *inside(neighbourhoods, unit))
    tip = page.locator(".leaflet-tooltip.usm-tooltip")
    expect(tip.locator("svg.usm-tp-hw")).to_have_count(1)
    hw, _ = _tooltip_cells(page)
    truth = {(int(w), int(h)): int(c) for w, h, c in
             hw_all[hw_all.unit_id == unit][["weekday", "hour", "count"]].itertuples(index=False)}
    shown = {(w, h): n for w, h, n, _ in hw}
    hidden = [k for k, n in shown.items() if n == "s"]
    assert hidden and all(shown[k] == "s" for k, c in truth.items() if 1 <= c <= 4)
    assert all(int(n) == truth[k] for k, n in shown.items() if n != "s")  # published cells are exact
    assert not any(n != "s" and 1 <= int(n) <= 4 for n in shown.values())
    expect(tip).to_contain_text("grey = suppressed")
    html = (out / "map.html").read_text()
    assert "incidents with a time" in html  # the text exists, but this tooltip must not show a total
    assert "incidents with a time" not in tip.inner_text()
    map_page.clean()
