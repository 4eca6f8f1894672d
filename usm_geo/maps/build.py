"""Build ``map.html``: a folium map of an indicator at every level, with Gi*, KDE and impact layers.

See :func:`build_map` and :func:`build_before_after`. The page is small by construction (PERF-
BASELINES §5): each level's geometry is written once as compact arrays (lon/lat rounded to 5
decimals ≈ 1 m, polygons simplified by ``simplify_m`` metres except H3 cells), each layer carries
only the values its tooltip shows, and the style is chosen in the page's script from a class index
per feature (no per-feature style objects). Layers with more than :data:`CANVAS_THRESHOLD`
features are drawn on one canvas instead of one SVG path per feature. 50,000 H3 cells: 9.7 MB,
open in 1.6 s in headless Chromium (benchmarks/bench_map.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from usm_geo.errors import UsmGeoError
from usm_geo.maps import classify
from usm_geo.maps.assets import LEAFLET_CSS, LEAFLET_JS, inline_assets
from usm_geo.maps.data import MapInputs, load_run
from usm_geo.maps.elements import Call, Html, Runtime, Statement, deterministic_ids
from usm_geo.maps.escape import css_class, esc, script_json

#: Layers with more features than this use Leaflet's canvas renderer (DESIGN.md, "Map assets").
CANVAS_THRESHOLD = 5000
#: lon/lat decimals in the page (5 ≈ 1.1 m at the equator).
PRECISION = 5
WGS84 = "EPSG:4326"

#: Flags (``measures.csv``/``indicators.csv``) in plain language for tooltips.
FLAG_TEXT = {
    "small_count": "small numbers: treat with caution",
    "small_denominator": "small population: treat with caution",
    "no_denominator": "no population figure",
    "population_missing": "population missing",
    "population_zero": "population is zero",
    "population_partial": "population only partly known",
    "small_n": "few respondents: treat with caution",
    "small_eff_n": "few respondents after weighting: treat with caution",
    "no_respondents": "no respondents",
    "all_same_answer": "all respondents gave the same answer",
    "no_sample_size": "sample size not known",
    "smoothed": "smoothed",
    "prior_variance_zero": "smoothed: areas do not differ enough to estimate the spread",
    "rolled_up": "summed from smaller areas",
    "suppressed": "suppressed",
    "edge_cell": "cell at the edge of the study area",
    "missing": "no value in the input",
    "not_in_source": "not reported: the count files have no row for this area",
    "partial": "partly reported: some areas inside are not in the count files (a lower bound)",
}
NOT_REPORTED = "not reported"  # the no-value class where area-coded count files have no row
GISTAR_LABELS = ["Cold spot, 99 % confidence", "Cold spot, 95 % confidence", "Cold spot, 90 % confidence",
                 "Not significant", "Hot spot, 90 % confidence", "Hot spot, 95 % confidence",
                 "Hot spot, 99 % confidence"]
IMPACT_LABELS = {"treated": "Treated area", "buffer": "Buffer", "control": "Control area"}
PANES = {"level": ("usm-units", 400), "kde": ("usm-kde", 410), "gistar": ("usm-gistar", 420),
         "impact": ("usm-impact", 440)}


# ---------------------------------------------------------------------------------------- text

def _num(x) -> int | float | None:
    """A number as shown (and stored in the page): 4 significant digits, whole above 1,000."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    if abs(x) >= 1000:
        return int(round(x))
    if x == 0:
        return 0
    r = float(f"{x:.4g}")
    return int(r) if r.is_integer() else r


def _fmt(x, unit: str = "") -> str:
    v = _num(x)
    if v is None:
        return "–"
    return (f"{v:,}" if abs(v) >= 1000 else repr(v) if isinstance(v, float) else str(v)) + unit


def legend_decimals(edges) -> int:
    """One number of decimals for every class label of a legend: the fewest (0–4) that keep each
    distinct class edge distinct and show the smallest nonzero edge with 2 significant digits, so a
    legend reads "0.10 – 1.25", "1.25 – 3.40", never "0.1 – 1.25"."""
    e = np.unique(np.asarray([x for x in edges if x is not None and math.isfinite(float(x))], dtype=float))
    if not len(e):
        return 0
    small = np.abs(e[e != 0])
    whole = bool(np.all(e == np.round(e)))  # counts: no decimals
    need = 0 if whole or not len(small) or small.min() >= 10 else int(max(0, math.ceil(1 - math.log10(small.min()))))
    for d in range(need, 5):
        if len(np.unique(np.round(e, d))) == len(e):
            return d
    return 4


def _ranges(edges, unit: str = "") -> list[str]:
    """Legend text of each class (``edges`` = lowest value, then each class's upper bound):
    "7.75 – 13.11", or one number when both ends show the same; one precision for the whole legend."""
    d = legend_decimals(edges)
    text = [f"{float(x):,.{d}f}" if x is not None and math.isfinite(float(x)) else "–" for x in edges]
    return [f"{a}{unit}" if a == b else f"{a} – {b}{unit}" for a, b in zip(text[:-1], text[1:])]


#: The number and class-label rules of every page (maps and ``usm_geo.report``): one way to show a number.
shown_number = _num
class_ranges = _ranges


def level_label(level: str) -> str:
    """``h3_9`` → "H3 cells (resolution 9)", ``community_area`` → "Community area" (not escaped)."""
    m = re.fullmatch(r"h3_(\d+)", level)
    if m:
        return f"H3 cells (resolution {m.group(1)})"
    text = level.replace("_", " ").strip(" ")
    return text[:1].upper() + text[1:] if text else level


@dataclass
class Indicator:
    """How an indicator is named and shown (from its definition, or its id when there is none)."""

    id: str
    name: str
    kind: str  # rate, share, or "" (as given)
    units: str
    percent: bool
    lower_is_better: bool
    n_label: str
    notes: list[str] = field(default_factory=list)


