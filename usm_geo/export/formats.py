"""Area exports: the formats, the field dictionary and ``export_run``.

Atomic writing and reading a run folder's files live in :mod:`usm_geo.io`; the area tables in a
profile and :func:`read_run` in :mod:`usm_geo.area_tables` (floor 5). Both are re-exported here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from usm_geo.area_tables import (DEFAULT_K, DEFAULT_MIN_N, IMPACT_COUNT_COLUMNS, PARTS, PROFILES,  # noqa: F401 (re-exported)
                                 PUBLIC_HOTSPOT_COLUMNS, SMOOTHED, AreaTables, RunFolder, apply_disclosure,
                                 area_tables, base_id, indicator_ids, kde_bytes, kde_threshold, public_hotspots,
                                 public_impact_areas, read_run, run_report_card, shown_ids, time_patterns_in_profile,
                                 wide_table)
from usm_geo.errors import OutputError
from usm_geo.export.shapefiles import safe_name
from usm_geo.indicators.registry import COUNT_DEFINITION
from usm_geo.io import (MARKER, atomic_path, check_run_folder, fixed_gdal_date, read_layers,  # noqa: F401 (re-exported)
                        read_table, staged_folder, write_bytes, write_csv, write_json, write_layers, write_text)

# =========================================================================== area exports
#
# ``export_run`` (reading a run folder) and ``write_run_exports`` (called by ``run`` with its
# in-memory tables) share everything below: the disclosure profile is applied to the whole
# measures table first (suppression looks across levels and categories), then the wide
# indicator table is built per level, joined to unit geometry and written in each format.

FORMATS = ("gpkg", "shp", "geojson", "parquet", "csv", "tif", "html")
GPKG_NAME, SHP_NAME, CSV_NAME, MAP_NAME = "areas.gpkg", "shapefiles.zip", "indicators.csv", "map.html"


# --------------------------------------------------------------------------- field dictionary


def _definition(ind: str, definitions: dict) -> dict:
    base, _ = base_id(ind)
    if ind in definitions:
        return definitions[ind]
    if base in definitions:
        return definitions[base]
    from usm_geo.indicators.registry import shipped_indicators

    shipped = shipped_indicators()
    if base in shipped:
        import dataclasses

        return dataclasses.asdict(shipped[base])
    return {}


def indicator_definitions(ids, definitions: dict | None) -> dict:
    """Definitions of the exported indicators: ``run.json["indicator_definitions"]``, else the shipped
    registry; smoothed versions name their base indicator and method."""
    definitions = definitions or {}
    out = {}
    for ind in ids:
        base, suffix = base_id(ind)
        d = dict(_definition(ind, definitions))
        if suffix and ind not in definitions:
            d["derived_from"] = base
            d["smoothing"] = ("global empirical Bayes (Marshall 1991)" if suffix == "_eb"
                              else "spatial empirical Bayes, queen contiguity")
        if not d and ind == "count":
            d = dict(COUNT_DEFINITION)
        if not d:
            d = {"id": ind, "note": "no definition recorded (e.g. a perception score from an area table)"}
        out[ind] = d
    return out


#: Columns of the hot spot and impact area layers (docs/outputs.md), for the field dictionary.
LAYER_FIELDS = {
    "count": ("incidents counted in the unit in the period", "incidents"),
    "gistar_z": ("Getis-Ord Gi* z-score (spdep/ArcGIS; the same under row-standardised weights)", ""),
    "gistar_p": ("two-sided p-value of the Gi* z-score", ""),
    "gistar_p_fdr": ("Gi* p-value adjusted for multiple testing (Benjamini-Hochberg FDR)", ""),
    "gistar_bin": ("hot (+) / cold (-) spot class: 3, 2, 1 at 99, 95, 90 % confidence after FDR; 0 not significant", ""),
    "lisa_i": ("local Moran's I", ""),
    "lisa_z": ("z-score of local Moran's I (n-1 variance divisor, as esda/GeoDa)", ""),
    "lisa_p_sim": ("pseudo p-value of local Moran's I from conditional permutations", ""),
    "lisa_quadrant": ("Moran scatterplot quadrant: HH, LH, LL, HL or island", ""),
    "n_neighbours": ("number of neighbours in the spatial weights", "units"),
    "area": ("impact area: treated, buffer (displacement ring) or control", ""),
    "before": ("incidents in the area before the intervention", "incidents"),
    "after": ("incidents in the area after the intervention starts", "incidents"),
    "area_km2": ("area of the polygon", "km²"),
}


def field_dictionary(columns, definitions: dict) -> pd.DataFrame:
    """name, description, unit of every column of a level table."""
    fixed = {
        "level": ("unit level (H3 levels are h3_<res>; the top level is city)", ""),
        "unit_id": ("unit id (text)", ""),
        "name": ("unit name", ""),
        "period": ("period label (2019, 2019-Q1, 2019-03 or START/END)", ""),
        **LAYER_FIELDS,
    }
    rows = []
    for col in columns:
        if col in fixed:
            rows.append((col, *fixed[col]))
            continue
        part = next((p for p in PARTS if col.endswith(p) and col[: -len(p)] in definitions), "")
        ind = col[: -len(part)] if part else col
        d = definitions.get(ind, {})
        kind, name = d.get("kind"), d.get("name") or ind
        if d.get("smoothing"):
            name = f"{name}, smoothed: {d['smoothing']}"
        unit = (f"per {float(d.get('per') or 1000):,.0f} residents" if kind == "rate"
                else "proportion (0-1)" if kind == "share" else "")
        if part == "":
            rows.append((col, name, unit))
        elif part == "_lower":
            rows.append((col, f"lower bound of the 95 % interval: {name}", unit))
        elif part == "_upper":
            rows.append((col, f"upper bound of the 95 % interval: {name}", unit))
        elif part == "_n":
            rows.append((col, f"{'incidents counted (numerator)' if kind == 'rate' else 'respondents'}: {name}",
                         "incidents" if kind == "rate" else "respondents" if kind == "share" else ""))
        else:
            rows.append((col, f"flags, ';'-separated (docs/outputs.md): {name}", ""))
    return pd.DataFrame(rows, columns=["name", "description", "unit"])


# --------------------------------------------------------------------------- other formats


def write_geojson(target: Path, frame) -> None:
    """RFC 7946 GeoJSON: EPSG:4326 (lon, lat), 7 decimals, atomically."""
    from usm_geo.errors import CRSError

    if frame.crs is None:
        raise CRSError("the units have no CRS, so they cannot be written as GeoJSON (EPSG:4326)", where=target,
                       fix="use GeoPackage or shapefiles for layers without a CRS")
    with atomic_path(target) as tmp:
        frame.to_crs(4326).to_file(tmp, driver="GeoJSON", engine="pyogrio",
                                   layer_options={"RFC7946": "YES", "WRITE_NAME": "NO"})


def write_geoparquet(target: Path, frame) -> None:
    """GeoParquet (``geo`` metadata with the CRS as PROJJSON), atomically."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def write_kde(target: Path, source: Path, *, profile: str, k: int) -> dict:
    """Write :func:`kde_bytes` to ``target`` (nothing when it cannot be published)."""
    data, report = kde_bytes(source, profile=profile, k=k)
    if data is not None:
        write_bytes(target, data)
    return report


