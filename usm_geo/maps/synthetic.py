"""Synthetic map inputs for tests, examples and benchmarks (deterministic, no files needed).

:func:`grid_inputs` makes a grid of square units (one fine level, one parent level of column
blocks and a one-unit city) in UTM 33N with two indicators over a few periods, Gi* layers and
impact areas; every label can be replaced (for escaping tests). :func:`h3_inputs` makes an H3
level of about ``n`` cells for size and load-time measurements.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from usm_geo.maps.data import MapInputs


def _two_sided_p(z: np.ndarray) -> np.ndarray:
    from scipy.special import erfc

    return erfc(np.abs(z) / np.sqrt(2.0))


def _bins(z: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ArcGIS's Gi* classes of ``p`` (±3/±2/±1 at p < 0.01/0.05/0.10), as the public rule derives them."""
    return (np.sign(z) * np.select([p < 0.01, p < 0.05, p < 0.10], [3, 2, 1], 0)).astype(np.int64)

CRS = "EPSG:32633"
ORIGIN = (390_000.0, 5_790_000.0)  # Brandenburg, south-east of Berlin


def _squares(rows: int, cols: int, size: float) -> list:
    x0, y0 = ORIGIN
    return [shapely.box(x0 + c * size, y0 + r * size, x0 + (c + 1) * size, y0 + (r + 1) * size)
            for r in range(rows) for c in range(cols)]


def grid_inputs(rows: int = 5, cols: int = 10, *, size: float = 1000.0, names=None, ids=None,
                periods=("2022", "2023"), level: str = "area", parent: str = "district",
                title: str = "Grid City", indicator_name: str = "Recorded incidents per 1,000 residents",
                categories=("*",), survey_labels=("safe", "very safe"), survey_question: str = "safe_after_dark",
                extra_flag: str | None = None, area_names=("treated", "buffer", "control"),
                seed: int = 1) -> MapInputs:
    """A ``rows`` × ``cols`` grid of ``size`` m squares (level ``level``), parents of 5-column
    blocks (level ``parent``) and ``city``; ``incident_rate`` and ``safe_share`` for ``periods``.

    ``names``/``ids`` replace the fine units' names/ids (lists of length rows × cols); the other
    string arguments replace the study title, indicator name, categories, survey labels, level
    names, impact area names and add an unknown flag, so every label can carry test text.
    """
    rng = np.random.default_rng(seed)
    n = rows * cols
    ids = [f"A{i:03d}" for i in range(n)] if ids is None else [str(i) for i in ids]
    names = [f"Area {i}" for i in range(n)] if names is None else [str(x) for x in names]
    geoms = _squares(rows, cols, size)
    block = [f"B{(i % cols) // 5}" for i in range(n)]
    fine = gpd.GeoDataFrame({"unit_id": ids, "name": names, "parent_id": block}, geometry=geoms, crs=CRS)
    parents = fine.dissolve(by="parent_id", as_index=False)[["parent_id", "geometry"]].rename(columns={"parent_id": "unit_id"})
    parents["name"] = [f"Block {u}" for u in parents["unit_id"]]
    parents["parent_id"] = "city"
    city = gpd.GeoDataFrame({"unit_id": ["city"], "name": [title], "parent_id": [None]},
                            geometry=[shapely.union_all(geoms)], crs=CRS)
    units = {level: fine, parent: parents[["unit_id", "name", "parent_id", "geometry"]], "city": city}
    rows_out = []
    for lv, layer in units.items():
        for p_i, period in enumerate(periods):
            k = len(layer)
            count = rng.poisson(20 + 15 * np.arange(k) / max(k, 1) + 3 * p_i, k).astype(float)
            pop = np.full(k, 1000.0 * (n if lv == "city" else (5 * rows if lv == parent else 1)))
            rate = count / pop * 1000
            share = np.clip(rng.normal(0.6, 0.15, k), 0, 1)
            flags = np.where(count < 10, "small_count", "")
            sflags = np.where(np.arange(k) % 7 == 3, "small_n;small_eff_n", "")
            if extra_flag is not None:
                flags = np.where(np.arange(k) % 2 == 0, extra_flag, flags)
            for j in range(k):
                rows_out.append({
                    "level": lv, "unit_id": layer["unit_id"].iloc[j], "name": layer["name"].iloc[j], "period": period,
                    "incident_rate": rate[j], "incident_rate_lower": rate[j] * 0.8, "incident_rate_upper": rate[j] * 1.2,
                    "incident_rate_n": count[j], "incident_rate_flags": flags[j],
                    "safe_share": share[j], "safe_share_lower": max(share[j] - 0.1, 0),
                    "safe_share_upper": min(share[j] + 0.1, 1), "safe_share_n": 40, "safe_share_flags": sflags[j],
                })
    table = pd.DataFrame(rows_out)
    definitions = {
        "incident_rate": {"id": "incident_rate", "name": indicator_name, "kind": "rate", "per": 1000.0,
                          "lower_is_better": True, "categories": list(categories)},
        "safe_share": {"id": "safe_share", "name": f"Share who feel safe ({survey_question})", "kind": "share",
                       "lower_is_better": False, "question": survey_question, "yes": list(survey_labels),
                       "exclude": ["don't know"], "never_go_out": survey_labels[0] if survey_labels else None},
    }
    hot = fine[["unit_id", "name", "geometry"]].copy()
    z = np.linspace(-3.5, 3.5, n)
    hot["period"] = periods[-1]
    hot["count"] = rng.poisson(20, n)
    hot["gistar_z"] = z
    hot["gistar_p_fdr"] = _two_sided_p(z)  # taken as already adjusted: the bins are its classes
    hot["gistar_bin"] = _bins(z, hot["gistar_p_fdr"].to_numpy())
    x0, y0 = ORIGIN
    treated = shapely.box(x0 + size, y0 + size, x0 + 2 * size, y0 + 2 * size)
    buffer = treated.buffer(400).difference(treated)
    control = shapely.union_all(geoms).difference(treated.buffer(400))
    areas = gpd.GeoDataFrame({"area": list(area_names), "before": [300, 120, 5000], "after": [180, 125, 4900],
                              "area_km2": [g.area / 1e6 for g in (treated, buffer, control)]},
                             geometry=[treated, buffer, control], crs=CRS)
    impact = {"intervention": {"name": f"{title} pilot", "before": [f"{periods[0]}-01-01", f"{periods[0]}-12-31"],
                               "after": [f"{periods[-1]}-01-01", f"{periods[-1]}-12-31"], "buffer_m": 400.0}}
    return MapInputs(units=units, table=table, definitions=definitions, hotspots={level: hot}, impact_areas=areas,
                     impact=impact, title=title, periods={"baseline": periods[0], "current": periods[-1]})