def describe(indicator: str, definitions: dict) -> Indicator:
    base, smooth = indicator, ""
    for suffix, text in (("_seb", "smoothed (spatial empirical Bayes)"), ("_eb", "smoothed (empirical Bayes)")):
        if indicator.endswith(suffix) and indicator[: -len(suffix)] in definitions:
            base, smooth = indicator[: -len(suffix)], text
            break
    d = definitions.get(base) or {}
    if not d and base == "count":
        from usm_geo.indicators.registry import COUNT_DEFINITION  # a run without population maps its counts

        d = COUNT_DEFINITION
    kind = d.get("kind") or ""
    name = str(d.get("name") or indicator)
    notes = []
    if kind == "rate":
        per = float(d.get("per") or 1000)
        units = f"per {per:,.0f} residents"
        n_label = "incidents (n)"
        cats = [str(c) for c in d.get("categories") or [] if str(c) != "*"]
        if cats:
            notes.append("Categories: " + ", ".join(cats))
    elif kind == "share":
        units, n_label = "% of respondents (weighted)", "respondents (n)"
        if d.get("question"):
            notes.append(f"Survey question: {d['question']}")
        if d.get("yes"):
            notes.append("Counted: " + ", ".join(str(a) for a in d["yes"]))
        if d.get("exclude"):
            notes.append("Left out: " + ", ".join(str(a) for a in d["exclude"]))
        if d.get("never_go_out"):
            notes.append(f"“{d['never_go_out']}” counted as {d.get('never_go_out_rule') or 'unsafe'}")
    elif kind == "count":
        units, n_label = "incidents in the period (a count, not a rate: the study has no population)", "incidents (n)"
    else:
        units, n_label = "as given in the input", "n"
    if smooth:
        name = f"{name}, {smooth}"
        units = f"{units}, {smooth}"
    return Indicator(id=indicator, name=name, kind=kind, units=units, percent=kind == "share",
                     lower_is_better=bool(d.get("lower_is_better", True)), n_label=n_label, notes=notes)


def _flag_text(flags: str) -> str:
    parts = [f for f in str(flags).split(";") if f]
    return "; ".join(FLAG_TEXT.get(f, f.replace("_", " ")) for f in parts)


# ---------------------------------------------------------------------------------------- geometry

def _to_wgs84(frame: gpd.GeoDataFrame, simplify_m: float, simplify: bool) -> gpd.GeoSeries:
    geoms = frame.geometry
    if simplify and simplify_m and simplify_m > 0:
        tol = simplify_m if frame.crs.is_projected else simplify_m / 111_320.0
        geoms = geoms.simplify(tol, preserve_topology=True)
    if not frame.crs.equals(WGS84):
        geoms = geoms.to_crs(WGS84)
    return geoms


#: marker of the compact geometry encoding (:func:`encode_geometries`), decoded by the page's script
GEOMETRY_ENCODING = "d5"
#: rings with at most this many offset numbers (32 vertices) go into the shape table of the encoding
SHAPE_TABLE_MAX = 64


def encode_geometries(geoms) -> list:
    """Polygon/MultiPolygon rings (EPSG:4326 degrees) in a compact integer form (``enc`` =
    :data:`GEOMETRY_ENCODING`), ``None`` for an empty or non-polygonal geometry.

    A ring is ``[mode, dx, dy, …]`` in units of 10^-:data:`PRECISION` degree (≈ 1 m): ``dx, dy`` is its
    first vertex minus the previous ring's first vertex (the first ring starts from 0, 0); the other
    vertices are offsets from the first vertex, each rounded on its own (so a vertex is within one unit
    of its exact place), without the closing vertex. ``mode`` 0 lists the offsets as differences
    from the previous vertex; ``mode`` 1 (same vertex count as the previous ring) as differences
    from the previous ring's offsets; ``mode`` 2 means "the previous ring's offsets" (nothing
    follows); ``mode`` 3 is followed by the index of an earlier shape: every ring of at most
    :data:`SHAPE_TABLE_MAX` numbers written with mode 0 or 1 adds its offsets to a table, in order.
    H3 cells of a city have a few hundred shapes to the metre, so nearly every cell is mode 2 or 3:
    three or four small numbers. A polygon with one ring is that ring; with holes, a list of rings; a
    multipolygon, a list of polygons (each a list of rings). :func:`decode_geometries` inverts it.
    """
    scale = 10.0 ** PRECISION
    state = {"x": 0, "y": 0, "o": None}
    table: dict[tuple, int] = {}

    def ring(coords: np.ndarray) -> list:
        if len(coords) > 1 and (coords[0] == coords[-1]).all():
            coords = coords[:-1]
        q = np.round(coords[0] * scale).astype(np.int64)
        o = np.round((coords[1:] - coords[0]) * scale).astype(np.int64).reshape(-1)
        head = [int(q[0] - state["x"]), int(q[1] - state["y"])]
        prev = state["o"]
        state.update(x=int(q[0]), y=int(q[1]), o=o)
        if prev is not None and len(prev) == len(o) and (prev == o).all():
            return [2, *head]
        key = tuple(o.tolist()) if len(o) <= SHAPE_TABLE_MAX else None
        if key is not None and key in table:
            return [3, *head, table[key]]
        if key is not None:
            table[key] = len(table)
        if prev is not None and len(prev) == len(o):
            return [1, *head, *(o - prev).tolist()]
        steps = np.diff(np.concatenate([[0, 0], o]).reshape(-1, 2), axis=0).reshape(-1)
        return [0, *head, *steps.tolist()]

    def poly(p):
        rings = [ring(shapely.get_coordinates(p.exterior))] + [ring(shapely.get_coordinates(r)) for r in p.interiors]
        return rings

    out = []
    for g in np.asarray(geoms, dtype=object):
        if g is None or g.is_empty:
            out.append(None)
            continue
        t = g.geom_type
        parts = [g] if t == "Polygon" else [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and not p.is_empty]
        if not parts:
            out.append(None)
        elif len(parts) > 1:
            out.append([poly(p) for p in parts])
        else:
            rings = poly(parts[0])
            out.append(rings[0] if len(rings) == 1 else rings)
    return out


def decode_geometries(encoded: list) -> list:
    """The nested ``[[[lon, lat], …], …]`` coordinates (closed rings) of :func:`encode_geometries`'
    output, as the page's script decodes them (used by tests and tools reading a map's data)."""
    scale = 10.0 ** PRECISION
    state = {"x": 0, "y": 0, "o": None}
    table: list[list[int]] = []

    def ring(r):
        mode = r[0]
        state["x"] += r[1]
        state["y"] += r[2]
        prev = state["o"]
        if mode == 2:
            o = prev
        elif mode == 3:
            o = table[r[3]]
        else:
            o = ([a + b for a, b in zip(prev, r[3:])] if mode == 1 else
                 np.cumsum(np.asarray(r[3:], dtype=np.int64).reshape(-1, 2), axis=0).reshape(-1).tolist())
            if len(o) <= SHAPE_TABLE_MAX:
                table.append(o)
        state["o"] = o
        x, y = state["x"], state["y"]
        pts = [[x / scale, y / scale]] + [[(x + o[k]) / scale, (y + o[k + 1]) / scale] for k in range(0, len(o), 2)]
        return pts + [pts[0]]

    out = []
    for c in encoded:
        if c is None:
            out.append(None)
        elif not isinstance(c[0], list):
            out.append([ring(c)])
        elif not isinstance(c[0][0], list):
            out.append([ring(r) for r in c])
        else:
            out.append([[ring(r) for r in p] for p in c])
    return out


