"""Runs a Study through the stages in order. The CLI, notebooks and the Dask path call this.

Only this module knows the order of the stages; each stage takes the plain tables of the one
before it (see DESIGN.md): intake → units → population → measures → indicators → analyses →
outputs, for a study (:func:`run`, :func:`validate`, :func:`model_study`, :func:`reconcile_studies`)
and for the one-file commands ``usm-geo aggregate``, ``hotspots`` and ``impact`` (:func:`aggregate_points`,
:func:`hotspots_from_areas`, :func:`hotspots_from_points`, :func:`impact_from_files`: the same stages
on files named on the command line instead of a study; at the end of this module).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import sys
import time
import zoneinfo
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from usm_geo import __version__, population
from usm_geo.errors import CRSError, InputFileError, OutputError, StudyError, UsmGeoError
from usm_geo.io import staged_folder, write_csv, write_json, write_layers
from usm_geo.intake.boundaries import check_parents, polygons_in, read_boundary_level, utm_of_layer
from usm_geo.intake.crs import WGS84, crs_label, same_crs, utm_for, working_crs
from usm_geo.intake.files import read_spatial, detect_format
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.counts import read_count_sources
from usm_geo.intake.perception import read_perception
from usm_geo.intake.records import Context, normalise_ids, read_incident_sources, read_point_records
from usm_geo.measures import COLUMNS as MEASURE_COLUMNS
from usm_geo.measures import (aoristic_weights, area_count_measures, check_rollups, count_measures, dense,
                              measures_from_tally, sort_measures, tally)
from usm_geo.periods import all_periods
from usm_geo.periods import labels as period_labels
from usm_geo.study import Study
from usm_geo.units.assign import PolygonIndex
from usm_geo.units.hierarchy import CROSSWALK_COLUMNS, UnitSet, build_units, h3_level, polygon_units
from usm_geo.units.locate import locate_by_unit, locate_points, point_cells

PACKAGES = ("numpy", "pandas", "pyarrow", "shapely", "pyproj", "pyogrio", "geopandas", "rasterio", "h3", "scipy", "click")

class Stages:
    """Times each stage and reports progress (to stderr by default) for steps a user waits on."""

    def __init__(self, report: Callable[[str], None] | None = None):
        self.timings: dict[str, float] = {}
        self.report = report

    def __call__(self, name: str):
        stages = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()
                if stages.report:
                    stages.report(f"{name} …")

            def __exit__(self, *exc):
                elapsed = time.perf_counter() - self.t0
                stages.timings[name] = round(stages.timings.get(name, 0.0) + elapsed, 3)
                if stages.report and exc[0] is None:
                    stages.report(f"{name} done ({elapsed:.1f} s)")

        return _Stage()


@dataclass
class Intake:
    """The result of intake: the tables later stages start from."""

    study: Study
    working_crs: object
    levels: dict[str, gpd.GeoDataFrame]
    # the study area (shapely, working CRS) or a zero-argument function computing it on first use of
    # ``study_area``: intake itself tests "inside" with the finest level's index, and only later stages
    # (the city polygon, KDE, impact, risk terrain) need the union of the 77 or 1,000 polygons
    area_or_maker: object
    incidents: pd.DataFrame | None
    survey: pd.DataFrame | None
    ledger: Ledger
    perception: pd.DataFrame | None = None
    index: object = None  # the finest polygon level's PolygonIndex (reused by the units stage)
    timings: dict[str, float] = field(default_factory=dict)
    # incidents of a partitioned dataset counted on Dask (usm_geo.scale.Partial) instead of ``incidents``
    counted: object = None
    covariates: dict[str, pd.DataFrame] = field(default_factory=dict)  # level → unit_id + factor columns
    features: dict[str, pd.DataFrame] = field(default_factory=dict)  # point covariate name → used features (row, x, y)
    # area-coded counts ([[inputs.counts]]): the tidy table of usm_geo.intake.counts, instead of incidents
    counts: pd.DataFrame | None = None
    count_report: dict | None = None  # set by run_measures: levels reached, levels not, units not in source
    # [reconcile]: the used incidents of the other records (not the primary ones), read only for reconciliation
    reconcile_incidents: pd.DataFrame | None = None

    @property
    def study_area(self):
        """The study area in the working CRS (metres): the study's polygon file, else the union of the
        finest boundary level; None without boundaries. Computed once, on first use."""
        if callable(self.area_or_maker):
            self.area_or_maker = self.area_or_maker()
        return self.area_or_maker

    @study_area.setter
    def study_area(self, area) -> None:
        self.area_or_maker = area

    def categories(self) -> list[str]:
        """The categories of the used incidents (or area-coded counts), sorted."""
        if self.counted is not None:
            return sorted(self.counted.categories)
        if self.counts is not None:
            return sorted(set(self.counts["category"]))
        return sorted(set(self.incidents["category"])) if self.incidents is not None else []

    @property
    def has_events(self) -> bool:
        """Incidents of some kind: points, points counted on Dask, or area-coded counts."""
        return self.incidents is not None or self.counted is not None or self.counts is not None


def _study_area(study: Study, levels: dict[str, gpd.GeoDataFrame], crs) -> object:
    """The study area in the working CRS: a polygon file if the study names one, else the union
    of the finest boundary level; None without boundaries."""
    if study.units.study_area is not None:
        path = study.units.study_area
        raw = read_spatial(path, fmt=detect_format(path))
        if raw.crs is None:
            raise CRSError("the study area layer has no CRS", where=path, fix="add a .prj file or use a GeoPackage")
        geom = gpd.GeoSeries(raw.frame.geometry.to_numpy(), crs=raw.crs).to_crs(crs).to_numpy()
        area = shapely.union_all(shapely.make_valid(geom))
    elif levels:
        area = shapely.union_all(next(iter(levels.values())).geometry.to_numpy())
    else:
        return None
    shapely.prepare(area)
    return area


def run_intake(study: Study, stages: Stages | None = None, now: dt.datetime | None = None, scheduler=None,
               ledger: Ledger | None = None) -> Intake:
    """Read and check every input of the study; every record is used or in the ledger.

    With ``scheduler`` (see :func:`usm_geo.scale.connect`) the incidents — a partitioned Parquet
    dataset or a Parquet file — are checked, placed in units and counted part by part on Dask
    (``Intake.counted``; ``Intake.incidents`` is then None): the same counts and ledger.
    ``ledger``: fill this one (a caller that must report it even when intake fails passes its own).
    """
    stages = stages or Stages()
    ledger = Ledger() if ledger is None else ledger
    if now is None:
        now = dt.datetime.now(zoneinfo.ZoneInfo(study.timezone)).replace(tzinfo=None)
    levels: dict[str, gpd.GeoDataFrame] = {}
    crs = None
    with stages("boundaries"):
        raw_levels = [read_boundary_level(spec, ledger, None) for spec in study.boundaries]
        if study.working_crs == "auto":
            if raw_levels:
                b = raw_levels[0].to_crs(WGS84).total_bounds
                crs = utm_for(np.array([b[0], b[2]]), np.array([b[1], b[3]]))
        else:
            crs = working_crs(study.working_crs)
        for spec, layer in zip(study.boundaries, raw_levels):
            if not same_crs(layer.crs, crs):
                ledger.note(f"boundaries.{spec.level}", "reprojected", f"from {crs_label(layer.crs)} to {crs_label(crs)}")
                layer = layer.to_crs(crs)
            levels[spec.level] = layer
        check_parents(levels, study.boundaries)
        # without a study-area file, "inside the study area" is "in a unit of the finest level" (its
        # index, below): the union of that level is left to the first stage that needs it (on Dask
        # the partition's units need it at once)
        by_index = bool(levels) and study.units.study_area is None
        area = _study_area(study, levels, crs) if crs is not None and (not by_index or scheduler is not None) else None
    unit_ids = {name: set(layer["unit_id"]) for name, layer in levels.items()}
    index = None
    if by_index:
        index = PolygonIndex.build(next(iter(levels.values())).geometry.to_numpy())
    ctx = Context(working_crs=crs, timezone=study.timezone, study_area=area, study_index=index, periods=study.periods,
                  now=now, unit_ids=unit_ids)
    if study.units.snap > 0:  # [units] snap: onto the finest unit (the one the index tests), else the study area
        ctx.snap = study.units.snap
        ctx.snap_geoms = next(iter(levels.values())).geometry.to_numpy() if index is not None else None
    incidents = survey = counted = other_records = None
    if study.incidents is not None and scheduler is not None:
        with stages("incidents (dask)"):
            counted = _count_incidents(study, levels, area, ctx, index, ledger, scheduler)
    elif study.incidents is not None:
        with stages("incidents"):
            # one table from every incident file (one file: as read); sets ctx.working_crs if "auto"
            incidents = read_incident_sources(study.incident_inputs(), ledger, ctx)
            incidents, other_records = split_records(study, incidents)
    if study.survey is not None:
        with stages("survey"):
            survey = read_point_records(study.survey, ledger, ctx, survey=True)
    perception = None
    if study.perception is not None:
        with stages("perception"):
            perception = read_perception(study.perception, ledger, levels[study.perception.unit_level], study.periods)
    counts = None
    if study.counts:
        with stages("counts"):
            counts = read_count_sources(study.counts, ledger, unit_ids[study.counts[0].unit_level], study.periods)
    covariates = read_covariate_tables(study, ledger, unit_ids, stages, ctx=ctx, levels=levels)
    area_or_maker = area if area is not None or not by_index else (lambda: _study_area(study, levels, crs))
    return Intake(study=study, working_crs=ctx.working_crs, levels=levels, area_or_maker=area_or_maker, incidents=incidents,
                  survey=survey, ledger=ledger, perception=perception, index=index, timings=stages.timings,
                  counted=counted, counts=counts, covariates=covariates, reconcile_incidents=other_records,
                  features=covariates.attrs.get("features", {}) if hasattr(covariates, "attrs") else {})


def split_records(study: Study, incidents: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """With police and health records in one study ([reconcile]): the used incidents of the primary
    records (every later stage counts these) and those of the other records (only reconciled), split by
    each row's ``source`` file. Without: ``(incidents, None)``."""
    if study.reconcile is None:
        return incidents, None
    other = incidents["source"].isin({s.name for s in study.reconcile_inputs()}).to_numpy()
    primary = incidents[~other].reset_index(drop=True)
    if primary.empty:
        names = ", ".join(s.name for s in study.primary_inputs())
        raise InputFileError(f"no usable {study.records} records: every row of {names} was dropped", where="inputs.incidents",
                             fix="see the ledger reasons; the run counts the primary records ([reconcile] primary = "
                                 f'"{study.records}"), so they must not all be dropped')
    return primary, incidents[other].reset_index(drop=True)


class _Covariates(dict):
    """level → covariate table, with ``attrs["features"]``: point layer name → its used features."""

    def __init__(self):
        super().__init__()
        self.attrs: dict = {"features": {}}


def read_covariate_tables(study: Study, ledger: Ledger, unit_ids: dict[str, set], stages: Stages, *, ctx=None,
                          levels=None) -> dict[str, pd.DataFrame]:
    """``[[inputs.covariates]]`` joined per boundary level: ``unit_id`` + one column per factor.
    Point layers (usm_geo.intake.covariates.read_point_covariates) need the intake ``ctx`` and the
    boundary ``levels``; their used features are kept in the result's ``attrs["features"]``."""
    from usm_geo.intake.covariates import read_covariates, read_point_covariates

    out = _Covariates()
    if not study.covariates:
        return out
    with stages("covariates"):
        for src in study.covariates:
            if src.points is not None:
                table, pts = read_point_covariates(src, ledger, ctx, levels[src.unit_level])
                out.attrs["features"][src.feature] = pts
            else:
                table = read_covariates(src, ledger, unit_ids.get(src.unit_level, set()))
            out[src.unit_level] = (table if src.unit_level not in out
                                   else out[src.unit_level].merge(table, on="unit_id", how="outer"))
    return out


def _declared_parents(study: Study) -> dict[str, str]:
    """level → the coarser level its ``parent`` names (by a code column, or by geometry)."""
    return {b.level: b.parent_level for b in study.boundaries if b.parent_level}


def _count_incidents(study: Study, levels, area, ctx: Context, index, ledger: Ledger, scheduler):
    """The incidents counted on Dask per unit (polygon levels, city, H3 cells) × period × category."""
    from usm_geo import scale
    from usm_geo.units.hierarchy import polygon_units

    src = study.incidents
    if len(study.incident_inputs()) > 1:
        raise UsmGeoError(f"{len(study.incident_inputs())} incident files cannot be counted on Dask yet: it reads one "
                          "Parquet file or dataset", where="--scheduler",
                          fix="leave out --scheduler, or write the files into one partitioned Parquet dataset")
    if src.datetime_end is not None or src.date_end is not None:
        raise StudyError("time windows (datetime_end / date_end) cannot be counted on Dask yet: aoristic counts "
                         "spread each record over its window in memory", where="inputs.incidents",
                         fix="run without --scheduler, or leave out datetime_end/date_end")
    if src.duplicates == "drop":
        # duplicates are found within a part only: dropping them would make counts depend on the parts
        raise StudyError('duplicates = "drop" cannot be used on Dask: exact duplicates are found only within a part '
                         "(up to 1,000,000 records of one file), so a twin in another part would still be counted",
                         where="inputs.incidents.duplicates", fix='use duplicates = "keep" (every duplicate is counted '
                         "and those within a part are listed in the ledger), or run without --scheduler")
    if not isinstance(src.path, (str, Path)):
        raise UsmGeoError("only Parquet/GeoParquet files are counted on Dask; a database source is read in memory",
                          where="--scheduler", fix="leave out --scheduler (or export the table to Parquet)")
    units = polygon_units(levels, area, ctx.working_crs, index, city_name=study.name, declared_parents=_declared_parents(study),
                           nest_tolerance=study.units.nest_tolerance)
    table = harm_table(study)
    job = scale.Job(source=src, ctx=ctx, units=units, h3_resolutions=tuple(study.units.h3_resolution),
                    frequency=study.periods.frequency, by_category=True, harm=table, detect=True)
    with scale.connect(scheduler) as client:
        counted = scale.count_dataset(job, src.path, client)
    ctx.working_crs = job.ctx.working_crs
    scale.ledger_of(counted, src.name, src.path, ledger)
    if table is not None:
        from usm_geo.indicators.registry import harm_weights

        missing = harm_weights(np.asarray(sorted(counted.categories), dtype=object), table)[1]
        if missing:
            note_no_harm(ledger, missing)
    return counted


