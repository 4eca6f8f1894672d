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
    kde : path of a single-band GeoTIFF (``kde.tif``); kde_period : its period label.
    title : the study's name; periods : ``run.json``'s ``periods`` (``baseline``, ``current``).
    """

    units: dict[str, gpd.GeoDataFrame]
    table: pd.DataFrame | str | Path
    definitions: dict[str, dict] = field(default_factory=dict)
    hotspots: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    impact_areas: gpd.GeoDataFrame | None = None
    impact: dict | None = None
    kde: str | Path | None = None
    kde_period: str | None = None
    title: str | None = None
    periods: dict = field(default_factory=dict)

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
        level, in file order; a single-layer file is one level named after the file)."""
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


def load_run(folder) -> MapInputs:
    """:class:`MapInputs` from a run's output folder (``units.gpkg`` and ``indicators.csv`` are
    required; ``run.json``, ``hotspots.gpkg``, ``impact_areas.gpkg``, ``impact.json`` and
    ``kde.tif`` are used when present)."""
    import pyogrio

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError("run folder not found", where=folder, fix="give the --out folder of `usm-geo run`")
    units_path, table = folder / "units.gpkg", folder / "indicators.csv"
    for p in (units_path, table):
        if not p.exists():
            raise InputFileError(f"{p.name} not found: not a complete run folder", where=folder,
                                 fix="run `usm-geo run STUDY --out DIR` first")
    info = {}
    if (folder / "run.json").exists():
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    units = {name: _units_frame(gpd.read_file(units_path, layer=name, engine="pyogrio"), units_path)
             for name, _ in pyogrio.list_layers(units_path)}
    hotspots = {}
    if (folder / "hotspots.gpkg").exists():
        hp = folder / "hotspots.gpkg"
        hotspots = {name: _units_frame(gpd.read_file(hp, layer=name, engine="pyogrio"), hp)
                    for name, _ in pyogrio.list_layers(hp)}
    areas = gpd.read_file(folder / "impact_areas.gpkg", engine="pyogrio") if (folder / "impact_areas.gpkg").exists() else None
    impact = json.loads((folder / "impact.json").read_text(encoding="utf-8")) if (folder / "impact.json").exists() else None
    return MapInputs(units=units, table=table, definitions=info.get("indicator_definitions") or {},
                     hotspots=hotspots, impact_areas=areas, impact=impact,
                     kde=folder / "kde.tif" if (folder / "kde.tif").exists() else None,
                     kde_period=(info.get("hotspots") or {}).get("period"),
                     title=(info.get("study") or {}).get("name"), periods=info.get("periods") or {})