# ---------------------------------------------------------------------------------------- page

class Page:
    """Collects the figure, its JSON data blocks and counters for one HTML page."""

    def __init__(self, title: str):
        from branca.element import Figure

        self.figure = Figure(title=title)  # escaped by the caller
        self.figure.header.add_child(Runtime(), name="usm_runtime")
        self._n = 0
        self.geometry_ids: dict[str, str] = {}
        self.time_ids: dict[str, str | None] = {}

    def new_id(self, prefix: str = "usm-d") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def add_data(self, obj) -> str:
        data_id = self.new_id()
        self.figure.html.add_child(Html(f'<script type="application/json" id="{data_id}">{script_json(obj)}</script>'),
                                   name=data_id)
        return data_id

    def add_html(self, html: str) -> None:
        self.figure.html.add_child(Html(html), name=self.new_id("usm-h"))


@dataclass
class _Level:
    name: str
    frame: gpd.GeoDataFrame  # in its own CRS, sorted as given
    index: pd.Index  # unit_id → position
    geom_id: str | None = None


def _new_map(page: Page, bounds, tiles, **size):
    import folium

    (w, s, e, n) = bounds
    m = folium.Map(location=[(s + n) / 2, (w + e) / 2], zoom_start=11, tiles=None, control_scale=True,
                   zoom_control="bottomleft", **size)
    # only what the map uses, written into the page by _finish (assets.inline_assets); the
    # class-level lists are shared, so replace rather than mutate
    m.default_js = [("leaflet", LEAFLET_JS)]
    m.default_css = [("leaflet_css", LEAFLET_CSS)]
    page.figure.add_child(m)
    if tiles:
        layer = folium.TileLayer(basemap(tiles), control=False)
        layer.add_to(m)
        # a note in a corner when tiles cannot load (offline); everything else still draws
        m.add_child(Statement(f"usmGeo.watchTiles({m.get_name()}, {layer.get_name()});"))
    return m


#: the environment variable holding an API key for a basemap that needs one (never in a file)
TILES_KEY_VARIABLE = "USM_GEO_TILES_KEY"

#: basemap names → xyzservices providers (each with its attribution)
BASEMAPS = {"osm": "OpenStreetMap.Mapnik", "openstreetmap": "OpenStreetMap.Mapnik", "carto-light": "CartoDB.Positron",
            "carto-dark": "CartoDB.DarkMatter"}


def basemap(tiles):
    """A basemap for ``tiles``: ``True`` or ``"osm"`` (OpenStreetMap), ``"carto-light"``, ``"carto-dark"``,
    another xyzservices provider name (``"CartoDB.Voyager"``), or a tile URL with ``{z}/{x}/{y}``
    (attributed to its host). A provider that needs an API key (CARTO's) takes it from the environment
    variable :data:`TILES_KEY_VARIABLE`. Returns an ``xyzservices.TileProvider`` for folium."""
    import xyzservices
    from urllib.parse import urlsplit

    name = "osm" if tiles is True else str(tiles).strip()
    key = BASEMAPS.get(name.lower(), name)
    if "{z}" in key and "{x}" in key and "{y}" in key:
        host = urlsplit(key).netloc or "the tile server"
        if urlsplit(key).scheme not in ("http", "https"):
            raise UsmGeoError(f"tiles {tiles!r} is not an http(s) tile URL", where="--tiles",
                              fix="use osm, carto-light, or a URL such as https://tile.example.org/{z}/{x}/{y}.png")
        return xyzservices.TileProvider(name="custom", url=key, attribution=f"Tiles: {host}")
    try:
        provider = xyzservices.providers.query_name(key)
    except ValueError:
        raise UsmGeoError(f"unknown basemap {tiles!r}", where="--tiles",
                          fix=f"use {', '.join(sorted(set(BASEMAPS) - {'openstreetmap'}))}, an xyzservices name "
                              "such as OpenStreetMap.HOT, or a tile URL with {z}/{x}/{y}") from None
    if provider.requires_token():  # e.g. CARTO's basemaps now need an API key
        token = os.environ.get(TILES_KEY_VARIABLE)
        if not token:
            raise UsmGeoError(f"the basemap {provider.name} needs an API key", where="--tiles",
                              fix=f"set the environment variable {TILES_KEY_VARIABLE} to your key for it, or use osm")
        provider = provider(apikey=token)
    return provider


