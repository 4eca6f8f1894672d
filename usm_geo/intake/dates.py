"""Date and time parsing, vectorised, with detection of the format and of ambiguity.

Times are returned as naive local time in the study's time zone. Values carrying a UTC offset
are converted to that zone first. A date given only to the month (``2022-01``, or a ``month``
column holding first days) has precision ``month``: it covers the whole month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from usm_geo.errors import DateError
from usm_geo.intake.raw import string_buffers

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
    return _iso_and_zone(text, timezone)[0]


def _iso_and_zone(text: pd.Series, timezone: str) -> tuple[pd.Series, bool]:
    """ISO 8601 values (naive local time), and whether any value carried an offset (then values
    without one were read as UTC, as pandas does for such a mix)."""
    try:
        out = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        out = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if out.dtype == object:  # a mix of offsets and naive values
        out = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    aware = getattr(out.dt, "tz", None) is not None
    if aware:
        out = out.dt.tz_convert(timezone).dt.tz_localize(None)
    return out, aware


#: the fast path (:func:`_plain_iso`) is used; tests set it False to check it gives what the general path gives
FAST = True

# The shapes of plain ISO dates read by _plain_iso: (length, positions of digits, separators).
# "2019-03-01", "2019-03-01 14:05" / "2019-03-01T14:05", "2019-03-01 14:05:09" / "...T14:05:09".
_PLAIN_SHAPES = {
    10: {4: b"-", 7: b"-"},
    16: {4: b"-", 7: b"-", 10: b" T", 13: b":"},
    19: {4: b"-", 7: b"-", 10: b" T", 13: b":", 16: b":"},
}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _plain_iso(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``text`` written as plain ISO dates without an offset (the shapes of
    :data:`_PLAIN_SHAPES`, every field a valid calendar value, years 1678–2261): read with numpy
    from the strings' bytes, ~10× faster than ``pd.to_datetime(format="ISO8601")``, which reads
    each of them to the same naive value. Returns (datetime64[ns] with NaT elsewhere, mask of the
    values read); anything else (offsets, fractions, other formats, a 30 February) is left to the
    general path."""
    n = len(text)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    read = np.zeros(n, dtype=bool)
    try:
        arr = pa.array(text, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return out, read
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if n == 0 or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return out, read
    offsets, data = string_buffers(arr)
    lengths = np.diff(offsets)
    valid = np.ones(n, dtype=bool) if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    for length, separators in _PLAIN_SHAPES.items():
        rows = np.flatnonzero(valid & (lengths == length))
        if rows.size == 0:
            continue
        if rows.size == n:  # every value this long: the strings lie back to back, one row each
            b = data[offsets[0]: offsets[0] + n * length].reshape(n, length)
        else:
            b = data[offsets[rows, None] + np.arange(length)]
        digit = np.ones(length, dtype=bool)
        ok = np.ones(rows.size, dtype=bool)
        for pos, allowed in separators.items():
            digit[pos] = False
            col = b[:, pos]
            ok &= (col == allowed[0]) | (col == allowed[-1])
        d = b[:, digit] - np.uint8(48)  # a byte below "0" wraps round to a large value
        ok &= (d <= 9).all(axis=1)
        d = d.astype(np.int32)
        year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
        month = d[:, 4] * 10 + d[:, 5]
        day = d[:, 6] * 10 + d[:, 7]
        hour = d[:, 8] * 10 + d[:, 9] if length > 10 else np.zeros(rows.size, np.int32)
        minute = d[:, 10] * 10 + d[:, 11] if length > 10 else np.zeros(rows.size, np.int32)
        second = d[:, 12] * 10 + d[:, 13] if length > 16 else np.zeros(rows.size, np.int32)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        ok &= (year >= 1678) & (year <= 2261) & (month >= 1) & (month <= 12)
        last = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
        ok &= (day >= 1) & (day <= last) & (hour <= 23) & (minute <= 59) & (second <= 59)
        if not ok.all():
            rows, year, month, day, hour, minute, second = (a[ok] for a in (rows, year, month, day, hour, minute, second))
        # days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's days_from_civil, years > 0)
        y = year.astype(np.int64) - (month <= 2)
        era = y // 400
        yoe = y - era * 400
        doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
        days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
        out[rows] = ((days * 86400 + hour * 3600 + minute * 60 + second) * 1_000_000_000).view("datetime64[ns]")
        read[rows] = True
    return out, read


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

    fast, read = _plain_iso(text) if FAST else (None, None)
    if fast is not None and read.any():
        # the plain ISO values read by numpy; the general path reads the others, as it would have
        # in the whole column, unless one of them carries an offset: pandas then reads the plain
        # ones as UTC too, so the whole column goes the general way
        values, formats, aware = _parse_general(text[~read], missing[~read], timezone, dayfirst, column, where)
        if not aware:
            merged = pd.Series(fast, index=text.index, name=text.name)
            merged[~read] = values.to_numpy()
            values = merged
            formats["ISO8601"] = formats.get("ISO8601", 0) + int(read.sum())
            formats = {"ISO8601": formats.pop("ISO8601"), **formats}
        else:
            values, formats, _ = _parse_general(text, missing, timezone, dayfirst, column, where)
    else:
        values, formats, _ = _parse_general(text, missing, timezone, dayfirst, column, where)
    if precision is None:
        month_like = _month_only_iso(text) or any(formats.get(f) for f in MONTH_FORMATS)
        month_col = column.strip().lower() in ("month", "mon", "yearmonth", "year_month")
        first_of_month = False
        if month_col and not month_like:  # only asked when it decides
            is_first = values.dropna()
            first_of_month = bool(len(is_first)) and bool(((is_first.dt.day == 1) & (is_first.dt.hour == 0) & (is_first.dt.minute == 0)).all())
        precision = "month" if month_like or (month_col and first_of_month) else "day"
    return ParsedDates(values, missing.to_numpy(), precision, {k: v for k, v in formats.items() if v})


def _parse_general(text: pd.Series, missing: pd.Series, timezone: str, dayfirst: bool | None, column: str,
                   where: str) -> tuple[pd.Series, dict[str, int], bool]:
    """The general path of :func:`parse_dates` without a date_format: ISO 8601 (pandas), then the
    local formats for the rest, with the day/month ambiguity check. Returns the values (naive local
    time, datetime64[ns]), the number read per format, and whether an ISO value had an offset."""
    formats: dict[str, int] = {}
    values, aware = _iso_and_zone(text, timezone)
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
    return _as_ns(values), formats, aware


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
