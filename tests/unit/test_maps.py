"""usm_geo.maps without a browser: escaping, classes (against mapclassify), size, determinism,
offline assets. The browser checks (drawing, tooltips, XSS dialogs) are in tests/browser."""

from __future__ import annotations

import json
import re
import struct
import zlib

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from shared_data import IN_CI, REPO
from usm_geo.errors import UsmGeoError
from usm_geo.maps import MapInputs, build_before_after, build_map, esc, plain_text, script_json
from usm_geo.maps import build as mbuild
from usm_geo.maps import classify
from usm_geo.maps.assets import inline_assets
from usm_geo.maps.synthetic import XSS_PAYLOADS as PAYLOADS
from usm_geo.maps.synthetic import grid_inputs, payload_inputs

DATA_RE = re.compile(r'<script type="application/json" id="(usm-d\d+)">(.*?)</script>', re.S)

def data_blocks(html: str) -> dict:
    return {i: json.loads(text) for i, text in DATA_RE.findall(html)}


# ------------------------------------------------------------------------------------ escaping

@pytest.mark.parametrize("payload", PAYLOADS)
def test_esc_leaves_no_markup_or_template_syntax(payload):
    out = esc(payload)
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert "`" not in out and "${" not in out
    import html

    assert html.unescape(out) == payload  # the browser shows the literal text


def test_plain_text_refuses_template_literal_syntax():
    assert plain_text("Mitte & Süd") == "Mitte &amp; Süd"
    for bad in ("a`b", "x ${alert(1)} y"):
        with pytest.raises(UsmGeoError, match="backtick"):
            plain_text(bad)


def test_script_json_cannot_close_the_script_element():
    text = script_json({"a": "</script><script>alert(1)</script>", "b": "\u2028", "c": float("nan")})
    assert "</" not in text and "<" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><script>alert(1)</script>", "b": "\u2028", "c": None}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_user_string_reaches_the_page_unescaped(payload):
    inputs = payload_inputs(payload)
    for html in (build_map(inputs), build_map(inputs, indicator="safe_share"), build_before_after(inputs)):
        if esc(payload) != payload:  # text with markup or template syntax never appears as it is
            assert payload not in html
        assert esc(f"Study {payload}") in html  # the title, as text
        # data only in JSON blocks, which cannot close their script element; every string in them
        # is HTML-escaped already
        for text in DATA_RE.findall(html):
            assert "<" not in text[1] and ">" not in text[1] and "\u2028" not in text[1].replace("\\u2028", "")
        for block in data_blocks(html).values():
            if esc(payload) != payload:
                assert payload not in json.dumps(block, ensure_ascii=False)
        # the page's own scripts hold no piece of the data
        scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
        assert scripts and all("alert(" not in s and "Study" not in s for s in scripts)


def test_text_is_never_parsed_as_a_template():
    html = build_map(payload_inputs("{{ 7*7 }}{% if 1 %}jinja{% endif %}"))
    assert "{{ 7*7 }}{% if 1 %}jinja{% endif %}" in html  # shown as text, not evaluated
    assert "49jinja" not in html


def test_layer_names_and_level_classes_are_safe():
    html = build_map(payload_inputs("<b onmouseover=alert(1)>"))
    control = [b for b in data_blocks(html).values() if "layers" in b][0]["layers"]
    assert any("&lt;b onmouseover=alert(1)&gt;" in name for _, name in control)
    classes = re.findall(r'"className":"([^"]*)"', html)
    assert classes and all(re.fullmatch(r"[a-z0-9 _-]+", c) for c in classes)


# ------------------------------------------------------------------------------------ classes

@pytest.fixture(scope="module")
def mapclassify():
    return pytest.importorskip("mapclassify")  # the reference (its import compiles numba code: slow)


@pytest.mark.slow
def test_quantiles_are_mapclassify_quantiles(mapclassify):
    import warnings

    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in (1, 2, 7, 57, 501, 20_000):
            for decimals in (0, 1, 6):
                y = np.round(rng.gamma(2, 50, n), decimals)
                for k in range(2, 10):
                    assert np.array_equal(classify.quantile_bins(y, k), mapclassify.Quantiles(y, k=k).bins)