class _Builder:
    """Shared state of one page: inputs, the chosen indicator's values and classes."""

    def __init__(self, inputs: MapInputs, *, indicator, scheme, k, breaks, classes, palette, levels, simplify_m,
                 show_level):
        self.inputs = inputs
        if indicator is None:
            indicator = default_indicator(inputs)
            if indicator is None:
                raise UsmGeoError("the table holds no indicator to map", fix="give a measures or indicators table of a run")
        self.ind = describe(indicator, inputs.definitions)
        self.values = inputs.values(indicator)
        self.periods = sorted(p for p in pd.unique(self.values["period"]) if p)
        if levels is None:
            levels = list(inputs.units)
        unknown = [lv for lv in levels if lv not in inputs.units]
        if unknown:
            raise UsmGeoError(f"no units for level {unknown[0]!r}", fix="choose from: " + ", ".join(inputs.units))
        # levels where this indicator has a value (survey shares have none for H3 cells, say)
        valued = set(self.values.loc[self.values["value"].notna(), "level"])
        self.levels = [lv for lv in levels if lv in valued] or list(levels)
        self.all_levels = list(levels)  # Gi* layers (incident counts) do not depend on the indicator
        if show_level is None:
            polygon = [lv for lv in self.levels if not re.fullmatch(r"h3_\d+", lv)]
            show_level = polygon[0] if polygon else self.levels[0]
        elif show_level not in self.levels:
            raise UsmGeoError(f"level {show_level!r} is not on the map", fix="choose from: " + ", ".join(self.levels))
        self.show_level = show_level
        self.simplify_m = simplify_m
        self.scheme, self.k = scheme, k
        if classes not in ("level", "shared"):
            raise UsmGeoError(f"classes={classes!r}", fix="use 'level' (breaks per level) or 'shared' (one set of breaks)")
        self.classes = classes
        scale = 100.0 if self.ind.percent else 1.0
        self.scale = scale
        self.frames: dict[str, _Level] = {}
        for lv in self.all_levels:
            f = inputs.units[lv].reset_index(drop=True)
            self.frames[lv] = _Level(lv, f, pd.Index(f["unit_id"].astype(str)))
        # breaks pooled over every period (and over every level with classes="shared")
        shown = self.values["value"].to_numpy(float) * scale
        user = None if breaks is None else [float(b) for b in breaks]
        if scheme != "user" and breaks is not None:
            raise UsmGeoError("breaks were given but scheme is not 'user'", fix="pass scheme='user' with breaks")
        self.bins: dict[str, np.ndarray] = {}
        if classes == "shared":
            b = classify.breaks(shown[self.values["level"].isin(self.levels).to_numpy()], scheme, k, user)
            self.bins = {lv: b for lv in self.levels}
        else:
            for lv in self.levels:
                self.bins[lv] = classify.breaks(shown[(self.values["level"] == lv).to_numpy()], scheme, k, user)
        default = "YlOrRd" if self.ind.lower_is_better else "YlGnBu"
        self.palette_name = palette or default
        self.colours = {lv: (classify.palette(self.palette_name, max(len(b), 1)) if len(b) else []) for lv, b in self.bins.items()}

    # -- periods
    def period(self, period):
        if period is None:
            current = str(self.inputs.periods.get("current") or "")
            with_values = [p for p in self.periods if self.values.loc[self.values["period"] == p, "value"].notna().any()]
            return current if current in with_values else (with_values or self.periods or [""])[-1]
        period = str(period)
        if period not in self.periods:
            raise UsmGeoError(f"period {period!r} is not in the table for {self.ind.id}",
                              fix="choose one of: " + ", ".join(self.periods))
        return period

    # -- geometry blocks, written once per page and shared by every layer and map of the page
    def geometry(self, page: Page, lv: str) -> str:
        key = f"level:{lv}"
        if key not in page.geometry_ids:
            level = self.frames[lv]
            f = level.frame
            geoms = _to_wgs84(f, self.simplify_m, simplify=not re.fullmatch(r"h3_\d+", lv))
            ids = [esc(u) for u in f["unit_id"].astype(str)]
            names = None
            if "name" in f.columns:
                raw = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v) for v in f["name"]]
                if any(r is not None and r != u for r, u in zip(raw, f["unit_id"].astype(str))):
                    names = [None if r is None else esc(r) for r in raw]
            page.geometry_ids[key] = page.add_data({"ids": ids, "names": names, "enc": GEOMETRY_ENCODING,
                                                    "g": encode_geometries(geoms)})
        return page.geometry_ids[key]

    def time_block(self, page: Page, lv: str) -> str | None:
        """The data block of each unit's time patterns at ``lv`` (category ``all``), written once per page:
        ``hw`` 168 counts (weekday-major, Monday first, hour 0–23) and ``moy`` 12 counts per feature,
        ``null`` where suppressed, and ``null`` for a unit without patterns. None when the inputs hold
        none for the level, or the level is drawn on canvas (too many features to carry them)."""
        if lv in page.time_ids:
            return page.time_ids[lv]
        tp, level = self.inputs.time_patterns, self.frames[lv]
        block = None
        if tp is not None and len(level.frame) <= CANVAS_THRESHOLD:
            sub = tp[(tp["level"].astype(str) == lv) & (tp["category"].astype(str) == "all")]
            if len(sub):
                n = len(level.frame)
                count = pd.to_numeric(sub["count"], errors="coerce").to_numpy(float)
                pos = level.index.get_indexer(sub["unit_id"].astype(str))
                hw, moy = np.full((n, 168), np.nan), np.full((n, 12), np.nan)
                is_hw = (sub["pattern"] == "hour_weekday").to_numpy() & (pos >= 0)
                cell = (pd.to_numeric(sub["weekday"], errors="coerce").fillna(0).to_numpy(int) * 24
                        + pd.to_numeric(sub["hour"], errors="coerce").fillna(0).to_numpy(int))
                hw[pos[is_hw], cell[is_hw]] = count[is_hw]
                is_moy = (sub["pattern"] == "month_of_year").to_numpy() & (pos >= 0)
                month = pd.to_numeric(sub["month"].where(is_moy, "1"), errors="coerce").fillna(1).to_numpy(int) - 1
                moy[pos[is_moy], month[is_moy]] = count[is_moy]
                has = np.zeros(n, bool)
                has[pos[is_hw]] = True

                def ints(row):
                    return [None if not math.isfinite(x) else int(x) for x in row]

                block = page.add_data({"hw": [ints(hw[i]) if has[i] else None for i in range(n)],
                                       "moy": [ints(moy[i]) if has[i] else None for i in range(n)]})
        page.time_ids[lv] = block
        return block

    def bounds(self):
        """(west, south, east, north) of the mapped levels: each level's box, densified, in lon/lat."""
        if getattr(self, "_bounds", None) is None:
            b = []
            for lv in self.levels:
                f = self.frames[lv].frame
                box = gpd.GeoSeries([shapely.box(*f.total_bounds)], crs=f.crs).segmentize(
                    (f.total_bounds[2] - f.total_bounds[0]) / 20 or 1)
                b.append(box.to_crs(WGS84).total_bounds)
            b = np.array(b)
            self._bounds = (float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1])), float(np.nanmax(b[:, 2])),
                            float(np.nanmax(b[:, 3])))
        return self._bounds

    # -- the choropleth of one level and period
    def level_layer(self, page: Page, lv: str, period: str, key: str, legend: str | None, show: bool) -> dict:
        level = self.frames[lv]
        n = len(level.frame)
        rows = self.values[(self.values["level"] == lv) & (self.values["period"] == period)]
        pos = level.index.get_indexer(rows["unit_id"])
        rows, pos = rows[pos >= 0], pos[pos >= 0]
        v = np.full(n, np.nan)
        lo, hi, cnt = v.copy(), v.copy(), v.copy()
        flags = np.full(n, "", dtype=object)
        v[pos] = rows["value"].to_numpy(float) * self.scale
        lo[pos] = rows["lower"].to_numpy(float) * self.scale
        hi[pos] = rows["upper"].to_numpy(float) * self.scale
        cnt[pos] = rows["n"].to_numpy(float)
        flags[pos] = rows["flags"].to_numpy(object)
        no_n = np.array(["no_sample_size" in str(f) for f in flags])
        cnt[no_n] = np.nan
        texts = [""]
        lookup = {"": 0}
        fidx = []
        for f in flags:
            if f not in lookup:
                lookup[f] = len(texts)
                texts.append(esc(_flag_text(f)))
            fidx.append(lookup[f])
        cls = classify.assign(v, self.bins[lv])
        style = {"weight": 0.25 if n > CANVAS_THRESHOLD else 0.5 if n > 1000 else 1.2, "color": "#555555",
                 "opacity": 0.6 if n > CANVAS_THRESHOLD else 0.8, "fillOpacity": 0.72,
                 "className": f"usm-level usm-level-{css_class(lv)}"}
        spec = {
            "key": key, "kind": "level", "geom": self.geometry(page, lv), "show": show, "legend": legend,
            "pane": PANES["level"][0], "z": PANES["level"][1], "canvas": n > CANVAS_THRESHOLD,
            "cls": cls.tolist(), "colors": self.colours[lv], "na": classify.NO_VALUE, "naLabel": _na_label(v, flags),
            "style": style, "title": esc(f"{self.ind.name}, {period}"),
            "value": {"v": [_num(x) for x in v], "unit": " %" if self.ind.percent else "",
                      "interval": "95 % interval",
                      "lo": [_num(x) for x in lo] if np.isfinite(lo).any() else None,
                      "hi": [_num(x) for x in hi] if np.isfinite(hi).any() else None},
            "fields": [[esc(self.ind.n_label), [None if not math.isfinite(x) else int(x) for x in cnt], ""]],
            "flags": {"f": fidx, "text": texts} if len(texts) > 1 else None,
            "tp": self.time_block(page, lv),
        }
        return spec

    def level_layers(self, page: Page, period: str, prefix: str = "") -> tuple[list, list, list, set]:
        """The choropleth of every level for ``period`` with its legend blocks (one shared block with
        ``classes="shared"``): ``(blocks, specs, layer-control entries, names taken)``."""
        blocks, specs, layers, taken = [], [], [], set()
        shared = page.new_id("usm-lg") if self.classes == "shared" else None
        if shared:
            blocks.append((shared, self.level_legend(None, period)))
        for lv in self.levels:
            legend = shared or page.new_id("usm-lg")
            if not shared:
                blocks.append((legend, self.level_legend(lv, period)))
            key = f"{prefix}level:{esc(lv)}"
            specs.append(self.level_layer(page, lv, period, key, legend, lv == self.show_level))
            layers.append((key, esc(_unique(level_label(lv), taken))))
        return blocks, specs, layers, taken

    def level_legend(self, lv: str | None, period: str) -> str:
        bins = self.bins[lv] if lv else next(iter(self.bins.values()))
        colours = self.colours[lv] if lv else next(iter(self.colours.values()))
        shown = self.values["value"].to_numpy(float) * self.scale
        sel = self.values["level"] == lv if lv else self.values["level"].isin(self.levels)
        y = shown[sel.to_numpy()]
        y = y[np.isfinite(y)]
        unit = " %" if self.ind.percent else ""
        rows = []
        lower = float(y.min()) if len(y) else float("nan")
        rows = list(zip(colours, _ranges([lower, *bins], unit)))
        flags = self.values.loc[sel.to_numpy(), "flags"].to_numpy(object)
        rows.append((classify.NO_VALUE, _na_label(shown[sel.to_numpy()], flags)))
        scheme = {"quantiles": "Quantiles", "fisher_jenks": "Natural breaks (Fisher–Jenks)",
                  "user": "Breaks as given"}[self.scheme]
        span = f"{self.periods[0]}–{self.periods[-1]}" if len(self.periods) > 1 else (self.periods[0] if self.periods else "")
        pooled = "every level and period" if self.classes == "shared" else "every period of this level"
        note = f"{scheme}, {len(bins)} classes, from {pooled} ({span}), so periods compare."
        sub = f"{self.ind.units} · {period}" + (f" · {level_label(lv)}" if lv else "")
        return _legend_block(self.ind.name, sub, rows, [note, *self.ind.notes,
                                                        "Hover a unit for its value, interval, n and flags."])


