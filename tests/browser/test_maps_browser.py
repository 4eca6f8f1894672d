"""Generated maps in headless Chromium: drawn per layer, tooltips, layer switch, legend, no console
errors, no network beyond the pinned assets, and no XSS payload ever runs (a dialog listener)."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner

from shared_data import REPO, chicago_rate_run
from usm_geo.cli import main
from usm_geo.maps import build_before_after, build_map
from usm_geo.maps.synthetic import XSS_PAYLOADS, grid_inputs, payload_inputs

LEVELS = {"h3_9": "H3 cells (resolution 9)", "neighbourhood": "Neighbourhood", "district": "District", "city": "City"}


def expect(target):
    from playwright.sync_api import expect as _expect

    return _expect(target)


def hover_at(page, map_key: str, lat: float, lon: float) -> None:
    """Move the real mouse to a lat/lon on one of the page's maps."""
    x, y = page.evaluate("""([k, lat, lon]) => {
        const m = usmGeo.maps[k], p = m.latLngToContainerPoint([lat, lon]), r = m.getContainer().getBoundingClientRect();
        return [p.x + r.left, p.y + r.top];
    }""", [map_key, lat, lon])
    # a second small move, as a hand makes: the first event may reach a page still drawing a layer
    page.mouse.move(x + 1, y)
    page.wait_for_timeout(30)
    page.mouse.move(x, y)


def inside(layer: gpd.GeoDataFrame, unit_id: str) -> tuple[float, float]:
    g = layer.to_crs(4326).set_index("unit_id").geometry[unit_id].representative_point()
    return g.y, g.x


def show_only(page, key: str) -> None:
    page.evaluate("""k => {
        const m = usmGeo.mapOf[k];
        Object.keys(usmGeo.layers).forEach(o => { if (usmGeo.mapOf[o] === m && o !== k) m.removeLayer(usmGeo.layers[o]); });
        m.addLayer(usmGeo.layers[k]);
    }""", key)


def fmt(x: float) -> str:
    """A value as the map shows it: 4 significant digits, whole numbers with separators from 1,000."""
    return f"{round(x):,}" if abs(x) >= 1000 else repr(float(f"{x:.4g}")).removesuffix(".0")


# ------------------------------------------------------------------------------------ Demo City

@pytest.fixture(scope="session")
def demo_map(demo_run):
    """The map every run writes (``map.html`` of the run folder)."""
    return demo_run / "map.html"


@pytest.fixture(scope="session")
def demo_units(demo_run):
    return {lv: gpd.read_file(demo_run / "units.gpkg", layer=lv) for lv in LEVELS}


@pytest.fixture(scope="session")
def demo_values(demo_run):
    wide = pd.read_csv(demo_run / "indicators.csv", dtype={"unit_id": str, "period": str}, low_memory=False)
    return wide[wide.period == "2023"].set_index(["level", "unit_id"])


def test_demo_map_draws_every_level_and_switches_layers(map_page, demo_map, demo_units, tmp_path):
    page = map_page.open(demo_map)
    # on opening: neighbourhoods only, one SVG path per unit
    expect(page.locator("path.usm-level-neighbourhood")).to_have_count(60)
    assert map_page.drawn("level:neighbourhood") == len(demo_units["neighbourhood"]) == 60
    for level in ("h3_9", "district", "city"):
        assert map_page.drawn(f"level:{level}") == 0
    # each level drawn in full when ticked (H3: 6,753 cells on one canvas: the clipped cover, edge cells included), gone when unticked
    for level, label in LEVELS.items():
        box = page.get_by_label(label, exact=True)
        box.check()
        assert map_page.drawn(f"level:{level}") == len(demo_units[level]), level
        if level == "h3_9":  # one canvas, no SVG paths
            expect(page.locator("canvas")).to_have_count(1)
            expect(page.locator("path.usm-level-h3_9")).to_have_count(0)
        else:
            expect(page.locator(f"path.usm-level-{level}")).to_have_count(len(demo_units[level]))
        box.uncheck()
        assert map_page.drawn(f"level:{level}") == 0
        expect(page.locator(f"path.usm-level-{level}")).to_have_count(0)
    assert len(demo_units["h3_9"]) == 6753
    page.screenshot(path=str(tmp_path / "demo.png"))
    map_page.clean()
    assert map_page.requested == []  # self-contained: Leaflet is in the page, no basemap by default
    assert map_page.tiles == []