@pytest.mark.slow
def test_fisher_jenks_is_mapclassify_fisher_jenks(mapclassify):
    rng = np.random.default_rng(4)
    for n in (12, 80, 400):
        y = np.round(rng.lognormal(3, 1, n), 2)
        for k in (3, 5, 7):
            assert np.array_equal(classify.fisher_jenks_bins(y, k), mapclassify.FisherJenks(y, k=k).bins)


def test_user_breaks_and_assignment_follow_mapclassify_rules():
    b = classify.breaks([1, 5, 10, 50], "user", user_breaks=[5, 10])
    assert list(b) == [5, 10, 50]  # the maximum is appended, as mapclassify.UserDefined does
    assert list(classify.assign([1, 5, 5.1, 10, 50, np.nan], b)) == [0, 0, 1, 1, 2, -1]
    with pytest.raises(UsmGeoError, match="increasing"):
        classify.breaks([1, 2], "user", user_breaks=[5, 3])
    with pytest.raises(UsmGeoError, match="unknown classification"):
        classify.breaks([1, 2], "equal_interval")


def test_large_fisher_jenks_is_fast_and_deterministic():
    y = np.random.default_rng(5).gamma(2, 50, 100_000)
    a, b = classify.breaks(y, "fisher_jenks", 5), classify.breaks(y, "fisher_jenks", 5)
    assert np.array_equal(a, b) and len(a) == 5 and a[-1] == y.max()


def _legend_rows(html: str, level: str) -> list[str]:
    block = re.search(r'<div class="usm-legend-block"[^>]*><div class="usm-legend-title">[^<]*</div>'
                      rf'<div class="usm-legend-sub">[^<]*{re.escape(level)}</div>(.*?)<div class="usm-legend-note">',
                      html).group(1)
    return re.findall(r"<span>([^<]*)</span>", block)


def test_breaks_are_pooled_over_every_period():
    inputs = grid_inputs()
    early, late = build_map(inputs, period="2022"), build_map(inputs, period="2023")
    assert _legend_rows(early, "Area") == _legend_rows(late, "Area")
    values = inputs.values("incident_rate")
    pooled = classify.breaks(values.loc[values.level == "area", "value"], "quantiles", 5)
    assert len(_legend_rows(early, "Area")) == len(pooled) + 1  # + "no value"
    # and different from the breaks of one period alone
    alone = classify.breaks(values.loc[(values.level == "area") & (values.period == "2023"), "value"], "quantiles", 5)
    assert not np.array_equal(pooled, alone)


def test_shared_classes_and_user_breaks():
    html = build_map(grid_inputs(), classes="shared", scheme="user", breaks=[10, 20, 30])
    assert html.count('class="usm-legend-block"') == 1 + 1 + 1  # levels (shared), Gi*, impact
    assert "every level and period" in html
    with pytest.raises(UsmGeoError, match="scheme is not 'user'"):
        build_map(grid_inputs(), breaks=[10, 20])


def test_palettes_are_colour_blind_safe_colorbrewer_by_direction():
    rate = data_blocks(build_map(grid_inputs()))
    share = data_blocks(build_map(grid_inputs(), indicator="safe_share"))
    level = [b for b in rate.values() if b.get("key") == "level:area"][0]
    assert level["colors"] == classify.palette("YlOrRd", 5)  # higher is worse
    level = [b for b in share.values() if b.get("key") == "level:area"][0]
    assert level["colors"] == classify.palette("YlGnBu", len(level["colors"]))  # higher is better
    with pytest.raises(UsmGeoError, match="colour"):
        build_map(grid_inputs(), palette=["red", "#00ff00", "#0000ff", "#000000", "#ffffff"])


# ------------------------------------------------------------------------------------ content