def _na_label(values: np.ndarray, flags: np.ndarray) -> str:
    """The label of units without a value: "not reported" when area-coded count files have no row
    for them (flag ``not_in_source``), "no value" otherwise."""
    nis = np.array(["not_in_source" in str(f).split(";") for f in flags], dtype=bool)
    na = ~np.isfinite(np.asarray(values, float))
    if not na.any() or not nis.any():
        return "no value"
    return NOT_REPORTED if nis[na].all() else f"no value or {NOT_REPORTED}"


def _legend_block(title: str, sub: str, rows, notes, block_id: str | None = None) -> str:
    """Legend HTML; every argument is plain text (escaped here), colours are checked #rrggbb."""
    parts = [f'<div class="usm-legend-title">{esc(title)}</div>']
    if sub:
        parts.append(f'<div class="usm-legend-sub">{esc(sub)}</div>')
    for colour, label in rows:
        parts.append(f'<div class="usm-legend-row"><i class="usm-swatch" style="background:{classify.check_colour(colour)}">'
                     f'</i><span>{esc(label)}</span></div>')
    for note in notes:
        parts.append(f'<div class="usm-legend-note">{esc(note)}</div>')
    return "".join(parts)


def _add_legend_box(page: Page, m, blocks: list[tuple[str, str]]) -> None:
    """A legend control holding blocks (id, inner HTML), each shown while one of its layers is."""
    box = page.new_id("usm-legend")
    inner = "".join(f'<div class="usm-legend-block" id="{bid}" hidden>{html}</div>' for bid, html in blocks)
    # collapsible, so it never has to cover the study area (before/after panes included)
    page.add_html(f'<div class="usm-legend leaflet-bar" id="{box}" hidden><button type="button" class="usm-legend-toggle" '
                  f'aria-expanded="true" title="Hide or show the legend">Legend</button>'
                  f'<div class="usm-legend-body">{inner}</div></div>')
    m.add_child(Call("control", box, "bottomright"))


def _add_title(page: Page, m, title: str, subtitle: str) -> None:
    tid = page.new_id("usm-title")
    page.add_html(f'<div class="usm-title" id="{tid}">{esc(title)}<small>{esc(subtitle)}</small></div>')
    m.add_child(Call("control", tid, "topleft"))


# ---------------------------------------------------------------------------------------- Gi*, KDE, impact