def test_demo_tooltips_show_name_value_interval_n(map_page, demo_map, demo_units, demo_values):
    page = map_page.open(demo_map)
    tip = page.locator(".leaflet-tooltip.usm-tooltip")
    row = demo_values.loc[("neighbourhood", "N02")]
    hover_at(page, "main", *inside(demo_units["neighbourhood"], "N02"))
    expect(tip).to_contain_text("Großer Anger")
    expect(tip).to_contain_text(f"Recorded incidents per 1,000 residents, 2023: {fmt(row.incident_rate)}")
    expect(tip).to_contain_text(f"95 % interval: {fmt(row.incident_rate_lower)} – {fmt(row.incident_rate_upper)}")
    expect(tip).to_contain_text(f"incidents (n): {int(row.incident_rate_n):,}")
    # an H3 cell on the canvas layer: hit-tested by the page, same tooltip
    page.get_by_label("Neighbourhood", exact=True).uncheck()
    page.get_by_label(LEVELS["h3_9"], exact=True).check()
    cells = demo_values.loc["h3_9"]
    cell = cells[cells.incident_rate_n >= 10].index[0]
    hover_at(page, "main", *inside(demo_units["h3_9"], cell))
    expect(tip).to_contain_text(cell)
    expect(tip).to_contain_text(f": {fmt(cells.loc[cell, 'incident_rate'])}")
    small = cells[(cells.incident_rate_n > 0) & (cells.incident_rate_n < 10)].index[0]
    hover_at(page, "main", *inside(demo_units["h3_9"], small))
    expect(tip).to_contain_text(small)
    expect(tip).to_contain_text("small numbers: treat with caution")
    map_page.clean()