def test_tooltip_data_value_interval_n_flags_in_plain_language():
    blocks = data_blocks(build_map(grid_inputs(), period="2023"))
    spec = [b for b in blocks.values() if b.get("key") == "level:area"][0]
    geom = blocks[spec["geom"]]
    assert set(spec) >= {"cls", "colors", "value", "fields", "title", "style"}
    assert geom["names"][3] == "Area 3" and geom["ids"][3] == "A003"
    values = grid_inputs().values("incident_rate")
    row = values[(values.level == "area") & (values.unit_id == "A003") & (values.period == "2023")].iloc[0]
    assert spec["value"]["v"][3] == float(f"{row.value:.4g}")
    assert spec["value"]["lo"][3] == float(f"{row.lower:.4g}") and spec["fields"][0][1][3] == int(row.n)
    assert spec["title"] == "Recorded incidents per 1,000 residents, 2023"
    html = build_map(grid_inputs(extra_flag="suppressed"), period="2023")
    spec = [b for b in data_blocks(html).values() if b.get("key") == "level:area"][0]
    assert "suppressed" in spec["flags"]["text"]
    share = [b for b in data_blocks(build_map(grid_inputs(), indicator="safe_share")).values()
             if b.get("key") == "level:area"][0]
    assert share["value"]["unit"] == " %" and max(v for v in share["value"]["v"] if v is not None) > 1
    assert "few respondents: treat with caution; few respondents after weighting: treat with caution" in share["flags"]["text"]


def test_legend_has_name_units_period_and_survey_labels():
    html = build_map(grid_inputs(), indicator="safe_share", period="2022")
    assert "Share who feel safe (safe_after_dark)" in html
    assert "% of respondents (weighted) · 2022 · Area" in html
    assert "Counted: safe, very safe" in html and "Left out: don&#x27;t know" in html
    assert "<title>Grid City — Share who feel safe (safe_after_dark), 2022</title>" in html


def test_layers_per_level_gistar_impact_and_layer_control():
    blocks = data_blocks(build_map(grid_inputs()))
    keys = [b["key"] for b in blocks.values() if "key" in b]
    assert keys == ["level:area", "level:district", "level:city", "gistar:area", "impact"]
    shown = [b["key"] for b in blocks.values() if b.get("show")]
    assert shown == ["level:area"]  # the finest polygon level that is not H3
    control = [b for b in blocks.values() if "layers" in b][0]["layers"]
    assert [name for _, name in control] == ["Area", "District", "City", "Gi* hot spots: Area, 2023",
                                             "Intervention areas"]
    impact = [b for b in blocks.values() if b.get("key") == "impact"][0]
    assert blocks[impact["geom"]]["ids"] == ["Treated area", "Buffer (400 m)", "Control area"]
    assert impact["lines"][0][0] == "Intervention: Grid City pilot"
    assert any("per year" in line for line in impact["lines"][0])


def test_public_tables_without_counts():
    """What a public export holds: suppressed values (flag, no value, no n), hot spots without
    counts or p, impact areas without before/after counts. The map shows no count it was not given."""
    from usm_geo.disclosure import public_hotspots, public_impact_areas

    inputs = grid_inputs()
    table = inputs.table.copy()
    small = table.incident_rate_n < 25
    table.loc[small, ["incident_rate", "incident_rate_lower", "incident_rate_upper", "incident_rate_n"]] = np.nan
    table.loc[small, "incident_rate_flags"] = "suppressed"
    inputs.table = table
    inputs.hotspots = {lv: public_hotspots(h, 5) for lv, h in inputs.hotspots.items()}
    inputs.impact_areas = public_impact_areas(inputs.impact_areas, 5)
    blocks = data_blocks(build_map(inputs, period="2023"))
    level = [b for b in blocks.values() if b.get("key") == "level:area"][0]
    sup = [i for i, f in enumerate(level["flags"]["f"]) if level["flags"]["text"][f] == "suppressed"]
    assert sup and all(level["value"]["v"][i] is None and level["fields"][0][1][i] is None for i in sup)
    assert all(level["cls"][i] == -1 for i in sup)  # drawn as "no value"
    hot = [b for b in blocks.values() if b.get("key") == "gistar:area"][0]
    assert [f[0] for f in hot["fields"] if any(v is not None for v in f[1])] == ["z"]
    assert sorted(set(hot["cls"])) == [0, 1, 2, 3, 4, 5, 6]
    impact = [b for b in blocks.values() if b.get("key") == "impact"][0]
    assert not any("incidents" in line for lines in impact["lines"] for line in lines)