def _gistar_layer(b: _Builder, page: Page, lv: str, key: str, legend: str) -> tuple[dict, str, str] | None:
    hot = b.inputs.hotspots.get(lv)
    if hot is None or "gistar_bin" not in hot.columns:
        return None
    level = b.frames[lv]
    n = len(level.frame)
    pos = level.index.get_indexer(hot["unit_id"].astype(str))
    keep = pos >= 0
    cls = np.full(n, -2, dtype=np.int64)
    z = np.full(n, np.nan)
    p = z.copy()
    cnt = z.copy()
    zz = pd.to_numeric(hot.get("gistar_z"), errors="coerce").to_numpy(float) if "gistar_z" in hot else np.full(len(hot), np.nan)
    binv = pd.to_numeric(hot["gistar_bin"], errors="coerce").to_numpy(float)
    # the class is the FDR bin; a missing z (no neighbours, no variation) means "not computed"
    known = np.isfinite(binv[keep]) & (np.isfinite(zz[keep]) if "gistar_z" in hot else True)
    cls[pos[keep]] = np.where(known, np.clip(np.nan_to_num(binv[keep]), -3, 3) + 3, -1).astype(np.int64)
    z[pos[keep]] = zz[keep]
    if "gistar_p_fdr" in hot:
        p[pos[keep]] = pd.to_numeric(hot["gistar_p_fdr"], errors="coerce").to_numpy(float)[keep]
    if "count" in hot:
        cnt[pos[keep]] = pd.to_numeric(hot["count"], errors="coerce").to_numpy(float)[keep]
    period = ""
    if "period" in hot.columns and len(hot):
        period = str(hot["period"].iloc[0])
    period = period or str(b.inputs.kde_period or "")

    def sig(x, d):
        return None if not math.isfinite(x) else float(f"{x:.{d}g}")

    spec = {
        "key": key, "kind": "gistar", "geom": b.geometry(page, lv), "show": False, "legend": legend,
        "pane": PANES["gistar"][0], "z": PANES["gistar"][1], "canvas": int((cls != -2).sum()) > CANVAS_THRESHOLD,
        "cls": cls.tolist(), "colors": classify.GISTAR_COLOURS, "na": classify.NO_VALUE,
        "naLabel": "not computed (no neighbours or no variation)",
        "classLabels": [esc(t) for t in GISTAR_LABELS], "classStyle": {"3": {"fillOpacity": 0.25}},
        "style": {"weight": 0.4 if n > 1000 else 1.2, "color": "#444444", "opacity": 0.8, "fillOpacity": 0.75,
                  "className": f"usm-gistar usm-gistar-{css_class(lv)}"},
        "title": esc(f"Gi* ({period})" if period else "Gi*"),
        "fields": [["z", [sig(x, 3) for x in z], ""], ["p (FDR-adjusted)", [sig(x, 2) for x in p], ""],
                   ["incidents", [None if not math.isfinite(x) else int(x) for x in cnt], ""]],
    }
    rows = list(zip(classify.GISTAR_COLOURS, GISTAR_LABELS)) + [(classify.NO_VALUE, "not computed")]
    html = _legend_block("Getis–Ord Gi* hot and cold spots", f"{level_label(lv)} · {period}", rows,
                         [hotspot_value_note(hot)])
    return spec, html, period


#: what hotspots.gpkg's ``hotspot_value`` says Gi*/LISA were run on, in words for the legend
HOTSPOT_VALUE_WORDS = {
    "count": "incident counts",
    "rate": "incident rates per 1,000 residents",
    "eb_rate": "empirical Bayes smoothed incident rates per 1,000 residents",
}


def hotspot_value_note(hot) -> str:
    """The legend note of a Gi* layer: the value analysed (``hotspot_value``: count / rate / eb_rate;
    a layer from before the column existed was run on counts) and the significance rule
    (``significance``, e.g. "BH FDR q < 0.05"; before the column: FDR-adjusted p)."""
    value = ""
    if "hotspot_value" in hot.columns and len(hot):
        value = str(pd.Series(hot["hotspot_value"]).dropna().astype(str).iloc[0]) if hot["hotspot_value"].notna().any() else ""
    words = HOTSPOT_VALUE_WORDS.get(value or "count", value)
    rule = ""
    if "significance" in hot.columns and hot["significance"].notna().any():
        rule = str(pd.Series(hot["significance"]).dropna().astype(str).iloc[0])
    rule = rule or "FDR-adjusted p (Benjamini–Hochberg)"
    return f"Analysed: {words}. Significance: {rule}."


def _png_rgba(rgba: np.ndarray) -> bytes:
    """A PNG (8-bit RGBA, zlib level 9) written here: deterministic, no imaging library needed."""
    h, w, _ = rgba.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgba.reshape(h, w * 4)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _kde_layer(b: _Builder, page: Page, key: str, legend: str, max_pixels: int = 2_000_000):
    import rasterio
    from pyproj import Transformer
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from rasterio.io import MemoryFile

    source = b.inputs.kde
    if isinstance(source, (bytes, bytearray)):
        mem = MemoryFile(bytes(source))
        opened = mem.open()
    else:
        mem, opened = None, rasterio.open(source)
    with opened as src, warnings.catch_warnings():
        # rasterio 1.4's own transform helpers multiply Affines with `*` (affine 3 warns)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        if src.crs is None:
            return None
        band = src.read(1).astype(np.float64)
        if src.nodata is not None and not math.isnan(src.nodata):
            band[band == src.nodata] = np.nan
        tags = src.tags()
        transform, width, height = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height, *src.bounds)
        scale = math.sqrt(max(1.0, width * height / max_pixels))
        if scale > 1:
            width, height = int(width / scale), int(height / scale)
            transform, width, height = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height,
                                                                   *src.bounds, dst_width=width, dst_height=height)
        dst = np.full((height, width), np.nan)
        reproject(band, dst, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs="EPSG:3857", src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.nearest)
    if mem is not None:
        mem.close()
    y = dst[np.isfinite(dst) & (dst > 0)]
    if not len(y):
        return None
    k = b.k
    bins = classify.breaks(y, "quantiles" if b.scheme == "user" else b.scheme, k)
    colours = classify.palette("YlOrRd", len(bins))
    cls = classify.assign(dst, bins)
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.uint8)
    rgba = np.zeros((height, width, 4), np.uint8)
    ok = (cls >= 0) & (dst > 0)
    rgba[ok, :3] = rgb[cls[ok]]
    rgba[ok, 3] = 255
    left, top = transform.c, transform.f
    right, bottom = left + transform.a * width, top + transform.e * height
    tr = Transformer.from_crs("EPSG:3857", WGS84, always_xy=True)
    (w_, e_), (s_, n_) = tr.transform([left, right], [bottom, top])
    url = "data:image/png;base64," + base64.b64encode(_png_rgba(rgba)).decode()
    spec = {"key": key, "kind": "kde", "url": url, "bounds": [[round(s_, 6), round(w_, 6)], [round(n_, 6), round(e_, 6)]],
            "opacity": 0.7, "pane": PANES["kde"][0], "z": PANES["kde"][1], "show": False, "legend": legend}
    units = tags.get("UNITS", "density")
    period = str(b.inputs.kde_period or "")
    rows = list(zip(colours, _ranges([y.min(), *bins])))
    notes = []
    if tags.get("KERNEL") and tags.get("BANDWIDTH"):
        try:
            notes.append(f"{tags['KERNEL']} kernel, bandwidth {float(tags['BANDWIDTH']):,.0f} m")
        except ValueError:
            pass
    notes.append("Quantile classes of the cells above zero.")
    html = _legend_block(b.inputs.kde_name or "Incident density (KDE)", f"{units}" + (f" · {period}" if period else ""), rows, notes)
    return spec, html