def test_public_map_tooltip_says_suppressed(map_page, demo_run, demo_units, tmp_path):
    """`usm-geo map RUN --profile public`: a neighbourhood with 1-4 homicides shows no value and no n."""
    out = tmp_path / "public.html"
    result = CliRunner().invoke(main, ["map", str(demo_run), "--profile", "public", "--indicator", "homicide_rate",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    m = pd.read_csv(demo_run / "measures.csv", dtype={"unit_id": str, "period": str}, low_memory=False)
    n = m[(m.level == "neighbourhood") & (m.period == "2023") & (m.measure == "homicide_rate")
          & (m.category == "all")].set_index("unit_id")["n"]
    small = n[(n > 0) & (n < 5)].index[0]
    page = map_page.open(out)
    hover_at(page, "main", *inside(demo_units["neighbourhood"], small))
    tip = page.locator(".leaflet-tooltip.usm-tooltip")
    expect(tip).to_contain_text("Victims of intentional homicide per 100,000 residents (police records), 2023: no value")
    expect(tip).to_contain_text("suppressed")
    expect(tip).not_to_contain_text("incidents (n): ")
    map_page.clean()


def test_demo_legend_follows_the_layers(map_page, demo_map):
    page = map_page.open(demo_map)
    blocks = page.locator(".usm-legend-block:visible")
    expect(blocks).to_have_count(1)
    expect(blocks.first).to_contain_text("Recorded incidents per 1,000 residents")
    expect(blocks.first).to_contain_text("per 1,000 residents · 2023 · Neighbourhood")
    expect(blocks.first).to_contain_text("Quantiles, 5 classes, from every period of this level (2019–2023)")
    expect(blocks.first.locator(".usm-swatch")).to_have_count(6)  # 5 classes + no value
    page.get_by_label("District", exact=True).check()
    expect(blocks).to_have_count(2)
    page.get_by_label("Neighbourhood", exact=True).uncheck()
    page.get_by_label("District", exact=True).uncheck()
    expect(page.locator(".usm-legend")).to_be_hidden()
    expect(page.locator(".usm-title")).to_contain_text("Demo City")
    map_page.clean()


def test_legend_folds_away(map_page, demo_run, tmp_path):
    """The legend's button folds it to one line (so it need not cover the study area) and back, on one
    map and on each pane of the before/after view; the class labels share one precision."""
    import re

    for out, n in ((build_map(demo_run, tmp_path / "m.html"), 1), (build_before_after(demo_run, tmp_path / "ba.html"), 2)):
        page = map_page.open(out)
        toggles = page.locator(".usm-legend-toggle:visible")
        expect(toggles).to_have_count(n)
        for i in range(n):
            legend = page.locator(".usm-legend").nth(i)
            block = legend.locator(".usm-legend-block:visible")
            shown = block.count()
            assert shown >= 1
            labels = block.first.locator(".usm-legend-row span").all_inner_texts()
            decimals = {len(x.split(".")[1]) if "." in x else 0 for t in labels for x in re.findall(r"\d[\d,]*(?:\.\d+)?", t)}
            assert len(decimals) == 1, labels
            full = legend.bounding_box()
            toggles.nth(i).click()
            expect(block).to_have_count(0)
            expect(toggles.nth(i)).to_have_attribute("aria-expanded", "false")
            small = legend.bounding_box()
            assert small["height"] < full["height"] / 3 and small["width"] <= full["width"]
            toggles.nth(i).click()
            expect(legend.locator(".usm-legend-block:visible")).to_have_count(shown)
        map_page.clean()


def test_demo_gistar_kde_and_impact_layers(map_page, demo_map, demo_run):
    page = map_page.open(demo_map)
    hot = gpd.read_file(demo_run / "hotspots.gpkg", layer="neighbourhood").set_index("unit_id")
    page.get_by_label("Gi* hot spots: Neighbourhood, 2023", exact=True).check()
    expect(page.locator("path.usm-gistar-neighbourhood")).to_have_count(60)
    labels = {3: "Hot spot, 99 % confidence", 2: "Hot spot, 95 % confidence", 0: "Not significant",
              -2: "Cold spot, 95 % confidence", -3: "Cold spot, 99 % confidence"}
    index = list(gpd.read_file(demo_run / "units.gpkg", layer="neighbourhood").unit_id).index("N02")
    text = page.evaluate("usmGeo.openTip('gistar:neighbourhood', %d)" % index)
    assert labels[int(hot.loc["N02", "gistar_bin"])] in text and f"incidents: {int(hot.loc['N02', 'count']):,}" in text
    page.get_by_label("Gi* hot spots: H3 cells (resolution 9), 2023", exact=True).check()
    assert map_page.drawn("gistar:h3_9") == 6753
    page.get_by_label("Incident density (KDE)", exact=True).check()
    img = page.locator("img.usm-image")
    expect(img).to_have_count(1)
    assert page.evaluate("() => { const i = document.querySelector('img.usm-image'); return i.complete && i.naturalWidth > 0; }")
    page.get_by_label("Intervention areas", exact=True).check()
    expect(page.locator("path.usm-impact")).to_have_count(3)
    impact = json.loads((demo_run / "impact.json").read_text(encoding="utf-8"))
    text = page.evaluate("usmGeo.openTip('impact', 0)")
    assert "Treated area" in text and f"incidents before: {impact['counts']['treated']['before']:,}" in text
    expect(page.locator(".usm-legend-block:visible")).to_have_count(5)
    map_page.clean()


def test_demo_map_offline_makes_no_request(map_page, demo_run, tmp_path):
    out = build_map(demo_run, tmp_path / "offline.html")
    page = map_page.open(out)
    expect(page.locator("path.usm-level-neighbourhood")).to_have_count(60)
    assert map_page.requested == []  # Leaflet and its images are in the page
    map_page.clean()


def test_basemap_unavailable_offline_still_draws(map_page, tmp_path):
    """With --tiles osm and the network blocked (every tile request aborted), a note says so and the
    polygons still draw."""
    import re

    blocked = []
    map_page.page.route(re.compile(r"^https?://"), lambda route: (blocked.append(route.request.url), route.abort()))
    page = map_page.open(build_map(grid_inputs(), tmp_path / "osm_offline.html", tiles="osm"))
    expect(page.locator("path.usm-level-area")).to_have_count(50)
    expect(page.locator(".usm-basemap-note")).to_have_text("basemap unavailable (offline)")
    assert blocked and all("tile.openstreetmap.org" in u for u in blocked)  # tiles were the only requests
    map_page.errors[:] = [e for e in map_page.errors if "Failed to load resource" not in e]  # the blocked tiles
    map_page.clean()


def test_osm_tiles_when_asked(map_page, tmp_path):
    page = map_page.open(build_map(grid_inputs(), tmp_path / "osm.html", tiles="osm"))
    expect(page.locator("path.usm-level-area")).to_have_count(50)
    page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    assert map_page.tiles and all("tile.openstreetmap.org" in t for t in map_page.tiles)
    expect(page.locator(".leaflet-control-attribution")).to_contain_text("OpenStreetMap")
    map_page.clean()


def test_before_after_side_by_side_in_step(map_page, demo_run, demo_units, tmp_path):
    out = build_before_after(demo_run, tmp_path / "before_after.html")
    page = map_page.open(out)
    assert map_page.drawn("before/level:neighbourhood") == map_page.drawn("after/level:neighbourhood") == 60
    expect(page.locator(".usm-title").first).to_contain_text("Before: 2019")
    expect(page.locator(".usm-title").nth(1)).to_contain_text("After: 2023")
    assert map_page.drawn("before/impact") == map_page.drawn("after/impact") == 3
    wide = pd.read_csv(demo_run / "indicators.csv", dtype={"unit_id": str, "period": str}, low_memory=False)
    n02 = wide[(wide.level == "neighbourhood") & (wide.unit_id == "N02")].set_index("period").incident_rate
    index = list(demo_units["neighbourhood"].unit_id).index("N02")
    assert f": {fmt(n02['2019'])}" in page.evaluate("usmGeo.openTip('before/level:neighbourhood', %d)" % index)
    assert f": {fmt(n02['2023'])}" in page.evaluate("usmGeo.openTip('after/level:neighbourhood', %d)" % index)
    # panning or zooming one map moves the other; a layer switched on one side switches on both
    page.evaluate("usmGeo.maps.before.setView([52.36, 13.6], 13, {animate: false})")
    centre = page.evaluate("(() => { const c = usmGeo.maps.after.getCenter(); return [c.lat, c.lng, usmGeo.maps.after.getZoom()]; })()")
    assert centre[2] == 13 and abs(centre[0] - 52.36) < 1e-3 and abs(centre[1] - 13.6) < 1e-3
    page.get_by_label("District", exact=True).first.check()
    assert map_page.drawn("after/level:district") > 0 and map_page.drawn("before/level:district") > 0
    page.get_by_label("Neighbourhood", exact=True).nth(1).uncheck()
    assert map_page.drawn("before/level:neighbourhood") == 0
    map_page.clean()
    assert map_page.requested == []  # kept in step by the page's own script


# ------------------------------------------------------------------------------------ XSS canary

def test_canary_detects_folium_default_tooltip(map_page, tmp_path):
    """Positive control: folium's own GeoJsonTooltip runs a raw name on hover, and the listener sees it."""
    import folium

    m = folium.Map(location=[52.3, 13.5], zoom_start=12, tiles=None)
    square = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": XSS_PAYLOADS[0]},
              "geometry": {"type": "Polygon", "coordinates": [[[13.45, 52.28], [13.55, 52.28], [13.55, 52.32],
                                                                [13.45, 52.32], [13.45, 52.28]]]}}]}
    folium.GeoJson(square, tooltip=folium.GeoJsonTooltip(["name"])).add_to(m)
    m.save(str(tmp_path / "raw.html"))
    page = map_page.page
    page.goto((tmp_path / "raw.html").as_uri())
    page.locator("path.leaflet-interactive").first.hover()
    page.wait_for_timeout(200)
    assert ("alert", "1") in map_page.dialogs


