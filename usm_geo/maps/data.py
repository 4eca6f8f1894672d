"""What a map is made of, read from a run's output folder or given as tables.

:class:`MapInputs` holds the units (a GeoDataFrame per level, finest first), the indicator table
(``indicators.csv``-style wide, or the long measures table), and optionally the run's indicator
definitions, Gi* layers, impact areas and KDE surface. :func:`load_run` fills it from a folder
written by ``usm-geo run``; :meth:`MapInputs.from_files` from any measures/indicators file and a
units file (GeoPackage with a layer per level, or one layer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from usm_geo.errors import CRSError, InputFileError, UsmGeoError

VALUE_COLUMNS = ["level", "unit_id", "period", "value", "lower", "upper", "n", "flags"]


@dataclass
class MapInputs:
    """Tables a map is built from. Only ``units`` and ``table`` are required.

    units : level → GeoDataFrame with ``unit_id`` (str), optional ``name``, geometry (any CRS),
        finest level first.
    table : wide indicator table (``level, unit_id, [name,] period, <id>, <id>_lower, <id>_upper,
        <id>_n, <id>_flags``), the long measures table (``level, unit_id, period, category,
        measure, value, lower, upper, n, flags``), or the path of a CSV holding either.
    definitions : indicator id → definition (``run.json``'s ``indicator_definitions``).
    hotspots : level → GeoDataFrame with ``unit_id``, ``gistar_bin``, ``gistar_z``, ``gistar_p_fdr``,
        ``count``, ``period`` (``hotspots.gpkg``).
    impact_areas : GeoDataFrame with ``area`` (treated/buffer/control), ``before``, ``after``,
        ``area_km2`` (``impact_areas.gpkg``); impact : ``impact.json`` (its before/after windows).
    kde : path or bytes of a single-band GeoTIFF (``kde.tif``); kde_period : its period label;
        kde_name : the layer's name (default "Incident density (KDE)").
    title : the study's name; periods : ``run.json``'s ``periods`` (``baseline``, ``current``).
    time_patterns : ``time_patterns.csv`` as published (``count`` missing where suppressed; see
        ``usm_geo.export.time_patterns_in_profile``): each unit's hour × weekday and month-of-year
        counts (category ``all``) drawn in its tooltip.
    """

    units: dict[str, gpd.GeoDataFrame]
    table: pd.DataFrame | str | Path
    definitions: dict[str, dict] = field(default_factory=dict)
    hotspots: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    impact_areas: gpd.GeoDataFrame | None = None
    impact: dict | None = None
    kde: str | Path | bytes | None = None
    kde_period: str | None = None
    kde_name: str | None = None  # the image layer's name (default "Incident density (KDE)"), e.g. a relative-risk surface
    title: str | None = None
    periods: dict = field(default_factory=dict)
    time_patterns: pd.DataFrame | None = None

    def __post_init__(self):
        if not self.units:
            raise UsmGeoError("no units to map", fix="give at least one level of units")
        for level, layer in self.units.items():
            if "unit_id" not in layer.columns:
                raise InputFileError(f"units of level {level!r} have no 'unit_id' column",
                                     fix="name the id column unit_id (as in units.gpkg)")
            if layer.crs is None:
                raise CRSError(f"units of level {level!r} have no CRS, so they cannot be placed on a map",
                               fix="set the layer's CRS (e.g. the study's working CRS)")

    @classmethod
    def from_files(cls, table, units, **kwargs) -> "MapInputs":
        """From a measures or indicators CSV and a units file (every layer of a GeoPackage is a
        level, in file order; a single-layer file is one level named after the file).

        Without ``definitions``, indicators are named and scaled (shares in %) by the ``run.json``
        beside the table when there is one, else by the shipped registry."""
        import pyogrio

        units = Path(units)
        if not units.exists():
            raise InputFileError("units file not found", where=units, fix="give the run's units.gpkg")
        layers = [name for name, _ in pyogrio.list_layers(units)]
        levels = {}
        for name in layers:
            layer = gpd.read_file(units, layer=name, engine="pyogrio")
            levels[name if len(layers) > 1 else (name or units.stem)] = _units_frame(layer, units)
        if not Path(table).exists():
            raise InputFileError("table not found", where=table, fix="give measures.csv or indicators.csv of a run")
        if "definitions" not in kwargs:
            kwargs["definitions"] = _definitions_for(Path(table))
        return cls(units=levels, table=Path(table), **kwargs)

    # ------------------------------------------------------------------ values of one indicator
    def available(self) -> list[str]:
        """Indicator ids the table holds."""
        cols = _columns(self.table)
        if "measure" in cols:
            frame = self.table if isinstance(self.table, pd.DataFrame) else pd.read_csv(
                self.table, usecols=["measure"], dtype=str)
            return sorted(pd.unique(frame["measure"].dropna()))
        fixed = {"level", "unit_id", "name", "period"}
        return [c for c in cols if c not in fixed and not c.endswith(("_lower", "_upper", "_n", "_flags"))]

    def values(self, indicator: str) -> pd.DataFrame:
        """Long rows of one indicator: ``level, unit_id, period, value, lower, upper, n, flags``
        (category ``all`` only), ``unit_id``/``period``/``flags`` as strings."""
        cols = _columns(self.table)
        if "measure" in cols:
            frame = self.table if isinstance(self.table, pd.DataFrame) else pd.read_csv(
                self.table, dtype={"unit_id": str, "period": str, "category": str, "measure": str, "flags": str,
                                   "level": str}, low_memory=False)
            sub = frame[frame["measure"] == indicator]
            if "category" in sub.columns:
                sub = sub[sub["category"].astype(str) == "all"]
            out = sub.reindex(columns=VALUE_COLUMNS)
        else:
            wanted = ["level", "unit_id", "period", indicator, f"{indicator}_lower", f"{indicator}_upper",
                      f"{indicator}_n", f"{indicator}_flags"]
            if indicator not in cols:
                out = pd.DataFrame(columns=VALUE_COLUMNS)
            else:
                present = [c for c in wanted if c in cols]
                frame = (self.table[present] if isinstance(self.table, pd.DataFrame) else pd.read_csv(
                    self.table, usecols=present, dtype={"level": str, "unit_id": str, "period": str,
                                                       f"{indicator}_flags": str}, low_memory=False))
                out = frame.reindex(columns=wanted)
                out.columns = VALUE_COLUMNS
        if out.empty:
            have = self.available()
            raise UsmGeoError(f"indicator {indicator!r} is not in the table",
                              fix="choose one of: " + (", ".join(have) if have else "(the table holds none)"))
        out = out.copy()
        for c in ("level", "unit_id", "period"):
            out[c] = out[c].map(_as_id)
        out["flags"] = out["flags"].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        for c in ("value", "lower", "upper", "n"):
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
        return out.reset_index(drop=True)


def _definitions_for(table: Path) -> dict:
    """Indicator definitions for a bare table: its run's ``run.json``, else the shipped registry."""
    import dataclasses

    beside = table.parent / "run.json"
    if beside.is_file():
        try:
            found = json.loads(beside.read_text(encoding="utf-8")).get("indicator_definitions")
        except (OSError, ValueError):
            found = None
        if found:
            return found
    from usm_geo.indicators.registry import shipped_indicators

    return {i: dataclasses.asdict(d) for i, d in shipped_indicators().items()}


def _as_id(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _columns(table) -> list[str]:
    if isinstance(table, pd.DataFrame):
        return list(table.columns)
    path = Path(table)
    if not path.exists():
        raise InputFileError("table not found", where=path, fix="give measures.csv or indicators.csv of a run")
    return list(pd.read_csv(path, nrows=0).columns)


def _units_frame(layer: gpd.GeoDataFrame, where) -> gpd.GeoDataFrame:
    if "unit_id" not in layer.columns:
        raise InputFileError("the units layer has no 'unit_id' column", where=where, fix="use the run's units.gpkg")
    layer = layer.copy()
    layer["unit_id"] = layer["unit_id"].map(_as_id)
    return layer


def from_area_tables(tables, *, hotspots: dict | None = None, impact_areas=None, impact: dict | None = None,
                     kde=None, info: dict | None = None, definitions: dict | None = None,
                     time_patterns: pd.DataFrame | None = None) -> MapInputs:
    """:class:`MapInputs` from :func:`usm_geo.export.area_tables`' result, i.e. after the profile.

    This is how every run and export builds its ``map.html``: the map shows what the exported
    files show and nothing more. ``hotspots`` (level → layer), ``impact_areas`` and ``kde`` must
    already be the profile's (``export.public_hotspots``, ``export.public_impact_areas``, the masked
    surface); ``impact`` is ``impact.json`` (only its intervention's name, windows and buffer width
    are shown); ``info`` is ``run.json``'s content (study name, periods, hot spot period);
    ``time_patterns`` must be the profile's too (``usm_geo.export.time_patterns_in_profile``).
    """
    units, rows = {}, []
    for level, layer in tables.layers.items():
        cols = ["unit_id"] + (["name"] if "name" in layer.columns else [])
        first = layer.drop_duplicates("unit_id")
        units[level] = gpd.GeoDataFrame(first[cols].reset_index(drop=True),
                                        geometry=first.geometry.to_numpy(), crs=layer.crs)
        rows.append(pd.DataFrame(layer.drop(columns=layer.geometry.name)))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["level", "unit_id", "period"])
    info = info or {}
    iv = (impact or {}).get("intervention") or {}
    shown = {k: iv[k] for k in ("name", "before", "after", "buffer_m") if k in iv}
    return MapInputs(units=units, table=table, definitions=definitions or info.get("indicator_definitions") or {},
                     hotspots={lv: layer for lv, layer in (hotspots or {}).items() if lv in units},
                     impact_areas=impact_areas, impact={"intervention": shown} if shown else None,
                     kde=kde, kde_period=(info.get("hotspots") or {}).get("period"),
                     title=(info.get("study") or {}).get("name"), periods=info.get("periods") or {},
                     time_patterns=time_patterns)


def load_run(folder, profile: str | None = None, k: int | None = None) -> MapInputs:
    """:class:`MapInputs` from a run's output folder, in ``profile`` (default: the run's own
    ``outputs.profile``; ``"public"`` suppresses as :func:`usm_geo.export.export_run` does).
    ``units.gpkg`` and ``measures.csv`` are required; ``run.json``, ``crosswalk.csv``,
    ``hotspots.gpkg``, ``impact_areas.gpkg``, ``impact.json`` and ``kde.tif`` are used when present."""
    from usm_geo.area_tables import read_run

    run = read_run(folder, profile=profile, k=k)
    return from_area_tables(run.tables, hotspots=run.hotspots, impact_areas=run.impact_areas, impact=run.impact,
                            kde=run.kde_in_profile(), info=run.info, time_patterns=run.time_patterns())
