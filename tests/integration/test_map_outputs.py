"""map.html in run and export folders, `usm-geo map`, and what a public map may show.

The values checked here are read from the page's JSON data blocks (what the page's script draws)
and compared with the run's own measures.csv / indicators.csv, so the map cannot drift from them.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.maps import build_map, load_run

BLOCK = re.compile(r'<script type="application/json" id="(usm-d\d+)">(.*?)</script>', re.S)


def blocks(html: str) -> list:
    return [json.loads(text) for _, text in BLOCK.findall(html)]


def layer(html: str, key: str) -> dict:
    found = [b for b in blocks(html) if isinstance(b, dict) and b.get("key") == key]
    assert len(found) == 1, f"{key}: {len(found)} layers"
    return found[0]


def geometry_ids(html: str, spec: dict) -> list[str]:
    data = dict(BLOCK.findall(html))
    return json.loads(data[spec["geom"]])["ids"]


def measures(out) -> pd.DataFrame:
    return pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str, "flags": str, "level": str},
                       low_memory=False)


def test_every_run_writes_its_map_the_same_as_build_map(demo):
    out, _ = demo
    html = (out / "map.html").read_text(encoding="utf-8")
    # the run's in-memory tables and the folder read back give the same page, byte for byte
    assert build_map(out) == html
    assert "<title>Demo City — Recorded incidents per 1,000 residents, 2023</title>" in html
    info = json.loads((out / "run.json").read_text())
    assert info["periods"]["current"] == "2023"
    meta = json.loads((out / "metadata.json").read_text())
    assert "map.html" in meta["files"]


def test_run_map_values_are_the_runs_indicators(demo):
    out, _ = demo
    html = (out / "map.html").read_text(encoding="utf-8")
    spec = layer(html, "level:neighbourhood")
    ids = geometry_ids(html, spec)
    wide = pd.read_csv(out / "indicators.csv", dtype={"unit_id": str, "period": str}, low_memory=False)
    want = wide[(wide.level == "neighbourhood") & (wide.period == "2023")].set_index("unit_id")
    assert len(ids) == 60
    for i, uid in enumerate(ids):
        row = want.loc[uid]
        # 4 significant digits, as the tooltip shows them
        assert spec["value"]["v"][i] == pytest.approx(row.incident_rate, rel=5e-4)
        assert spec["value"]["lo"][i] == pytest.approx(row.incident_rate_lower, rel=5e-4)
        assert spec["fields"][0][1][i] == int(row.incident_rate_n)


def test_public_map_hides_small_counts_and_gistar_counts(demo, tmp_path):
    out, _ = demo
    target = tmp_path / "public.html"
    result = CliRunner().invoke(main, ["map", str(out), "--profile", "public", "--indicator", "homicide_rate",
                                       "--out", str(target)])
    assert result.exit_code == 0, result.output
    html = target.read_text(encoding="utf-8")
    spec = layer(html, "level:neighbourhood")
    ids = geometry_ids(html, spec)
    m = measures(out)
    counts = m[(m.level == "neighbourhood") & (m.period == "2023") & (m.measure == "homicide_rate")
               & (m.category == "all")].set_index("unit_id")["n"]
    small = [u for u in ids if 0 < counts[u] < 5]
    assert small, "the Demo City has neighbourhoods with 1-4 homicides in 2023"
    n_shown = spec["fields"][0][1]
    flag_text = [spec["flags"]["text"][f] for f in spec["flags"]["f"]]
    for i, uid in enumerate(ids):
        if uid in small:
            assert spec["value"]["v"][i] is None and n_shown[i] is None and spec["value"]["lo"][i] is None
            assert "suppressed" in flag_text[i]
        assert n_shown[i] is None or n_shown[i] == 0 or n_shown[i] >= 5
    # Gi* layers of the public map carry no counts (as public_hotspots)
    gistar = [b for b in blocks(html) if isinstance(b, dict) and b.get("kind") == "gistar"]
    assert gistar
    for g in gistar:
        incidents = dict((f[0], f[1]) for f in g["fields"])["incidents"]
        assert all(v is None for v in incidents)
    # impact areas without their before/after counts
    impact = layer(html, "impact")
    assert not any("incidents before" in line for lines in impact["lines"] for line in lines)
    # the internal map of the same indicator shows those counts
    internal = build_map(load_run(out, profile="internal"), indicator="homicide_rate")
    spec_i = layer(internal, "level:neighbourhood")
    assert [spec_i["fields"][0][1][ids.index(u)] for u in small] == [int(counts[u]) for u in small]
    assert any("incidents before" in line for lines in layer(internal, "impact")["lines"] for line in lines)


def test_export_html_is_the_public_map(demo, tmp_path):
    out, _ = demo
    target = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", str(out), "--format", "gpkg", "--format", "html", "--out", str(target)])
    assert result.exit_code == 0, result.output
    html = (target / "map.html").read_text(encoding="utf-8")
    assert html == build_map(load_run(out, profile="public"))
    meta = json.loads((target / "metadata.json").read_text())
    assert meta["profile"] == "public" and "map.html" in meta["files"]


def test_map_from_a_table_and_units(demo, tmp_path):
    out, _ = demo
    target = tmp_path / "from-table.html"
    result = CliRunner().invoke(main, ["map", "--table", str(out / "measures.csv"), "--units", str(out / "units.gpkg"),
                                       "--indicator", "safe_after_dark_share", "--out", str(target)])
    assert result.exit_code == 0, result.output
    html = target.read_text(encoding="utf-8")
    spec = layer(html, "level:neighbourhood")
    m = measures(out)
    row = m[(m.level == "neighbourhood") & (m.period == "2023") & (m.measure == "safe_after_dark_share")
            & (m.category == "all")].set_index("unit_id")
    ids = geometry_ids(html, spec)
    uid = ids[0]
    assert spec["value"]["v"][0] == pytest.approx(100 * row.loc[uid, "value"], rel=5e-4)  # shares shown in %
    assert spec["value"]["unit"] == " %"
    # no H3 layer: the survey share has no value per cell
    assert not [b for b in blocks(html) if isinstance(b, dict) and b.get("key") == "level:h3_9"]


def test_before_after_from_the_cli(demo, tmp_path):
    out, _ = demo
    target = tmp_path / "ba.html"
    result = CliRunner().invoke(main, ["map", str(out), "--before-after", "--before", "2019", "--after", "2023",
                                       "--out", str(target)])
    assert result.exit_code == 0, result.output
    html = target.read_text(encoding="utf-8")
    before, after = layer(html, "before/level:neighbourhood"), layer(html, "after/level:neighbourhood")
    assert before["title"].endswith("2019") and after["title"].endswith("2023")
    assert before["geom"] == after["geom"]  # geometry written once, shared by both sides


@pytest.mark.parametrize("args, message", [
    ([], "give RUN_DIR, or --table with --units"),
    (["--table", "x.csv"], "--table needs --units"),
    (["RUN", "--before", "2019"], "--before/--after need --before-after"),
    (["RUN", "--scheme", "user"], "--scheme user needs --breaks"),
    (["RUN", "--scheme", "user", "--breaks", "1,a"], "is not a list of numbers"),
    (["RUN", "--indicator", "nope"], "choose one of:"),
    (["RUN", "--period", "1999"], "period '1999' is not in the table"),
    (["RUN", "--levels", "ward"], "no units for level 'ward'"),
])
def test_map_cli_errors_exit_2_without_traceback(demo, tmp_path, args, message):
    out, _ = demo
    args = [str(out) if a == "RUN" else a for a in args]
    result = CliRunner().invoke(main, ["map", *args, "--out", str(tmp_path / "m.html")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.html").exists()


def test_map_out_must_be_html(demo, tmp_path):
    out, _ = demo
    result = CliRunner().invoke(main, ["map", str(out), "--out", str(tmp_path / "m.gpkg")])
    assert result.exit_code == 2 and "--out names the map's HTML file" in result.output


def test_export_html_with_a_basemap_and_without(demo, tmp_path):
    """`export --format html` is self-contained (no script or stylesheet link, no tile URL) unless
    --tiles asks for a basemap; a wrong basemap name exits 2 with the names to use."""
    demo, _ = demo
    runner = CliRunner()
    plain = runner.invoke(main, ["export", str(demo), "--format", "html", "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    html = (tmp_path / "plain" / "map.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=", html) and "openstreetmap.org/{z}" not in html
    tiled = runner.invoke(main, ["export", str(demo), "--format", "html", "--tiles", "osm",
                                 "--out", str(tmp_path / "tiled")])
    assert tiled.exit_code == 0, tiled.output
    html2 = (tmp_path / "tiled" / "map.html").read_text(encoding="utf-8")
    assert "tile.openstreetmap.org" in html2 and "usmGeo.watchTiles(" in html2 and "OpenStreetMap" in html2
    bad = runner.invoke(main, ["export", str(demo), "--format", "html", "--tiles", "nope", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "unknown basemap 'nope'" in bad.output and "carto-light" in bad.output
    assert "Traceback" not in bad.output


def test_study_tiles_are_checked_before_the_run(tmp_path):
    from usm_geo.errors import StudyError
    from usm_geo.pipeline import run
    from usm_geo.study import load_study

    study = tmp_path / "s.toml"
    study.write_text('[inputs.incidents]\npath = "i.csv"\n[outputs]\ntiles = "nope"\n', encoding="utf-8")
    (tmp_path / "i.csv").write_text("lon,lat,date\n13.4,52.5,2020-01-01\n", encoding="utf-8")
    with pytest.raises(StudyError, match="'outputs.tiles': unknown basemap 'nope'"):
        run(load_study(study), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _gistar_legends(html: str) -> dict[str, str]:
    """Gi* legend block text per level label (the legend's sub-title names the level)."""
    found = re.findall(r'<div class="usm-legend-title">Getis–Ord Gi\* hot and cold spots</div>'
                       r'<div class="usm-legend-sub">([^<]*)</div>(.*?)</div></div>', html, re.S)
    return {sub: body for sub, body in found}


def test_gistar_legend_states_the_value_analysed(demo, tmp_path):
    """hotspots.gpkg's hotspot_value (eb_rate on the neighbourhoods, whose populations vary 25×; counts
    on H3 cells) and significance rule are written in each Gi* layer's legend, in the run's map and in
    the public export's map (public_hotspots keeps both columns)."""
    import pyogrio

    out, _ = demo
    value = {lv: set(pyogrio.read_dataframe(out / "hotspots.gpkg", layer=lv, read_geometry=False)["hotspot_value"])
             for lv in ("neighbourhood", "h3_9")}
    assert value == {"neighbourhood": {"eb_rate"}, "h3_9": {"count"}}
    target = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", str(out), "--format", "html", "--out", str(target)])
    assert result.exit_code == 0, result.output
    for html in ((out / "map.html").read_text(encoding="utf-8"), (target / "map.html").read_text(encoding="utf-8")):
        legends = _gistar_legends(html)
        nb = [body for sub, body in legends.items() if sub.startswith("Neighbourhood")]
        h3 = [body for sub, body in legends.items() if sub.startswith("H3")]
        assert len(nb) == 1 and len(h3) == 1, legends.keys()
        assert "Analysed: empirical Bayes smoothed incident rates per 1,000 residents. Significance: BH FDR q &lt; 0.05." in nb[0]
        assert "Analysed: incident counts. Significance: BH FDR q &lt; 0.05." in h3[0]