def write_map(target: Path, tables: AreaTables, *, hotspots: dict | None = None, impact_areas=None,
              impact: dict | None = None, kde: Path | None = None, info: dict | None = None,
              definitions: dict | None = None, tiles=None, time_patterns: pd.DataFrame | None = None) -> bool:
    """``map.html`` of the area tables (after their profile): the default indicator at every level,
    Gi* (the profile's hot spot layers), the KDE (masked in the public profile) and the impact areas.
    Self-contained; ``tiles`` adds a basemap (:func:`usm_geo.maps.build.basemap`); ``time_patterns``
    (already in the tables' profile) puts each unit's hour × weekday and month-of-year counts in its
    tooltip. Returns whether a
    map was written (``False`` when the tables hold no indicator and no count)."""
    from usm_geo.maps import build_map, default_indicator
    from usm_geo.maps.data import from_area_tables

    surface = None
    if kde is not None and Path(kde).exists():
        surface = kde_bytes(Path(kde), profile=tables.profile, k=tables.k)[0]
    inputs = from_area_tables(tables, hotspots=hotspots, impact_areas=impact_areas, impact=impact, kde=surface,
                              info=info, definitions=definitions, time_patterns=time_patterns)
    indicator = default_indicator(inputs)
    if indicator is None:
        return False  # nothing to show: the caller must not list map.html as written
    build_map(inputs, target, indicator=indicator, tiles=tiles)
    return True


def write_report_card(folder: Path, card: pd.DataFrame) -> list[str]:
    """``report_card.json`` (a list of records, docs/report_card.md) and ``report_card.csv``."""
    from usm_geo.indicators.report_card import records

    folder = Path(folder)
    write_json(folder / "report_card.json", records(card))
    write_csv(folder / "report_card.csv", card)
    return ["report_card.json", "report_card.csv"]


