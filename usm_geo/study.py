"""study.toml → a validated :class:`Study`.

Paths resolve relative to the study file. Unknown keys, wrong types and missing files raise
:class:`~usm_geo.errors.StudyError` naming the key (``inputs.incidents.lat``) and the fix.
The full reference is ``docs/study.md``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import math
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from usm_geo.database import DatabaseSource, checked_url, is_database_url, split_table_name
from usm_geo.errors import CRSError, StudyError, UsmGeoError

FREQUENCIES = ("month", "quarter", "year")
FORMATS = ("csv", "tsv", "gpkg", "shp", "geojson", "kml", "parquet", "xlsx")
PROFILES = ("internal", "public")
DUPLICATES = ("keep", "drop")
DATE_PARTS = ("year", "month", "day", "hour", "minute")  # coarsest first

# A key's spec: (type or tuple of types, default, allowed values or None). REQUIRED = no default.
REQUIRED = object()


@dataclass(frozen=True)
class Question:
    """One survey question: the answer column and the answer labels it may hold."""

    id: str
    column: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class RecordSource:
    """Where and how to read point records (incidents) or survey responses.

    Location is given by ``lon``/``lat`` (degrees, EPSG:4326), by ``x``/``y`` with ``crs``
    (any CRS; metres or degrees as the CRS says), by the geometry of a spatial file, or — for
    surveys — by a ``unit`` column holding the id of a unit of ``unit_level``.
    """

    name: str
    path: Path | DatabaseSource
    format: str | None = None
    layer: str | None = None
    lon: str | None = None
    lat: str | None = None
    x: str | None = None
    y: str | None = None
    crs: str | None = None
    datetime: str | None = None
    date: str | None = None
    time: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None
    date_precision: str | None = None
    category: str | None = None
    weight: str | None = None
    id: str | None = None
    duplicates: str = "keep"
    delimiter: str | None = None
    encoding: str | None = None
    unit: str | None = None
    unit_level: str | None = None
    strata: str | None = None
    psu: str | None = None
    questions: tuple[Question, ...] = ()
    records: str = "police"  # incidents: "police" or "health" records (their series are kept apart)
    # the date from integer columns of its parts (docs/study.md "Dates in parts"): precision follows
    # the finest part given (year → "year", month → "month", day/hour/minute → "day")
    year: str | None = None
    month: str | None = None
    day: str | None = None
    hour: str | None = None
    minute: str | None = None
    category_value: str | None = None  # incidents: one category label for every record of the source
    # incidents: the end of each record's time window (it happened between the date and this end):
    # aoristic counts (docs/study.md "Time windows"); datetime_end pairs with datetime, date_end with date
    datetime_end: str | None = None
    date_end: str | None = None

    @property
    def date_parts(self) -> dict[str, str]:
        """``{part: column}`` for the date parts named (year, month, day, hour, minute), finest last."""
        return {p: getattr(self, p) for p in DATE_PARTS if getattr(self, p) is not None}


@dataclass(frozen=True)
class BoundaryLevel:
    """One polygon level (finest first in the study)."""

    level: str
    path: Path | DatabaseSource
    id: str
    name: str | None = None
    parent: str | None = None  # the column of parent ids (codes); None: parents by geometry
    layer: str | None = None
    crs: str | None = None
    # the coarser level ``parent`` names ids of (any coarser boundary level; the string form
    # ``parent = "COLUMN"`` means the next level), or the level declared as parent by geometry
    # (``parent = { level = "district" }``); None: no parent declared
    parent_level: str | None = None


@dataclass(frozen=True)
class PopulationSource:
    path: Path | DatabaseSource | None = None
    level: str | None = None
    id: str | None = None
    column: str = "population"
    sheet: str | None = None
    raster: Path | None = None
    points: Path | None = None  # population points (e.g. census block centroids), any CRS
    areas: Path | None = None  # polygons of another geography with a population count
    value: str = "population"  # the count column of points or areas
    # the year the population counts describe (a census or estimate year): report cards carry it on
    # rate indicators and ``usm-geo compare`` refuses to compare rates on different base years
    year: int | None = None
    # the ledger source name: "population" with one entry; with several [[inputs.population]],
    # "population.<level>" for a table, "population[<n>]" for an entry without one
    name: str = "population"


@dataclass(frozen=True)
class PerceptionSource:
    """Perception as an area table: one score per unit and period, no respondents (e.g. Chicago's
    police-sentiment survey averages). Shown as it is, flagged ``no_sample_size``, no interval."""

    path: Path | DatabaseSource
    unit: str
    unit_level: str
    scores: tuple[str, ...]
    period: str | None = None
    match: str = "id"  # "id" or "name": match the unit column to unit ids or to unit names
    sheet: str | None = None
    lower_is_better: bool = False


@dataclass(frozen=True)
class CovariateSource:
    """``[[inputs.covariates]]``: risk or resilience factors as an area table, one row per unit of
    ``unit_level`` (``unit`` = the column of unit ids) and one numeric column per factor (``columns``).
    They feed the count model (usm_geo.models.counts; docs/methods.md)."""

    path: Path | DatabaseSource
    unit: str
    unit_level: str
    columns: tuple[str, ...]
    sheet: str | None = None
    name: str = "covariates"  # the ledger source: "covariates" with one table, "covariates[n]" with several
    # a point layer of features (bars, stops, lights) instead of a table: where and how to read the points
    # (lon/lat, x/y + crs, or a spatial file's geometry), the feature's name and the measures per unit
    # ("count", "density", "distance"); ``columns`` are then ``<feature>_<measure>``
    points: RecordSource | None = None
    feature: str | None = None
    measures: tuple[str, ...] = ()


POINT_MEASURES = ("count", "density", "distance")
RISK_OPERATIONS = ("distance", "density")
RISK_KERNELS = ("quartic", "gaussian")


@dataclass(frozen=True)
class RiskFeature:
    """One risk layer of ``[model] features``: the point covariate named ``name`` rasterised by
    ``operation`` ("distance": metres from each cell centre to the nearest feature; "density":
    kernel density, features per km², with ``bandwidth`` metres and ``kernel``)."""

    name: str
    operation: str = "distance"
    bandwidth: float | None = None
    kernel: str = "quartic"


@dataclass(frozen=True)
class ModelSettings:
    """``[model]``: ``risk_terrain = true`` adds the risk terrain model (usm_geo.models.risk_terrain):
    grid cells of ``cell_size`` metres (working CRS) over the study area, one layer per ``features``."""

    risk_terrain: bool = False
    cell_size: float = 250.0
    features: tuple[RiskFeature, ...] = ()


@dataclass(frozen=True)
class CountSource:
    """Area-coded counts (``[[inputs.counts]]``): counts per unit code of ``unit_level`` × period
    (× category), long (a ``count`` column and a ``period`` column of labels) or wide (``periods``:
    a list of columns, or a glob pattern such as ``"20*"``, each column label a period label).
    ``category`` names a column, ``category_value`` one label for the whole file. See docs/study.md
    "Area-coded counts"."""

    name: str  # the ledger source: counts/<file name> (counts[<n>] when names clash or for a database)
    path: Path | DatabaseSource
    unit: str
    unit_level: str
    count: str | None = None
    period: str | None = None
    periods: tuple[str, ...] | str | None = None  # wide: column names, or one glob pattern
    category: str | None = None
    category_value: str | None = None
    records: str = "police"
    format: str | None = None
    layer: str | None = None  # a layer of a spatial file, or a sheet of an .xlsx
    delimiter: str | None = None
    encoding: str | None = None

    @property
    def wide(self) -> bool:
        return self.periods is not None


RECONCILE_LINKS = (("date", "unit"), ("id",))


@dataclass(frozen=True)
class ReconcileSettings:
    """``[reconcile]``: police and health records of one study compared (usm_geo.reconcile).

    ``primary``: the records the run's indicators, hot spots and impact count (default: the first
    incident file's records); the other records feed only ``reconciliation.csv``, so nothing is
    counted twice. ``link``: how a record found in both is recognised — ``("date", "unit")`` (the same
    day in the same finest polygon unit) or ``("id",)`` (the same record id; every file needs ``id``);
    empty: no linking, no capture–recapture estimate. ``alpha``: the false discovery rate of the
    ``sources_differ`` flag."""

    primary: str | None = None
    link: tuple[str, ...] = ()
    alpha: float = 0.05


@dataclass(frozen=True)
class Periods:
    frequency: str = "year"
    start: dt.date | None = None
    end: dt.date | None = None
    baseline: str | None = None
    current: str | None = None


@dataclass(frozen=True)
class Intervention:
    """The treated area is a polygon file (``path``, ``layer``) or a set of unit ids of one boundary
    level (``units``, ``level``); ``control`` optionally a polygon file, or ``"matched"`` (``matched``:
    the ``k`` nearest untreated units of ``level``); default: the rest of the study area."""

    name: str
    path: Path | None
    start: dt.date
    layer: str | None = None
    buffer: float = 400.0
    units: tuple[str, ...] = ()
    level: str | None = None
    control: Path | None = None
    # control = "matched": the k untreated units of ``level`` nearest the treated units (Mahalanobis
    # distance on baseline rate and population; usm_geo.impact.matched_control)
    matched: bool = False
    k: int = 5


@dataclass(frozen=True)
class Outputs:
    formats: tuple[str, ...] = ("gpkg", "csv")
    profile: str = "internal"
    suppression_threshold: int = 5
    tiles: str | None = None  # a basemap for map.html (usm_geo.maps.build.basemap); None: no network at all
    time_level: str | None = None  # the level whose units get time_patterns.csv rows (default: finest polygon level)


@dataclass(frozen=True)
class HotspotSettings:
    """``[hotspots]``: the significance rule and the value of the local statistics (Gi*, LISA, EHSA)."""

    fdr: bool = True  # Benjamini-Hochberg over the units of a level; false = raw p-values
    alpha: float = 0.05
    min_units: int = 30  # levels with fewer units get no local statistics (flag too_few_units)
    value: str = "auto"  # "count", "rate", "eb_rate" or "auto" (eb_rate where population varies > 2×)


HOTSPOT_VALUES = ("auto", "count", "rate", "eb_rate")


@dataclass(frozen=True)
class Units:
    h3_resolution: tuple[int, ...] = ()
    h3_cover: str = "clip"
    study_area: Path | None = None
    # metres: points this close outside the study area are moved into the nearest finest unit (0 = off)
    snap: float = 0.0
    # share of a unit's area that may lie outside its parent when nesting is found (or checked) by
    # geometry: a unit nests when ≥ 1 − nest_tolerance of its area is in one unit of the coarser level
    nest_tolerance: float = 0.01


@dataclass(frozen=True)
class Study:
    """A validated study. ``path`` is the study file; every other path is absolute."""

    path: Path
    sha256: str
    name: str
    timezone: str
    working_crs: str
    seed: int
    incidents: RecordSource | None
    survey: RecordSource | None
    boundaries: tuple[BoundaryLevel, ...]
    population: PopulationSource | None
    units: Units
    periods: Periods
    intervention: Intervention | None
    outputs: Outputs
    indicators: dict[str, Any] = field(default_factory=dict)
    perception: PerceptionSource | None = None
    # several incident files (a list ``path`` or repeated [[inputs.incidents]]): all of them, the first
    # also in ``incidents``; empty with one file. Read them through :meth:`incident_inputs`.
    incident_sources: tuple[RecordSource, ...] = ()
    covariates: tuple[CovariateSource, ...] = ()  # [[inputs.covariates]]: area tables of risk/resilience factors
    # area-coded counts ([[inputs.counts]]), one entry per file; a study has these or point incidents
    counts: tuple[CountSource, ...] = ()
    # [reconcile]: set when the incident files hold both police and health records (else None)
    reconcile: ReconcileSettings | None = None

    @property
    def records(self) -> str:
        """The kind of incident records the run counts, ``police`` or ``health`` (of the incidents or
        the counts); with both kinds, ``[reconcile] primary`` (see :meth:`primary_inputs`)."""
        if self.reconcile is not None and self.reconcile.primary is not None:
            return self.reconcile.primary
        if self.incidents is not None:
            return self.incidents.records
        return self.counts[0].records if self.counts else "police"

    def primary_inputs(self) -> tuple[RecordSource, ...]:
        """The incident sources the run's indicators count: every one, or with both police and health
        records only those of :attr:`records` (the others are in :meth:`reconcile_inputs`)."""
        return tuple(s for s in self.incident_inputs() if self.reconcile is None or s.records == self.records)

    def reconcile_inputs(self) -> tuple[RecordSource, ...]:
        """The incident sources of the other records, read only for ``reconciliation.csv``."""
        return tuple(s for s in self.incident_inputs() if self.reconcile is not None and s.records != self.records)
    # several population entries (repeated [[inputs.population]]): all of them, the first also in
    # ``population``; empty with one. Read them through :meth:`population_inputs`.
    population_sources: tuple[PopulationSource, ...] = ()

    def population_inputs(self) -> tuple[PopulationSource, ...]:
        """Every population entry in the study's order: the several tables, or the one ``population``."""
        if len(self.population_sources) > 1:
            return self.population_sources
        return (self.population,) if self.population is not None else ()

    def population_base_year(self) -> str | None:
        """The year(s) the population denominators describe (``year`` of ``[[inputs.population]]``):
        ``"2021"``, ``"2011/2021"`` when entries differ, None when no entry says (unknown)."""
        years = sorted({p.year for p in self.population_inputs() if p.year is not None})
        return "/".join(map(str, years)) if years else None

    def incident_inputs(self) -> tuple[RecordSource, ...]:
        """Every incident source in the study's order: the several files, or the one ``incidents``."""
        if len(self.incident_sources) > 1:
            return self.incident_sources
        return (self.incidents,) if self.incidents is not None else ()
    hotspots: HotspotSettings = field(default_factory=HotspotSettings)
    model: ModelSettings = field(default_factory=ModelSettings)

    def input_paths(self) -> dict[str, Path]:
        """Every input file named by the study, keyed by a readable name (for hashing); database
        inputs are in :meth:`database_inputs`."""
        return {k: v for k, v in self._inputs().items() if isinstance(v, Path)}

    def database_inputs(self) -> dict[str, DatabaseSource]:
        """Every database table or query named by the study, keyed like :meth:`input_paths`."""
        return {k: v for k, v in self._inputs().items() if isinstance(v, DatabaseSource)}

    def _inputs(self) -> dict[str, Path | DatabaseSource]:
        out: dict[str, Path | DatabaseSource] = {}
        for src in (*self.incident_inputs(), self.survey, *self.counts):
            if src is not None:
                out[src.name] = src.path
        for b in self.boundaries:
            out[f"boundaries.{b.level}"] = b.path
        for pop in self.population_inputs():
            if pop.path is not None:
                out[pop.name] = pop.path
            for key in ("raster", "points", "areas"):
                if getattr(pop, key) is not None:
                    out[f"population.{key}"] = getattr(pop, key)
        if self.perception is not None:
            out["perception"] = self.perception.path
        for c in self.covariates:
            out[c.name] = c.path
        if self.units.study_area is not None:
            out["units.study_area"] = self.units.study_area
        if self.intervention is not None:
            if self.intervention.path is not None:
                out["intervention"] = self.intervention.path
            if self.intervention.control is not None:
                out["intervention.control"] = self.intervention.control
        return out