def _impact_layer(b: _Builder, page: Page, key: str, legend: str, show: bool):
    areas = b.inputs.impact_areas
    if areas is None or not len(areas) or areas.crs is None:
        return None
    areas = areas.reset_index(drop=True)
    names = [str(a) for a in areas["area"]] if "area" in areas.columns else [f"area {i + 1}" for i in range(len(areas))]
    iv = (b.inputs.impact or {}).get("intervention") or {}
    before_win, after_win = iv.get("before"), iv.get("after")
    cls, colours, labels, plain, class_style = [], [], [], [], {}
    for i, a in enumerate(names):
        cls.append(i)
        colours.append(classify.IMPACT_COLOURS.get(a, "#666666"))
        label = IMPACT_LABELS.get(a, a)
        if a == "buffer" and iv.get("buffer_m"):
            label = f"Buffer ({float(iv['buffer_m']):,.0f} m)"
        plain.append(label)
        labels.append(esc(label))
        st = {"color": colours[-1]}
        if a == "control":
            st.update({"fill": False, "dashArray": "6 4", "weight": 2})
        elif a == "buffer":
            st.update({"fillOpacity": 0.2, "dashArray": "4 3"})
        class_style[str(i)] = st

    if "impact" not in page.geometry_ids:  # once per page, shared by both sides of a side-by-side view
        page.geometry_ids["impact"] = page.add_data({"ids": labels, "names": None, "enc": GEOMETRY_ENCODING, "g": encode_geometries(
            _to_wgs84(areas, b.simplify_m, simplify=True))})
    geom_id = page.geometry_ids["impact"]

    def days(win):
        try:
            return (dt.date.fromisoformat(win[1]) - dt.date.fromisoformat(win[0])).days + 1
        except (TypeError, ValueError, IndexError):
            return None

    name = iv.get("name") or "intervention"
    lines = []
    for _, row in areas.iterrows():
        ls = [f"Intervention: {name}"]
        bef, aft = row.get("before"), row.get("after")
        if bef is not None and pd.notna(bef):
            ls.append(f"incidents before: {_fmt(bef)}" + (f" ({before_win[0]} to {before_win[1]})" if before_win else ""))
        if aft is not None and pd.notna(aft):
            ls.append(f"incidents after: {_fmt(aft)}" + (f" ({after_win[0]} to {after_win[1]})" if after_win else ""))
        db, da = days(before_win), days(after_win)
        if db and da and pd.notna(bef) and pd.notna(aft) and float(bef) > 0:
            yb, ya = float(bef) * 365.25 / db, float(aft) * 365.25 / da
            ls.append(f"per year: {_fmt(yb)} → {_fmt(ya)} ({(ya / yb - 1) * 100:+.1f} %)")
        if "area_km2" in row and pd.notna(row["area_km2"]):
            ls.append(f"area: {float(row['area_km2']):,.2f} km²")
        lines.append([esc(t) for t in ls])
    spec = {"key": key, "kind": "impact", "geom": geom_id, "show": show, "legend": legend,
            "pane": PANES["impact"][0], "z": PANES["impact"][1], "canvas": False,
            "cls": cls, "colors": colours, "na": classify.NO_VALUE, "naLabel": "",
            "classStyle": class_style,
            "style": {"weight": 2.5, "opacity": 1, "fillOpacity": 0.3, "className": "usm-impact"},
            "lines": lines}
    notes = []
    if before_win and after_win:
        notes.append(f"Before: {before_win[0]} to {before_win[1]}; after: {after_win[0]} to {after_win[1]}.")
    html = _legend_block(f"Intervention: {name}", "", list(zip(colours, plain)), notes)
    return spec, html


# ---------------------------------------------------------------------------------------- public

def _inputs(source) -> MapInputs:
    if isinstance(source, MapInputs):
        return source
    if isinstance(source, (str, Path)):
        return load_run(source)
    raise UsmGeoError(f"cannot map {type(source).__name__}", fix="give a run folder or usm_geo.maps.MapInputs")


def _finish(page: Page, out) -> str | Path:
    html = inline_assets(page.figure.render())  # self-contained: the page links nothing
    if out is None:
        return html
    from usm_geo.io import write_text

    out = Path(out)
    write_text(out, html)
    return out


def _add_layer_control(page: Page, m, layers: list[tuple[str, str]]) -> None:
    data_id = page.add_data({"layers": [[key, name] for key, name in layers]})
    m.add_child(Call("layerControl", data_id))


def _unique(name: str, taken: set) -> str:
    out, i = name, 2
    while out in taken:
        out = f"{name} ({i})"
        i += 1
    taken.add(out)
    return out


def default_indicator(inputs: MapInputs) -> str | None:
    """The indicator a map shows when none is named: ``incident_rate`` if the table holds it, else
    the first rate, else the first indicator (``None`` when the table holds none)."""
    have = inputs.available()
    if "incident_rate" in have:
        return "incident_rate"
    rates = [i for i in have if (inputs.definitions.get(i) or {}).get("kind") == "rate"]
    return (rates or have or [None])[0]