def test_errors_name_the_choices():
    with pytest.raises(UsmGeoError, match="choose one of: incident_rate, safe_share"):
        build_map(grid_inputs(), indicator="nope")
    with pytest.raises(UsmGeoError, match="2022, 2023"):
        build_map(grid_inputs(), period="1999")
    with pytest.raises(UsmGeoError, match="area, district, city"):
        build_map(grid_inputs(), levels=["ward"])
    with pytest.raises(UsmGeoError, match="is not a usm_geo run folder"):
        build_map(REPO / "docs")


# ------------------------------------------------------------------------------------ size

def test_compact_geometry_five_decimals_and_shared_between_layers():
    html = build_map(grid_inputs())
    blocks = data_blocks(html)
    geoms = [b for b in blocks.values() if "g" in b]
    assert len(geoms) == 4  # area, district, city, impact areas: the Gi* layer reuses the area geometry
    assert all(g["enc"] == "d5" for g in geoms)
    # decoded, every vertex is within one unit (1e-5 degree) of the exact coordinates
    from usm_geo.maps.build import decode_geometries

    area = [g for g in geoms if g["ids"][0] == "A000"][0]
    exact = grid_inputs().units["area"].to_crs(4326).geometry.to_numpy()
    decoded = decode_geometries(area["g"])
    for geom, got in zip(exact, decoded):
        ring = np.asarray(got[0])
        want = shapely.get_coordinates(shapely.force_2d(geom.exterior if geom.geom_type == "Polygon" else geom.geoms[0].exterior))
        assert ring.shape == want.shape and np.abs(ring - want).max() <= 1.0e-5 + 1e-12
    spec = [b for b in blocks.values() if b.get("key") == "gistar:area"][0]
    assert spec["geom"] == [b for b in blocks.values() if b.get("key") == "level:area"][0]["geom"]
    # no per-feature style objects and no unshown columns in the data
    data = "".join(text for _, text in DATA_RE.findall(html))
    assert "fillColor" not in data and "parent_id" not in data and "gistar_p" not in data


def test_canvas_renderer_above_the_threshold(monkeypatch):
    monkeypatch.setattr(mbuild, "CANVAS_THRESHOLD", 30)
    html = build_map(grid_inputs())
    calls = re.findall(r"usmGeo\.(\w+)\(map_\w+, \"(usm-d\d+)\"\)", html)
    blocks = data_blocks(html)
    kinds = {blocks[i]["key"]: fn for fn, i in calls if "key" in blocks[i]}
    assert kinds["level:area"] == "bigPolygons" and kinds["gistar:area"] == "bigPolygons"
    assert kinds["level:district"] == "polygons" and kinds["impact"] == "polygons"


def test_size_per_h3_cell_is_small():
    from usm_geo.maps.synthetic import h3_inputs

    html = build_map(h3_inputs(2000), show_level="h3_9")
    per_cell = len(html.encode()) / 2000
    assert per_cell < 300, per_cell  # PERF-BASELINES §5: 228 B/hex hand-written, 624 B/hex folium default


# ------------------------------------------------------------------------------------ determinism

def test_same_inputs_give_identical_bytes(tmp_path):
    a = build_map(grid_inputs(), tmp_path / "a.html")
    b = build_map(grid_inputs(), tmp_path / "b.html")
    assert a.read_bytes() == b.read_bytes()
    assert build_before_after(grid_inputs()) == build_before_after(grid_inputs())
    assert not re.search(r"[0-9a-f]{32}", a.read_text(encoding="utf-8"))  # no random element ids
    from branca.element import Element

    assert len(Element()._id) == 32  # the counter is only used while a map is built


# ------------------------------------------------------------------------------------ files

def test_from_files_with_the_long_measures_table(tmp_path):
    inputs = grid_inputs()
    wide = inputs.values("incident_rate")
    long = wide.assign(category="all", measure="incident_rate")
    long = pd.concat([long, long.assign(category="01")], ignore_index=True)  # only "all" is mapped
    long.to_csv(tmp_path / "measures.csv", index=False)
    for level, layer in inputs.units.items():
        layer.to_file(tmp_path / "units.gpkg", layer=level, driver="GPKG")
    html = build_map(MapInputs.from_files(tmp_path / "measures.csv", tmp_path / "units.gpkg"), period="2023")
    spec = [b for b in data_blocks(html).values() if b.get("key") == "level:area"][0]
    direct = [b for b in data_blocks(build_map(inputs, period="2023")).values() if b.get("key") == "level:area"][0]
    assert spec["value"] == direct["value"] and spec["cls"] == direct["cls"]