def _jsonable(obj):
    """numpy scalars, tuples, frames and NaN → plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        items = [_jsonable(v) for v in obj]
        return sorted(items, key=str) if isinstance(obj, set) else items
    if isinstance(obj, pd.DataFrame):
        return _jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return _jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _crs_text(crs) -> str | None:
    if crs is None:
        return None
    from usm_geo.intake.crs import crs_label

    return crs_label(crs)


def _sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


SUPPRESSION_RULE = {
    "public": ("counts 1 … k-1 are suppressed and flagged, with complementary suppression across levels and "
               "categories so that no suppressed value can be recovered by differencing; rates and intervals on "
               "suppressed counts and survey values below the minimum (effective) n are suppressed too; no "
               "incident points or coordinates; hot spot layers without counts (Gi* z rounded to 0.1); impact areas "
               "without counts; KDE cells below k events masked; report card change and trend withheld when a "
               "value they depend on is suppressed, its values rounded to 4 significant digits (changes and trends to 0.001); time "
               "patterns (category all) with counts 1 … k-1 suppressed in the same way, along the time axis and across "
               "units; month of year for the city only"),
    "internal": "none: exact values, for the city's own staff; not for publication",
}


def extra_layers(tables: AreaTables, hotspots: dict | None, impact_areas) -> dict:
    """``hotspots_<level>`` (for exported levels and periods) and ``impact_areas`` as published in
    ``tables.profile`` (public: :func:`public_hotspots`, :func:`public_impact_areas`), in ``tables.crs``."""
    public = tables.profile == "public"
    extra = {}
    for level, layer in (hotspots or {}).items():
        if level not in tables.layers:
            continue
        if tables.periods and "period" in layer and not set(layer["period"]) & set(tables.periods):
            continue
        layer = public_hotspots(layer, tables.k) if public else layer
        if tables.crs is not None and layer.crs is not None and not layer.crs.equals(tables.crs):
            layer = layer.to_crs(tables.crs)
        extra[f"hotspots_{level}"] = layer
    if impact_areas is not None:
        layer = public_impact_areas(impact_areas, tables.k) if public else impact_areas
        if tables.crs is not None and layer.crs is not None and not layer.crs.equals(tables.crs):
            layer = layer.to_crs(tables.crs)
        extra["impact_areas"] = layer
    return extra


def write_area_outputs(folder: Path, tables: AreaTables, formats=("gpkg", "shp"), *, hotspots: dict | None = None,
                       impact_areas=None, kde: Path | None = None, definitions: dict | None = None,
                       report_card: pd.DataFrame | None = None, info: dict | None = None,
                       metadata: bool = True, impact: dict | None = None, tiles=None,
                       time_patterns: pd.DataFrame | None = None, shape: str = "long") -> dict:
    """Write the area tables (and hot spots, impact areas, KDE, report card) into ``folder``;
    ``tiles``: a basemap for ``map.html`` (none by default: the map makes no network request).

    Layout (the same for ``run`` and ``export``):

    ``areas.gpkg``            one layer per level, ``hotspots_<level>`` and ``impact_areas`` when present
    ``shapefiles.zip``        ``.shp/.shx/.dbf/.prj/.cpg`` per level and period (``shape="long"``) or per
                              level (``"wide"``), hot spot and impact layers, ``fields.csv``
                              (:mod:`usm_geo.export.shapefiles`)
    ``areas_<level>.geojson`` RFC 7946, EPSG:4326
    ``areas_<level>.parquet`` GeoParquet
    ``indicators.csv``        the wide table of every exported level, no geometry
    ``kde.tif``               the KDE surface (public: cells below k events masked)
    ``map.html``              the folium map of what the files hold (:func:`usm_geo.maps.build_map`)
    ``report_card.json/.csv`` the city report card
    ``metadata.json``         definitions, periods, CRS, suppression rule, versions, input hashes, file hashes
    """
    from usm_geo import __version__
    from usm_geo.errors import UsmGeoError

    folder = Path(folder)
    formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsmGeoError(f"unknown format '{bad[0]}'", where="--format", fix=f"use some of: {', '.join(FORMATS)}")
    defs = indicator_definitions(tables.ids, definitions)
    columns: list[str] = []
    for frame in tables.layers.values():
        columns += [c for c in frame.columns if c != frame.geometry.name and c not in columns]
    dictionary = field_dictionary(columns, defs)
    extra = extra_layers(tables, hotspots, impact_areas)
    map_hot = {name[len("hotspots_"):]: layer for name, layer in extra.items() if name.startswith("hotspots_")}
    written: dict[str, list[str]] = {}
    notes: dict[str, object] = {}
    if "gpkg" in formats:
        write_layers(folder / GPKG_NAME, {**tables.layers, **extra})
        written["gpkg"] = [GPKG_NAME]
    shp_fields = None
    if "shp" in formats:
        from usm_geo.export.shapefiles import write_shapefiles

        extra_cols = list(dict.fromkeys(c for f in extra.values() for c in f.columns if c != f.geometry.name))
        shp_fields = write_shapefiles(folder / SHP_NAME, tables, extra,
                                      pd.concat([dictionary, field_dictionary(extra_cols, defs)]), shape=shape)
        written["shp"] = [SHP_NAME]
    if "geojson" in formats:
        written["geojson"] = []
        for level, frame in tables.layers.items():
            name = f"areas_{safe_name(level)}.geojson"
            write_geojson(folder / name, frame)
            written["geojson"].append(name)
    if "parquet" in formats:
        written["parquet"] = []
        for level, frame in tables.layers.items():
            name = f"areas_{safe_name(level)}.parquet"
            write_geoparquet(folder / name, frame)
            written["parquet"].append(name)
    if "csv" in formats:
        frames = [pd.DataFrame(f.drop(columns=f.geometry.name)) for f in tables.layers.values()]
        write_csv(folder / CSV_NAME, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
        written["csv"] = [CSV_NAME]
    if "tif" in formats and kde is not None and Path(kde).exists():
        notes["kde"] = write_kde(folder / "kde.tif", Path(kde), profile=tables.profile, k=tables.k)
        if not notes["kde"].get("skipped"):
            written["tif"] = ["kde.tif"]
    if "html" in formats and tables.layers:
        drawn = write_map(folder / MAP_NAME, tables, hotspots=map_hot, impact_areas=extra.get("impact_areas"),
                          impact=impact, kde=kde, info=info, definitions=definitions, tiles=tiles,
                          time_patterns=time_patterns)
        if drawn:
            written["html"] = [MAP_NAME]
        else:
            notes["html"] = "no map: the tables hold no indicator and no count"
    if report_card is not None:
        if tables.profile == "public":  # rounded like every public page (4 significant digits)
            from usm_geo.indicators.report_card import round_public

            report_card = round_public(report_card)
        written["report_card"] = write_report_card(folder, report_card)
    info = info or {}
    files = sorted(f for names in written.values() for f in names)
    meta = {
        "created_by": f"usm_geo {__version__}",
        "study": info.get("study"),
        "profile": tables.profile,
        "suppression": {"rule": SUPPRESSION_RULE[tables.profile], "k": tables.k, "min_n": tables.min_n,
                        "report": tables.report},
        "crs": {"layers": _crs_text(tables.crs), "geojson": "EPSG:4326",
                "kde.tif": info.get("working_crs") if "tif" in written else None},
        "levels": {lv: {"features": len(f), "units": int(f["unit_id"].nunique())} for lv, f in tables.layers.items()},
        "extra_layers": sorted(extra),
        "periods": tables.periods,
        "period_settings": info.get("periods"),
        "indicators": defs,
        "fields": _fields_meta(dictionary, shp_fields),
        "software": info.get("packages"),
        "inputs": info.get("inputs"),
        "notes": notes,
        "files": {f: _sha256_file(folder / f) for f in files},
    }
    if metadata:
        write_json(folder / "metadata.json", _jsonable(meta))
        files.append("metadata.json")
    return {"files": sorted(files), "formats": written, "metadata": meta}


def _fields_meta(dictionary: pd.DataFrame, shp_fields: pd.DataFrame | None) -> list:
    """metadata.json's field list; with shapefiles, each field's short name (period columns of the wide
    layout excepted: fields.csv lists those)."""
    short = {}
    if shp_fields is not None:
        plain = shp_fields[shp_fields["period"] == ""]
        short = dict(zip(plain["name"], plain["short_name"]))
    return [{**rec, **({"shapefile_name": short[rec["name"]]} if rec["name"] in short else {})}
            for rec in dictionary.to_dict(orient="records")]


def write_run_exports(folder: Path, units_layers: dict, measures: pd.DataFrame, crosswalk: pd.DataFrame | None, *,
                      profile: str = "internal", k: int = DEFAULT_K, report_card: pd.DataFrame | None = None,
                      min_n: int = DEFAULT_MIN_N, formats=("gpkg", "shp", "html"), hotspots: dict | None = None,
                      impact_areas=None, definitions: dict | None = None, info: dict | None = None,
                      impact: dict | None = None, kde: Path | None = None, tiles=None,
                      time_patterns: pd.DataFrame | None = None, shape: str = "long") -> dict:
    """The run folder's ``areas.gpkg``, ``shapefiles.zip`` and ``map.html`` (and ``report_card.json/.csv``)
    from the run's in-memory tables, in the study's ``outputs.profile`` (the run itself is internal by
    default). ``kde`` (the run's ``kde.tif``) and ``impact`` (``impact.json``) feed the map.

    ``report_card`` is :func:`usm_geo.indicators.report_card.report_card` on the unsuppressed measures;
    in the public profile its values are re-taken from the suppressed ones. ``hotspots`` (level →
    layer) and ``impact_areas`` go into ``areas.gpkg`` when given; ``info`` (run.json's content:
    packages, inputs, periods…) turns on ``metadata.json``. Returns what :func:`write_area_outputs` does.
    """
    tables = area_tables(units_layers, measures, crosswalk, profile=profile, k=k, min_n=min_n)
    card = report_card
    if card is not None and profile == "public":
        from usm_geo.indicators.report_card import match_measures

        card = match_measures(card, tables.measures)
    if time_patterns is not None:  # the run's own table (internal): in the profile before the map shows it
        time_patterns = time_patterns_in_profile(time_patterns, crosswalk, profile=profile, k=k)
    return write_area_outputs(folder, tables, formats, hotspots=hotspots, impact_areas=impact_areas,
                              definitions=definitions, report_card=card, info=info, metadata=info is not None,
                              impact=impact, kde=kde, tiles=tiles, time_patterns=time_patterns, shape=shape)


# --------------------------------------------------------------------------- export a run folder


def export_run(run_dir, out, *, formats=("gpkg",), indicators=None, levels=None, periods=None, crs=None,
               profile: str = "public", k: int | None = None, tiles=None, shape: str = "long") -> dict:
    """Export a run folder's area outputs for others (``usm-geo export``); ``tiles``: a basemap
    for ``map.html`` (none by default).

    Reads only the run's outputs (``run.json``, ``units.gpkg``, ``measures.csv``, ``crosswalk.csv``,
    ``progress.csv``, ``hotspots.gpkg``, ``impact_areas.gpkg``, ``impact.json``, ``kde.tif``), never
    its inputs, through :func:`read_run` (profile, filters, CRS; GeoJSON is always EPSG:4326).

    ``out`` is always a folder, built as a hidden sibling and swapped in whole when complete (an
    export killed midway leaves the previous one intact). It holds the files listed in
    :func:`write_area_outputs` for the chosen ``formats``, plus ``report_card.json/.csv``,
    ``metadata.json`` and a copy of the run's ``run.json``. Returns a summary (files, seconds, …).
    """
    import time

    from usm_geo.errors import UsmGeoError

    t0 = time.perf_counter()
    run_dir, out = check_run_folder(run_dir), Path(out).resolve()
    if out == run_dir or out in run_dir.parents:
        raise OutputError("the export folder would replace the run folder it exports", where=out,
                          fix="choose another --out folder")
    if out.suffix.lower() in (".gpkg", ".zip", ".shp", ".geojson", ".json", ".parquet", ".csv", ".tif", ".tiff", ".html"):
        raise UsmGeoError("--out names a folder (an export writes one file per level and format into it), "
                          f"not a {out.suffix} file", where=out, fix=f"e.g. --out {out.with_suffix('')}")
    if (out / "measures.csv").exists():
        raise OutputError("is a run folder; an export will not replace it", where=out, fix="choose another --out folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():  # fail before the slow part
        raise OutputError("is a non-empty folder that usm_geo did not write, so it will not be replaced", where=out,
                          fix="choose a new or empty folder for --out")
    formats = tuple(str(f).lower() for f in formats)  # SHP, Gpkg: formats are case-insensitive
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsmGeoError(f"unknown format '{bad[0] if bad else ''}'", where="--format", fix=f"use some of: {', '.join(FORMATS)}")
    run = read_run(run_dir, profile=profile, k=k, indicators=indicators, levels=levels, periods=periods, crs=crs)
    with staged_folder(out) as stage:
        result = write_area_outputs(stage, run.tables, formats, hotspots=run.raw_hotspots,
                                    impact_areas=run.raw_impact_areas, kde=run.kde,
                                    definitions=run.info.get("indicator_definitions"),
                                    report_card=run_report_card(run, indicators), info=run.info, impact=run.impact,
                                    tiles=tiles, time_patterns=run.time_patterns() if "html" in formats else None,
                                    shape=shape)
        shutil.copyfile(run_dir / MARKER, stage / MARKER)
    result["files"] = sorted(result["files"] + [MARKER])
    result["out"] = str(out)
    result["profile"], result["k"] = profile, run.tables.k
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result