def build_map(source, out=None, *, indicator: str | None = None, period=None, scheme: str = "quantiles",
              k: int = 5, breaks=None, classes: str = "level", palette=None, levels=None, show_level=None,
              hotspots: bool = True, kde: bool = True, impact: bool = True, tiles=None, title=None,
              simplify_m: float = 1.0):
    """A folium map of one indicator at every level, with Gi*, KDE and impact layers.

    Parameters
    ----------
    source : path or MapInputs
        A run's output folder (see :func:`usm_geo.maps.load_run`) or :class:`MapInputs`.
    out : path, optional
        Write the HTML here (atomically) and return the path; otherwise return the HTML text.
    indicator : str, optional
        Indicator id (a column of ``indicators.csv`` / ``measure`` of ``measures.csv``); default
        :func:`default_indicator`.
    period : str, optional
        Period shown; default the run's current period, else the last period with values.
    scheme, k, breaks : classification
        ``"quantiles"`` (default), ``"fisher_jenks"`` or ``"user"`` (``breaks`` = upper bounds,
        in the units shown: percent for shares). ``k`` classes (2–9). Breaks are computed from
        every period together, so maps of different periods compare.
    classes : ``"level"`` or ``"shared"``
        Breaks per level (default; each level's layer has its legend block) or one set for all.
    palette : str or list, optional
        ColorBrewer name or ``#rrggbb`` colours; default YlOrRd (higher = worse) or YlGnBu
        (higher = better), both colour-blind safe.
    levels, show_level : optional
        Levels to draw (default all, finest first) and the one shown on opening (default the
        finest polygon level that is not H3, else the finest).
    hotspots, kde, impact : bool
        Add the Gi* layers (``hotspots.gpkg``), the KDE image (``kde.tif``) and the intervention's
        treated/buffer/control areas, when the inputs have them (hidden on opening).
    tiles : None, True, "osm", "carto-light", an xyzservices name or a tile URL
        No basemap by default: the page is self-contained (Leaflet written into it) and makes no
        request at all. A basemap (see :func:`basemap`, attribution included) is the only thing a
        map then loads from the network; when its tiles fail, a note says "basemap unavailable
        (offline)" and every layer still draws.
    title : str, optional
        Page title; default the study's name.
    simplify_m : float
        Simplification tolerance in metres for polygon levels (not H3 cells): each polygon is
        simplified on its own with ``preserve_topology=True`` (it stays valid; a border shared by
        two units may differ between them by up to this much, invisible at 1 m).

    Every string from data or the study is HTML-escaped; user strings never enter script source.
    The map shows what its inputs hold: a run folder is the internal profile. For a public map,
    give :class:`MapInputs` with the public tables (``disclosure.apply_profile``'s measures,
    ``export.public_hotspots`` and ``export.public_impact_areas`` layers, the masked KDE).
    """
    inputs = _inputs(source)
    with deterministic_ids():
        b = _Builder(inputs, indicator=indicator, scheme=scheme, k=k, breaks=breaks, classes=classes,
                     palette=palette, levels=levels, simplify_m=simplify_m, show_level=show_level)
        period = b.period(period)
        study = title if title is not None else (inputs.title or "usm_geo")
        page = Page(esc(f"{study} — {b.ind.name}, {period}"))
        m = _new_map(page, b.bounds(), tiles)
        m.add_child(Statement(f"usmGeo.map({m.get_name()}, \"main\");"))
        m.add_child(Call("fit", page.add_data({"bounds": _fit(b.bounds())})))
        _add_title(page, m, study, f"{b.ind.name} · {period}")
        blocks, level_specs, layers, taken = b.level_layers(page, period)
        specs = [("polygons", spec) for spec in level_specs]
        if hotspots:
            for lv in b.all_levels:
                legend = page.new_id("usm-lg")
                got = _gistar_layer(b, page, lv, f"gistar:{esc(lv)}", legend)
                if got:
                    specs.append(("polygons", got[0]))
                    blocks.append((legend, got[1]))
                    name = f"Gi* hot spots: {level_label(lv)}" + (f", {got[2]}" if got[2] else "")
                    layers.append((f"gistar:{esc(lv)}", esc(_unique(name, taken))))
        if kde and inputs.kde is not None:
            legend = page.new_id("usm-lg")
            got = _kde_layer(b, page, "kde", legend)
            if got:
                specs.append(("image", got[0]))
                blocks.append((legend, got[1]))
                layers.append(("kde", esc(_unique(inputs.kde_name or "Incident density (KDE)", taken))))
        if impact:
            legend = page.new_id("usm-lg")
            got = _impact_layer(b, page, "impact", legend, show=False)
            if got:
                specs.append(("polygons", got[0]))
                blocks.append((legend, got[1]))
                layers.append(("impact", esc(_unique("Intervention areas", taken))))
        _add_legend_box(page, m, blocks)
        for fn, spec in specs:
            m.add_child(Call("bigPolygons" if spec.get("canvas") else fn, page.add_data(spec)))
        _add_layer_control(page, m, layers)
        m.add_child(Statement("usmGeo.ready = true;"))
        return _finish(page, out)


def _fit(bounds):
    w, s, e, n = bounds
    return [[round(s, 6), round(w, 6)], [round(n, 6), round(e, 6)]]


def build_before_after(source, out=None, *, indicator: str | None = None, before=None, after=None,
                       scheme: str = "quantiles", k: int = 5, breaks=None, classes: str = "level", palette=None,
                       levels=None, show_level=None, impact: bool = True, tiles=None, title=None,
                       simplify_m: float = 1.0):
    """Two maps side by side, ``before`` and ``after`` periods, kept in step (the page's own usmGeo.sync).

    Same classes on both sides (pooled over every period), each level's geometry written once
    and shared. Panning, zooming and switching layers on one side does the same on the other.
    ``before`` defaults to the run's baseline period (else the first), ``after`` to its current
    period (else the last). The intervention's areas are shown on both sides when present. Other
    parameters as in :func:`build_map`.
    """
    inputs = _inputs(source)
    with deterministic_ids():
        b = _Builder(inputs, indicator=indicator, scheme=scheme, k=k, breaks=breaks, classes=classes,
                     palette=palette, levels=levels, simplify_m=simplify_m, show_level=show_level)
        if before is None:
            base = str(inputs.periods.get("baseline") or "")
            before = base if base in b.periods else b.periods[0]
        if after is None:
            after = b.period(None)
        before, after = b.period(before), b.period(after)
        study = title if title is not None else (inputs.title or "usm_geo")
        page = Page(esc(f"{study} — {b.ind.name}, {before} and {after}"))
        bounds = b.bounds()
        maps = {}
        for side, period, left in (("before", before, "0%"), ("after", after, "50%")):
            m = _new_map(page, bounds, tiles, width="50%", height="100%", left=left, position="absolute")
            maps[side] = m
            m.add_child(Statement(f"usmGeo.map({m.get_name()}, \"{side}\");"))
            m.add_child(Call("fit", page.add_data({"bounds": _fit(bounds)})))
            _add_title(page, m, f"{'Before' if side == 'before' else 'After'}: {period}", f"{study} · {b.ind.name}")
            blocks, specs, layers, taken = b.level_layers(page, period, prefix=f"{side}/")
            if impact:
                legend = page.new_id("usm-lg")
                got = _impact_layer(b, page, f"{side}/impact", legend, show=True)
                if got:
                    specs.append(got[0])
                    blocks.append((legend, got[1]))
                    layers.append((f"{side}/impact", esc(_unique("Intervention areas", taken))))
            _add_legend_box(page, m, blocks)
            for spec in specs:
                m.add_child(Call("bigPolygons" if spec.get("canvas") else "polygons", page.add_data(spec)))
            _add_layer_control(page, m, layers)
        page.figure.add_child(Statement('usmGeo.sync("before", "after");\n        usmGeo.ready = true;'))
        return _finish(page, out)
