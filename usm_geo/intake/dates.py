"""Date and time parsing, vectorised, with detection of the format and of ambiguity.

Times are returned as naive local time in the study's time zone. Values carrying a UTC offset
are converted to that zone first. A date given only to the month (``2022-01``, or a ``month``
column holding first days) has precision ``month``: it covers the whole month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from usm_geo.errors import DateError

# Tried in this order when the study gives no date_format; "ISO8601" covers 2019-03-01,
# 2019-03-01 14:05, 2019-03-01T14:05:00Z, 2019-03-01T14:05:00-06:00 and 2019-03.
DAY_MONTH = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y",
             "%d-%m-%Y %H:%M", "%d-%m-%Y")
MONTH_DAY = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%m-%d-%Y %H:%M", "%m-%d-%Y")
OTHER = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d", "%m/%Y", "%b %Y", "%B %Y", "%d %b %Y", "%d %B %Y")
MONTH_FORMATS = ("%m/%Y", "%b %Y", "%B %Y")


@dataclass
class ParsedDates:
    values: pd.Series  # datetime64[ns], naive local time; NaT where not parsed
    missing: np.ndarray  # bool: empty input
    precision: str  # "day" or "month"
    formats: dict[str, int]  # format → number of values parsed with it


def _as_ns(values: pd.Series) -> pd.Series:
    """``datetime64[ns]`` (pandas may parse to another unit); values outside its range (before
    1677 or after 2262, e.g. a placeholder 0001-01-01) become NaT instead of overflowing."""
    if values.dtype != "datetime64[ns]":
        values = values.where((values >= pd.Timestamp.min) & (values <= pd.Timestamp.max)).astype("datetime64[ns]")
    return values


def _try(text: pd.Series, fmt: str) -> pd.Series:
    out = pd.to_datetime(text, format=fmt, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        # mixed offsets come back as object; uniform ones as tz-aware
        out = out.dt.tz_convert("UTC")
    return out


def _try_iso(text: pd.Series, timezone: str) -> pd.Series:
    try:
        out = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        out = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if out.dtype == object:  # a mix of offsets and naive values
        out = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(timezone).dt.tz_localize(None)
    return out


def _month_only_iso(text: pd.Series) -> bool:
    sample = text[text != ""].head(1000)
    return bool(len(sample)) and bool(sample.str.fullmatch(r"\d{4}-\d{2}").all())


def parse_dates(text: pd.Series, *, timezone: str, date_format: str | None = None, dayfirst: bool | None = None,
                column: str = "date", where: str = "", precision: str | None = None) -> ParsedDates:
    """Parse a column of date strings.

    Without ``date_format`` the format is detected: ISO 8601 first, then common local formats.
    If day-first and month-first formats both read every value (all days ≤ 12), the column is
    ambiguous and a :class:`DateError` asks for ``date_format`` or ``dayfirst``.
    Values that no format reads stay NaT (the caller puts them in the ledger).
    """
    if pd.api.types.is_datetime64_any_dtype(text):
        values = text
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert(timezone).dt.tz_localize(None)
        return ParsedDates(_as_ns(values), values.isna().to_numpy(), precision or "day", {"native": int(values.notna().sum())})
    text = text.astype(str).str.strip()
    missing = (text == "") | text.str.lower().isin(["nan", "nat", "na", "null", "none"])
    formats: dict[str, int] = {}
    if date_format:
        values = _try(text, date_format)
        formats[date_format] = int(values.notna().sum())
        prec = precision or ("month" if date_format in MONTH_FORMATS or date_format == "%Y-%m" else "day")
        if values.dt.tz is not None:  # the format holds %z: to local time in the study's zone
            values = values.dt.tz_convert(timezone).dt.tz_localize(None)
        return ParsedDates(_as_ns(values), missing.to_numpy(), prec, formats)

    values = _try_iso(text, timezone)
    formats["ISO8601"] = int(values.notna().sum())
    todo = values.isna() & ~missing
    if todo.any():
        # pick the local format reading most of the remaining values; check day/month ambiguity
        rest = text[todo]
        sample = rest.drop_duplicates().head(2000)
        scores = {fmt: int(_try(sample, fmt).notna().sum()) for fmt in DAY_MONTH + MONTH_DAY + OTHER}
        best_dm = max(DAY_MONTH, key=lambda f: scores[f])
        best_md = max(MONTH_DAY, key=lambda f: scores[f])
        if scores[best_dm] and scores[best_md] and dayfirst is None:
            full_dm = int(_try(rest, best_dm).notna().sum())
            full_md = int(_try(rest, best_md).notna().sum())
            if full_dm == full_md:
                example = rest[_try(rest, best_dm).notna()].iloc[0]
                raise DateError(
                    f"dates in column '{column}' such as '{example}' could be day/month or month/day",
                    where=where, fix='set dayfirst = true (or false), or date_format = "%d/%m/%Y", in this input of the study',
                )
        order = list(OTHER)
        order = (list(DAY_MONTH) + list(MONTH_DAY) if dayfirst or dayfirst is None else list(MONTH_DAY) + list(DAY_MONTH)) + order
        if dayfirst is None:
            order.sort(key=lambda f: -scores[f])
        for fmt in order:
            if not todo.any():
                break
            if scores[fmt] == 0 and fmt not in (best_dm, best_md):
                continue
            got = _try(text[todo], fmt)
            got = _as_ns(got.dt.tz_convert(timezone).dt.tz_localize(None) if got.dt.tz is not None else got)
            ok = got.notna()
            if ok.any():
                values = _as_ns(values)
                values.loc[got.index[ok]] = got[ok]
                formats[fmt] = int(ok.sum())
                todo = values.isna() & ~missing
    values = _as_ns(values)
    if precision is None:
        month_like = _month_only_iso(text) or any(formats.get(f) for f in MONTH_FORMATS)
        is_first = values.dropna()
        month_col = column.strip().lower() in ("month", "mon", "yearmonth", "year_month")
        first_of_month = bool(len(is_first)) and bool(((is_first.dt.day == 1) & (is_first.dt.hour == 0) & (is_first.dt.minute == 0)).all())
        precision = "month" if month_like or (month_col and first_of_month) else "day"
    return ParsedDates(values, missing.to_numpy(), precision, {k: v for k, v in formats.items() if v})


# --------------------------------------------------------------------------- dates in parts

#: the range of each date part; a day beyond its month's length (31 February) fails in to_datetime
PART_RANGES = {"year": (1678, 2261), "month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59)}
_FILL = {"month": 1, "day": 1, "hour": 0, "minute": 0}  # a part not given: the start of the coarser one


@dataclass
class ParsedParts:
    values: pd.Series  # datetime64[ns], naive local time; NaT where a part is invalid
    invalid: np.ndarray  # bool: a part is blank, not a whole number, out of range, or the day is past the month's end
    detail: np.ndarray  # object: "YEAR=2022, MONTH=13, DAY=1" for every record (the raw values)
    precision: str  # "year", "month" or "day" (the finest part given; hour/minute are times of a day)


def parts_precision(parts) -> str:
    """The precision of a date given by ``parts`` (names among year, month, day, hour, minute)."""
    return "day" if "day" in parts else "month" if "month" in parts else "year"


def parse_date_parts(columns: dict[str, pd.Series]) -> ParsedParts:
    """Combine integer columns of date parts into one datetime, vectorised.

    ``columns`` maps a part (``year``, ``month``, ``day``, ``hour``, ``minute``; a year is
    required) to its column, named by the column's own name. Values are read as numbers
    (``" 7"``, ``"7.0"`` and ``7`` are the same month); a part that is blank, not a whole number
    or out of :data:`PART_RANGES`, or a day past its month's end (31 February), makes the record
    invalid. Parts not given are filled with the start of the coarser part (a year alone is
    1 January 00:00), and the precision says how much of the value is known.
    """
    n = len(next(iter(columns.values())))
    index = next(iter(columns.values())).index
    invalid = np.zeros(n, dtype=bool)
    numbers = {}
    detail = None
    for part, series in columns.items():
        text = series.astype(str).str.strip().where(series.notna(), "")
        label = (f"{series.name}=" + text.str.slice(0, 12)).to_numpy(dtype=object)
        detail = label if detail is None else np.char.add(np.char.add(detail.astype(str), ", "), label.astype(str))
        v = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        lo, hi = PART_RANGES[part]
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(v) & (v == np.floor(v)) & (v >= lo) & (v <= hi)
        invalid |= ~ok
        numbers[part] = v
    frame = pd.DataFrame({part: np.where(invalid, _FILL.get(part, 2000), numbers.get(part, _FILL.get(part)))
                          .astype(np.int64) for part in ("year", "month", "day", "hour", "minute")}, index=index)
    values = pd.to_datetime(frame, errors="coerce")  # 31 February → NaT
    invalid |= values.isna().to_numpy()
    values = _as_ns(values.where(~invalid))
    return ParsedParts(values, invalid, np.asarray(detail, dtype=object), parts_precision(columns))