# --------------------------------------------------------------------------- parsing helpers


class _Reader:
    """Takes keys from one TOML table, checking types, and complains about leftovers."""

    def __init__(self, table: Any, key: str, study_file: Path):
        self.key = key
        self.file = study_file
        if not isinstance(table, dict):
            raise self.error(key, f"must be a table ([{key}]), not {_tname(table)}", f"write it as [{key}] with keys below it")
        self.table = dict(table)
        self.known: list[str] = []

    def error(self, key: str, what: str, fix: str | None = None) -> StudyError:
        return StudyError(f"'{key}' {what}", where=self.file, fix=fix)

    def full(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def take(self, name: str, types, default=REQUIRED, choices=None):
        self.known.append(name)
        if name not in self.table:
            if default is REQUIRED:
                raise self.error(self.full(name), "is missing", f"add {name} = ... under [{self.key or 'top level'}]")
            return default
        value = self.table.pop(name)
        types = types if isinstance(types, tuple) else (types,)
        # TOML ints are acceptable where a float is expected; bools are not ints here.
        ok = any(
            (isinstance(value, t) and not (t is int and isinstance(value, bool)))
            or (t is float and isinstance(value, int) and not isinstance(value, bool))
            for t in types
        )
        if not ok:
            want = " or ".join(_tname_of_type(t) for t in types)
            raise self.error(self.full(name), f"must be {want}, not {_tname(value)} ({value!r})", f"e.g. {name} = {_example(types[0])}")
        if choices is not None and value not in choices:
            raise self.error(self.full(name), f"must be one of {', '.join(map(repr, choices))}, not {value!r}",
                             f"e.g. {name} = " + (f'"{choices[0]}"' if isinstance(choices[0], str) else repr(choices[0])))
        return value

    def path(self, name: str, *, required: bool = True, must_exist: bool = True) -> Path | None:
        value = self.take(name, str, REQUIRED if required else None)
        if value is None:
            return None
        return _resolve(value, self.file, self.full(name), must_exist)

    def source(self, *, required: bool = True, file_keys: tuple[str, ...] = ("format", "layer", "delimiter", "encoding")
               ) -> Path | DatabaseSource | None:
        """Where an input is: ``path`` (a file), or ``source`` (a PostgreSQL URL without password)
        with ``table`` or ``query`` and optionally ``geometry`` (docs/postgis.md)."""
        url = self.take("source", str, None)
        table = self.take("table", str, None)
        query = self.take("query", str, None)
        geometry = self.take("geometry", str, None)
        if url is None:
            for name, value in (("table", table), ("query", query), ("geometry", geometry)):
                if value is not None:
                    raise self.error(self.full(name), 'is set, but there is no source = "postgresql://…"',
                                     f'add source = "postgresql://USER@HOST:PORT/DB" under [{self.key}], or remove {name}')
            return self.path("path", required=required)
        self.known.append("path")
        if "path" in self.table:
            raise self.error(self.key, "names both path and source", "keep one: path for a file, source for a database")
        for name in file_keys:
            if name in self.table:
                raise self.error(self.full(name), "does not apply to a database source",
                                 f"remove {name}; the table or query decides what is read")
        try:
            url = checked_url(url, self.full("source"))
            parts = split_table_name(table, self.full("table")) if table is not None else None
        except UsmGeoError as exc:
            raise StudyError(f"'{exc.where}': {exc.what}", where=self.file, fix=exc.fix) from None
        if (table is None) == (query is None):
            raise self.error(self.key, "needs either table or query with its source" if table is None else
                             "names both table and query", 'e.g. table = "public.incidents", or query = "SELECT … ORDER BY id"')
        if query is not None and not query.strip().rstrip(";").strip():
            raise self.error(self.full("query"), "is empty", 'e.g. query = "SELECT * FROM public.incidents ORDER BY id"')
        return DatabaseSource(url=url, table=parts, query=query, geometry=geometry, key=self.key, study_file=self.file)

    def date(self, name: str, default=None) -> dt.date | None:
        value = self.take(name, (str, dt.date), default)
        if value is None or isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.error(self.full(name), f"is not a date: {value!r}", f'write {name} = "YYYY-MM-DD"') from None

    def done(self) -> None:
        if self.table:
            unknown = sorted(self.table)[0]
            close = difflib.get_close_matches(unknown, self.known, n=1)
            # "latitude" → "lat", "longitude" → "lon": a known key the unknown one starts with
            close = close or sorted((k for k in self.known if len(k) >= 3 and unknown.lower().startswith(k)), key=len)[-1:]
            hint = f"did you mean '{close[0]}'?" if close else f"known keys here: {', '.join(sorted(self.known))}"
            raise self.error(self.full(unknown), "is not a known key", hint)


def _tname(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def _tname_of_type(t) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table", dt.date: "a date"}[t]


def _example(t) -> str:
    return {bool: "true", int: "5", float: "400.0", str: '"..."', list: '["..."]', dict: "{...}", dt.date: "2020-01-01"}[t]


def _resolve(value: str, study_file: Path, key: str, must_exist: bool) -> Path:
    if is_database_url(value):
        section = key.rsplit(".", 1)[0]
        raise StudyError(f"'{key}' names a database ({value.split('@')[-1]}), not a file", where=study_file,
                         fix=f'under [{section}] write source = "postgresql://USER@HOST:PORT/DB" with table = "schema.name" '
                             'or query = "SELECT …" (docs/postgis.md)')
    path = (study_file.parent / value).resolve()
    if must_exist and not path.exists():
        raise StudyError(f"'{key}' names a file that does not exist: {path}", where=study_file, fix=f"check the path (relative paths start from {study_file.parent})")
    return path


def projected_in_metres(setting: str):
    """The pyproj CRS of ``setting``, refused unless it is projected with axes in metres (a working CRS).

    It lives here, not in intake, because the study (floor −1) may not import intake (floor 0) and must
    refuse degrees or feet before any input is read; :func:`usm_geo.intake.crs.working_crs` calls it.
    """
    from pyproj import CRS

    crs = CRS.from_user_input(setting)
    if not crs.is_projected:
        raise CRSError(f"the working CRS {crs.name} is not projected: distances and areas need metres",
                       where="study.working_crs", fix='use "auto" (local UTM) or a projected EPSG code')
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if unit not in ("metre", "meter"):
        raise CRSError(f"the working CRS {crs.name} has units of {unit}, not metres", where="study.working_crs",
                       fix='use "auto" (local UTM) or a projected CRS in metres')
    return crs


def _crs_text(value: str | None, key: str, study_file: Path) -> str | None:
    if value is None or value == "auto":
        return value
    from pyproj import CRS
    from pyproj.exceptions import CRSError as PyprojCRSError

    try:
        CRS.from_user_input(value)
    except PyprojCRSError:
        raise StudyError(f"'{key}' is not a CRS pyproj knows: {value!r}", where=study_file, fix='use an EPSG code such as "EPSG:32633", a WKT string, or "auto"') from None
    return value


# --------------------------------------------------------------------------- sections


def _date_parts(r: _Reader, key: str, src: dict) -> dict[str, str]:
    """The ``year``/``month``/``day``/``hour``/``minute`` keys, checked: a date needs its coarser
    parts (a day needs a month and a year; an hour needs a day; a minute an hour) and excludes the
    other ways of naming a date."""
    parts = {p: r.take(p, str, None) for p in DATE_PARTS}
    given = [p for p in DATE_PARTS if parts[p] is not None]
    if not given:
        return parts
    example = 'year = "YEAR", month = "MONTH", day = "DAY"'
    for other in ("datetime", "date", "time", "date_format"):
        if src.get(other) is not None:
            raise r.error(f"{key}.{other}", f"cannot be combined with date parts ({', '.join(given)})",
                          f"name either the date column ({other}) or the integer columns of its parts ({example})")
    if src.get("date_precision") is not None:
        raise r.error(f"{key}.date_precision", "does not apply to date parts: the precision follows the finest part given",
                      "remove date_precision (year only = year precision, year and month = month precision)")
    needs = {"month": "year", "day": "month", "hour": "day", "minute": "hour"}
    for part in given:
        coarser = needs.get(part)
        if coarser is not None and parts[coarser] is None:
            fix = (f'add {coarser} = "COLUMN" (an hour or minute without its {coarser} cannot be placed in time)'
                   if part in ("hour", "minute") else f'add {coarser} = "COLUMN"')
            raise r.error(f"{key}.{part}", f"needs {coarser} too", fix)
    return parts


def _record_source(table, key: str, file: Path, *, survey: bool) -> RecordSource:
    r = _Reader(table, key, file)
    path = r.source()
    fmt = r.take("format", str, None, FORMATS)
    src = dict(
        name=key.split(".")[-1],
        path=path,
        format=fmt,
        layer=r.take("layer", str, None),
        lon=r.take("lon", str, None),
        lat=r.take("lat", str, None),
        x=r.take("x", str, None),
        y=r.take("y", str, None),
        crs=_crs_text(r.take("crs", str, None), f"{key}.crs", file),
        datetime=r.take("datetime", str, None),
        date=r.take("date", str, None),
        time=r.take("time", str, None),
        date_format=r.take("date_format", str, None),
        dayfirst=r.take("dayfirst", bool, None),
        date_precision=r.take("date_precision", str, None, ("day", "month")),
        category=r.take("category", str, None),
        weight=r.take("weight", str, None),
        id=r.take("id", str, None),
        duplicates=r.take("duplicates", str, "keep", DUPLICATES),
        delimiter=r.take("delimiter", str, None),
        encoding=r.take("encoding", str, None),
    )
    if not survey:
        src["records"] = r.take("records", str, "police", ("police", "health"))
    if src["delimiter"] is not None and len(src["delimiter"]) != 1:
        raise r.error(f"{key}.delimiter", f"must be one character, not {src['delimiter']!r}", 'e.g. delimiter = ";" or delimiter = "\\t"')
    if (src["lon"] is None) != (src["lat"] is None):
        raise r.error(f"{key}.lon/lat", "must be given together", "name both columns, or neither to detect them")
    if (src["x"] is None) != (src["y"] is None):
        raise r.error(f"{key}.x/y", "must be given together", "name both columns, or neither")
    if src["lon"] is not None and src["x"] is not None:
        raise r.error(f"{key}", "names both lon/lat and x/y columns", "keep one pair: lon/lat for degrees, x/y with crs for projected coordinates")
    if src["x"] is not None and src["crs"] is None:
        raise r.error(f"{key}.crs", "is missing: x/y columns need the CRS they are in", 'add crs = "EPSG:...." (for example EPSG:27700 for British National Grid)')
    if src["datetime"] is not None and (src["date"] is not None or src["time"] is not None):
        raise r.error(f"{key}.datetime", "cannot be combined with date/time", "name either one datetime column, or a date column and an optional time column")
    if src["time"] is not None and src["date"] is None:
        raise r.error(f"{key}.time", "needs a date column too", "add date = \"...\"")
    src.update(_date_parts(r, key, src))
    if not survey:
        src["category_value"] = r.take("category_value", str, None)
        if src["category_value"] is not None and src["category"] is not None:
            raise r.error(f"{key}.category_value", "cannot be combined with category",
                          "keep category = \"COLUMN\" when the file has a category column, or category_value = "
                          "\"burglary\" when every record of the file is that offence")
        if src["category_value"] is not None and not src["category_value"].strip():
            raise r.error(f"{key}.category_value", "is empty", 'e.g. category_value = "burglary"')
        src["datetime_end"] = r.take("datetime_end", str, None)
        src["date_end"] = r.take("date_end", str, None)
        if src["datetime_end"] is not None and src["date_end"] is not None:
            raise r.error(f"{key}.datetime_end", "cannot be combined with date_end",
                          "name datetime_end with datetime (a date and time column), or date_end with date")
        if src["datetime_end"] is not None and src["datetime"] is None:
            raise r.error(f"{key}.datetime_end", "needs datetime: the window runs from datetime to datetime_end",
                          'add datetime = "COLUMN" (or use date = "..." with date_end = "...")')
        if src["date_end"] is not None and src["date"] is None:
            raise r.error(f"{key}.date_end", "needs date: the window runs from date to the end of date_end",
                          'add date = "COLUMN" (or use datetime = "..." with datetime_end = "...")')
    if survey:
        src["unit"] = r.take("unit", str, None)
        src["unit_level"] = r.take("unit_level", str, None)
        src["strata"] = r.take("strata", str, None)
        src["psu"] = r.take("psu", str, None)
        if (src["unit"] is None) != (src["unit_level"] is None):
            raise r.error(f"{key}.unit", "and unit_level must be given together", 'e.g. unit = "nbhd_id" and unit_level = "neighbourhood"')
        if src["weight"] is None:
            raise r.error(f"{key}.weight", "is missing: survey responses need design weights", 'add weight = "column", or a column of 1s for a simple random sample')
        qs = r.take("questions", dict, {})
        questions = []
        for qid in sorted(qs):
            q = _Reader(qs[qid], f"{key}.questions.{qid}", file)
            answers = q.take("answers", list)
            if not answers or not all(isinstance(a, str) for a in answers):
                raise q.error(f"{q.key}.answers", "must be a non-empty list of strings", 'e.g. answers = ["yes", "no"]')
            questions.append(Question(id=qid, column=q.take("column", str), answers=tuple(answers)))
            q.done()
        src["questions"] = tuple(questions)
        if not questions:
            raise r.error(f"{key}.questions", "is missing: a survey needs at least one question", f"add [{key}.questions.safe_after_dark] with column and answers")
    r.done()
    return RecordSource(**src)


def _incident_sources(inc, file: Path) -> tuple[RecordSource, ...]:
    """``[inputs.incidents]`` with one ``path``, with a list of paths (files with the same columns), or
    repeated ``[[inputs.incidents]]`` tables (files with different columns), each with its own keys.

    One file keeps the ledger source name ``incidents``; several are named ``incidents/<file name>``
    (``incidents[<n>]`` for a database source, or when two files share a name), n counting every
    file in the study's order from 1."""
    tables = inc if isinstance(inc, list) else [inc]
    if not tables:
        raise StudyError("'inputs.incidents' is an empty list", where=file, fix='write [[inputs.incidents]] tables, each with path = "..."')
    out: list[RecordSource] = []
    for i, table in enumerate(tables, 1):
        key = "inputs.incidents" if len(tables) == 1 else f"inputs.incidents[{i}]"
        if not isinstance(table, dict):
            raise StudyError(f"'{key}' must be a table, not {_tname(table)}", where=file, fix="write each as [[inputs.incidents]] with keys below it")
        paths = table.get("path")
        if not isinstance(paths, list):
            out.append(_record_source(table, key, file, survey=False))
            continue
        if not paths or not all(isinstance(p, str) for p in paths):
            raise StudyError(f"'{key}.path' must be a file name or a non-empty list of file names", where=file,
                             fix='e.g. path = ["2019-01-street.csv", "2019-02-street.csv"] (files with the same columns)')
        first = _record_source({**table, "path": paths[0]}, key, file, survey=False)
        if not isinstance(first.path, Path):
            raise StudyError(f"'{key}.path' is a list but names a database", where=file, fix="list files only; a database source is its own [[inputs.incidents]]")
        out += [replace(first, path=_resolve(p, file, f"{key}.path[{j}]", True)) for j, p in enumerate(paths, 1)]
    if len(out) == 1:
        return tuple(out)
    return tuple(_name_incident_sources(out, file))


def _name_incident_sources(sources: list[RecordSource], file: Path) -> list[RecordSource]:
    """Readable, unique ledger names for several incident files; they must agree on what the
    pipeline reads as one table (harm weights). Police and health files may be mixed: the run counts
    the primary records and reconciles the others ([reconcile], :func:`_reconcile`)."""
    names = [f"incidents/{s.path.name}" if isinstance(s.path, Path) else None for s in sources]
    shared = {n for n in names if n is not None and names.count(n) > 1}
    names = [n if n is not None and n not in shared else f"incidents[{i}]" for i, n in enumerate(names, 1)]
    for what, values, fix in (
            ("weight", {s.weight is not None for s in sources}, "name a weight column in every incident file, or in none"),):
        if len(values) > 1:
            raise StudyError(f"the incident files disagree on '{what}'", where=file, fix=fix)
    return [replace(s, name=n) for s, n in zip(sources, names)]


def _count_sources(items, file: Path) -> tuple[CountSource, ...]:
    """``[[inputs.counts]]`` tables (or one ``[inputs.counts]``), each with one ``path`` or a list of
    files with the same columns; named ``counts/<file name>`` in the ledger."""
    tables = items if isinstance(items, list) else [items]
    if not tables:
        raise StudyError("'inputs.counts' is an empty list", where=file, fix='write [[inputs.counts]] tables, each with path = "..."')
    out: list[CountSource] = []
    for i, table in enumerate(tables, 1):
        key = f"inputs.counts[{i}]"
        if not isinstance(table, dict):
            raise StudyError(f"'{key}' must be a table, not {_tname(table)}", where=file, fix="write each as [[inputs.counts]] with keys below it")
        paths = table.get("path")
        if isinstance(paths, list):
            if not paths or not all(isinstance(p, str) for p in paths):
                raise StudyError(f"'{key}.path' must be a file name or a non-empty list of file names", where=file,
                                 fix='e.g. path = ["robbery.csv", "burglary.csv"] (files with the same columns)')
            first = _count_source({**table, "path": paths[0]}, key, file)
            out += [replace(first, path=_resolve(p, file, f"{key}.path[{j}]", True)) for j, p in enumerate(paths, 1)]
        else:
            out.append(_count_source(table, key, file))
    names = [f"counts/{s.path.name}" if isinstance(s.path, Path) else None for s in out]
    names = [n if n is not None and names.count(n) == 1 else f"counts[{i}]" for i, n in enumerate(names, 1)]
    if len({s.unit_level for s in out}) > 1:
        raise StudyError("the count files name different unit_levels ("
                         + ", ".join(sorted({s.unit_level for s in out})) + ")", where=file,
                         fix="give every count file the same unit_level: counts reach only their own level and the levels it "
                             "nests in, so files at two levels would make the levels disagree; run them as two studies")
    if len({s.records for s in out}) > 1:
        raise StudyError("the count files disagree on 'records'", where=file,
                         fix='give every count file the same records = "police" (or "health"); they are separate studies')
    return tuple(replace(s, name=n) for s, n in zip(out, names))


def _count_source(table: dict, key: str, file: Path) -> CountSource:
    r = _Reader(table, key, file)
    path = r.source()
    periods = r.take("periods", (list, str), None)
    layer, sheet = r.take("layer", str, None), r.take("sheet", str, None)  # sheet: the .xlsx word for it
    src = CountSource(
        name=key, path=path, unit=r.take("unit", str), unit_level=r.take("unit_level", str),
        count=r.take("count", str, None), period=r.take("period", str, None),
        periods=tuple(periods) if isinstance(periods, list) else periods,
        category=r.take("category", str, None), category_value=r.take("category_value", str, None),
        records=r.take("records", str, "police", ("police", "health")),
        format=r.take("format", str, None, FORMATS), layer=layer or sheet,
        delimiter=r.take("delimiter", str, None), encoding=r.take("encoding", str, None),
    )
    r.done()
    wide_eg = 'periods = ["2019", "2020"] (or periods = "20*"), one column per period'
    long_eg = 'count = "COUNT" with period = "MONTH" (a column of labels such as 2019-03)'
    if (src.count is None) == (src.periods is None):
        raise r.error(key, "needs either count (long form) or periods (wide form)" if src.count is None
                      else "names both count and periods", f"long: {long_eg}; wide: {wide_eg}")
    if src.count is not None and src.period is None:
        raise r.error(f"{key}.period", "is missing: a long count table needs a column of period labels", f"e.g. {long_eg}")
    if src.periods is not None and src.period is not None:
        raise r.error(f"{key}.period", "does not apply to a wide table: its period columns are the labels", f"remove period; {wide_eg}")
    if isinstance(src.periods, tuple) and (not src.periods or not all(isinstance(c, str) for c in src.periods)):
        raise r.error(f"{key}.periods", "must be a non-empty list of column names or one pattern", f"e.g. {wide_eg}")
    if isinstance(src.periods, str) and not src.periods.strip():
        raise r.error(f"{key}.periods", "is an empty pattern", f"e.g. {wide_eg}")
    if src.category is not None and src.category_value is not None:
        raise r.error(f"{key}.category_value", "cannot be combined with category",
                      'keep category = "COLUMN", or category_value = "burglary" when the whole file is one offence')
    if src.category_value is not None and not src.category_value.strip():
        raise r.error(f"{key}.category_value", "is empty", 'e.g. category_value = "burglary"')
    if src.delimiter is not None and len(src.delimiter) != 1:
        raise r.error(f"{key}.delimiter", f"must be one character, not {src.delimiter!r}", 'e.g. delimiter = ";"')
    return src


def _boundaries(items, file: Path) -> tuple[BoundaryLevel, ...]:
    if not isinstance(items, list):
        raise StudyError("'inputs.boundaries' must be an array of tables ([[inputs.boundaries]]), finest level first", where=file,
                         fix="write each level as its own [[inputs.boundaries]] table with level, path and id")
    levels = []
    for i, item in enumerate(items):
        r = _Reader(item, f"inputs.boundaries[{i}]", file)
        level = BoundaryLevel(
            level=r.take("level", str),
            path=r.source(),
            id=r.take("id", str),
            name=r.take("name", str, None),
            layer=r.take("layer", str, None),
            crs=_crs_text(r.take("crs", str, None), f"inputs.boundaries[{i}].crs", file),
        )
        column, parent_level = _parent(r.take("parent", (str, dict), None), f"inputs.boundaries[{i}].parent", file)
        level = replace(level, parent=column, parent_level=parent_level)
        r.done()
        if level.level == "city" or level.level.startswith("h3_"):
            raise r.error(f"inputs.boundaries[{i}].level", f"'{level.level}' is reserved (the city level and h3_<res> levels are built by usm_geo)", "name the level e.g. 'neighbourhood' or 'district'")
        levels.append(level)
    names = [b.level for b in levels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f"'inputs.boundaries' names the level '{dupes[0]}' twice", where=file, fix="give every level a distinct name")
    for i, b in enumerate(levels):
        if b.parent is not None and b.parent_level is None and i == len(levels) - 1:
            raise StudyError(f"'inputs.boundaries[{i}].parent' is set, but '{b.level}' is the coarsest level", where=file, fix="remove parent, or add the parent level after it (finest first)")
        if b.parent is not None and b.parent_level is None:  # the string form: ids of the next level
            levels[i] = b = replace(b, parent_level=levels[i + 1].level)
        if b.parent_level is not None and b.parent_level not in names[i + 1:]:
            why = ("is the level itself" if b.parent_level == b.level else
                   "is a finer level (levels are listed finest first)" if b.parent_level in names else "is not a boundary level")
            raise StudyError(f"'inputs.boundaries[{i}].parent.level' = '{b.parent_level}' {why}", where=file,
                             fix=f"name a coarser level listed after '{b.level}': {', '.join(names[i + 1:]) or '(none)'}")
    return tuple(levels)


def _parent(value, key: str, file: Path) -> tuple[str | None, str | None]:
    """``parent``: a column of the next level's ids (``"COLUMN"``), a table naming the coarser level
    and the column of its ids (``{ level = "borough", column = "LAD11CD" }``), or a level alone
    (``{ level = "district" }``: that level is the parent by geometry, checked with nest_tolerance).
    Returns (column, level); the level of the string form is filled in by the caller."""
    if value is None or isinstance(value, str):
        return value, None
    r = _Reader(value, key, file)
    level = r.take("level", str)
    column = r.take("column", str, None)
    r.done()
    return column, level


def _population_sources(pop, file: Path, level_names: list[str]) -> tuple[PopulationSource, ...]:
    """``[inputs.population]`` (one entry) or repeated ``[[inputs.population]]``: each a table keyed by
    the unit ids of its own ``level`` and/or points, areas or a raster. One table per level, and at
    most one raster, one points and one areas layer in all; tables are named ``population.<level>``
    in the ledger (``population`` with one entry)."""
    tables = pop if isinstance(pop, list) else [pop]
    if not tables:
        raise StudyError("'inputs.population' is an empty list", where=file, fix='write [[inputs.population]] tables with path, level, id and column')
    out = []
    for i, table in enumerate(tables, 1):
        key = "inputs.population" if len(tables) == 1 else f"inputs.population[{i}]"
        spec = _population(table, file, key)
        if spec.level is not None and spec.level not in level_names:
            raise StudyError(f"'{key}.level' is '{spec.level}', which is not a boundary level", where=file,
                             fix=f"use one of: {', '.join(level_names) or '(no boundary levels defined)'}")
        if len(tables) > 1:
            spec = replace(spec, name=f"population.{spec.level}" if spec.path is not None else f"population[{i}]")
        out.append(spec)
    levels = [s.level for s in out if s.path is not None]
    twice = sorted({lv for lv in levels if levels.count(lv) > 1})
    if twice:
        raise StudyError(f"'inputs.population' has two tables for the level '{twice[0]}'", where=file,
                         fix="keep one table per level (a table for a coarser level goes under its own level)")
    for what in ("raster", "points", "areas"):
        if sum(getattr(s, what) is not None for s in out) > 1:
            raise StudyError(f"'inputs.population' names {what} in more than one entry", where=file,
                             fix=f"keep one {what}: it fills the levels no table gives")
    return tuple(out)


def _population(table, file: Path, key: str = "inputs.population") -> PopulationSource:
    r = _Reader(table, key, file)
    pop = PopulationSource(
        path=r.source(required=False, file_keys=("sheet",)),
        level=r.take("level", str, None),
        id=r.take("id", str, None),
        column=r.take("column", str, "population"),
        sheet=r.take("sheet", str, None),
        raster=r.path("raster", required=False),
        points=r.path("points", required=False),
        areas=r.path("areas", required=False),
        value=r.take("value", str, "population"),
        year=r.take("year", int, None),
    )
    r.done()
    if pop.year is not None and not 1800 <= pop.year <= 2200:
        raise r.error(f"{key}.year", f"is {pop.year}, not a calendar year",
                      "give the year the population counts describe, e.g. year = 2021")
    if pop.path is None and pop.raster is None and pop.points is None and pop.areas is None:
        raise r.error(key, "needs a table (path), points, areas or a raster",
                      'add path = "population.csv" with level and id, or points/areas/raster = "..."')
    if pop.path is not None and (pop.level is None or pop.id is None):
        raise r.error(f"{key}.level/id", "must name the level and id column the table is keyed by", 'e.g. level = "neighbourhood", id = "nbhd_id"')
    return pop


def _perception(table, file: Path) -> PerceptionSource:
    r = _Reader(table, "inputs.perception", file)
    scores = r.take("scores", list)
    if not scores or not all(isinstance(c, str) for c in scores):
        raise r.error("inputs.perception.scores", "must be a non-empty list of column names", 'e.g. scores = ["safety"]')
    p = PerceptionSource(
        path=r.source(file_keys=("sheet",)), unit=r.take("unit", str), unit_level=r.take("unit_level", str), scores=tuple(scores),
        period=r.take("period", str, None), match=r.take("match", str, "id", ("id", "name")),
        sheet=r.take("sheet", str, None), lower_is_better=r.take("lower_is_better", bool, False),
    )
    r.done()
    return p


def _covariates(items, file: Path, level_names: list[str]) -> tuple[CovariateSource, ...]:
    """``[[inputs.covariates]]``: area tables of factors keyed by a boundary level's ids, or point layers
    of features (a table with ``measures``) turned into per-unit counts, densities and distances."""
    tables = items if isinstance(items, list) else [items]
    out = []
    for i, table in enumerate(tables, 1):
        key = "inputs.covariates" if len(tables) == 1 else f"inputs.covariates[{i}]"
        name = "covariates" if len(tables) == 1 else f"covariates[{i}]"
        if isinstance(table, dict) and "measures" in table:
            src = _point_covariates(table, key, name, file)
        else:
            r = _Reader(table, key, file)
            columns = r.take("columns", list)
            if not columns or not all(isinstance(c, str) and c for c in columns):
                raise r.error(f"{key}.columns", "must be a non-empty list of column names", 'e.g. columns = ["deprivation", "density"]')
            src = CovariateSource(path=r.source(file_keys=("sheet",)), unit=r.take("unit", str), unit_level=r.take("unit_level", str),
                                  columns=tuple(columns), sheet=r.take("sheet", str, None), name=name)
            r.done()
        if src.unit_level not in level_names:
            raise StudyError(f"'{key}.unit_level' is '{src.unit_level}', which is not a boundary level", where=file,
                             fix=f"use one of: {', '.join(level_names) or '(no boundary levels defined)'}")
        out.append(src)
    seen = [c for s in out for c in s.columns]
    twice = sorted({c for c in seen if seen.count(c) > 1})
    if twice:
        raise StudyError(f"'inputs.covariates' names the factor '{twice[0]}' in two tables", where=file,
                         fix="give every factor one column in one table (and every point layer its own name)")
    return tuple(out)


def _point_covariates(table: dict, key: str, ledger_name: str, file: Path) -> CovariateSource:
    """A point layer of features: ``name``, ``unit_level``, ``measures`` and the point-reading keys of
    an incident file (path or source, format, layer, lon/lat or x/y + crs, delimiter, encoding)."""
    table = dict(table)
    r = _Reader({k: table.pop(k) for k in ("name", "unit_level", "measures") if k in table}, key, file)
    feature = r.take("name", str)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", feature):
        raise r.error(f"{key}.name", f"must be a plain name (letters, digits, _), not {feature!r}", 'e.g. name = "bars"')
    unit_level = r.take("unit_level", str)
    measures = r.take("measures", list)
    if not measures or any(m not in POINT_MEASURES for m in measures) or len(set(measures)) != len(measures):
        raise r.error(f"{key}.measures", f"must list one or more of {', '.join(POINT_MEASURES)} (each once), not {measures!r}",
                      'e.g. measures = ["count", "density", "distance"]')
    r.done()
    for k in ("datetime", "date", "time", "category", "category_value", "weight", "id", "records"):
        if k in table:
            raise StudyError(f"'{key}.{k}' does not apply to a point layer of features", where=file,
                             fix=f"remove {k}: features are counted, not dated or categorised")
    points = _record_source(table, key, file, survey=False)
    points = replace(points, name=f"{ledger_name}/{feature}")
    return CovariateSource(path=points.path, unit="", unit_level=unit_level,
                           columns=tuple(f"{feature}_{m}" for m in measures), name=points.name, points=points,
                           feature=feature, measures=tuple(measures))


def _check_small_area(indicators: dict, covariates: tuple[CovariateSource, ...], survey, file: Path) -> None:
    """``[indicators] small_area = true`` needs a survey (the direct shares) and area covariates (the model's
    factors); ``small_area_covariates`` must name factors of ``[[inputs.covariates]]``. The option's types
    are checked with the rest of ``[indicators]`` (usm_geo.indicators.registry.small_area_option)."""
    if not isinstance(indicators, dict) or indicators.get("small_area") is not True:
        return
    if survey is None:
        raise StudyError("'indicators.small_area' is true, but the study has no survey", where=file,
                         fix="Fay–Herriot estimates refine survey shares: add [inputs.survey], or remove small_area")
    if not covariates:
        raise StudyError("'indicators.small_area' is true, but the study has no [[inputs.covariates]]", where=file,
                         fix="the Fay–Herriot model needs area factors: add [[inputs.covariates]] with path, unit, "
                             'unit_level and columns = ["…"] (one row per unit of a boundary level), or remove small_area')
    names = indicators.get("small_area_covariates") or []
    known = [c for src in covariates for c in src.columns]
    unknown = [c for c in names if isinstance(c, str) and c not in known] if isinstance(names, list) else []
    if unknown:
        raise StudyError(f"'indicators.small_area_covariates' names '{unknown[0]}', which is no factor of "
                         "[[inputs.covariates]]", where=file, fix=f"use some of: {', '.join(known)}")


def _model(table, file: Path, covariates: tuple[CovariateSource, ...]) -> ModelSettings:
    """``[model]``: the risk terrain option (``risk_terrain``, ``cell_size`` metres, ``features``)."""
    r = _Reader(table, "model", file)
    on = r.take("risk_terrain", bool, False)
    cell = float(r.take("cell_size", float, 250.0))
    items = r.take("features", list, [])
    r.done()
    if not on:
        if items:
            raise r.error("model.features", "is set, but risk_terrain is not", "add risk_terrain = true under [model]")
        return ModelSettings(cell_size=cell)
    if not cell > 0:
        raise r.error("model.cell_size", f"must be a positive number of metres, not {cell}", "e.g. cell_size = 250")
    layers = {c.feature: c for c in covariates if c.points is not None}
    if not items:
        raise r.error("model.features", "is missing: the risk terrain needs at least one risk feature",
                      'e.g. features = [{ name = "bars", operation = "density", bandwidth = 500 }]')
    feats = []
    for j, item in enumerate(items, 1):
        fr = _Reader(item, f"model.features[{j}]", file)
        f = RiskFeature(name=fr.take("name", str), operation=fr.take("operation", str, "distance", RISK_OPERATIONS),
                        bandwidth=fr.take("bandwidth", float, None), kernel=fr.take("kernel", str, "quartic", RISK_KERNELS))
        fr.done()
        if f.name not in layers:
            raise fr.error(f"model.features[{j}].name", f"is '{f.name}', which is no point layer of [[inputs.covariates]]",
                           f"use one of: {', '.join(sorted(layers)) or '(no point layers: add [[inputs.covariates]] with name, measures and path)'}")
        if f.operation == "density":
            if f.bandwidth is None or not f.bandwidth > 0:
                raise fr.error(f"model.features[{j}].bandwidth", "must be a positive number of metres for a density layer",
                               "e.g. bandwidth = 500")
            f = replace(f, bandwidth=float(f.bandwidth))
        elif f.bandwidth is not None:
            raise fr.error(f"model.features[{j}].bandwidth", "applies only to operation = \"density\"", "remove bandwidth")
        feats.append(f)
    keys = [(f.name, f.operation) for f in feats]
    if len(set(keys)) != len(keys):
        raise r.error("model.features", "lists the same feature and operation twice", "keep one of each")
    return ModelSettings(risk_terrain=True, cell_size=cell, features=tuple(feats))


def _reconcile(table, file: Path, sources: tuple[RecordSource, ...]) -> ReconcileSettings | None:
    """``[reconcile]`` checked against the incident files: it needs both police and health records;
    with both and no ``[reconcile]``, the defaults (primary = the first file's records, no linking)."""
    kinds = list(dict.fromkeys(s.records for s in sources))
    if table is None:
        return ReconcileSettings(primary=kinds[0]) if len(kinds) > 1 else None
    r = _Reader(table, "reconcile", file)
    primary = r.take("primary", str, kinds[0] if kinds else "police", ("police", "health"))
    link = r.take("link", list, [])
    alpha = float(r.take("alpha", float, 0.05))
    r.done()
    if len(kinds) < 2:
        have = f"every incident file holds {kinds[0]} records" if kinds else "the study has no point incidents"
        raise r.error("reconcile", f"is set, but {have}: there is nothing to reconcile",
                      'add an [[inputs.incidents]] with records = "health" (and one with records = "police"), '
                      "or remove [reconcile]")
    if not all(isinstance(v, str) for v in link) or (link and tuple(sorted(link)) not in {tuple(sorted(x)) for x in RECONCILE_LINKS}):
        raise r.error("reconcile.link", f"must be [\"date\", \"unit\"] or [\"id\"], not {link!r}",
                      'link = ["date", "unit"] (the same day in the same finest unit) or link = ["id"] (a shared record id)')
    link = ("date", "unit") if len(link) == 2 else tuple(link)
    if link == ("id",):
        for i, s in enumerate(sources, 1):
            if s.id is None:
                raise r.error("reconcile.link", f'= ["id"], but inputs.incidents[{i}] ({s.name}) names no id column',
                              f'add id = "COLUMN" to inputs.incidents[{i}], or link = ["date", "unit"]')
    if not 0.0 < alpha < 1.0:
        raise r.error("reconcile.alpha", f"must be between 0 and 1, not {alpha}", "e.g. alpha = 0.05")
    return ReconcileSettings(primary=primary, link=link, alpha=alpha)


def _periods(table, file: Path) -> Periods:
    r = _Reader(table, "periods", file)
    p = Periods(
        frequency=r.take("frequency", str, "year", FREQUENCIES),
        start=r.date("start"),
        end=r.date("end"),
        baseline=r.take("baseline", str, None),
        current=r.take("current", str, None),
    )
    r.done()
    if p.start and p.end and p.start > p.end:
        raise r.error("periods.start", f"({p.start}) is after periods.end ({p.end})", "swap them")
    return p


def _units(table, file: Path) -> Units:
    r = _Reader(table, "units", file)
    res = r.take("h3_resolution", (int, list), [])
    res = [res] if isinstance(res, int) else res
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 15 for v in res):
        raise r.error("units.h3_resolution", f"must be integers from 0 to 15, not {res!r}", "e.g. h3_resolution = [9]")
    u = Units(
        h3_resolution=tuple(sorted(set(res), reverse=True)),
        h3_cover=r.take("h3_cover", str, "clip", ("clip", "centre", "touch")),
        study_area=r.path("study_area", required=False),
        snap=_snap_metres(r),
        nest_tolerance=_nest_tolerance(r),
    )
    r.done()
    return u


def _nest_tolerance(r) -> float:
    """``[units] nest_tolerance``: a share of a unit's area, 0 ≤ t < 0.5 (default 0.01 = 1 %)."""
    v = r.take("nest_tolerance", float, 0.01)
    if not math.isfinite(float(v)) or not 0 <= float(v) < 0.5:
        raise r.error("units.nest_tolerance", f"must be a share of a unit's area from 0 to below 0.5, not {v!r}",
                      "e.g. nest_tolerance = 0.02 (2 % of a unit's area may lie outside its parent)")
    return float(v)


def _snap_metres(r) -> float:
    """``[units] snap``: metres ≥ 0 (0 = off)."""
    v = r.take("snap", float, 0)
    if not math.isfinite(float(v)) or float(v) < 0:
        raise r.error("units.snap", f"must be a distance in metres ≥ 0, not {v!r}", "e.g. snap = 5")
    return float(v)


def _outputs(table, file: Path) -> Outputs:
    r = _Reader(table, "outputs", file)
    formats = r.take("formats", list, ["gpkg", "csv"])
    allowed = ("gpkg", "shp", "geojson", "parquet", "csv")
    bad = [f for f in formats if f not in allowed]
    if bad:
        raise r.error("outputs.formats", f"has unknown format {bad[0]!r}", f"use some of {', '.join(allowed)}")
    o = Outputs(
        formats=tuple(formats),
        profile=r.take("profile", str, "internal", PROFILES),
        suppression_threshold=r.take("suppression_threshold", int, 5),
        tiles=r.take("tiles", str, None),
        time_level=r.take("time_level", str, None),
    )
    if o.suppression_threshold < 1:
        raise r.error("outputs.suppression_threshold", f"must be at least 1, not {o.suppression_threshold}", "e.g. suppression_threshold = 5")
    for key in ("folder", "path"):
        if key in r.table:
            raise r.error(f"outputs.{key}", "is not set in the study file", "choose the output folder on the command line: usm-geo run STUDY --out DIR")
    r.done()
    return o


def _hotspots(table, file: Path) -> HotspotSettings:
    r = _Reader(table, "hotspots", file)
    h = HotspotSettings(
        fdr=r.take("fdr", bool, True),
        alpha=float(r.take("alpha", float, 0.05)),
        min_units=r.take("min_units", int, 30),
        value=r.take("value", str, "auto", HOTSPOT_VALUES),
    )
    r.done()
    if not 0.0 < h.alpha < 1.0:
        raise r.error("hotspots.alpha", f"must be between 0 and 1, not {h.alpha}", "e.g. alpha = 0.05")
    if h.min_units < 3:
        raise r.error("hotspots.min_units", f"must be at least 3, not {h.min_units}", "e.g. min_units = 30")
    return h


def _intervention(table, file: Path) -> Intervention:
    r = _Reader(table, "intervention", file)
    units = r.take("units", list, [])
    matched = isinstance(table.get("control"), str) and table["control"].strip().lower() == "matched"
    if matched:
        r.take("control", str)
    has_k = "k" in table
    k = r.take("k", int, 5)
    iv = Intervention(
        name=r.take("name", str),
        path=r.path("path", required=False),
        layer=r.take("layer", str, None),
        start=r.date("start", REQUIRED),
        buffer=float(r.take("buffer", float, 400.0)),
        units=tuple(str(u) for u in units),
        level=r.take("level", str, None),
        control=None if matched else r.path("control", required=False),
        matched=matched,
        k=int(k),
    )
    r.done()
    if has_k and not matched:
        raise r.error("intervention.k", 'applies only to control = "matched"',
                      'add control = "matched" (the k nearest untreated units), or remove k')
    if matched and k < 1:
        raise r.error("intervention.k", f"must be a whole number ≥ 1, not {k}", "e.g. k = 5")
    if matched and not units:
        raise r.error("intervention.control", '= "matched" picks untreated units of the treated units\' level, '
                      "so the treated area must be given as units", 'name the treated area with units = ["N04", …] and '
                      'level = "neighbourhood", or give control = "control.gpkg"')
    if (iv.path is None) == (not iv.units):
        raise r.error("intervention", "needs either path (a polygon file) or units (ids of one boundary level)",
                      'e.g. path = "treated.gpkg", or units = ["N04", "N27"] with level = "neighbourhood"')
    if iv.units and iv.level is None:
        raise r.error("intervention.level", "is missing: units are ids of which boundary level?", 'e.g. level = "neighbourhood"')
    if iv.buffer < 0:
        raise r.error("intervention.buffer", f"must be metres ≥ 0, not {iv.buffer}", "e.g. buffer = 400.0 (0 for the area itself)")
    return iv


#: data files a new user may give instead of the study file (suffix → what it is)
_DATA_FILES = {".gpkg": "a GeoPackage", ".shp": "a shapefile", ".zip": "a zip archive", ".csv": "a CSV table",
               ".tsv": "a TSV table", ".geojson": "a GeoJSON file", ".json": "a JSON file", ".kml": "a KML file",
               ".parquet": "a Parquet file", ".xlsx": "an Excel workbook", ".gz": "a compressed file",
               ".tif": "a raster", ".tiff": "a raster", ".dbf": "a shapefile's table"}


def _not_a_study(file: Path) -> StudyError:
    """The error for a study path that is not a file: a folder (with or without a study.toml) or nothing."""
    if file.is_dir():
        inner = file / "study.toml"
        if inner.is_file():
            return StudyError(f"{file} is a folder, not a study file", fix=f"name the study file in it: {inner}")
        return StudyError(f"{inner} not found", fix="name a study.toml, or draft one with `usm-geo init FILES…` "
                          "from the input files (`usm-geo demo --out DIR` writes an example to DIR/inputs/study.toml)")
    return StudyError("the study file does not exist", where=file,
                      fix="check the path, or run `usm-geo demo --out DIR` for an example in DIR/inputs/study.toml")


def load_study(path: str | Path) -> Study:
    """Read and validate a study file.

    Raises
    ------
    StudyError
        naming the key and the fix, for unknown keys, wrong types, missing files, bad CRS.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise _not_a_study(file)
    if file.suffix.lower() in _DATA_FILES:  # a data file given where the study goes: point to `usm-geo init`
        raise StudyError(f"{file} is {_DATA_FILES[file.suffix.lower()]}, not a study.toml",
                         fix=f"run `usm-geo init {Path(path)} …` (with the other input files) to draft one")
    raw = file.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise StudyError("the study file is not UTF-8 text", where=file, fix="save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"is not valid TOML: {exc}", where=file, fix="check quotes, brackets and '=' on that line") from None

    top = _Reader(data, "", file)
    st = _Reader(top.take("study", dict, {}), "study", file)
    name = st.take("name", str, file.stem)
    timezone = st.take("timezone", str, "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise st.error("study.timezone", f"is not an IANA time zone: {timezone!r}", 'e.g. timezone = "America/Chicago" or "Europe/London"') from None
    working_crs = _crs_text(st.take("working_crs", str, "auto"), "study.working_crs", file)
    if working_crs != "auto":  # refuse degrees or feet now, not after reading every input
        try:
            projected_in_metres(working_crs)
        except CRSError as exc:
            raise CRSError(f"'study.working_crs' = {working_crs!r}: {exc.what}", where=file, fix=exc.fix) from None
    seed = st.take("seed", int, 0)
    st.done()

    inputs = _Reader(top.take("inputs", dict), "inputs", file)
    inc = inputs.take("incidents", (dict, list), None)
    srv = inputs.take("survey", dict, None)
    bnd = inputs.take("boundaries", list, [])
    pop = inputs.take("population", (dict, list), None)
    per = inputs.take("perception", dict, None)
    cov = inputs.take("covariates", (dict, list), None)
    cnt = inputs.take("counts", (dict, list), None)
    inputs.done()
    incident_sources = _incident_sources(inc, file) if inc is not None else ()
    incidents = incident_sources[0] if incident_sources else None
    survey = _record_source(srv, "inputs.survey", file, survey=True) if srv is not None else None
    counts = _count_sources(cnt, file) if cnt is not None else ()
    if incidents is None and survey is None and not counts:
        raise StudyError("'inputs' has neither incidents, counts nor survey", where=file, fix="add [inputs.incidents] with path = \"...\"")
    if incidents is not None and counts:
        raise StudyError("'inputs' has both point incidents and area-coded counts", where=file,
                         fix="run them as two studies: points are counted at every level (H3 included), area-coded counts "
                             "only at their unit level and the levels it nests in, so added together the levels would disagree")
    boundaries = _boundaries(bnd, file)
    level_names = [b.level for b in boundaries]
    population_sources = _population_sources(pop, file, level_names) if pop is not None else ()
    population = population_sources[0] if population_sources else None
    perception = _perception(per, file) if per is not None else None
    covariates = _covariates(cov, file, level_names) if cov is not None else ()
    if perception is not None and perception.unit_level not in level_names:
        raise StudyError(f"'inputs.perception.unit_level' is '{perception.unit_level}', which is not a boundary level", where=file, fix=f"use one of: {', '.join(level_names) or '(no boundary levels defined)'}")
    for src in counts:
        if src.unit_level not in level_names:
            raise StudyError(f"'{src.name}' (inputs.counts) has unit_level '{src.unit_level}', which is not a boundary level",
                             where=file, fix=f"use one of: {', '.join(level_names) or '(no boundary levels defined)'}")
    if survey is not None and survey.unit_level is not None and survey.unit_level not in level_names:
        raise StudyError(f"'inputs.survey.unit_level' is '{survey.unit_level}', which is not a boundary level", where=file, fix=f"use one of: {', '.join(level_names) or '(no boundary levels defined)'}")

    units = _units(top.take("units", dict, {}), file)
    periods = _periods(top.take("periods", dict, {}), file)
    iv_table = top.take("intervention", dict, None)
    intervention = _intervention(iv_table, file) if iv_table is not None else None
    outputs = _outputs(top.take("outputs", dict, {}), file)
    indicators = top.take("indicators", dict, {})
    hotspots = _hotspots(top.take("hotspots", dict, {}), file)
    model = _model(top.take("model", dict, {}), file, covariates)
    reconcile = _reconcile(top.take("reconcile", dict, None), file, incident_sources)
    top.done()
    _check_small_area(indicators, covariates, survey, file)

    return Study(
        path=file,
        sha256=hashlib.sha256(raw).hexdigest(),
        name=name,
        timezone=timezone,
        working_crs=working_crs,
        seed=seed,
        incidents=incidents,
        survey=survey,
        boundaries=boundaries,
        population=population,
        units=units,
        periods=periods,
        intervention=intervention,
        outputs=outputs,
        indicators=indicators,
        perception=perception,
        incident_sources=incident_sources if len(incident_sources) > 1 else (),
        population_sources=population_sources if len(population_sources) > 1 else (),
        hotspots=hotspots,
        covariates=covariates,
        counts=counts,
        model=model,
        reconcile=reconcile,
    )
