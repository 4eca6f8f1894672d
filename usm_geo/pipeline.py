"""Runs a Study through the stages in order. The CLI, notebooks and the Dask path call this.

Only this module knows the order of the stages; each stage takes the plain tables of the one
before it (see DESIGN.md). So far: intake (boundaries → study area → incidents → survey).
"""

from __future__ import annotations

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

from usm_geo import __version__
from usm_geo.errors import CRSError, OutputError
from usm_geo.export import staged_folder, write_csv, write_json
from usm_geo.intake.boundaries import check_parents, read_boundary_level
from usm_geo.intake.crs import WGS84, crs_label, same_crs, utm_for, working_crs
from usm_geo.intake.files import read_spatial, detect_format
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import Context, read_point_records
from usm_geo.measures import COLUMNS as MEASURE_COLUMNS
from usm_geo.measures import check_rollups, count_measures
from usm_geo.periods import all_periods
from usm_geo.periods import labels as period_labels
from usm_geo.study import Study
from usm_geo.units.hierarchy import UnitSet, build_units
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
    study_area: object
    incidents: pd.DataFrame | None
    survey: pd.DataFrame | None
    ledger: Ledger
    timings: dict[str, float] = field(default_factory=dict)


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


def run_intake(study: Study, stages: Stages | None = None, now: dt.datetime | None = None) -> Intake:
    """Read and check every input of the study; every record is used or in the ledger."""
    stages = stages or Stages()
    ledger = Ledger()
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
        area = _study_area(study, levels, crs) if crs is not None else None
    unit_ids = {name: set(layer["unit_id"]) for name, layer in levels.items()}
    ctx = Context(working_crs=crs, timezone=study.timezone, study_area=area, periods=study.periods, now=now, unit_ids=unit_ids)
    incidents = survey = None
    if study.incidents is not None:
        with stages("incidents"):
            incidents = read_point_records(study.incidents, ledger, ctx)  # sets ctx.working_crs if "auto"
    if study.survey is not None:
        with stages("survey"):
            survey = read_point_records(study.survey, ledger, ctx, survey=True)
    return Intake(study=study, working_crs=ctx.working_crs, levels=levels, study_area=area, incidents=incidents,
                  survey=survey, ledger=ledger, timings=stages.timings)


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
        declared = {b.level: study.boundaries[i + 1].level for i, b in enumerate(study.boundaries) if b.parent}
        units = build_units(intake.levels, study_area=intake.study_area, crs=intake.working_crs, city_name=study.name,
                            h3_resolutions=resolutions, h3_cover=study.units.h3_cover, point_cells=cells,
                            declared_parents=declared)
        inc_loc = locate_points(inc, units, cells, intake.ledger, "incidents") if inc is not None else None
        srv = intake.survey
        srv_loc = None
        if srv is not None:
            srv_loc = locate_by_unit(srv, units) if "unit_id" in srv else locate_points(srv, units, None, intake.ledger, "survey")
    return Located(units=units, incidents=inc_loc, survey=srv_loc)


def study_periods(study: Study, times: pd.Series | None) -> list[str]:
    """Every period label of the study, from its start to its end (or the data's first to last day)."""
    start, end = study.periods.start, study.periods.end
    if times is not None and len(times):
        start = start or times.min().date()
        end = end or times.max().date()
    if start is None:
        return []
    return all_periods(start, end, study.periods.frequency)


def run_measures(intake: Intake, located: Located, stages: Stages | None = None) -> pd.DataFrame:
    """The long measures table (counts, harm) at every level."""
    stages = stages or Stages()
    with stages("measures"):
        inc = intake.incidents
        if inc is None:
            return pd.DataFrame(columns=MEASURE_COLUMNS)
        periods = study_periods(intake.study, inc["occurred_at"])
        labels = period_labels(inc["occurred_at"].to_numpy(), intake.study.periods.frequency)
        weight = inc["weight"].to_numpy() if "weight" in inc else None
        return count_measures(located.incidents, located.units, period=labels, periods=periods,
                              category=inc["category"].to_numpy(dtype=object), weight=weight)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
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


def run_into(study: Study, folder: Path, stages: Stages | None = None, now: dt.datetime | None = None) -> dict:
    """Run every stage and write the outputs into ``folder`` (an existing, empty staging folder)."""
    stages = stages or Stages()
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    t0 = time.perf_counter()
    intake = run_intake(study, stages, now=now)
    located = run_units(intake, stages)
    measures = run_measures(intake, located, stages)
    with stages("write"):
        write_csv(folder / "measures.csv", measures)
        write_csv(folder / "ledger.csv", intake.ledger.to_frame())
    timings = dict(stages.timings)
    timings["total"] = round(time.perf_counter() - t0, 3)
    info = run_info(intake, timings, started)
    info["units"] = {name: len(layer) for name, layer in located.units.levels.items()}
    info["rollup_check"] = check_rollups(measures, located.units)
    write_json(folder / "run.json", info)
    info["_intake"] = intake
    return info


def run(study: Study, out: Path, stages: Stages | None = None, now: dt.datetime | None = None) -> dict:
    """Run the study into ``out``, built as a temporary sibling and swapped in when complete."""
    out = Path(out).resolve()
    inputs = [study.path, *study.input_paths().values()]
    for p in inputs:
        if out == p or out in p.parents:
            raise OutputError("the output folder holds the study's inputs; replacing it would delete them", where=out,
                              fix="choose another --out folder")
    with staged_folder(out) as stage:
        return run_into(study, stage, stages, now=now)