def test_units_without_crs_are_refused():
    layer = gpd.GeoDataFrame({"unit_id": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)])
    with pytest.raises(UsmGeoError, match="no CRS"):
        MapInputs(units={"x": layer}, table=pd.DataFrame())


def test_kde_image_overlay(tmp_path):
    import rasterio
    from rasterio.transform import Affine

    path = tmp_path / "kde.tif"
    values = np.zeros((40, 60), np.float32)
    values[10:30, 20:40] = np.linspace(1, 50, 400, dtype=np.float32).reshape(20, 20)
    values[0, 0] = np.nan
    with rasterio.open(path, "w", driver="GTiff", width=60, height=40, count=1, dtype="float32",
                       crs="EPSG:32633", transform=Affine(100, 0, 390_000, 0, -100, 5_795_000), nodata=np.nan) as dst:
        dst.write(values, 1)
        dst.update_tags(UNITS="events per km2", KERNEL="quartic", BANDWIDTH="300.0")
    inputs = grid_inputs()
    inputs.kde, inputs.kde_period = path, "2023"
    html = build_map(inputs)
    kde = [b for b in data_blocks(html).values() if b.get("key") == "kde"][0]
    png = __import__("base64").b64decode(kde["url"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    raw = zlib.decompress(png[png.index(b"IDAT") + 4:-16])
    assert len(raw) == h * (1 + 4 * w)
    (s, west), (n, east) = kde["bounds"]
    assert 52.0 < s < n < 52.5 and 13.3 < west < east < 13.9
    assert "events per km2 · 2023" in html and "quartic kernel, bandwidth 300 m" in html
    assert build_map(inputs) == html


def test_every_map_is_self_contained():
    """Leaflet 1.9.4 is written into every page from the django-js-lib-leaflet wheel: no <script src>,
    no stylesheet link, the stylesheet's images as data: URIs; the before/after view needs nothing else."""
    import importlib.resources

    static = importlib.resources.files("js_lib_leaflet") / "static" / "js_lib_leaflet"
    leaflet_js = (static / "leaflet.js").read_text(encoding="utf-8")
    assert "Leaflet 1.9.4" in leaflet_js[:200]
    for html in (build_map(grid_inputs()), build_before_after(grid_inputs())):
        assert not re.search(r"<script[^>]*\ssrc=", html) and not re.search(r"<link[^>]*\shref=", html)
        assert leaflet_js.replace("</script", "<\\/script") in html  # the wheel's file, byte for byte
        assert "/* Leaflet 1.9.4 (leaflet.css" in html and "images/layers.png" not in html
        # layers.png of the stylesheet, inlined: the same bytes as the wheel's file
        png = __import__("base64").b64encode((static / "images" / "layers.png").read_bytes()).decode()
        assert f"data:image/png;base64,{png}" in html


def test_a_page_that_would_link_anything_is_refused():
    with pytest.raises(UsmGeoError, match="would not open offline"):
        inline_assets('<head><script src="https://cdn.example.org/x.js"></script></head>')
    with pytest.raises(UsmGeoError, match="would not open offline"):
        inline_assets('<head><link rel="stylesheet" href="x.css"/></head>')


def test_basemaps_by_name_and_url(monkeypatch):
    from usm_geo.maps.build import basemap

    assert basemap("osm").build_url(x=1, y=2, z=3) == "https://tile.openstreetmap.org/3/1/2.png"
    assert "OpenStreetMap" in basemap(True).html_attribution
    with pytest.raises(UsmGeoError, match="CartoDB.Positron needs an API key") as err:
        basemap("carto-light")
    assert "USM_GEO_TILES_KEY" in err.value.fix
    monkeypatch.setenv("USM_GEO_TILES_KEY", "k123")
    assert basemap("carto-light").build_url(x=1, y=2, z=3, fill_subdomain=False).endswith("/light_all/3/1/2.png?key=k123")
    assert basemap("https://t.example.org/{z}/{x}/{y}.png").attribution == "Tiles: t.example.org"
    with pytest.raises(UsmGeoError, match="unknown basemap 'nope'"):
        basemap("nope")
    with pytest.raises(UsmGeoError, match="not an http"):
        basemap("file:///{z}/{x}/{y}.png")
    html = build_map(grid_inputs(), tiles="carto-light")
    assert "basemaps.cartocdn.com" in html and "usmGeo.watchTiles(" in html
    assert "watchTiles" not in build_map(grid_inputs()).split("U.watchTiles = function")[1].split("U.fit")[1]


def test_osm_tiles_option():
    assert "tile.openstreetmap.org" not in build_map(grid_inputs())
    assert "tile.openstreetmap.org" in build_map(grid_inputs(), tiles="osm")


def test_write_is_atomic_and_returns_the_path(tmp_path):
    out = build_map(grid_inputs(), tmp_path / "map.html")
    assert out == tmp_path / "map.html" and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["map.html"]


def test_legend_labels_share_one_precision():
    from usm_geo.maps.build import _ranges, legend_decimals

    assert _ranges([0.1, 1.25, 3.4, 7.8]) == ["0.10 – 1.25", "1.25 – 3.40", "3.40 – 7.80"]  # not "0.1 – 1.25"
    assert legend_decimals([0, 1, 2, 5, 12]) == 0 and _ranges([0, 1, 2, 5, 12]) == ["0 – 1", "1 – 2", "2 – 5", "5 – 12"]
    assert _ranges([2.001, 2.004, 2.01]) == ["2.001 – 2.004", "2.004 – 2.010"]  # distinct edges stay distinct
    assert _ranges([0.012, 0.5, 0.9]) == ["0.012 – 0.500", "0.500 – 0.900"]  # smallest edge: 2 significant digits
    assert _ranges([1200.4, 35000.7], " %") == ["1,200 – 35,001 %"]
    assert _ranges([3.0, 3.0]) == ["3"] and _ranges([float("nan"), 2.5]) == ["– – 2.5"]
    html = build_map(grid_inputs())
    labels = re.findall(r'</i><span>([^<]*\d[^<]*)</span>', html)
    assert labels
    decimals = {len(x.split(".")[1]) if "." in x else 0 for lab in labels for x in re.findall(r"[\d,]+(?:\.\d+)?", lab)}
    assert len(decimals) <= 3  # one per legend (levels, Gi* and impact legends may differ)


def test_geometry_encoding_round_trip_holes_multipolygons_and_h3():
    """encode → decode gives every vertex back within 1e-5 degree (the stated quantisation), for
    polygons with holes, multipolygons and H3 cells; neighbouring H3 cells mostly take mode 2."""
    import h3

    from usm_geo.maps.build import decode_geometries, encode_geometries

    cells = sorted(h3.grid_disk(h3.latlng_to_cell(52.52, 13.40, 9), 6))
    hexes = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in cells]
    hole = shapely.Polygon([(13.0, 52.0), (13.2, 52.0), (13.2, 52.1), (13.0, 52.1)],
                           [[(13.05, 52.02), (13.1, 52.02), (13.1, 52.05)]])
    multi = shapely.MultiPolygon([shapely.box(13.3, 52.3, 13.31, 52.31), hole])
    geoms = [hole, None, multi, *hexes, shapely.Point(1, 2)]
    enc = encode_geometries(geoms)
    dec = decode_geometries(enc)
    assert dec[1] is None and dec[-1] is None
    def rings(g):
        polys = [g] if g.geom_type == "Polygon" else list(g.geoms)
        return [shapely.get_coordinates(r) for p in polys for r in [p.exterior, *p.interiors]]
    for geom, got in zip(geoms[:-1], dec[:-1]):
        if geom is None:
            continue
        flat = [np.asarray(r) for p in (got if isinstance(got[0][0][0], list) else [got]) for r in p]
        want = rings(geom)
        assert len(flat) == len(want)
        for a, b in zip(flat, want):
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5 + 1e-12
    modes = [e[0] for e in enc[3:-1]]
    assert modes.count(2) + modes.count(3) > 0.5 * len(hexes)  # a shape seen before: 3 or 4 numbers a cell
    assert len(json.dumps(enc[3:-1], separators=(",", ":"))) / len(hexes) < 25