def _hover_everything(page, mouse: bool = True) -> list[str]:
    """Show each layer alone; hover and click every feature with the mouse (``mouse``); open every
    feature's tooltip from the page (also those under another feature). Returns the tooltip texts."""
    texts = []
    for key in page.evaluate("Object.keys(usmGeo.layers)"):
        if page.evaluate("k => !usmGeo.layers[k].eachLayer && !usmGeo.layers[k].isBig", key):
            continue  # the KDE image has no tooltip
        show_only(page, key)
        if mouse:
            points = page.evaluate("k => Array.from({length: usmGeo.count(k)}, (_, i) => usmGeo.pointIn(k, i))", key)
            for x, y in points:
                page.mouse.move(x, y)
                page.mouse.click(x, y)
        texts += page.evaluate("k => Array.from({length: usmGeo.count(k)}, (_, i) => usmGeo.openTip(k, i))", key)
    return texts


@pytest.mark.parametrize("payload", XSS_PAYLOADS, ids=[f"payload{i}" for i in range(len(XSS_PAYLOADS))])
def test_xss_canary(map_page, browser, payload, tmp_path):
    assert len(XSS_PAYLOADS) >= 10
    inputs = payload_inputs(payload)
    page = map_page.open(build_map(inputs, tmp_path / "rate.html"))
    # the literal text is shown: title, layer names, legend (categories), tooltips (names, ids, flags, areas)
    assert f"Study {payload}" in page.locator(".usm-title").first.text_content()
    assert f"Lvl {payload}" in page.locator(".leaflet-control-layers").text_content()
    page.get_by_label("Intervention areas").check()
    legend = page.locator(".usm-legend").text_content()
    assert f"Rate {payload}" in legend and f"cat {payload}" in legend and f"Study {payload} pilot" in legend
    texts = _hover_everything(page)
    joined = "\n".join(texts)
    flag = f"flag {payload}".split(";")[0]  # flags are ";"-separated: a ";" in one splits it
    for literal in (f"Area 3 {payload}", f"id3{payload}", flag, f"area {payload}", f"2023 {payload}"):
        assert literal in joined, literal
    page.wait_for_timeout(150)  # an <img onerror> fires after its load fails
    map_page.clean()  # no dialog, no console error, no unexpected request

    # survey labels in a share indicator's legend; and the side-by-side page
    share = map_page.open(build_map(inputs, tmp_path / "share.html", indicator="safe_share"))
    legend = share.locator(".usm-legend").text_content()
    assert f"safe {payload}" in legend and f"q {payload}" in legend
    _hover_everything(share, mouse=False)
    both = map_page.open(build_before_after(inputs, tmp_path / "ba.html"))
    assert f"Study {payload}" in both.locator(".usm-title").nth(1).text_content()
    _hover_everything(both, mouse=False)
    both.wait_for_timeout(150)
    map_page.clean()