@dataclass
class Located:
    """The units stage's result: every level with its crosswalk, and each record's unit per level."""

    units: UnitSet
    incidents: pd.DataFrame | None
    survey: pd.DataFrame | None


def run_units(intake: Intake, stages: Stages | None = None) -> Located:
    """Build every level (H3, polygons, city) and place every used record in one unit per level."""
    stages = stages or Stages()
    study = intake.study
    with stages("units"):
        inc = intake.incidents
        resolutions = study.units.h3_resolution
        cells = point_cells(inc["lon"], inc["lat"], resolutions) if inc is not None else {}
        if intake.counted is not None:
            cells = intake.counted.cells
        declared = _declared_parents(study)
        units = build_units(intake.levels, study_area=intake.study_area, crs=intake.working_crs, city_name=study.name,
                            h3_resolutions=resolutions, h3_cover=study.units.h3_cover, point_cells=cells,
                            declared_parents=declared, nest_tolerance=study.units.nest_tolerance)
        if intake.index is not None:  # built for the study-area test at intake: the same layer
            units._indexes[next(iter(intake.levels))] = intake.index
        inc_loc = locate_points(inc, units, cells, intake.ledger, "incidents") if inc is not None else None
        srv = intake.survey
        srv_loc = None
        if srv is not None:
            srv_loc = locate_by_unit(srv, units) if "unit_id" in srv else locate_points(srv, units, None, intake.ledger, "survey")
    return Located(units=units, incidents=inc_loc, survey=srv_loc)


def run_population(intake: Intake, located: Located, stages: Stages | None = None) -> dict[str, pd.DataFrame]:
    """Population per unit at every level it can be known (docs/methods.md "Population at every level").

    Each ``[[inputs.population]]`` table gives its own level (``table``); every other polygon level
    and the city take the finest table that nests in it, rolled up (``rolled_up:<level>``); H3 cells
    the finest table split over them by the raster, else by area (``disaggregated_raster`` /
    ``disaggregated_area``). Then population points, then areas fill what is left; a polygon level
    that does not nest gets the finest table shared out by the raster or by area
    (``disaggregated_raster:<level>`` / ``areal_interpolation:<level>``); the raster alone fills the
    rest. A coarser table that differs from the finer table's sum is noted per unit
    (:func:`population_notes`), never silently replaced.

    Returns ``{level: DataFrame(unit_id, population, flags)}``, each with ``attrs["method"]``.
    """
    stages = stages or Stages()
    specs = intake.study.population_inputs()
    if not specs:
        return {}
    units = located.units
    with stages("population"):
        read = {s.level: population.from_table(s.path, units.levels[s.level], id_column=s.id, value_column=s.column,
                                               sheet=s.sheet, ledger=intake.ledger, source=s.name)
                for s in specs if s.path is not None}
        tables = {lv: read[lv] for lv in units.names if lv in read}  # finest first
        raster = next((s.raster for s in specs if s.raster is not None), None)
        out = dict(tables)
        out.update(_rolled_up_population(tables, units))
        finest = next(iter(tables), None)
        if finest is not None:
            out.update({lv: population.disaggregate(tables[finest], units.levels[finest], units.levels[lv], raster)
                        for lv, kind in units.kinds.items() if kind == "h3"})
        for spec in specs:
            if spec.points is None and spec.areas is None:
                continue
            src = _population_layer(spec.points or spec.areas, spec.value, units.crs)
            for level in [lv for lv in units.levels if lv not in out]:
                layer = units.levels[level]
                if spec.points is not None:
                    g = src.geometry
                    out[level] = population.from_points(g.x.to_numpy(), g.y.to_numpy(), src[spec.value].to_numpy(float), layer)
                else:
                    out[level] = population.from_areas(src, spec.value, layer)
        if finest is not None:  # polygon levels that do not nest: the finest table shared out over them
            for level in [lv for lv in units.levels if lv not in out and units.kinds[lv] == "polygon"]:
                frame = population.disaggregate(tables[finest], units.levels[finest], units.levels[level], raster)
                frame.attrs["method"] = f"{'disaggregated_raster' if raster is not None else 'areal_interpolation'}:{finest}"
                out[level] = frame
        if raster is not None:
            for level, layer in units.levels.items():
                if level not in out:
                    out[level] = population.from_raster(raster, layer)
        _compare_tables(tables, units, intake.ledger, {s.level: s.name for s in specs if s.path is not None})
    return out


def _rolled_up_population(tables: dict[str, pd.DataFrame], units: UnitSet) -> dict[str, pd.DataFrame]:
    """Every polygon level and the city without a table of its own: the finest table whose level nests
    in it (by code or geometry), summed over the crosswalk; ``attrs["method"]`` = ``rolled_up:<level>``."""
    out = {}
    names = units.names
    for coarse in names:
        if coarse in tables or units.kinds[coarse] == "h3":
            continue
        fine = next((lv for lv in tables if names.index(lv) < names.index(coarse) and units.nested.get((lv, coarse))), None)
        if fine is not None:
            out[coarse] = _roll_up_table(tables[fine], units, fine, coarse)
    return out


def _roll_up_table(table: pd.DataFrame, units: UnitSet, fine: str, coarse: str) -> pd.DataFrame:
    cw = units.parents(fine, coarse)
    frame = population.roll_up(table, pd.DataFrame({"unit_id": cw.index, "parent_id": cw.to_numpy()}))
    frame.attrs["method"] = f"rolled_up:{fine}"
    return frame


def _compare_tables(tables: dict[str, pd.DataFrame], units: UnitSet, ledger: Ledger, names: dict[str, str]) -> None:
    """Where a coarser level has its own table and a finer table nests in it, compare them per unit:
    ``attrs["compared_with"]`` of the coarser table (run.json ``population_notes``) and a ledger note.
    Both are kept: the coarser level uses its own table; levels without a table use the finer one."""
    levels = list(tables)
    for k, coarse in enumerate(levels):
        fine = next((lv for lv in levels[:k] if units.nested.get((lv, coarse))), None)
        if fine is None:
            continue
        own = tables[coarse].set_index("unit_id")["population"]
        summed = _roll_up_table(tables[fine], units, fine, coarse).set_index("unit_id")["population"].reindex(own.index)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = (own - summed) / summed
        differs = rel.abs() > 1e-9
        tables[coarse].attrs["compared_with"] = {
            "level": fine, "units": int(len(rel)), "units_differing": int(differs.sum()),
            "max_abs_relative_difference": round(float(rel.abs().max()), 6) if rel.notna().any() else None,
            "relative_difference": {u: (round(float(v), 6) if np.isfinite(v) else None) for u, v in rel.items()}}
        if differs.any():
            worst = rel[differs].abs().sort_values(ascending=False, kind="stable").index[:5]
            shown = ", ".join(f"{u} {rel[u]:+.1%}" for u in worst)
            ledger.note(names[coarse], "population_tables_differ",
                        f"the {coarse} table differs from the sum of the {fine} table in {int(differs.sum())} of "
                        f"{len(rel)} units ({shown}{', …' if differs.sum() > 5 else ''}); {coarse} uses its own table, "
                        f"levels without a table (and H3) use the {fine} table")


def population_notes(pop: dict[str, pd.DataFrame]) -> dict[str, dict]:
    """Per level with its own table compared with a finer table: (own − sum of the finer) / sum of
    the finer, per unit, and the largest (run.json ``population_notes``)."""
    return {lv: t.attrs["compared_with"] for lv, t in pop.items() if "compared_with" in t.attrs}


def population_methods(pop: dict[str, pd.DataFrame]) -> dict[str, str]:
    """How each level's population was obtained (run.json ``population_method``)."""
    return {level: str(table.attrs.get("method", "")) for level, table in pop.items()}


def _population_layer(path: Path, column: str, crs) -> gpd.GeoDataFrame:
    """Population points or areas in the working CRS with a numeric ``column`` (clear errors otherwise)."""
    raw = read_spatial(path, fmt=detect_format(path))
    if raw.crs is None:
        raise CRSError("the population layer has no CRS", where=path, fix="add a .prj file or use a GeoPackage")
    frame = raw.frame
    if column not in frame:
        raise UsmGeoError(f"the population layer has no column '{column}'", where=path,
                          fix=f"set inputs.population.value to one of: {', '.join(c for c in frame.columns if c != 'geometry')}")
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any() or (values < 0).any():
        row = int(np.flatnonzero(values.isna().to_numpy() | (values < 0).to_numpy())[0]) + 1
        raise UsmGeoError(f"population '{frame[column].iloc[row - 1]}' is not a number ≥ 0", where=f"{path}:{row}, column '{column}'",
                          fix="fix or remove the feature")
    return gpd.GeoDataFrame({column: values.to_numpy(float)}, geometry=frame.geometry.to_numpy(), crs=raw.crs).to_crs(crs)