#: Strings that run script or templates if a map pastes them unescaped (XSS canaries): markup in
#: text and attribute context, script-element breakouts, JavaScript template literals, JS line
#: separators, already-escaped text (double unescaping), mutation XSS, and Jinja template syntax.
XSS_PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    '"><svg onload=alert(3)>',
    "'><iframe src=\"javascript:alert(4)\"></iframe>",
    "${alert(5)}",
    "`-alert(6)-`",
    "</script><script>alert(7)</script>",
    "<details open ontoggle=alert(8)>",
    "{{constructor.constructor('alert(9)')()}}",
    "\u2028alert(10)//\u2029",
    "&lt;img src=x onerror=alert(11)&gt;",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(12)>",
    "{{ 7*7 }}{% if 1 %}alert(13){% endif %}",
    "<a href=\"javascript:alert(14)\" onclick=alert(14) onmouseover=alert(14)>link</a>",
]


def payload_inputs(payload: str) -> MapInputs:
    """:func:`grid_inputs` (2 × 10) whose every label carries ``payload``: unit names and ids, the
    study title, the indicator name, categories, survey question and answer labels, the level
    name, a period label, a flag, and an impact area name."""
    return grid_inputs(rows=2, cols=10, names=[f"Area {i} {payload}" for i in range(20)],
                       ids=[f"id{i}{payload}" for i in range(20)], title=f"Study {payload}",
                       indicator_name=f"Rate {payload}", categories=[f"cat {payload}"],
                       survey_labels=[f"safe {payload}", "very safe"], survey_question=f"q {payload}",
                       extra_flag=f"flag {payload}", area_names=["treated", f"area {payload}", "control"],
                       level=f"lvl {payload}", periods=("2022", f"2023 {payload}"))


def h3_inputs(n: int = 50_000, *, res: int = 9, periods=("2022", "2023"), seed: int = 1,
              lat: float = 52.52, lon: float = 13.405) -> MapInputs:
    """About ``n`` H3 cells (a ``grid_disk`` around Berlin) with ``incident_rate`` for ``periods``,
    a Gi* layer and the city outline: the size benchmark's map (PERF-BASELINES §5)."""
    import h3

    k = 1
    while 3 * k * (k + 1) + 1 < n:
        k += 1
    centre = h3.latlng_to_cell(lat, lon, res)
    cells = sorted(h3.grid_disk(centre, k), key=lambda c: (h3.grid_distance(centre, c), c))[:n]
    polys = [shapely.Polygon([(b, a) for a, b in h3.cell_to_boundary(c)]) for c in cells]
    layer = gpd.GeoDataFrame({"unit_id": cells, "name": cells}, geometry=polys, crs="EPSG:4326")
    city = gpd.GeoDataFrame({"unit_id": ["city"], "name": ["H3 City"]}, geometry=[shapely.union_all(polys)],
                            crs="EPSG:4326")
    rng = np.random.default_rng(seed)
    frames = []
    for p_i, period in enumerate(periods):
        count = rng.poisson(3 + p_i, len(cells)).astype(float)
        rate = count / 500 * 1000
        frames.append(pd.DataFrame({"level": f"h3_{res}", "unit_id": cells, "period": period, "incident_rate": rate,
                                    "incident_rate_lower": rate * 0.5, "incident_rate_upper": rate * 2,
                                    "incident_rate_n": count,
                                    "incident_rate_flags": np.where(count < 10, "small_count", "")}))
        frames.append(pd.DataFrame({"level": ["city"], "unit_id": ["city"], "period": [period],
                                    "incident_rate": [rate.mean()], "incident_rate_lower": [rate.mean() * 0.99],
                                    "incident_rate_upper": [rate.mean() * 1.01], "incident_rate_n": [count.sum()],
                                    "incident_rate_flags": [""]}))
    z = rng.normal(0, 1.5, len(cells))
    hot = layer[["unit_id", "geometry"]].copy()
    hot["period"], hot["count"], hot["gistar_z"] = periods[-1], rng.poisson(3, len(cells)), z
    hot["gistar_p_fdr"] = _two_sided_p(z)  # taken as already adjusted: the bins are its classes
    hot["gistar_bin"] = _bins(z, hot["gistar_p_fdr"].to_numpy())
    return MapInputs(units={f"h3_{res}": layer, "city": city}, table=pd.concat(frames, ignore_index=True),
                     definitions={"incident_rate": {"name": "Recorded incidents per 1,000 residents", "kind": "rate",
                                                    "per": 1000.0, "lower_is_better": True}},
                     hotspots={f"h3_{res}": hot}, title="H3 City", periods={"current": periods[-1]})
