"""reconciliation.html of a `usm-geo run` with police and health records (issue 21 item 2), in headless
Chromium offline: every unit drawn, the tooltip shows police − health with the unit's (escaped) name,
a withheld difference in the public profile shows no value, no request leaves the page, no script of
a unit name runs."""

from __future__ import annotations

import textwrap

import geopandas as gpd
import pandas as pd
import shapely
from click.testing import CliRunner

from usm_geo.cli import main

X0, Y0 = 500_000.0, 5_800_000.0
NAMES = {"N1": "Nørre <img src=x onerror=alert(1)>", "N2": "Süd & \"Ost\"", "N3": "West"}
# police, health per unit (all of 2019): N1 40 / 10 (differ beyond chance), N2 12 / 11, N3 2 / 0 (public: withheld)
COUNTS = {"N1": (40, 10), "N2": (12, 11), "N3": (2, 0)}


def _study(folder, profile):
    squares = gpd.GeoDataFrame({"nbhd": list(NAMES), "label": list(NAMES.values()),
                                "geometry": [shapely.box(X0 + 1000 * i, Y0, X0 + 1000 * (i + 1), Y0 + 1000) for i in range(3)]},
                               crs="EPSG:32633")
    squares.to_file(folder / "units.gpkg", engine="pyogrio")
    for k, name in enumerate(("police", "health")):
        rows = [{"x": X0 + 1000 * i + 100 + 5 * j, "y": Y0 + 500, "when": f"2019-{1 + j % 12:02d}-{1 + j % 28:02d}"}
                for i, u in enumerate(NAMES) for j in range(COUNTS[u][k])]
        pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)
    text = f"""
        [study]
        name = "Tiny"
        working_crs = "EPSG:32633"
        [[inputs.incidents]]
        path = "police.csv"
        x = "x"
        y = "y"
        crs = "EPSG:32633"
        date = "when"
        category_value = "assault"
        [[inputs.incidents]]
        path = "health.csv"
        x = "x"
        y = "y"
        crs = "EPSG:32633"
        date = "when"
        category_value = "assault"
        records = "health"
        [[inputs.boundaries]]
        level = "neighbourhood"
        path = "units.gpkg"
        id = "nbhd"
        name = "label"
        [periods]
        start = 2019-01-01
        end = 2019-12-31
        [outputs]
        profile = "{profile}"
        """
    (folder / "study.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["run", str(folder / "study.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out / "reconciliation.html"


def test_reconciliation_map_offline(map_page, tmp_path):
    html = _study(tmp_path, "internal")
    page = map_page.open(html)
    assert page.locator("path.usm-level-neighbourhood").count() == 3
    tips = [page.evaluate(f"usmGeo.openTip('level:neighbourhood', {i})") for i in range(3)]
    by_name = {n: next(t for t in tips if n in t) for n in NAMES.values()}  # the names as text, not markup
    assert "30" in by_name[NAMES["N1"]] and "sources differ" in by_name[NAMES["N1"]]
    assert "police minus health records" in page.content()
    assert map_page.requested == []
    map_page.clean()  # no console error, no dialog (the <img onerror> name never ran), no request


def test_public_reconciliation_map_withholds_small_counts(map_page, tmp_path):
    html = _study(tmp_path, "public")
    page = map_page.open(html)
    tips = [page.evaluate(f"usmGeo.openTip('level:neighbourhood', {i})") for i in range(3)]
    west = next(t for t in tips if "West" in t)
    assert "no value" in west and "2" not in west.replace("2019", "")
    map_page.clean()
