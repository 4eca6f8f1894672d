"""Finding the columns a record source needs, by the study's names or by common names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from usm_geo.errors import InputFileError, closest

# Common names, compared case-insensitively after stripping spaces, dots and underscores.
CANDIDATES = {
    "lon": ("lon", "lng", "long", "longitude", "lonwgs84", "longitudewgs84", "xlong"),
    "lat": ("lat", "latitude", "latwgs84", "latitudewgs84", "ylat"),
    "x": ("x", "easting", "xcoord", "xcoordinate", "pointx", "east"),
    "y": ("y", "northing", "ycoord", "ycoordinate", "pointy", "north"),
    "datetime": ("datetime", "occurredat", "occurred", "timestamp", "dateandtime", "incidentdatetime", "date", "month",
                 "incidentdate", "offencedate", "offensedate", "reporteddate", "interviewdate"),
    "time": ("time", "incidenttime", "offencetime", "offensetime"),
    "category": ("category", "type", "crimetype", "offence", "offense", "offencetype", "offensetype", "primarytype", "loccat"),
    # date parts (VPD: YEAR, MONTH, DAY, HOUR, MINUTE integers), the same names `usm-geo init` looks for
    "year": ("year", "yr"),
    "month": ("month", "mon"),
    "day": ("day",),
    "hour": ("hour", "hr"),
    "minute": ("minute", "min"),
}
DATE_PARTS = ("year", "month", "day", "hour", "minute")


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).casefold() if ch.isalnum())


#: the record source name of the one-file commands (usm_geo.pipeline: aggregate_points, hotspots_from_points, impact_from_files), whose columns are named by options
CLI_SOURCE = "points"
_CLI_OPTIONS = {"lon": "--lon", "lat": "--lat", "x": "--x", "y": "--y", "datetime": "--time", "category": "--category"}
_TEXT_TABLES = (".csv", ".tsv", ".tab", ".txt", ".gz")


def setting(key: str | None, role: str, column: str) -> str:
    """How the user names ``column`` for ``role``, as an instruction: ``use --lon Longitude`` for a
    one-file command (``key`` ``points.lon``), else ``set lon = "Longitude" in the study``."""
    source, _, name = (key or role).rpartition(".")
    if source == CLI_SOURCE and role in _CLI_OPTIONS:
        return f"use {_CLI_OPTIONS[role]} {column}"
    return f'set {name or role} = "{column}" in the study'


def resolve(columns, declared: str | None, role: str, path: Path, key: str | None = None) -> str | None:
    """The column for ``role``: the declared name (must exist) or the first common name present.

    Raises InputFileError naming the study key (or the command-line option) and the closest
    existing column, compared case-insensitively, when a declared column is missing.
    """
    columns = [str(c) for c in columns]
    if declared is not None:
        if declared in columns:
            return declared
        by_key = {_key(c): c for c in columns}
        if _key(declared) in by_key:  # tolerate case/space differences, e.g. "Latitude" vs "latitude"
            return by_key[_key(declared)]
        close = closest(declared, columns)
        fix = f"did you mean '{close}'? {setting(key, role, close)}; " if close else ""
        is_file = isinstance(path, (str, Path))
        source = "the file" if is_file else "the table or query"  # a database source
        header = " (row 1 header)" if is_file and Path(path).suffix.lower() in _TEXT_TABLES else ""
        src, _, _ = (key or role).rpartition(".")
        named = (f"{_CLI_OPTIONS[role]} names column '{declared}'" if src == CLI_SOURCE and role in _CLI_OPTIONS
                 else f"the study names column '{declared}' ({key or role})")
        raise InputFileError(
            f"{named} but {source} has no such column{header}",
            where=path, fix=f"{fix}columns in {source}: {', '.join(columns[:30])}",
        )
    by_key = {}
    for c in columns:
        by_key.setdefault(_key(c), c)
    for cand in CANDIDATES.get(role, ()):
        if cand in by_key:
            return by_key[cand]
    return None


def candidates(columns, role: str) -> list[str]:
    """Every column whose name is a common name for ``role``, in the order of :data:`CANDIDATES`."""
    by_key = {}
    for c in map(str, columns):
        by_key.setdefault(_key(c), c)
    return [by_key[c] for c in CANDIDATES.get(role, ()) if c in by_key]


def small_integers(series: pd.Series, limit: int = 10_000) -> bool:
    """True when every non-blank value is a whole number below ``limit`` (a MONTH of 1…12, a YEAR of
    2022): a date part, never a date. Whole numbers like 20220301 (``%Y%m%d``) are not small."""
    if len(series) > 2000 and not small_integers(series.head(1000), limit):
        return False  # a date column: decided on its first values without parsing the whole column
    text = series.astype(str).str.strip() if not pd.api.types.is_numeric_dtype(series) else series
    values = pd.to_numeric(text, errors="coerce")
    if pd.api.types.is_numeric_dtype(series):
        values = values.dropna()
    else:
        blank = text.isin(["", "nan", "NaN", "None"])
        if values[~blank].isna().any():
            return False
        values = values[~blank]
    if values.empty:
        return False
    v = values.to_numpy(dtype=float)
    return bool(((v == np.floor(v)) & (np.abs(v) < limit)).all())


def date_part_columns(columns) -> dict[str, str]:
    """``{part: column}`` for the date parts present under their common names (YEAR, MONTH …)."""
    out = {}
    for part in DATE_PARTS:
        found = candidates(columns, part)
        if found:
            out[part] = found[0]
    return out
