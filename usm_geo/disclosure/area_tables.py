"""Floor 5: a run's area tables in a disclosure profile (public or internal), before anything is written.

The profile (:func:`usm_geo.disclosure.apply_profile`) is applied to the whole measures table first
(suppression looks across levels and categories); then the wide indicator table is built per level
and joined to unit geometry (:func:`area_tables`). :func:`read_run` reads a run folder's files
(:mod:`usm_geo.io`) and returns them in one profile; maps, reports and exports all read through it,
so none of them needs another's module. Geometry stays in the CRS the run wrote (the working CRS,
metres) unless ``crs`` asks for another; counts ``k`` and ``min_n`` are numbers of records/respondents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from usm_geo.indicators.report_card import BASE_MEASURES
from usm_geo.disclosure.profiles import PROFILES, apply_profile, profile_time_patterns
from usm_geo.io import MARKER, check_run_folder, read_layers, read_table

DEFAULT_K = 5
DEFAULT_MIN_N = 30
SMOOTHED = {"": 0, "_eb": 1, "_seb": 2}
PARTS = ("_lower", "_upper", "_n", "_flags")
#: The only hot spot columns a public file carries (plus geometry): no counts.
PUBLIC_HOTSPOT_COLUMNS = ("unit_id", "name", "period", "gistar_z", "gistar_bin", "lisa_quadrant", "hotspot_value",
                          "significance")
#: Columns of impact_areas that are counts (left out of public files).
IMPACT_COUNT_COLUMNS = ("before", "after")


def base_id(ind: str) -> tuple[str, str]:
    for suffix in ("_seb", "_eb"):
        if ind.endswith(suffix):
            return ind[: -len(suffix)], suffix
    return ind, ""


def indicator_ids(measures: pd.DataFrame) -> list[str]:
    """Indicator ids of a measures table (not count/harm/population), each base id followed by its
    ``_eb`` and ``_seb`` smoothed versions."""
    ids = [m for m in pd.unique(measures["measure"]) if m not in BASE_MEASURES]
    return sorted(ids, key=lambda i: (base_id(i)[0], SMOOTHED[base_id(i)[1]]))


def shown_ids(measures: pd.DataFrame) -> list[str]:
    """The ids an area table shows: :func:`indicator_ids`, or ``["count"]`` when the measures hold
    counts but no indicator (no population, no survey), so that such a run still has tables and a map."""
    ids = indicator_ids(measures)
    if not ids and (measures["measure"] == "count").any():
        return ["count"]
    return ids


def wide_table(measures: pd.DataFrame, names: dict, ids: list[str]) -> pd.DataFrame:
    """The wide table of ``indicators.csv`` (category ``all``): ``level, unit_id, name, period`` and
    ``<id>, <id>_lower, <id>_upper, <id>_n, <id>_flags`` per id, sorted by level (as listed), unit, period.

    Used by the run (``indicators.csv``) and by exports; kept here, away from the statistics, so a
    plain export does not import scipy.
    """
    key = ["level", "unit_id", "period"]
    sub = measures[(measures["category"] == "all") & measures["measure"].isin(ids)]
    if sub.empty:
        return pd.DataFrame(columns=["level", "unit_id", "name", "period"])
    piv = sub.set_index(key + ["measure"])[["value", "lower", "upper", "n", "flags"]].unstack("measure")
    cols = {}
    for i in ids:
        if ("value", i) not in piv.columns:
            continue
        cols[i] = piv[("value", i)]
        cols[f"{i}_lower"] = piv[("lower", i)]
        cols[f"{i}_upper"] = piv[("upper", i)]
        cols[f"{i}_n"] = piv[("n", i)]
        cols[f"{i}_flags"] = piv[("flags", i)].fillna("")
    out = pd.DataFrame(cols, index=piv.index).reset_index()
    out.insert(2, "name", [names.get(lv, {}).get(u, u) for lv, u in zip(out["level"], out["unit_id"])])
    order = {lv: k for k, lv in enumerate(pd.unique(measures["level"]))}
    return (out.assign(_k=out["level"].map(order)).sort_values(["_k", "unit_id", "period"], kind="stable")
            .drop(columns="_k").reset_index(drop=True))


def apply_disclosure(measures: pd.DataFrame, crosswalk: pd.DataFrame | None, *, profile: str, k: int,
                     min_n: int = DEFAULT_MIN_N) -> tuple[pd.DataFrame, dict]:
    """:func:`usm_geo.disclosure.profiles.apply_profile` on the whole measures table."""
    from usm_geo.errors import UsmGeoError

    if profile not in PROFILES:
        raise UsmGeoError(f"unknown profile '{profile}'", where="--profile", fix="use public or internal")
    return apply_profile(measures, crosswalk, profile=profile, k=int(k), min_n=int(min_n))


@dataclass
class AreaTables:
    """The wide indicator table of each level joined to its geometry, after the profile."""

    layers: dict  # level → GeoDataFrame (level, unit_id, name, period, <id>…, geometry)
    ids: list
    periods: list
    measures: pd.DataFrame  # the measures after the profile (all levels, periods, categories)
    profile: str
    k: int
    min_n: int
    report: dict
    crs: object


def area_tables(units_layers: dict, measures: pd.DataFrame, crosswalk: pd.DataFrame | None, *,
                profile: str = "public", k: int = DEFAULT_K, min_n: int = DEFAULT_MIN_N, indicators=None,
                levels=None, periods=None, crs=None) -> AreaTables:
    """Apply the profile to the whole measures table, then build one wide table per level
    (category ``all``; columns like indicators.csv) with the unit geometry, filtered and reprojected."""
    import geopandas as gpd
    from pyproj import CRS
    from pyproj.exceptions import CRSError as CRSError_

    from usm_geo.errors import UsmGeoError

    out, report = apply_disclosure(measures, crosswalk, profile=profile, k=k, min_n=min_n)
    ids = _pick(indicators, shown_ids(out), "indicator", "--indicators")
    all_levels = _pick(levels, list(units_layers), "level", "--levels")
    names = {lv: dict(zip(layer["unit_id"], layer["name"])) for lv, layer in units_layers.items()}
    table = wide_table(out[out["level"].isin(all_levels)], names, ids)
    run_periods = _pick(periods, sorted(set(table["period"])) if len(table) else [], "period", "--periods")
    if periods:
        table = table[table["period"].isin(set(run_periods))]
    target = None
    if crs is not None:
        try:
            target = CRS.from_user_input(crs)
        except (CRSError_, TypeError, ValueError):
            raise UsmGeoError(f"'{crs}' is not a coordinate reference system", where="--crs",
                              fix="use an EPSG code such as EPSG:4326 or EPSG:3857") from None
    layers = {}
    for level in all_levels:
        unit = units_layers[level]
        rows = table[table["level"] == level].reset_index(drop=True)
        for i in ids:
            if f"{i}_n" in rows:
                rows[f"{i}_n"] = pd.array(pd.to_numeric(rows[f"{i}_n"]).round(), dtype="Int64")
            for col in (i, f"{i}_lower", f"{i}_upper"):
                if col in rows and rows[col].dtype == object:  # counts (no rate): all-empty intervals are objects
                    rows[col] = pd.to_numeric(rows[col], errors="coerce").astype(float)
        geom = unit.set_index("unit_id").geometry
        frame = gpd.GeoDataFrame(rows, geometry=geom.reindex(rows["unit_id"]).to_numpy(), crs=unit.crs)
        if target is not None:
            frame = _to_crs(frame, target)
        layers[level] = frame
    first = next(iter(units_layers.values()), None)
    return AreaTables(layers=layers, ids=ids, periods=run_periods, measures=out, profile=profile, k=int(k),
                      min_n=int(min_n), report=report, crs=target if target is not None else (first.crs if first is not None else None))


def _pick(asked, have: list, what: str, option: str) -> list:
    """``have`` (in its order) narrowed to ``asked``, or all of it when nothing is asked; a name the
    run does not have is an error that lists the choices."""
    from usm_geo.errors import UsmGeoError

    if not asked:
        return list(have)
    unknown = [a for a in asked if a not in have]
    if unknown:
        raise UsmGeoError(f"no {what} '{unknown[0]}' in this run", where=option, fix=f"choose from: {', '.join(have)}")
    return [h for h in have if h in set(asked)]


def _to_crs(frame, target):
    from usm_geo.errors import CRSError

    if frame.crs is None:
        raise CRSError("the units have no CRS, so they cannot be reprojected", fix="export without --crs")
    return frame.to_crs(target)


def public_hotspots(layer, k: int):
    """A hot spot layer for the public: unit ids, Gi* z (rounded to 0.1, so that counts cannot be
    solved back exactly from the z of every unit), the FDR bin and the LISA quadrant, the value
    analysed and the significance rule. No counts. The bin and the quadrant are re-derived under the
    public rule (:func:`usm_geo.hotspots.fdr.public_rule`: Benjamini–Hochberg, α ≤ 0.05) from the
    layer's p-values, so a run made with ``fdr = false`` or before the rule publishes nothing that
    is not significant after BH."""
    from usm_geo.hotspots.fdr import public_rule

    layer = public_rule(layer)
    keep = [c for c in PUBLIC_HOTSPOT_COLUMNS if c in layer.columns]
    out = layer[keep + [layer.geometry.name]].copy()
    if "gistar_z" in out:
        out["gistar_z"] = out["gistar_z"].round(1)
    return out


def public_impact_areas(layer, k: int):
    """Impact areas for the public: the treated, buffer and control polygons without their before /
    after counts. Those are multi-period totals over areas that may be unions of units (an
    intervention named by unit ids), i.e. sums of published unit × period cells: one of them could
    give a suppressed cell back by differencing, so they stay internal (``impact.json``)."""
    return layer.drop(columns=[c for c in IMPACT_COUNT_COLUMNS if c in layer.columns])


def kde_threshold(tags: dict, k: int) -> float | None:
    """Density (in the surface's units per km²) that ``k`` events reach at most at one cell: the peak
    of the discretised kernel times k. A cell at or above it has at least k events within reach."""
    try:
        h, cell = float(tags["BANDWIDTH"]), float(tags["CELL_SIZE"])
    except (KeyError, ValueError):
        return None
    kernel = tags.get("KERNEL", "quartic")
    if kernel == "quartic":
        from usm_geo.hotspots.kde import quartic_kernel

        peak = float(quartic_kernel(h / cell).max())
    elif kernel == "gaussian":
        sigma = h / cell
        r = int(4.0 * sigma + 0.5)
        x = np.arange(-r, r + 1, dtype=float)
        w = np.exp(-0.5 * (x / sigma) ** 2)
        peak = float((w / w.sum()).max() ** 2)
    else:
        return None
    return k * peak / (cell * cell / 1e6)


def kde_bytes(source: Path, *, profile: str, k: int) -> tuple[bytes | None, dict]:
    """The KDE GeoTIFF's bytes in ``profile``: as written for ``internal``; for ``public`` the cells
    below :func:`kde_threshold` become nodata, so no visible bump can come from fewer than k events
    (one incident's kernel would show where it was). ``None`` when it cannot be published."""
    if profile != "public":
        return Path(source).read_bytes(), {"masked_below": None}
    import rasterio
    from rasterio.io import MemoryFile

    with rasterio.open(source) as src:
        tags = src.tags()
        values = src.read(1)
        meta = src.profile.copy()
        desc = src.descriptions[0]
    threshold = kde_threshold(tags, k)
    if threshold is None:
        return None, {"masked_below": None, "skipped": "unknown kernel: not published"}
    values = np.where(values >= threshold, values, np.nan).astype(np.float32)
    tags["PUBLIC_MASK"] = f"cells below {threshold!r} (k={k} events at one point) set to nodata"
    with MemoryFile() as mem:
        with mem.open(**meta) as dst:
            dst.write(values, 1)
            dst.update_tags(**tags)
            if desc:
                dst.set_band_description(1, desc)
        data = mem.read()
    return data, {"masked_below": threshold}


@dataclass
class RunFolder:
    """A run folder's outputs read back, with the area tables in one profile (:func:`read_run`)."""

    folder: Path
    info: dict  # run.json
    tables: AreaTables
    raw_hotspots: dict  # level → hotspots.gpkg layer, as the run wrote it (internal)
    raw_impact_areas: object  # impact_areas.gpkg's layer or None (internal)
    impact: dict | None  # impact.json
    kde: Path | None  # the run's kde.tif (internal)

    @property
    def hotspots(self) -> dict:
        """The hot spot layers in the tables' profile."""
        if self.tables.profile != "public":
            return self.raw_hotspots
        return {lv: public_hotspots(layer, self.tables.k) for lv, layer in self.raw_hotspots.items()}

    @property
    def impact_areas(self):
        """The impact areas in the tables' profile."""
        if self.raw_impact_areas is None or self.tables.profile != "public":
            return self.raw_impact_areas
        return public_impact_areas(self.raw_impact_areas, self.tables.k)

    def table(self, name: str) -> pd.DataFrame | None:
        """Another CSV of the run folder (``ledger.csv``, ``progress.csv``…) read by :func:`read_table`,
        as the run wrote it (internal); None when the run has none."""
        path = self.folder / name
        return read_table(path) if path.is_file() else None

    def time_patterns(self) -> pd.DataFrame | None:
        """``time_patterns.csv`` in the tables' profile (public: category ``all`` only, counts 1 … k−1
        suppressed, see :func:`usm_geo.disclosure.profile_time_patterns`), with a boolean ``suppressed``
        column; None when the run has none."""
        table = self.table("time_patterns.csv")
        if table is None:
            return None
        return time_patterns_in_profile(table, self.table("crosswalk.csv"), profile=self.tables.profile, k=self.tables.k)

    def kde_in_profile(self) -> bytes | None:
        """The KDE GeoTIFF's bytes in the tables' profile (:func:`kde_bytes`)."""
        if self.kde is None:
            return None
        return kde_bytes(self.kde, profile=self.tables.profile, k=self.tables.k)[0]


def time_patterns_in_profile(table: pd.DataFrame, crosswalk: pd.DataFrame | None, *, profile: str, k: int) -> pd.DataFrame:
    """The time-pattern table as ``profile`` publishes it (``count`` nullable, ``suppressed`` column)."""
    if profile == "internal":
        out = table.copy()
        out["count"] = pd.array(pd.to_numeric(out["count"]), dtype="Int64")
        out["suppressed"] = False
        return out

    return profile_time_patterns(table, crosswalk, profile=profile, k=k)[0]


def read_run(run_dir, *, profile: str | None = None, k: int | None = None, indicators=None, levels=None,
             periods=None, crs=None) -> RunFolder:
    """Read a run folder's outputs (never its inputs) and build its area tables in ``profile``
    (default: the run's ``outputs.profile``; ``k`` default: its ``outputs.suppression_threshold``, else 5),
    filtered by ``indicators``, ``levels`` and ``periods`` and reprojected to ``crs``."""
    from usm_geo.errors import OutputError, UsmGeoError

    run_dir = check_run_folder(run_dir)
    for required in ("units.gpkg", "measures.csv"):
        if not (run_dir / required).is_file():
            raise OutputError(f"has no {required}", where=run_dir, fix="rerun the study with this version of usm_geo")
    info = json.loads((run_dir / MARKER).read_text(encoding="utf-8"))
    outputs = info.get("outputs") or {}
    profile = profile or outputs.get("profile") or "internal"
    if profile not in PROFILES:
        raise UsmGeoError(f"unknown profile '{profile}'", where="--profile", fix="use public or internal")
    if k is None:
        k = int(outputs.get("suppression_threshold") or DEFAULT_K)
    if int(k) < 1:
        raise UsmGeoError(f"k must be at least 1, not {k}", where="--k", fix="e.g. k = 5")
    min_n = int(outputs.get("min_n") or DEFAULT_MIN_N)
    units = read_layers(run_dir / "units.gpkg")
    measures = read_table(run_dir / "measures.csv")
    crosswalk = read_table(run_dir / "crosswalk.csv") if (run_dir / "crosswalk.csv").exists() else None
    tables = area_tables(units, measures, crosswalk, profile=profile, k=k, min_n=min_n, indicators=indicators,
                         levels=levels, periods=periods, crs=crs)
    hot = read_layers(run_dir / "hotspots.gpkg") if (run_dir / "hotspots.gpkg").exists() else {}
    areas = None
    if (run_dir / "impact_areas.gpkg").exists():
        areas = next(iter(read_layers(run_dir / "impact_areas.gpkg").values()), None)
    impact = json.loads((run_dir / "impact.json").read_text(encoding="utf-8")) if (run_dir / "impact.json").exists() else None
    kde = run_dir / "kde.tif" if (run_dir / "kde.tif").exists() else None
    return RunFolder(folder=run_dir, info=info, tables=tables, raw_hotspots=hot, raw_impact_areas=areas,
                     impact=impact, kde=kde)


def run_report_card(run: RunFolder, indicators=None) -> pd.DataFrame:
    """The city report card of a run read back, from its area tables' (profiled) measures."""
    from usm_geo.indicators.report_card import report_card as make_card

    info, folder = run.info, run.folder
    progress = read_table(folder / "progress.csv") if (folder / "progress.csv").exists() else None
    period_info = info.get("periods") or {}
    card = make_card(run.tables.measures, progress, info.get("indicator_definitions"),
                     baseline=period_info.get("baseline"), current=period_info.get("current"),
                     city_name=(info.get("study") or {}).get("name") or "city",
                     population_year=info.get("population_base_year"))
    if indicators:
        card = card[card["indicator"].isin(set(indicators))].reset_index(drop=True)
    return card