def population_measures(pop: dict[str, pd.DataFrame], periods: list[str]) -> pd.DataFrame:
    """Population rows of the measures table (category ``all``, the same value for every period)."""
    frames = []
    for level, table in pop.items():
        k = len(periods)
        value = np.repeat(table["population"].to_numpy(float), k)
        frames.append(pd.DataFrame({
            "level": level, "unit_id": np.repeat(table["unit_id"].to_numpy(dtype=object), k),
            "period": np.tile(np.asarray(periods, dtype=object), len(table)), "category": "all",
            "measure": "population", "numerator": value, "denominator": np.nan, "value": value,
            "lower": np.nan, "upper": np.nan, "n": 0, "flags": np.repeat(table["flags"].to_numpy(dtype=object), k),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MEASURE_COLUMNS)


def study_periods(study: Study, times: pd.Series | None, frequency: str | None = None) -> list[str]:
    """Every period label of the study, from its start to its end (or the data's first to last day),
    by the study's frequency or the ``frequency`` given."""
    start, end = study.periods.start, study.periods.end
    if times is not None and len(times):
        start = start or times.min().date()
        end = end or times.max().date()
    if start is None:
        return []
    return all_periods(start, end, frequency or study.periods.frequency)


def run_measures(intake: Intake, located: Located, pop: dict[str, pd.DataFrame] | None = None,
                 stages: Stages | None = None) -> pd.DataFrame:
    """The long measures table (counts, harm, population) at every level."""
    stages = stages or Stages()
    with stages("measures"):
        inc = intake.incidents
        if intake.counted is not None:
            c = intake.counted
            periods = study_periods(intake.study, pd.Series([c.first, c.last]) if c.first is not None else None)
            sparse = c.tally.astype({k: object for k in c.tally.columns if k not in ("n", "harm")})
            counts = measures_from_tally(sparse, located.units, periods, intake.categories(), harm=c.weighted)
            return sort_measures(pd.concat([counts, population_measures(pop or {}, periods)], ignore_index=True))
        if intake.counts is not None:
            return _area_count_measures(intake, located, pop)
        if inc is None:
            return pd.DataFrame(columns=MEASURE_COLUMNS)
        periods = study_periods(intake.study, inc["occurred_at"])
        labels = period_labels(inc["occurred_at"].to_numpy(), intake.study.periods.frequency)
        weight = _harm_weights(intake)
        counts = count_measures(located.incidents, located.units, period=labels, periods=periods,
                                category=inc["category"].to_numpy(dtype=object), weight=weight)
        spread = aoristic_measures(inc, located, periods)
        # an empty frame in concat would turn the numeric columns into objects (pandas 3)
        parts = [f for f in (counts, spread, population_measures(pop or {}, periods)) if len(f)]
        return sort_measures(pd.concat(parts, ignore_index=True))


def aoristic_measures(inc: pd.DataFrame, located: Located, periods: list[str]) -> pd.DataFrame:
    """``aoristic_count`` rows (every unit × period × category, like ``count``) when some incident has a
    time window (``occurred_end``, from ``datetime_end``/``date_end``): each record's weight spread over
    the periods of its window (:func:`usm_geo.measures.aoristic_weights`); ``n`` = records with a share
    in the cell. Empty when no record has a window."""
    if "occurred_end" not in inc or not inc["occurred_end"].notna().any():
        return pd.DataFrame(columns=MEASURE_COLUMNS)
    rec, per, w = aoristic_weights(inc["occurred_at"].to_numpy(), inc["occurred_end"].to_numpy(), periods)
    spread = count_measures(located.incidents.iloc[rec].reset_index(drop=True), located.units,
                            period=np.asarray(periods, dtype=object)[per], periods=periods,
                            category=inc["category"].to_numpy(dtype=object)[rec], weight=w)
    return spread[spread["measure"] == "harm"].assign(measure="aoristic_count")


def count_periods(study: Study, counts: pd.DataFrame) -> list[str]:
    """Every period of a study of area-coded counts: ``start`` … ``end``, else the counts' first to last period."""
    from usm_geo.periods import period_bounds

    windows = [period_bounds(str(p)) for p in pd.unique(counts["period"])]
    days = pd.Series([w.start for w in windows] + [w.end for w in windows], dtype="datetime64[ns]")
    return study_periods(study, days)


def _area_count_measures(intake: Intake, located: Located, pop: dict[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Measures of a study of area-coded counts: their unit level and the levels it nests in, and
    population; sets ``intake.count_report`` (run.json ``counts``)."""
    study = intake.study
    periods = count_periods(study, intake.counts)
    level = study.counts[0].unit_level
    rows, report = area_count_measures(intake.counts, located.units, level, periods, intake.categories(),
                                       population=(pop or {}).get(level), reported_population=bool(pop))
    report["unit_level"] = level
    table = harm_table(study)
    if table is not None:  # indicators.harm: each category's count × its harm weight
        from usm_geo.indicators.registry import harm_weights
        from usm_geo.measures import harm_from_counts

        labels = intake.categories()
        w, missing = harm_weights(np.asarray(labels, dtype=object), table)
        if missing:
            note_no_harm(intake.ledger, missing)
        rows = pd.concat([rows, harm_from_counts(rows[rows["measure"] == "count"], dict(zip(labels, np.nan_to_num(w))))],
                         ignore_index=True)
    report["kde"] = "not computed: area-coded counts have no point locations"
    missing = report["not_in_source"].get(level, {})
    notes = [f"{lv}: no counts ({why})" for lv, why in report["not_counted"].items()]
    if missing:
        names = dict(zip(located.units.levels[level]["unit_id"], located.units.levels[level]["name"]))
        shown = ", ".join(f"{u} {names.get(u, '')}".strip() for u in sorted(missing)[:6])
        notes.append(f"{level}: {len(missing)} unit(s) without a count from the count files in some period or category "
                     f"(shown as not reported, never as 0): {shown}{' …' if len(missing) > 6 else ''}")
    notes.append(f"kde: {report['kde']}")
    report["notes"] = notes
    intake.count_report = report
    people = population_measures(pop or {}, periods)
    return sort_measures(pd.concat([rows, people], ignore_index=True) if len(people) else rows)


def _harm_weights(intake: Intake) -> np.ndarray | None:
    """Harm weight per incident: the study's harm table by category (``indicators.harm``), else the
    incidents' own ``weight`` column, else None. Categories the table does not weigh count 0 and
    are named in a ledger note (harm is then a lower bound for them)."""
    from usm_geo.indicators.registry import incident_harm

    weights, missing = incident_harm(intake.incidents, harm_table(intake.study))
    if missing:
        note_no_harm(intake.ledger, missing)
    return weights


def harm_table(study: Study) -> pd.DataFrame | None:
    """The study's harm table (``indicators.harm``: label → ``harm`` days), or None."""
    harm_path = (study.indicators or {}).get("harm")
    if not harm_path:
        return None
    from usm_geo.indicators.registry import read_label_table

    table = read_label_table(study.path.parent / harm_path, "harm_days", study.path)
    table["harm"] = pd.to_numeric(table["harm_days"], errors="coerce")
    return table


def note_no_harm(ledger: Ledger, missing: list[str]) -> None:
    ledger.note("incidents", "no_harm_weight", "harm weight 0 for: " + ", ".join(missing))


@dataclass
class Indicators:
    rows: pd.DataFrame  # measures-table rows, measure = indicator id
    wide: pd.DataFrame  # indicators.csv
    skipped: dict[str, str]  # indicator → why it was not computed
    unmapped_categories: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # progress, concentration, gap
    definitions: dict[str, dict] = field(default_factory=dict)  # indicator id → its definition (run.json)
    small_area: dict | None = None  # run.json "small_area" ([indicators] small_area = true)


def run_indicators(intake: Intake, located: Located, measures: pd.DataFrame, stages: Stages | None = None) -> Indicators:
    """Rates with intervals and smoothed rates, survey shares and perception scores at every level."""
    # imported here, not at the top: the one-file commands (`usm-geo aggregate`) never need them
    from usm_geo.disclosure.area_tables import wide_table
    from usm_geo.indicators.compute import contiguity, perception_rows, rate_rows, share_rows, smoothed_rows
    from usm_geo.indicators.registry import load_settings, map_categories
    from usm_geo.indicators.small_area_rows import small_area_definitions
    from usm_geo.indicators.tables import concentration_table, gap_table, progress_table

    stages = stages or Stages()
    study = intake.study
    with stages("indicators"):
        settings = load_settings(study.indicators, study.path)
        frames, skipped, unmapped = [], {}, []
        if intake.has_events:
            labels = intake.categories()
            codes, unmapped = map_categories(np.asarray(labels, dtype=object), settings.categories)
            iccs = {lab: code for lab, code in zip(labels, codes) if code is not None}
            if unmapped:
                intake.ledger.note("incidents", "unmapped_category",
                                   "no ICCS section for: " + ", ".join(unmapped) + " (add them to the category table)")
            rows, skipped = rate_rows(measures, settings, iccs, study.records)
            frames += [rows, smoothed_rows(rows, located.units, contiguity(located.units),
                                                 per={i: d.per for i, d in settings.indicators.items()})]
        else:
            skipped.update({i: "no incidents in the study" for i, d in settings.indicators.items() if d.kind == "rate"})
        small_area = None
        if intake.survey is not None:
            rows, why = share_rows(intake.survey, located.survey, located.units, settings, study.periods.frequency,
                                   {q.id for q in study.survey.questions}, with_variance=settings.small_area)
            if settings.small_area:
                small_area = run_small_area(intake, located, rows, settings)
                rows = rows.drop(columns="design_variance", errors="ignore")
                skipped.update(small_area.skipped)
            frames += [rows] + ([small_area.rows] if small_area is not None else [])
            skipped.update(why)
        else:
            skipped.update({i: "no survey in the study" for i, d in settings.indicators.items() if d.kind == "share"})
        if intake.perception is not None:
            frames.append(perception_rows(intake.perception, study.perception.unit_level, study.perception.scores))
        rows = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else pd.DataFrame(columns=MEASURE_COLUMNS)
        names = {lv: dict(zip(layer["unit_id"], layer["name"])) for lv, layer in located.units.levels.items()}
        ids = list(pd.unique(rows["measure"])) if len(rows) else []
        table = wide_table(rows, names, ids)
        both = pd.concat([measures, rows], ignore_index=True)
        tables = {"progress": progress_table(both, settings, study.periods.baseline, study.periods.current),
                  "concentration": concentration_table(measures, located.units)}
        perceived = [(i, False) for i in ("safe_after_dark_share",) if i in ids]
        if intake.perception is not None:
            perceived += [(sc, study.perception.lower_is_better) for sc in study.perception.scores]
        if perceived and "incident_rate" in ids:
            tables["gap"] = gap_table(both, "incident_rate", *perceived[0])
    definitions = {i: dataclasses.asdict(d) for i, d in settings.indicators.items()}
    targets = {i: dataclasses.asdict(t) for i, t in settings.targets.items()}
    for i, t in targets.items():
        definitions[i]["target"] = t
    if small_area is not None:
        tables["small_area"] = small_area.table
        definitions.update(small_area_definitions(definitions, ids))
    return Indicators(rows=rows, wide=table, skipped=skipped, unmapped_categories=unmapped, tables=tables,
                      definitions=definitions, small_area=small_area.summary if small_area is not None else None)


def run_small_area(intake: Intake, located: Located, share: pd.DataFrame, settings):
    """``[indicators] small_area``: Fay–Herriot estimates of the share rows (with ``design_variance``)
    at every level with covariates (:func:`usm_geo.indicators.small_area_rows.small_area_rows`)."""
    from usm_geo.indicators.small_area_rows import small_area_rows

    ids = {lv: located.units.levels[lv]["unit_id"].to_numpy(dtype=object) for lv in intake.covariates}
    return small_area_rows(share, intake.covariates, ids, use=settings.small_area_covariates)


@dataclass
class Hotspots:
    layers: dict[str, gpd.GeoDataFrame]  # level → units with Gi*/LISA columns
    globals: dict[str, dict]
    reports: dict[str, dict]
    kde: object  # usm_geo.hotspots.kde.KDEResult or None
    period: str | None


def write_models(folder: Path, models: dict, profile: str) -> list[str]:
    """``model.json`` (every modelled level) and, in the internal profile, ``model_units.csv``
    (observed and expected counts per unit: counts, so never in a public folder)."""
    if not models:
        return []
    write_json(folder / "model.json", {lv: m["json"] for lv, m in models.items()})
    written = ["model.json"]
    frames = [m["units"].assign(level=lv) for lv, m in models.items() if m["units"] is not None]
    if frames and profile == "internal":
        table = pd.concat(frames, ignore_index=True)
        write_csv(folder / "model_units.csv", table[["level", *[c for c in table.columns if c != "level"]]])
        written.append("model_units.csv")
    return written


def run_models(intake: Intake, located: Located, measures: pd.DataFrame, stages: Stages | None = None) -> dict:
    """The count model of every level with covariates (usm_geo.models.counts): incidents of the
    current period (category ``all``) against the level's factors, population as exposure.
    Returns ``{level: {"json": …, "units": DataFrame}}``; levels that cannot be modelled say why."""
    from usm_geo.units.weights import queen
    from usm_geo.models.counts import area_count_model

    out: dict = {}
    if not intake.covariates:
        return out
    stages = stages or Stages()
    with stages("models"):
        for level, table in sorted(intake.covariates.items()):
            layer = located.units.levels[level]
            try:
                w = queen(layer, ids=layer["unit_id"].to_numpy())
            except UsmGeoError:
                w = None
            out[level] = area_count_model(measures, layer, table, level=level, period=intake.study.periods.current,
                                          weights=w)
    return out


def run_hotspots(intake: Intake, located: Located, measures: pd.DataFrame, stages: Stages | None = None) -> Hotspots:
    """Gi* (FDR bins) and local Moran's I of the current period at every H3 and polygon level with at
    least 3 units (levels under ``[hotspots] min_units`` are written flagged ``too_few_units``, without
    statistics), on counts or rates (``[hotspots] value``, :func:`~usm_geo.hotspots.analysis.hotspot_value`),
    and a KDE surface of the same incidents over the study area."""
    from usm_geo.hotspots.analysis import hotspot_layer, hotspot_value
    from usm_geo.hotspots.kde import kde

    stages = stages or Stages()
    study = intake.study
    inc = intake.incidents
    empty = Hotspots({}, {}, {}, None, None)
    if not intake.has_events:
        return empty
    with stages("hotspots"):
        counts = measures[(measures["measure"] == "count") & (measures["category"] == "all")]
        periods = sorted(counts["period"].unique())
        period = study.periods.current if study.periods.current in periods else (periods[-1] if periods else None)
        if period is None:
            return empty
        units = located.units
        layers, globals_, reports = {}, {}, {}
        for level, layer in units.levels.items():
            if units.kinds[level] not in ("h3", "polygon") or len(layer) < 3:
                continue
            y = counts[(counts["level"] == level) & (counts["period"] == period)].set_index("unit_id")["value"]
            if intake.counts is not None:  # area-coded counts: only the levels they reach, only units reported
                if y.empty:
                    continue
                layer = layer[layer["unit_id"].map(y).notna().to_numpy()]
                if len(layer) < 3:
                    continue
            y = y.reindex(layer["unit_id"]).fillna(0).to_numpy(float)
            kind = units.kinds[level]
            pop = measures[(measures["measure"] == "population") & (measures["level"] == level)
                           & (measures["period"] == period)].set_index("unit_id")["value"]
            pop = pop.reindex(layer["unit_id"]).to_numpy(float) if len(pop) else None
            settings = study.hotspots
            values, label, why = hotspot_value(y, pop, kind=kind, choice=settings.value)
            base = layer[["unit_id", "name", "geometry"]].assign(period=period, count=y.astype(np.int64),
                                                                  analysed_value=values)
            out, g, rep = hotspot_layer(base, values, weights="h3" if kind == "h3" else "queen", permutations=999,
                                        seed=study.seed, cells=layer.attrs.get("cells") if kind == "h3" else None,
                                        fdr=settings.fdr, alpha=settings.alpha, min_units=settings.min_units,
                                        value=label)
            rep["value_reason"] = why
            if intake.counts is not None and len(layer) < len(units.levels[level]):
                rep["not_in_source"] = f"{len(units.levels[level]) - len(layer)} unit(s) not reported by the count files are left out"
            layers[level], globals_[level], reports[level] = out, g, rep
        surface = None
        # the KDE needs every point: not computed when the incidents were counted on Dask
        labels = period_labels(inc["occurred_at"].to_numpy(), study.periods.frequency) if inc is not None else None
        sel = labels == period if inc is not None else np.zeros(0, bool)
        if sel.sum() >= 3 and intake.working_crs is not None:
            area = intake.study_area if intake.study_area is not None else None
            surface = kde(inc["x"].to_numpy(float)[sel], inc["y"].to_numpy(float)[sel], area=area, crs=intake.working_crs)
    return Hotspots(layers, globals_, reports, surface, period)


def run_sppt(intake: Intake, located: Located, measures: pd.DataFrame, stages: Stages | None = None):
    """Andresen's SPPT (:mod:`usm_geo.hotspots.sppt`) of ``periods.current`` against ``periods.baseline``
    at every H3 and polygon level, for ``all`` and each category, seeded by the study's seed.
    Returns (``sppt.csv`` table or None, run.json ``sppt`` summary or None)."""
    from usm_geo.hotspots.sppt import DRAWS, LEVEL, SAMPLE, sppt_table

    periods = intake.study.periods
    counts = measures[measures["measure"] == "count"]
    if counts.empty:
        return None, None
    have = set(counts["period"])
    head = {"baseline": periods.baseline, "current": periods.current, "draws": DRAWS, "sample": SAMPLE,
            "level": LEVEL, "seed": intake.study.seed}
    if periods.baseline not in have or periods.current not in have or periods.baseline == periods.current:
        return None, {**head, "skipped": "periods.baseline and periods.current must be two periods of the study"}
    with stages("sppt") if stages else _null():
        units = located.units
        ids = {lv: layer["unit_id"].to_numpy(dtype=object) for lv, layer in units.levels.items()
               if units.kinds[lv] in ("h3", "polygon")}
        table, summary = sppt_table(counts, ids, periods.baseline, periods.current, seed=intake.study.seed)
    return table, {**head, "levels": summary}


def hotspot_notes(reports: dict) -> list[str]:
    """One line per hot spot level for the screen: the value analysed, the rule, or why it was refused."""
    notes = []
    for level, rep in reports.items():
        if rep.get("refused"):
            notes.append(f"{level}: no local statistics ({rep['refused']})")
        else:
            sig = rep.get("significant_units", {})
            notes.append(f"{level}: {rep.get('value')} ({rep.get('value_reason')}); {rep.get('significance')}: "
                         f"{sig.get('gistar', 0)} Gi*, {sig.get('lisa', 0)} LISA significant")
    return notes


def time_pattern_level(study: Study, located: Located) -> str | None:
    """The level whose units get time patterns: ``outputs.time_level``, else the finest polygon level."""
    if study.outputs.time_level is not None:
        if study.outputs.time_level not in located.units.levels:
            raise StudyError(f"'outputs.time_level' is '{study.outputs.time_level}', which is not a level of the study",
                             where=study.path, fix=f"use one of: {', '.join(located.units.names)}")
        return study.outputs.time_level
    polygons = [lv for lv in located.units.names if located.units.kinds[lv] == "polygon"]
    return polygons[0] if polygons else None


def run_time_patterns(intake: Intake, located: Located, stages: Stages | None = None):
    """``time_patterns.csv`` (see :mod:`usm_geo.hotspots.time_patterns`) for the city and each unit of
    :func:`time_pattern_level`, and its summary for run.json; (None, None) without point incidents."""
    from usm_geo.hotspots.time_patterns import time_patterns

    inc = intake.incidents
    if inc is None or located.incidents is None:
        return None, None
    with stages("time patterns") if stages else _null():
        level = time_pattern_level(intake.study, located)
        levels = ([level] if level else []) + ["city"]
        t = inc["occurred_at"]
        months = study_periods(intake.study, t, frequency="month")
        table, summary = time_patterns(  # incidents always carry a date, so date_precision is there
            t.to_numpy(), inc["date_precision"].to_numpy(dtype=object), inc["category"].to_numpy(dtype=object), {lv: located.incidents[lv].to_numpy(dtype=object) for lv in levels},
            {lv: located.units.levels[lv]["unit_id"].to_numpy(dtype=object) for lv in levels}, months,
            occurred_end=inc["occurred_end"].to_numpy() if "occurred_end" in inc else None)
        summary["levels"] = levels
    return table, summary


def _sha256(path: Path) -> str:
    """SHA-256 of a file; of a folder (a partitioned dataset): of the list of its Parquet files'
    relative paths and SHA-256s, in record order."""
    h = hashlib.sha256()
    if Path(path).is_dir():
        from usm_geo.intake.datasets import dataset_files

        for f in dataset_files(path):
            h.update(f"{f.relative_to(path).as_posix()}\t{_sha256(f)}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "usm_geo": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = "not installed"
    return out


def run_info(intake: Intake, timings: dict[str, float], started_at: str) -> dict:
    """The content of run.json: provenance, ledger totals, timings."""
    study = intake.study
    base = study.path.parent
    inputs = {}
    for name, path in sorted(study.input_paths().items()):
        try:
            rel = str(path.relative_to(base))
        except ValueError:
            rel = str(path)
        inputs[name] = {"file": rel, "sha256": _sha256(path)}
    for name, src in sorted(study.database_inputs().items()):
        inputs[name] = src.provenance()
    reasons: dict[str, dict[str, int]] = {}
    for (source, status, reason), n in sorted(intake.ledger.reason_counts().items()):
        reasons.setdefault(source, {})[f"{status}:{reason}"] = n
    return {
        "usm_geo": __version__,
        "study": {"file": study.path.name, "name": study.name, "sha256": study.sha256},
        "inputs": inputs,
        "packages": package_versions(),
        "seed": study.seed,
        "working_crs": crs_label(intake.working_crs) if intake.working_crs is not None else None,
        "timezone": study.timezone,
        "sources": intake.ledger.totals(),
        "ledger_reasons": reasons,
        "timings_s": timings,
        "started_at": started_at,
    }


REPORT_NAME = "report.html"


def public_measures(measures: pd.DataFrame, units: UnitSet, study: Study) -> pd.DataFrame:
    """The measures table as the run's public files show it (the study's k and min_n, the crosswalk
    with its nested pairs)."""
    from usm_geo.disclosure import apply_profile

    return apply_profile(measures, crosswalk_table(units), profile="public", k=study.outputs.suppression_threshold,
                         min_n=int((study.indicators or {}).get("min_n", 30)))[0]


def crosswalk_table(units: UnitSet) -> pd.DataFrame:
    """The crosswalk with its ``nested`` column (``crosswalk.csv``): which level pairs nest, so that
    the public profile protects Σ children = parent there. Every public file of a run is made from
    this table, as ``usm-geo export`` makes them from crosswalk.csv."""
    cw = units.crosswalk
    return cw.assign(nested=[units.nested.get((a, b), False) for a, b in zip(cw["level"], cw["to_level"])])


def run_into(study: Study, folder: Path, stages: Stages | None = None, now: dt.datetime | None = None,
             scheduler=None, ledger: Ledger | None = None) -> dict:
    """Run every stage and write the outputs into ``folder`` (an existing, empty staging folder).
    ``scheduler``: count the incidents on Dask (see :func:`run_intake`); ``ledger``: the ledger to fill."""
    stages = stages or Stages()
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    t0 = time.perf_counter()
    if study.outputs.tiles:  # a wrong basemap name fails now, not after the whole run
        from usm_geo.maps.build import basemap

        try:
            basemap(study.outputs.tiles)
        except UsmGeoError as exc:
            raise StudyError(f"'outputs.tiles': {exc.what}", where=study.path, fix=exc.fix) from None
    intake = run_intake(study, stages, now=now, scheduler=scheduler, ledger=ledger)
    located = run_units(intake, stages)
    pop = run_population(intake, located, stages)
    measures = run_measures(intake, located, pop, stages)
    indicators = run_indicators(intake, located, measures, stages)
    hot = run_hotspots(intake, located, measures, stages)
    impact_json, impact_layer = run_impact(intake, stages, located, pop)
    patterns, patterns_summary = run_time_patterns(intake, located, stages)
    models = run_models(intake, located, measures, stages)
    sppt, sppt_summary = run_sppt(intake, located, measures, stages)
    measures = sort_measures(pd.concat([measures, indicators.rows], ignore_index=True))
    recon = run_reconciliation(intake, located, measures, stages)  # police and health records: [reconcile]
    with stages("write"):
        write_layers(folder / "units.gpkg", {lv: layer[["unit_id", "name", "parent_id", "geometry"]]
                                             for lv, layer in located.units.levels.items()})
        write_csv(folder / "crosswalk.csv", crosswalk_table(located.units))
        if hot.layers:
            write_layers(folder / "hotspots.gpkg", hot.layers)
        if hot.kde is not None:
            from usm_geo.hotspots.kde import write_geotiff

            write_geotiff(hot.kde, folder / "kde.tif")
        if impact_json is not None:
            write_json(folder / "impact.json", impact_json)
            write_layers(folder / "impact_areas.gpkg", {"impact_areas": impact_layer})
        write_csv(folder / "measures.csv", measures)
        write_csv(folder / "indicators.csv", indicators.wide)
        for name, frame in indicators.tables.items():
            if name == "small_area" and study.outputs.profile == "public":
                from usm_geo.indicators.small_area_rows import small_area_in_profile

                frame = small_area_in_profile(frame, public_measures(measures, located.units, study))
            write_csv(folder / f"{name}.csv", frame)
        write_csv(folder / "ledger.csv", intake.ledger.to_frame())
        if patterns is not None:
            write_csv(folder / "time_patterns.csv", patterns)
        write_models(folder, models, study.outputs.profile)
        model_outputs = write_model_outputs(folder, intake, located, measures, models, stages)
        if sppt is not None:
            write_csv(folder / "sppt.csv", sppt)
        write_reconciliation(folder, recon, located.units, study)
    timings = dict(stages.timings)
    timings["total"] = round(time.perf_counter() - t0, 3)
    info = run_info(intake, timings, started)
    info["units"] = {name: len(layer) for name, layer in located.units.levels.items()}
    info["h3_cover"] = {lv: layer.attrs.get("cover", intake.study.units.h3_cover)
                        for lv, layer in located.units.levels.items() if located.units.kinds[lv] == "h3"}
    info["population_method"] = population_methods(pop)
    info["population_notes"] = population_notes(pop)
    info["population_base_year"] = study.population_base_year()  # None: the study does not say (unknown)
    info["hierarchy"] = located.units.report
    info["rollup_check"] = check_rollups(measures, located.units)
    info["hotspots"] = {"period": hot.period, "global": hot.globals, "report": hot.reports,
                        "kde": hot.kde.report if hot.kde is not None else None}
    info["hotspots"]["notes"] = hotspot_notes(hot.reports)
    info["indicators"] = {"computed": sorted(set(indicators.rows["measure"])) if len(indicators.rows) else [],
                          "not_computed": indicators.skipped, "unmapped_categories": indicators.unmapped_categories}
    info["indicator_definitions"] = indicators.definitions
    if indicators.small_area is not None:
        info["small_area"] = indicators.small_area
    if patterns_summary is not None:
        info["time_patterns"] = patterns_summary
    if models:
        info["models"] = {lv: {k: m["json"][k] for k in ("status", "period", "n_units", "notes")} for lv, m in models.items()}
    info.update({key: section for key, section in model_outputs.items() if section is not None})
    if sppt_summary is not None:
        info["sppt"] = sppt_summary
    if recon is not None:
        info["reconciliation"] = recon.summary
    if intake.count_report is not None:
        info["counts"] = intake.count_report
        if study.intervention is not None:
            info["counts"]["impact"] = "not computed: the before/after windows need dated point incidents"
            info["counts"]["notes"].append(f"impact: {info['counts']['impact']}")
    if intake.counted is not None:
        skipped = ["kde"] + (["impact"] if study.intervention is not None else [])
        info["dask"] = {"scheduler": str(scheduler), "not_computed": skipped,
                        "why": "these need every incident in memory; run without --scheduler to compute them"}
    info["outputs"] = {"profile": study.outputs.profile, "suppression_threshold": study.outputs.suppression_threshold,
                       "formats": list(study.outputs.formats)}
    info["periods"] = {"frequency": study.periods.frequency, "baseline": study.periods.baseline,
                       "current": study.periods.current,
                       "start": study.periods.start.isoformat() if study.periods.start else None,
                       "end": study.periods.end.isoformat() if study.periods.end else None}
    settings_section = study.indicators or {}
    info["outputs"]["min_n"] = int(settings_section.get("min_n", 30))
    info["outputs"]["min_eff_n"] = float(settings_section.get("min_eff_n", 30))
    with stages("exports"):
        from usm_geo.export import write_run_exports
        from usm_geo.indicators.report_card import report_card

        card = report_card(measures, indicators.tables.get("progress"), indicators.definitions,
                           baseline=study.periods.baseline, current=study.periods.current, city_name=study.name,
                           population_year=study.population_base_year())
        write_run_exports(folder, {lv: layer[["unit_id", "name", "parent_id", "geometry"]] for lv, layer in located.units.levels.items()},
                          measures, crosswalk_table(located.units), profile=study.outputs.profile,
                          k=study.outputs.suppression_threshold, min_n=info["outputs"]["min_n"], report_card=card,
                          hotspots=hot.layers, impact_areas=impact_layer, definitions=indicators.definitions, info=info,
                          impact=impact_json, kde=folder / "kde.tif" if hot.kde is not None else None,
                          tiles=study.outputs.tiles, time_patterns=patterns)
    info["timings_s"]["exports"] = stages.timings.get("exports")
    # the output files the folder holds, so nothing is promised that was not written (run.json included;
    # the demo's inputs/ folder is input, not output)
    info["outputs"]["files"] = sorted({p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
                                      | {"run.json", REPORT_NAME})
    write_json(folder / "run.json", info)
    with stages("report"):
        # the report reads the folder back like `usm-geo report` (one reader), in the study's profile
        from usm_geo.report import write_report

        write_report(folder, folder / REPORT_NAME, profile=study.outputs.profile,
                     k=study.outputs.suppression_threshold)
    info["timings_s"]["report"] = stages.timings.get("report")
    info["_intake"] = intake
    return info


def run(study: Study, out: Path, stages: Stages | None = None, now: dt.datetime | None = None, scheduler=None) -> dict:
    """Run the study into ``out``, built as a temporary sibling and swapped in when complete.
    ``scheduler``: count the incidents on Dask (see :func:`run_intake`)."""
    out = Path(out).resolve()
    inputs = [study.path, *study.input_paths().values()]
    for p in inputs:
        if out == p or out in p.parents:
            raise OutputError("the output folder holds the study's inputs; replacing it would delete them", where=out,
                              fix="choose another --out folder")
    ledger = Ledger()
    failed = failed_ledger_path(out)
    try:
        with staged_folder(out) as stage:
            info = run_into(study, stage, stages, now=now, scheduler=scheduler, ledger=ledger)
    except OutputError:
        raise  # the outputs could not be written (disk full, permissions): the inputs were fine, nothing more is written
    except UsmGeoError as exc:
        keep_failed_ledger(exc, ledger, failed)
        raise
    failed.unlink(missing_ok=True)  # a previous failure's ledger no longer describes ``out``
    return info


def failed_ledger_path(out: Path) -> Path:
    """Where a failed run of ``out`` leaves its ledger: ``<out>.failed-ledger.csv`` beside the folder
    (the folder itself is not swapped in, so the previous outputs stay intact)."""
    out = Path(out).resolve()
    return out.parent / f"{out.name}.failed-ledger.csv"


def ledger_lines(ledger: Ledger) -> list[str]:
    """``source: reason (status): count`` for every reason of the ledger (file notes excluded), most
    frequent first: what a failed run or validation prints under its error."""
    counts = sorted(ledger.reason_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"{source}: {reason} ({status}): {n:,}" for (source, status, reason), n in counts]


def note_lines(ledger: Ledger) -> list[str]:
    """``source: reason: detail`` for every file note (encoding, date format, reprojection,
    unmapped categories …) in ledger order."""
    frame = ledger.to_frame()
    notes = frame[frame["status"] == "note"]
    return [f"{s}: {r}: {d}" if d else f"{s}: {r}" for s, r, d in zip(notes["source"], notes["reason"], notes["detail"])]


def keep_failed_ledger(exc: UsmGeoError, ledger: Ledger, path: Path | None) -> None:
    """Attach the ledger of a failed attempt to ``exc`` (``exc.ledger_lines``, ``exc.ledger_path``)
    and write it to ``path`` when given, so that the reasons rows were dropped are not lost with the run.
    A ledger that cannot be written is not a second error: ``exc.ledger_path`` is then None."""
    exc.ledger_lines = ledger_lines(ledger)
    exc.ledger_path = None
    if path is not None and len(ledger.to_frame()):
        try:
            write_csv(Path(path), ledger.to_frame())
            exc.ledger_path = str(path)
        except OutputError:
            pass


@dataclass
class Validation:
    """What :func:`validate` read: the intake (with its ledger), the units, the population per level,
    and one line per check passed (shown by ``usm-geo validate``)."""

    intake: Intake
    located: Located
    population: dict[str, pd.DataFrame]
    checks: list[str]


def _data_span(intake: Intake) -> tuple[dt.date | None, dt.date | None]:
    """First and last day of the used incidents (or responses), for a study without start/end."""
    for frame in (intake.incidents, intake.survey):
        if frame is not None and "occurred_at" in frame and len(frame):
            t = frame["occurred_at"]
            return t.min().date(), t.max().date()
    if intake.counts is not None and len(intake.counts):  # area-coded counts: their first and last period
        from usm_geo.periods import period_bounds

        windows = [period_bounds(str(p)) for p in pd.unique(intake.counts["period"])]
        return min(w.start for w in windows), max(w.end for w in windows)
    return None, None


def check_periods(intake: Intake) -> str | None:
    """``periods.baseline`` and ``periods.current`` must be periods of ``periods.frequency`` inside the
    study period (``start`` … ``end``, else the span of the data); raises :class:`StudyError` naming the
    key, the period and the valid range. Returns a line saying what was checked (None: nothing to check)."""
    from usm_geo.periods import period_bounds

    periods = intake.study.periods
    first, last = _data_span(intake)
    start, end = periods.start or first, periods.end or last
    said = [(key, getattr(periods, key)) for key in ("baseline", "current") if getattr(periods, key)]
    if not said:
        return None
    if start is None or end is None:
        return None  # no dated records and no start/end: the indicators stage reports it
    valid = all_periods(start, end, periods.frequency)
    for key, label in said:
        if label in valid:
            continue
        try:
            window = period_bounds(label)
        except UsmGeoError:
            window = None
        if window is None:
            why = "is not a period label"
        elif window.end < start or window.start > end:
            why = "lies outside the study period"
        else:
            why = f"is not a {periods.frequency} period of the study"
        raise StudyError(f"periods.{key} = '{label}' {why} "
                         f"({start} … {end}, {periods.frequency}ly: {valid[0]} … {valid[-1]})",
                         where=f"{intake.study.path}: [periods] {key}",
                         fix=f"use one of {valid[0]} … {valid[-1]}, or widen periods.start/end")
    return f"periods: {', '.join(f'{k} {v}' for k, v in said)} inside {start} … {end}"


def check_intervention(intake: Intake) -> str | None:
    """The intervention's treated area (unit ids of a boundary level, or a polygon file with a CRS),
    its control file and its start inside the study period; the same reads as the impact stage.
    Raises a :class:`UsmGeoError` naming the key; returns what was checked (None: no intervention)."""
    from usm_geo import impact

    study = intake.study
    iv = study.intervention
    if iv is None:
        return None
    where = f"{study.path}: [intervention]"
    if iv.units:
        if iv.level not in intake.levels:
            raise StudyError(f"intervention.level '{iv.level}' is not a boundary level", where=where,
                             fix=f"use one of: {', '.join(intake.levels) or '(the study has none)'}")
        try:
            impact.areas_from_units(intake.levels[iv.level], list(iv.units))
        except UsmGeoError as exc:
            raise StudyError(f"intervention.units: {exc.what}", where=where,
                             fix=exc.fix or f"use unit ids of level {iv.level}") from None
        treated = f"{len(iv.units)} unit(s) of {iv.level}"
    else:
        polygons_in(iv.path, intake.working_crs, iv.layer, "intervention")
        treated = Path(iv.path).name
    if iv.control is not None:
        polygons_in(iv.control, intake.working_crs, what="control")
    first, last = _data_span(intake)
    start, end = study.periods.start or first, study.periods.end or last
    if start is not None and end is not None and not start < iv.start <= end:
        raise StudyError(f"intervention.start {iv.start} is not inside the study period ({start} … {end}), so "
                         "there is no before or no after window", where=where,
                         fix="give a start after periods.start and on or before periods.end")
    return f"intervention '{iv.name}': {treated}, starts {iv.start}"


def validate(study: Study, stages: Stages | None = None, now: dt.datetime | None = None,
             ledger: Ledger | None = None) -> Validation:
    """Read every input of ``study`` through the same stage functions as :func:`run_into` — intake
    (boundaries, incidents, survey, perception), units (assignment), population — and check the
    periods and the intervention; nothing is written. Raises the first :class:`UsmGeoError`."""
    stages = stages or Stages()
    intake = run_intake(study, stages, now=now, ledger=ledger)
    located = run_units(intake, stages)
    pop = run_population(intake, located, stages)
    checks = [f"{name}: {len(layer):,} units" for name, layer in located.units.levels.items()]
    for level, frame in pop.items():
        checks.append(f"population at {level}: {int(frame['population'].notna().sum()):,} of {len(frame):,} units, "
                      f"total {float(frame['population'].sum()):,.0f} ({frame.attrs.get('method', '')})")
    checks += located.units.report.get("notes", [])
    if intake.counts is not None:
        c = intake.counts
        checks.append(f"counts: {len(study.counts)} file(s) at {study.counts[0].unit_level}, {int(c['count'].sum()):,} events "
                      f"in {c.loc[~c['missing'].astype(bool), 'unit_id'].nunique():,} units, periods {c['period'].min()} … {c['period'].max()}, "
                      f"categories {', '.join(intake.categories())}")
    if study.population is None:
        checks.append("population: none given, so no rate can be computed (counts, concentration, hot spots and impact on counts only)")
    checks += [line for line in (check_periods(intake), check_intervention(intake)) if line]
    return Validation(intake=intake, located=located, population=pop, checks=checks)


def run_risk_terrain(intake: Intake, measures: pd.DataFrame | None = None, stages: Stages | None = None):
    """The risk terrain model of ``[model] risk_terrain`` (usm_geo.models.risk_terrain): the incidents
    of the current period (the latest period with incidents when none is set), all categories, on grid
    cells over the study area. Returns ``(RiskTerrain, period)`` or ``(None, reason)``."""
    from usm_geo.models.risk_terrain import risk_terrain
    from usm_geo.periods import labels

    study = intake.study
    settings = study.model
    if not settings.risk_terrain:
        return None, "not asked for ([model] risk_terrain = true)"
    inc = intake.incidents
    if inc is None or not len(inc):
        raise StudyError("the risk terrain model needs point incidents", where=study.path,
                         fix="give [inputs.incidents] with coordinates (area-coded counts have no place within a unit)")
    stages = stages or Stages()
    with stages("risk terrain"):
        period_of = labels(inc["occurred_at"], study.periods.frequency)
        have = sorted(set(period_of))
        period = study.periods.current if study.periods.current in have else have[-1]
        used = inc[period_of == period]
        result = risk_terrain(used["x"].to_numpy(float), used["y"].to_numpy(float), intake.features, settings.features,
                              intake.study_area, settings.cell_size)
    return result, period


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts for JSON: missing values (a distance layer's bandwidth) as null, not NaN."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _public_count(n: int, k: int, public: bool):
    """A study-wide incident total as published: None for 1..k-1 in the public profile (a small count)."""
    return None if public and 0 < n < k else int(n)


def write_risk_terrain(folder: Path, result, period: str, crs, study: Study, tables=None) -> list[str]:
    """``risk_terrain.tif`` (the relative-risk surface, float32, working CRS, NaN outside the area;
    deflate, no dates: the same inputs give the same bytes), ``risk_terrain.csv`` (rate ratio per
    feature with its interval), ``risk_terrain.json`` (settings, fit, caveats) and, given the run's
    area ``tables`` (usm_geo.export.area_tables, already in the study's profile), ``risk_terrain_map.html``
    (offline map of the surface over the tables' units; usm_geo.maps).

    Nothing written holds a cell count: the surface is exp(Σ β x) of the risk layers over its mean, the
    csv the coefficients. In the public profile the study-wide incident totals of the fit report are
    blank when 1..k−1 (:func:`_public_count`)."""
    import rasterio

    from usm_geo.io import atomic_path, write_json
    from usm_geo.models.risk_terrain import RR_UNITS

    public, k = study.outputs.profile == "public", study.outputs.suppression_threshold
    g = result.grid
    profile = {"driver": "GTiff", "width": g.cols, "height": g.rows, "count": 1, "dtype": "float32", "crs": crs,
               "transform": g.transform, "nodata": float("nan"), "compress": "deflate", "predictor": 3,
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    terms = ", ".join(result.rate_ratios["term"])
    tags = {"UNITS": RR_UNITS, "CELL_SIZE": repr(float(g.cell_size)), "PERIOD": str(period), "LAYERS": terms,
            "FORMULA": result.report["relative_risk"]}
    with atomic_path(folder / "risk_terrain.tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(result.relative_risk.astype(np.float32), 1)
        dst.update_tags(**tags)
        dst.set_band_description(1, "relative risk")
    table = result.rate_ratios.assign(period=period, confidence=result.report["level"])
    write_csv(folder / "risk_terrain.csv", table)
    fit = dict(result.report)
    for key in ("incidents_in_cells", "incidents_outside_cells"):
        fit[key] = _public_count(fit[key], k, public)
    write_json(folder / "risk_terrain.json", {
        "period": period, "cell_size_m": g.cell_size, "crs": crs.to_string() if hasattr(crs, "to_string") else str(crs),
        "features": [dataclasses.asdict(f) for f in study.model.features],
        "fit": fit, "rate_ratios": _records(table), "profile": study.outputs.profile,
        "model": "negative binomial (NB2) of incidents per grid cell, offset log(cell area km2); Wald intervals",
        "caveats": list(result.caveats)})
    written = ["risk_terrain.tif", "risk_terrain.csv", "risk_terrain.json"]
    if tables is not None:
        from usm_geo.maps import build_map
        from usm_geo.maps.data import from_area_tables

        with open(folder / "risk_terrain.tif", "rb") as fh:
            tif = fh.read()
        inputs = dataclasses.replace(from_area_tables(tables, kde=tif), kde_period=period,
                                     title=f"{study.name}: risk terrain", kde_name="Relative risk (risk terrain)")
        build_map(inputs, folder / "risk_terrain_map.html", hotspots=False, impact=False)
        written.append("risk_terrain_map.html")
    return written


def write_model_outputs(folder: Path, intake: Intake, located: Located, measures: pd.DataFrame, models: dict,
                        stages: Stages | None = None) -> dict:
    """The model outputs ``run`` and ``model`` share, in the study's output profile:

    - ``covariates.csv``: every unit of every level with ``[[inputs.covariates]]`` and its factor values
      (usm_geo.models.factors.covariate_table; point layers as ``<name>_count/_density/_distance``);
    - ``resilience.csv``: per unit of each modelled level, the survey shares of the model's period beside
      the published count and the model's expected count (usm_geo.models.factors.resilience_table);
    - with ``[model] risk_terrain = true``: the risk terrain files (:func:`write_risk_terrain`).

    ``measures``: the run's long table with the indicator rows, unsuppressed (the profile is applied
    here, through usm_geo.export.area_tables, before anything is written); ``models``: :func:`run_models`.
    Returns run.json's sections ``covariates``, ``resilience`` and ``risk_terrain`` (None when not made)."""
    from usm_geo.models.factors import RESILIENCE_CAVEAT, covariate_table, resilience_table

    study = intake.study
    out: dict = {"covariates": None, "resilience": None, "risk_terrain": None}
    if not intake.covariates and not study.model.risk_terrain:
        return out
    stages = stages or Stages()
    rtm, period = run_risk_terrain(intake, measures, stages)
    with stages("model outputs"):
        from usm_geo.disclosure import area_tables

        profile, k = study.outputs.profile, study.outputs.suppression_threshold
        min_n = int((study.indicators or {}).get("min_n", 30))
        units = {lv: layer.set_crs(intake.working_crs, allow_override=True) if layer.crs is None else layer
                 for lv, layer in located.units.levels.items()}
        tables = area_tables({lv: layer[["unit_id", "name", "parent_id", "geometry"]] for lv, layer in units.items()},
                             measures, located.units.crosswalk, profile=profile, k=k, min_n=min_n)
        if intake.covariates:
            cov = covariate_table(intake.covariates, units)
            write_csv(folder / "covariates.csv", cov)
            out["covariates"] = {"file": "covariates.csv", "levels": sorted(intake.covariates),
                                 "columns": [c for c in cov.columns if c not in ("level", "unit_id", "name")]}
            frames, notes = [], {}
            for level, m in sorted(models.items()):
                res, why = resilience_table(tables.measures, m["units"], units[level], level=level,
                                            period=str(m["json"].get("period")), public=profile == "public")
                frames.append(res)
                notes[level] = {"period": m["json"].get("period"), "model": m["json"]["status"], "shares": why}
            if frames:
                write_csv(folder / "resilience.csv", pd.concat(frames, ignore_index=True))
                out["resilience"] = {"file": "resilience.csv", "levels": notes, "caveat": RESILIENCE_CAVEAT}
        if rtm is not None:
            total = int(rtm.report["incidents_in_cells"])
            if profile == "public" and 0 < total < k:
                # with fewer than k incidents the surface would outline where those few were recorded
                out["risk_terrain"] = {"period": period, "written": [],
                                       "not_published": f"fewer than k = {k} incidents in the grid cells (public profile)"}
            else:
                written = write_risk_terrain(folder, rtm, period, intake.working_crs, study, tables=tables)
                out["risk_terrain"] = {"period": period, "written": written, "cells": rtm.report["cells_in_area"],
                                       "cell_size_m": rtm.grid.cell_size, "rate_ratios": _records(rtm.rate_ratios),
                                       "caveats": list(rtm.caveats)}
    return out


def model_study(study: Study, out: Path, stages: Stages | None = None) -> dict:
    """What ``usm-geo model STUDY --out DIR`` does: intake, units, population, measures and indicators,
    then the count model of every level with covariates; writes ``model.json``, ``model_units.csv``
    (internal profile), ``ledger.csv`` and :func:`write_model_outputs`' files into ``out`` (built as a
    temporary sibling and swapped in) — the same model outputs ``run`` writes."""
    from usm_geo.models.counts import CAVEAT

    if not study.covariates and not study.model.risk_terrain:
        raise StudyError("the study has no [[inputs.covariates]] to model", where=study.path,
                         fix='add [[inputs.covariates]] with path, unit, unit_level and columns = ["…"]')
    stages = stages or Stages()
    with staged_folder(Path(out).resolve()) as stage:
        intake = run_intake(study, stages)
        located = run_units(intake, stages)
        pop = run_population(intake, located, stages)
        measures = run_measures(intake, located, pop, stages)
        models = run_models(intake, located, measures, stages)
        indicators = run_indicators(intake, located, measures, stages)  # the survey shares of resilience.csv
        write_models(stage, models, study.outputs.profile)
        extra = write_model_outputs(stage, intake, located,
                                    sort_measures(pd.concat([measures, indicators.rows], ignore_index=True)), models, stages)
        write_csv(stage / "ledger.csv", intake.ledger.to_frame())
    info = {"models": {lv: m["json"] for lv, m in models.items()}, "ledger_summary": intake.ledger.summary(),
            "caveat": CAVEAT, **extra}
    return info


def reconcile_studies(study_a: Study, study_b: Study, out: Path, *, link: tuple[str, ...] = (),
                      stages: Stages | None = None) -> dict:
    """What ``usm-geo reconcile STUDY_A STUDY_B --out DIR`` does: read both studies' incidents over the
    same boundaries, count them per unit (polygon levels and the city) and period, compare the two
    sources (usm_geo.reconcile) and, with ``link`` (``("date", "unit")``: the same day in the same
    finest unit; ``("id",)``: the same record id), estimate the total by capture–recapture.
    Writes ``reconciliation.csv`` and ``reconciliation.json`` (summary), plus each study's ledger.
    The counting and linking are :func:`reconcile_records`, which ``run`` uses for a study holding
    both police and health records (:func:`run_reconciliation`)."""
    link = tuple(link)
    if link not in ((), ("date", "unit"), ("unit", "date"), ("id",)):
        raise UsmGeoError(f"unknown link {','.join(link)!r}", where="--link", fix="use date,unit or id")
    if study_a.periods.frequency != study_b.periods.frequency:
        raise StudyError(f"the two studies count by different periods ({study_a.periods.frequency} and "
                         f"{study_b.periods.frequency})", where=study_b.path, fix="give both the same [periods] frequency")
    stages = stages or Stages()
    sides = []
    for study in (study_a, study_b):
        intake = run_intake(study, stages)
        if intake.incidents is None:
            raise StudyError("the study has no point incidents to reconcile", where=study.path,
                             fix="reconcile two studies of incident records (police and health)")
        sides.append((intake, run_units(intake, stages)))
    (ia, la), (ib, lb) = sides
    levels = {}
    for name in la.units.names:
        if la.units.kinds[name] == "h3" or name not in lb.units.levels:
            continue
        ids_a = set(la.units.levels[name]["unit_id"])
        if ids_a != set(lb.units.levels[name]["unit_id"]):
            raise StudyError(f"the level '{name}' has different units in the two studies", where=study_b.path,
                             fix="use the same boundary files in both studies")
        levels[name] = la.units.levels[name]["unit_id"].to_numpy(dtype=object)
    if set(levels) == {"city"}:
        raise StudyError("the two studies share no boundary level", where=study_b.path, fix="use the same boundary files in both studies")
    pa = study_periods(study_a, ia.incidents["occurred_at"])
    pb = study_periods(study_b, ib.incidents["occurred_at"])
    periods = [p for p in pa if p in set(pb)]
    if not periods:
        raise StudyError("the two studies share no period", where=study_b.path, fix="give both the same [periods] start and end")
    if link == ("id",):
        for intake, study in ((ia, study_a), (ib, study_b)):
            if "record_id" not in intake.incidents:
                raise StudyError("linking by id needs an id column", where=study.path, fix='add id = "COLUMN" to [inputs.incidents]')
    with stages("reconcile"):
        result, notes = reconcile_records((ia.incidents, la.incidents, study_a.name), (ib.incidents, lb.incidents, study_b.name),
                                          levels, periods, study_a.periods.frequency, link)
    summary = {"a": {"study": study_a.name, "records": study_a.incidents.records, "used": int(len(ia.incidents))},
               "b": {"study": study_b.name, "records": study_b.incidents.records, "used": int(len(ib.incidents))},
               "levels": list(levels), "periods": periods, "link": list(link),
               "units_differing": units_differing(result, levels), "notes": notes}
    with staged_folder(Path(out).resolve()) as stage:
        write_csv(stage / "reconciliation.csv", result)
        write_json(stage / "reconciliation.json", summary)
        _reconciliation_map(stage / "reconciliation.html", result, la.units, levels,
                            f"{study_a.name} ({study_a.incidents.records}) minus {study_b.name} ({study_b.incidents.records})",
                            f"Reconciling {study_a.name} and {study_b.name}")
        write_csv(stage / "ledger_a.csv", ia.ledger.to_frame())
        write_csv(stage / "ledger_b.csv", ib.ledger.to_frame())
    return summary


def units_differing(result: pd.DataFrame, levels) -> dict[str, int]:
    """level → the unit-periods flagged ``sources_differ`` in a reconciliation table."""
    return {lv: int((result[result["level"] == lv]["flags"] == "sources_differ").sum()) for lv in levels}


def reconcile_records(side_a: tuple, side_b: tuple, levels: dict, periods: list[str], frequency: str,
                      link: tuple[str, ...] = (), alpha: float = 0.05) -> tuple[pd.DataFrame, list[str]]:
    """The reconciliation table of two sources (:func:`usm_geo.reconcile.reconcile_tables`) and its notes.

    Each side is ``(incidents, located, label)``: the used records (``occurred_at``, optional
    ``record_id`` and ``date_precision``), their unit per level (:func:`run_units`' ``located.incidents``,
    same rows) and a name for the notes. ``levels``: level → every unit id (polygon levels and the city).
    ``link``: ``("id",)`` (the same non-empty record id), ``("date", "unit")`` (the same local day in the
    same unit of the finest polygon level; a record outside every unit is never linked), or empty."""
    from usm_geo.reconcile import CAPTURE_RECAPTURE_CAVEAT, reconcile_tables

    link = tuple(sorted(link)) if set(link) == {"date", "unit"} else tuple(link)
    tables = []
    for incidents, located, _ in (side_a, side_b):
        frame = located[list(levels)].reset_index(drop=True)
        frame["period"] = period_labels(incidents["occurred_at"].to_numpy(), frequency)
        tables.append(frame)
    keys: list = [None, None]
    notes: list[str] = []
    if link == ("id",):
        for incidents, _, label in (side_a, side_b):
            if "record_id" not in incidents:
                raise UsmGeoError(f"{label}: linking by id needs an id column", where="reconcile.link",
                                  fix='add id = "COLUMN" to its [[inputs.incidents]]')
        # a record without an id (police.uk anti-social behaviour) is never linked
        keys = [inc["record_id"].astype(str).where(lambda v: v.str.strip() != "", None).to_numpy(dtype=object)
                for inc, _, _ in (side_a, side_b)]
    elif link:
        finest = next(n for n in levels if n != "city")
        for incidents, _, label in (side_a, side_b):
            if incidents.get("date_precision", pd.Series(["day"])).isin(["month", "year"]).any():
                notes.append(f"{label}: some records are dated to the month or year only, so same-day linking misses them")
        # outside every unit of the finest level: never linked
        keys = [(pd.to_datetime(inc["occurred_at"]).dt.strftime("%Y-%m-%d").to_numpy(dtype=object) + "|"
                 + loc[finest].astype(str).to_numpy(dtype=object)) for inc, loc, _ in (side_a, side_b)]
        keys = [np.where(pd.notna(loc[finest]).to_numpy(), k, None) for k, (_, loc, _) in zip(keys, (side_a, side_b))]
        notes.append(f"records linked when on the same day in the same {finest} unit, one to one")
    if link:
        notes.append(CAPTURE_RECAPTURE_CAVEAT)
    result = reconcile_tables(tables[0], tables[1], levels, periods, link_key_a=keys[0], link_key_b=keys[1], alpha=alpha)
    return result, notes


# --------------------------------------------------------------------------- reconciliation inside one study


@dataclass
class Reconciliation:
    """The in-study reconciliation (``[reconcile]``): the internal table, the one the study's profile
    may publish, and run.json's ``reconciliation`` section."""

    table: pd.DataFrame
    published: pd.DataFrame
    summary: dict


def run_reconciliation(intake: Intake, located: Located, measures: pd.DataFrame | None = None,
                       stages: Stages | None = None) -> Reconciliation | None:
    """A study with police and health records: the primary records (those the run counts, ``a``)
    against the others (``b``, read only for this) per polygon-level unit and the city × period
    (:func:`reconcile_records`), with ``[reconcile] link`` Chapman's estimate of the total. In the
    public profile the counts follow :func:`reconciliation_in_profile` (``measures``: the run's
    measures table, whose public suppression the primary counts inherit). None without ``[reconcile]``."""
    study = intake.study
    other = intake.reconcile_incidents
    if study.reconcile is None or other is None or intake.incidents is None:
        return None
    stages = stages or Stages()
    settings = study.reconcile
    with stages("reconcile"):
        units = located.units
        levels = {n: units.levels[n]["unit_id"].to_numpy(dtype=object) for n in units.names if units.kinds[n] != "h3"}
        # the other records' units: polygon levels and the city only (no H3: they are not compared there);
        # a record in no unit is in the ledger under its own file as outside_units, like the primary ones
        poly = dataclasses.replace(units, levels={n: units.levels[n] for n in levels})
        other_loc = locate_points(other, poly, None, intake.ledger, "incidents")
        times = pd.concat([intake.incidents["occurred_at"], other["occurred_at"]], ignore_index=True)
        periods = study_periods(study, times)
        primary, second = study.records, ("health" if study.records == "police" else "police")
        result, notes = reconcile_records((intake.incidents, located.incidents, primary), (other, other_loc, second),
                                          levels, periods, study.periods.frequency, settings.link, settings.alpha)
        # the nested pairs of crosswalk.csv: the relations the run's public files and `usm-geo export` protect
        published, report = reconciliation_in_profile(result, crosswalk_table(units), measures,
                                                      profile=study.outputs.profile,
                                                      k=study.outputs.suppression_threshold,
                                                      min_n=int((study.indicators or {}).get("min_n", 30)))
    counted = [s.name for s in study.primary_inputs()]
    reconciled = [s.name for s in study.reconcile_inputs()]
    totals = intake.ledger.totals()
    used = lambda names: sum(totals.get(n, {}).get("used", 0) for n in names)  # noqa: E731
    rule = (f"indicators, hot spots and impact count the {primary} records only ({', '.join(counted)}: "
            f"{used(counted):,} used); the {second} records ({', '.join(reconciled)}: {used(reconciled):,} used) "
            "feed only reconciliation.csv, so no incident is counted twice")
    summary = {"rule": rule, "primary": primary, "a": {"records": primary, "sources": counted, "used": int(len(intake.incidents))},
               "b": {"records": second, "sources": reconciled, "used": int(len(other))},
               "levels": list(levels), "periods": periods, "link": list(settings.link), "alpha": settings.alpha,
               "units_differing": units_differing(result, levels), "notes": notes, "profile": report}
    return Reconciliation(table=result, published=published, summary=summary)


def reconciliation_in_profile(result: pd.DataFrame, crosswalk: pd.DataFrame, measures: pd.DataFrame | None = None, *,
                              profile: str = "public", k: int = 5, min_n: int = 30) -> tuple[pd.DataFrame, dict]:
    """``reconciliation.csv`` in an output profile. Internal: as it is. Public: ``a``, ``b`` and ``m``
    are counts, each protected as :func:`usm_geo.disclosure.apply_profile` protects the measures'
    counts (1 … k−1 suppressed, complementary suppression over nested levels and the city, per period);
    ``a`` (the primary records, also the measures' ``count`` of ``all``) is withheld as well wherever the
    public measures withhold that count, so the two files together reveal no more than the measures alone.
    What derives from a withheld count goes with it: difference, ratio, interval and p with ``a`` or
    ``b``; Chapman's ``total_*`` with ``a``, ``b`` or ``m``. A row whose ``a`` or ``b`` is withheld is
    flagged ``suppressed`` alone (its ``sources_differ`` would bound the hidden counts)."""
    from usm_geo.disclosure import apply_profile

    if profile != "public":
        return result.copy(), {"profile": profile, "rows_suppressed": 0}
    keys = ["level", "unit_id", "period"]
    levels = set(result["level"])
    xw = crosswalk[crosswalk["level"].isin(levels) & crosswalk["to_level"].isin(levels)]

    def hidden(column: str) -> np.ndarray:
        v = result[column].to_numpy(float)
        frame = result[keys].assign(category="all", measure="count", numerator=v, denominator=np.nan, value=v,
                                    lower=np.nan, upper=np.nan, n=v, flags="")
        out, _ = apply_profile(frame, xw, profile="public", k=k, min_n=min_n)
        return out["value"].isna().to_numpy().copy()

    hid = {c: hidden(c) for c in ("a", "b", "m") if c in result}
    if measures is not None:
        # the primary counts also as the public measures withhold them (suppressing more never reveals more)
        pub, _ = apply_profile(measures, crosswalk, profile="public", k=k, min_n=min_n)
        cnt = pub[(pub["measure"] == "count") & (pub["category"] == "all")]
        gone = pd.MultiIndex.from_frame(cnt.loc[cnt["value"].isna(), keys].astype(str))
        hid["a"] = hid["a"] | pd.MultiIndex.from_frame(result[keys].astype(str)).isin(gone)
    either = hid["a"] | hid["b"]
    out = result.copy()
    for col in ("a", "b"):  # nullable integers: a withheld count is blank, the others stay whole numbers
        out[col] = pd.array(np.where(hid[col], np.nan, out[col].to_numpy(float)), dtype="Float64").round().astype("Int64")
    out["difference"] = pd.array(np.where(either, np.nan, result["difference"].to_numpy(float)),
                                 dtype="Float64").round().astype("Int64")
    for col in ("ratio", "ratio_lower", "ratio_upper", "p", "p_fdr"):
        out.loc[either, col] = np.nan
    withheld = either
    if "m" in result:
        allm = either | hid["m"]
        out["m"] = pd.array(np.where(allm, np.nan, result["m"].to_numpy(float)), dtype="Float64").round().astype("Int64")
        for col in [c for c in result.columns if c.startswith("total_") and c != "total_flags"]:
            out.loc[allm, col] = np.nan
        withheld = allm
    # a withheld row says only that: "sources_differ" would bound the counts it hides
    out["flags"] = np.where(either, "suppressed", out["flags"].astype(str).to_numpy(dtype=object))
    report = {"profile": "public", "k": int(k), "rows_suppressed": int(withheld.sum()),
              "rule": "a, b and m are counts: 1 … k−1 suppressed with complementary suppression over nested levels and "
                      "the city; a also wherever the public measures withhold the count of all; what derives from a "
                      "withheld count is withheld with it"}
    return out, report


def write_reconciliation(folder: Path, recon: Reconciliation | None, units: UnitSet, study: Study) -> list[str]:
    """``reconciliation.csv`` (the study's profile) and ``reconciliation.html`` (a − b per unit, the
    last period; self-contained) into the run folder."""
    if recon is None:
        return []
    write_csv(folder / "reconciliation.csv", recon.published)
    s = recon.summary
    levels = [lv for lv in s["levels"]]
    _reconciliation_map(folder / "reconciliation.html", recon.published, units, levels,
                        f"{s['a']['records']} minus {s['b']['records']} records", f"{study.name}: {s['a']['records']} and "
                        f"{s['b']['records']} records reconciled")
    return ["reconciliation.csv", "reconciliation.html"]


def _reconciliation_map(target: Path, result: pd.DataFrame, units: UnitSet, levels, label: str, title: str) -> None:
    """``reconciliation.html``: per polygon level and period, A's count minus B's (``label``), with the
    units where they differ beyond chance flagged in the tooltip (self-contained, no basemap). A
    withheld difference (public profile) is shown as no data."""
    from usm_geo.maps import MapInputs, build_map

    key = "source_difference"
    poly = [lv for lv in levels if lv != "city"]
    names = {lv: dict(zip(units.levels[lv]["unit_id"], units.levels[lv]["name"])) for lv in poly}
    rows = result[result["level"].isin(poly)]
    n = (pd.to_numeric(rows["a"]).astype(float) + pd.to_numeric(rows["b"]).astype(float)).to_numpy()
    wide = pd.DataFrame({"level": rows["level"], "unit_id": rows["unit_id"],
                         "name": [names[lv].get(u, u) for lv, u in zip(rows["level"], rows["unit_id"])],
                         "period": rows["period"], key: pd.to_numeric(rows["difference"]).astype(float),
                         f"{key}_n": n, f"{key}_flags": rows["flags"]})
    definitions = {key: {"name": f"{label}: recorded incidents", "kind": "", "lower_is_better": True}}
    inputs = MapInputs(units={lv: units.levels[lv][["unit_id", "name", "geometry"]] for lv in poly}, table=wide,
                       definitions=definitions, title=title)
    build_map(inputs, target, indicator=key, period=str(sorted(set(rows["period"]))[-1]), palette="PuOr",
              hotspots=False, kde=False, impact=False)


def run_demo(out: Path, seed: int | None = None, stages: Stages | None = None) -> dict:
    """Generate the Demo City into ``out/inputs/`` (inputs, ``study.toml``, ``planted_truths.json``)
    and run its study into ``out``: what ``usm-geo demo --out OUT`` does. ``out`` is built as a
    temporary sibling and swapped in when complete. ``seed`` defaults to the Demo City's own."""
    from usm_geo.demo import DEMO_SEED, generate_demo_inputs
    from usm_geo.study import load_study

    stages = stages or Stages()
    with staged_folder(Path(out).resolve()) as stage:
        with stages("demo inputs"):
            study_file = generate_demo_inputs(stage / "inputs", seed=DEMO_SEED if seed is None else seed)
        return run_into(load_study(study_file), stage, stages)


# --------------------------------------------------------------------------- impact


def impact_result(x, y, t, areas, before, after, *, weights=None, population=None) -> dict:
    """Counts per area × window and every impact measure (see :mod:`usm_geo.impact`)."""
    from usm_geo import impact

    counts = impact.count_in_areas(x, y, t, areas, before, after, weights=weights)
    result = impact.impact_measures(counts, before_days=impact.window_days(before), after_days=impact.window_days(after),
                                    population=population)
    result["areas_report"] = areas.report
    return result


def run_impact(intake: Intake, stages: Stages | None = None, located: Located | None = None,
               pop: dict[str, pd.DataFrame] | None = None):
    """The study's intervention: treated area, a ring buffer of ``intervention.buffer`` metres and as
    control the study's control polygons, the ``k`` matched units (``control = "matched"``,
    :func:`usm_geo.impact.matched_control` on each unit's before-window count, rate and population; needs
    ``located``) or the rest of the study area; before = study start … the day before the intervention,
    after = the intervention start … study end. Returns (impact dict, GeoDataFrame of the three areas) or (None, None)."""
    from usm_geo import impact

    study = intake.study
    iv, inc = study.intervention, intake.incidents
    if iv is None or inc is None:
        return None, None
    with stages("impact") if stages else _null():
        if iv.units:
            if iv.level not in intake.levels:
                raise UsmGeoError(f"intervention.level '{iv.level}' is not a boundary level", where=study.path,
                                  fix=f"use one of: {', '.join(intake.levels)}")
            treated = impact.areas_from_units(intake.levels[iv.level], list(iv.units))
        else:
            treated = polygons_in(iv.path, intake.working_crs, iv.layer, "intervention")
        control = polygons_in(iv.control, intake.working_crs, what="control") if iv.control is not None else None
        t = inc["occurred_at"]
        start = study.periods.start or t.min().date()
        end = study.periods.end or t.max().date()
        before = (start, iv.start - dt.timedelta(days=1))
        after = (iv.start, end)
        match = None
        if iv.matched:
            if located is None:
                raise UsmGeoError('control = "matched" needs the incidents placed in units', where="run_impact",
                                  fix="pass located= (run_units) to run_impact")
            ring = impact.ring_buffer(treated, iv.buffer)
            layer = intake.levels[iv.level]
            t_ns = t.to_numpy()
            in_before = (t_ns >= np.datetime64(before[0])) & (t_ns < np.datetime64(before[1] + dt.timedelta(days=1)))
            where = located.incidents[iv.level].to_numpy(dtype=object)[in_before]
            counts = pd.Series(where[pd.notna(where)]).value_counts().reindex(layer["unit_id"]).fillna(0).to_numpy(float)
            level_pop = (pop or {}).get(iv.level)
            people = (level_pop.set_index("unit_id")["population"].reindex(layer["unit_id"]).to_numpy(float)
                      if level_pop is not None else None)
            control, match = impact.matched_control(layer, list(iv.units), baseline_count=counts, population=people,
                                                    buffer=ring, k=iv.k)
            match.update(level=iv.level, before=[str(before[0]), str(before[1])])
        areas = impact.impact_areas(treated, buffer_width=iv.buffer, control=control, study_area=intake.study_area)
        names = ["treated", "buffer", "control"]
        geoms = [areas.treated, areas.buffer, areas.control]
        frame = gpd.GeoDataFrame({"area": names}, geometry=geoms, crs=intake.working_crs)
        population_by_area = None
        raster = next((s.raster for s in study.population_inputs() if s.raster is not None), None)
        if raster is not None:
            pop = population.from_raster(raster, frame.assign(unit_id=names))
            population_by_area = dict(zip(pop["unit_id"], pop["population"].astype(float)))
        harm = _harm_weights(intake)
        result = impact_result(inc["x"].to_numpy(float), inc["y"].to_numpy(float), t.to_numpy(), areas, before, after,
                               weights=harm, population=population_by_area)
        result["intervention"] = {"name": iv.name, "start": iv.start.isoformat(), "buffer_m": iv.buffer,
                                  "before": [str(before[0]), str(before[1])], "after": [str(after[0]), str(after[1])]}
        if match is not None:
            result["control_match"] = match
            result["areas_report"]["control_source"] = f"matched: {len(match['chosen'])} units of {iv.level}"
        counts = result["counts"]
        frame["before"] = [(counts.get(a) or {}).get("before") for a in names]
        frame["after"] = [(counts.get(a) or {}).get("after") for a in names]
        frame["area_km2"] = shapely.area(frame.geometry.to_numpy()) / 1e6
    return result, frame


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- the one-file commands: the same stages on files named on the command line ----


@dataclass
class Aggregation:
    """Counts of points per unit (× period × category when asked), with the ledger of the points."""

    table: pd.DataFrame  # unit_id, [period], [category], count
    units: gpd.GeoDataFrame  # unit_id, name, geometry
    ledger: Ledger
    level: str


def parse_units_option(text: str) -> tuple[int | None, Path | None, str | None]:
    """``h3:9`` → (9, None, None); ``areas.gpkg`` or ``areas.gpkg:ID_COLUMN`` → (None, path, column)."""
    if text.lower().startswith("h3:"):
        try:
            res = int(text[3:])
        except ValueError:
            res = -1
        if not 0 <= res <= 15:
            raise UsmGeoError(f"'{text}' is not an H3 resolution", where="--units", fix="use h3:0 … h3:15, e.g. h3:9")
        return res, None, None
    path = Path(text)
    if path.exists() or ":" not in text:
        return None, path, None
    head, column = text.rsplit(":", 1)
    return None, Path(head), column or None


def _guess_id_column(columns, path: Path) -> str:
    for name in columns:
        if str(name).lower() in ("unit_id", "id", "code", "fid") or str(name).lower().endswith(("_id", "_code")):
            return name
    raise UsmGeoError("no id column named for the areas", where=path,
                      fix=f"append it to --units as AREAS:ID_COLUMN; columns: {', '.join(map(str, columns))}")


def aggregate_points(points: Path, units: str, *, lon: str | None = None, lat: str | None = None,
                     x: str | None = None, y: str | None = None, crs: str | None = None, time: str | None = None,
                     period: str | None = None, category: str | None = None, timezone: str = "UTC",
                     now: dt.datetime | None = None, scheduler=None, layer: str | None = None) -> Aggregation:
    """Count points per H3 cell (``units="h3:R"``) or per polygon of a layer (``"AREAS[:ID]"``).

    Polygon layers list every unit, zeros included; H3 lists only the cells that hold a point (there
    is no study area). Points outside every polygon are in the ledger as ``outside_study_area``; bad
    coordinates (and dates, with ``time``) as in any intake. ``points`` may be a partitioned Parquet
    dataset (a folder); with ``scheduler`` (``local``, ``local:N``, ``threads``, ``tcp://HOST:PORT``
    or a ``distributed.Client``) its parts are counted on Dask (:mod:`usm_geo.scale`), with the same result.
    ``layer``: the layer of the areas file (a GeoPackage with several layers).
    """
    from usm_geo.errors import InputFileError
    from usm_geo.intake.boundaries import read_boundary_level
    from usm_geo.study import BoundaryLevel, RecordSource

    if period and not time:
        raise UsmGeoError("--period needs --time", fix="name the date column with --time COLUMN")
    res, area_path, id_col = parse_units_option(units)
    ledger = Ledger()
    levels: dict[str, gpd.GeoDataFrame] = {}
    area = None
    work = working_crs(crs) if crs and CRS.from_user_input(crs).is_projected else None
    if area_path is not None:
        if not area_path.exists():
            raise InputFileError("file not found", where=area_path, fix="check the path given to --units")
        if id_col is None:
            from usm_geo.intake.files import read_records as _read

            id_col = _guess_id_column([c for c in _read(area_path, "areas", Ledger(), layer=layer).frame.columns if c != "geometry"], area_path)
        layer = read_boundary_level(BoundaryLevel(level="area", path=area_path.resolve(), id=id_col, layer=layer), ledger, None)
        if work is None:
            work = layer.crs if layer.crs.is_projected else utm_of_layer(layer)
        levels["area"] = layer.to_crs(work) if not same_crs(layer.crs, work) else layer
        # The study area is the units taken together. Intake decides "inside" with the units' index
        # (ctx.study_index), so the geometry itself is only the area's extent for intersects-type
        # tests: a collection of the units is exact for those and costs nothing, where their union
        # takes 0.1 s for Chicago's 77 detailed areas.
        area = shapely.geometrycollections(levels["area"].geometry.to_numpy())
        shapely.prepare(area)
    src = RecordSource(name="points", path=Path(points).resolve(), lon=lon, lat=lat, x=x, y=y, crs=crs,
                       datetime=time, category=category)
    # One polygon level is counted: no city level and no crosswalk (build_units would intersect every
    # unit with the study area for them, 0.2 s for Chicago's 77 areas). Its index, built once here,
    # is also intake's "inside the study area" test.
    polygons = None
    if levels:
        polygons = UnitSet(levels={"area": levels["area"][["unit_id", "name", "parent_id", "geometry"]]},
                           kinds={"area": "polygon"}, crosswalk=pd.DataFrame(columns=CROSSWALK_COLUMNS),
                           nested={}, crs=work)
    index = polygons.index("area") if polygons is not None else None
    ctx = Context(working_crs=work, timezone=timezone, study_area=area, study_index=index, now=now)
    resolutions = [res] if res is not None else []
    keys: dict[str, np.ndarray] = {}
    if scheduler is not None:
        from usm_geo import scale

        units_sent = polygons if polygons is not None else polygon_units(levels, area, ctx.working_crs, None)
        job = scale.Job(source=src, ctx=ctx, units=units_sent,
                        h3_resolutions=tuple(resolutions), frequency=period, by_category=bool(category), detect=False)
        with scale.connect(scheduler) as client:
            counted = scale.count_dataset(job, src.path, client)
        scale.ledger_of(counted, "points", src.path, ledger)
        cells, sparse = counted.cells, counted.tally
        first, last, cats = counted.first, counted.last, counted.categories
    else:
        records = read_point_records(src, ledger, ctx, detect=False)
        cells = point_cells(records["lon"], records["lat"], resolutions)
    unitset = polygons if polygons is not None else build_units(
        levels, study_area=area, crs=ctx.working_crs, h3_resolutions=resolutions, point_cells=cells)
    level = h3_level(res) if res is not None else "area"
    if scheduler is None:
        located = locate_points(records, unitset, cells, ledger, "points")
        if period:
            keys["period"] = period_labels(records["occurred_at"].to_numpy(), period)
            first, last = records["occurred_at"].min(), records["occurred_at"].max()
        if category:
            keys["category"] = records["category"].to_numpy(dtype=object)
            cats = set(keys["category"])
        sparse = tally({level: located[level].to_numpy(dtype=object)}, keys)
    axes = {"unit_id": unitset.levels[level]["unit_id"].to_numpy(dtype=object)}
    if period:
        axes["period"] = np.asarray(all_periods(first.date(), last.date(), period), dtype=object)
    if category:
        axes["category"] = np.asarray(sorted(cats), dtype=object)
    counts = dense(sparse[sparse["level"] == level], axes)
    grid = np.meshgrid(*[np.arange(n) for n in counts.shape], indexing="ij")
    table = pd.DataFrame({k: axes[k][g.reshape(-1)] for k, g in zip(axes, grid)})
    table["count"] = counts.reshape(-1)
    layer = unitset.levels[level][["unit_id", "name", "geometry"]]
    return Aggregation(table=table, units=layer, ledger=ledger, level=level)


def write_aggregation(agg: Aggregation, out: Path) -> None:
    """Write the counts as CSV, or with unit geometry as GeoPackage or GeoParquet (atomically)."""
    from usm_geo.io import atomic_path

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        write_csv(out, agg.table)
        return
    if suffix not in (".gpkg", ".parquet"):
        raise UsmGeoError(f"cannot write '{out.name}'", where=out, fix="end --out with .csv, .gpkg or .parquet")
    frame = gpd.GeoDataFrame(agg.table.merge(agg.units, on="unit_id", how="left"), geometry="geometry", crs=agg.units.crs)
    if suffix == ".gpkg":
        write_layers(out, {agg.level: frame})
    else:
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)


def hotspots_from_areas(areas: Path, value: str, *, id_column: str | None = None, layer: str | None = None,
                        weights: str = "queen", transform: str = "B", permutations: int = 999, seed: int = 0):
    """Hot spot analysis of any polygon layer with a numeric value column (``usm-geo hotspots AREAS``).

    Returns (layer with the input columns and :data:`usm_geo.hotspots.analysis.COLUMNS`, globals, report).
    """
    from usm_geo.hotspots.analysis import hotspot_layer

    raw = read_spatial(Path(areas), fmt=detect_format(Path(areas)), layer=layer)
    frame = raw.frame
    if value not in frame.columns:
        raise UsmGeoError(f"the layer has no column '{value}'", where=areas,
                          fix=f"name one of: {', '.join(c for c in frame.columns if c != 'geometry')}")
    y = pd.to_numeric(frame[value], errors="coerce")
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0]) + 1
        raise UsmGeoError(f"'{frame[value].iloc[row - 1]}' is not a number", where=f"{areas}:{row}, column '{value}'",
                          fix="fill or remove the feature, or choose another --value")
    gdf = gpd.GeoDataFrame(frame.copy(), geometry="geometry", crs=raw.crs)
    gdf["unit_id"] = normalise_ids(frame[id_column]).to_numpy() if id_column else np.arange(1, len(frame) + 1).astype(str)
    out, globals_, report = hotspot_layer(gdf, y.to_numpy(float), weights=weights, transform=transform,
                                          permutations=permutations, seed=seed)
    report["value"] = value
    return out, globals_, report


def hotspots_from_points(points: Path, grid: str, *, lon=None, lat=None, x=None, y=None, crs=None,
                         weights: str | None = None, transform: str = "B", permutations: int = 999, seed: int = 0,
                         max_cells: int | None = None, now: dt.datetime | None = None):
    """Counts of points on an H3 (``h3:RES``) or square (``square:METRES``) grid over the points'
    convex hull, then the same hot spot analysis. Returns (layer, globals, report, ledger).

    ``max_cells``: the grid's cell budget (default :data:`usm_geo.hotspots.grids.MAX_CELLS`); a grid
    that would hold more is refused before it is built (an automatic square cell size is coarsened)."""
    from usm_geo.hotspots.analysis import hotspot_layer
    from usm_geo.hotspots.grids import MAX_CELLS, count_points_square, h3_cells_estimate, square_grid
    from usm_geo.study import RecordSource

    kind, _, arg = grid.partition(":")
    if kind not in ("h3", "square"):
        raise UsmGeoError(f"unknown grid '{grid}'", where="--grid", fix="use h3:RES (e.g. h3:9) or square:METRES (e.g. square:250)")
    ledger = Ledger()
    src = RecordSource(name="points", path=Path(points).resolve(), lon=lon, lat=lat, x=x, y=y, crs=crs)
    work = working_crs(crs) if crs and CRS.from_user_input(crs).is_projected else None
    ctx = Context(working_crs=work, now=now)
    records = read_point_records(src, ledger, ctx, detect=False)
    px, py = records["x"].to_numpy(float), records["y"].to_numpy(float)
    hull = shapely.convex_hull(shapely.multipoints(np.column_stack([px, py])))
    budget = MAX_CELLS if max_cells is None else int(max_cells)
    if kind == "h3":
        res, _, _ = parse_units_option(grid)
        estimate = h3_cells_estimate(hull.buffer(1.0).area, res)
        if estimate > budget:
            raise UsmGeoError(
                f"an H3 resolution {res} grid over the points' convex hull would have about {estimate:,} cells, "
                f"more than the budget of {budget:,}", where="--grid",
                fix=f"use a coarser resolution (e.g. h3:{max(0, res - 1)}) or raise the budget with --max-cells {estimate}")
        cells = point_cells(records["lon"], records["lat"], [res])
        units = build_units({}, study_area=hull.buffer(1.0), crs=ctx.working_crs, h3_resolutions=[res], point_cells=cells)
        layer = units.levels[h3_level(res)][["unit_id", "geometry"]].reset_index(drop=True)
        idx = pd.Index(layer["unit_id"]).get_indexer(h3cells_str(cells[res]))
        counts = np.bincount(idx[idx >= 0], minlength=len(layer)).astype(float)
        cell_ids = layer.attrs.get("cells", units.levels[h3_level(res)].attrs["cells"])
        auto_weights = "h3"
        grid_report = {"grid": grid, "grid_cover": "H3 cells whose centre is in the points' convex hull, plus every cell holding a point"}
    else:
        try:
            size = float(arg) if arg else None
        except ValueError:
            raise UsmGeoError(f"'{grid}' needs a cell size in metres", where="--grid", fix="e.g. square:250") from None
        layer, grid_report = square_grid(hull.buffer(1.0), cell_size=size, crs=ctx.working_crs, cover="touch",
                                         max_cells=budget)
        full, _ = count_points_square(px, py, grid_report["origin"], grid_report["cell_size"], grid_report["shape"])
        counts = full[layer["row"].to_numpy(), layer["col"].to_numpy()].astype(float)
        layer = layer[["unit_id", "geometry"]]
        cell_ids, auto_weights = None, "queen"
    layer = layer.assign(count=counts.astype(np.int64))
    out, globals_, report = hotspot_layer(layer, counts, weights=weights or auto_weights, transform=transform,
                                          permutations=permutations, seed=seed, cells=cell_ids)
    report.update({f"grid_{k}": v for k, v in grid_report.items()})
    report["points_counted"] = int(counts.sum())
    return out, globals_, report, ledger


def h3cells_str(cells: np.ndarray) -> np.ndarray:
    from usm_geo.units.h3cells import cells_to_str

    return cells_to_str(cells)


#: metres around the treated and control areas of `usm-geo impact` within which a swapped lon/lat is recognised
SWAP_MARGIN = 10_000.0


def impact_from_files(points: Path, *, treated: Path, control: Path | None = None, buffer: float | None = None,
                      buffer_area: Path | None = None, before: str, after: str, time: str | None = None,
                      category: str | None = None, harm: Path | None = None, lon=None, lat=None, x=None, y=None,
                      crs=None, now: dt.datetime | None = None) -> tuple[dict, Ledger]:
    """``usm-geo impact``: the same measures as a study's intervention, from files on the command line."""
    from usm_geo import impact
    from usm_geo.indicators.registry import harm_weights, read_label_table
    from usm_geo.periods import parse_window
    from usm_geo.study import RecordSource

    before_w, after_w = parse_window(before), parse_window(after)
    ledger = Ledger()
    treated_raw = read_spatial(Path(treated), fmt=detect_format(Path(treated)))
    if treated_raw.crs is None:
        raise CRSError("the treated area has no CRS", where=treated, fix="add a .prj file or use a GeoPackage")
    work = treated_raw.crs if treated_raw.crs.is_projected else utm_of_layer(gpd.GeoDataFrame(geometry=treated_raw.frame.geometry, crs=treated_raw.crs))
    src = RecordSource(name="points", path=Path(points).resolve(), lon=lon, lat=lat, x=x, y=y, crs=crs, datetime=time)
    # no study area, but the treated (and control) polygons say where the points are meant to be:
    # a row whose lon/lat only land near them when swapped is swapped back (nothing is dropped for it)
    t_geom = polygons_in(treated, work, what="treated")
    c_geom = polygons_in(control, work, what="control") if control is not None else None
    swap_area = shapely.union_all([g for g in (t_geom, c_geom) if g is not None]).buffer(SWAP_MARGIN)
    shapely.prepare(swap_area)
    records = read_point_records(src, ledger, Context(working_crs=work, now=now, swap_area=swap_area))  # dates are needed: detected
    if "occurred_at" not in records:
        raise UsmGeoError("no date column found in the points", where=points, fix="name it with --time COLUMN")
    if category is not None:
        keep = records["category"].astype(str).str.casefold() == category.casefold()
        if not keep.any():
            raise UsmGeoError(f"no point has category '{category}'", where=points,
                              fix=f"categories present: {', '.join(sorted(set(records['category'].astype(str)))[:15])}")
        records = records[keep.to_numpy()].reset_index(drop=True)
    weights = None
    if harm is not None:
        table = read_label_table(Path(harm), "harm_days", Path(harm))
        table["harm"] = pd.to_numeric(table["harm_days"], errors="coerce")
        weights, missing = harm_weights(records["category"].to_numpy(dtype=object), table)
        if missing:
            ledger.note("points", "no_harm_weight", "harm weight 0 for: " + ", ".join(missing))
        weights = np.nan_to_num(weights, nan=0.0)
    b_geom = polygons_in(buffer_area, work, what="buffer") if buffer_area is not None else None
    areas = impact.impact_areas(t_geom, buffer_width=buffer if b_geom is None else None, buffer_area=b_geom, control=c_geom)
    result = impact_result(records["x"].to_numpy(float), records["y"].to_numpy(float), records["occurred_at"].to_numpy(),
                           areas, (before_w.start, before_w.end), (after_w.start, after_w.end), weights=weights)
    return result, ledger