# ------------------------------------------------------------------------------------ Chicago

@pytest.fixture(scope="module")
def chicago_run(tmp_path_factory):
    return chicago_rate_run(tmp_path_factory.mktemp("chicago-map"), 2018, h3_resolution=8)


@pytest.mark.realdata
def test_chicago_map(map_page, chicago_run, tmp_path):
    page = map_page.open(build_map(chicago_run, tmp_path / "chicago.html"))
    areas = gpd.read_file(chicago_run / "units.gpkg", layer="community_area")
    assert len(areas) == 77
    expect(page.locator("path.usm-level-community_area")).to_have_count(77)
    assert map_page.drawn("level:community_area") == 77
    wide = pd.read_csv(chicago_run / "indicators.csv", dtype={"unit_id": str, "period": str})
    loop = wide[(wide.level == "community_area") & (wide.unit_id == "32") & (wide.period == "2019")].iloc[0]
    hover_at(page, "main", *inside(areas, "32"))
    tip = page.locator(".leaflet-tooltip.usm-tooltip")
    expect(tip).to_contain_text("LOOP")
    expect(tip).to_contain_text(f"Recorded incidents per 1,000 residents, 2019: {fmt(loop.incident_rate)}")
    page.get_by_label("Community area", exact=True).uncheck()
    expect(page.locator("path.usm-level-community_area")).to_have_count(0)
    # the community areas' population is spread over the H3 cells by area (no raster in this study),
    # so the cells have a rate layer too, and their Gi* layer is there
    run = json.loads((chicago_run / "run.json").read_text(encoding="utf-8"))
    assert run["population_method"]["h3_8"] == "disaggregated_area"
    expect(page.get_by_label("H3 cells (resolution 8)", exact=True)).to_have_count(1)
    page.get_by_label("Gi* hot spots: H3 cells (resolution 8), 2019", exact=True).check()
    hot = gpd.read_file(chicago_run / "hotspots.gpkg", layer="h3_8")
    assert map_page.drawn("gistar:h3_8") == len(hot) > 0
    expect(page.locator(".usm-legend-block:visible")).to_contain_text("H3 cells (resolution 8) · 2019")
    map_page.clean()


SCREENSHOT = REPO / "docs" / "images" / "demo_map.png"


def test_readme_screenshot_of_the_demo_map(map_page, demo_map, tmp_path):
    """The README's picture is this test's screenshot of the Demo City map as it opens (the incident
    rate per neighbourhood). USM_GEO_WRITE_SCREENSHOT=1 writes it to docs/images/demo_map.png; every run
    checks that the page draws a picture of the same size with the map's colours in it."""
    import os
    import struct

    page = map_page.open(demo_map)
    page.mouse.move(5, 795)
    shot = page.screenshot(path=str(tmp_path / "shot.png"))
    map_page.clean()

    def size(png: bytes) -> tuple[int, int]:
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        return struct.unpack(">II", png[16:24])

    assert size(shot) == (1200, 800)
    # a blank or unstyled page compresses to a few kB; 60 polygons in 6 colours, the legend and the
    # layer control do not
    assert len(shot) > 40_000, f"the screenshot looks blank ({len(shot):,} bytes)"
    if os.environ.get("USM_GEO_WRITE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(shot)
    assert SCREENSHOT.is_file(), "run the browser tests with USM_GEO_WRITE_SCREENSHOT=1 once"
    assert size(SCREENSHOT.read_bytes()) == (1200, 800)
