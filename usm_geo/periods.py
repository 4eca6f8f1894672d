"""Period labels: ``2019``, ``2019-Q1``, ``2019-03`` and custom windows ``2019-01-01/2019-06-30``.

Both ends of a window are included. Times are naive local time (see DESIGN.md); a record dated
only to the month (precision ``month``) is labelled by its month, which lies inside one month,
quarter or year, so it is never split.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError

FREQUENCIES = ("month", "quarter", "year")


@dataclass(frozen=True)
class Window:
    start: dt.date
    end: dt.date  # included

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def parse_window(text: str) -> Window:
    """``START:END`` or ``START/END`` (ISO dates, both included) → Window."""
    sep = "/" if "/" in text else ":"
    try:
        a, b = text.split(sep)
        w = Window(dt.date.fromisoformat(a.strip()), dt.date.fromisoformat(b.strip()))
    except ValueError:
        raise UsmGeoError(f"'{text}' is not a period", fix="write it as START:END with ISO dates, e.g. 2021-01-01:2021-12-31") from None
    if w.start > w.end:
        raise UsmGeoError(f"period '{text}' ends before it starts", fix="swap the two dates")
    return w


def labels(times, frequency: str) -> np.ndarray:
    """Label every time (datetime64) by month, quarter or year (object array of str)."""
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(times)))
    if frequency == "year":
        return t.year.astype(str).to_numpy(dtype=object)
    if frequency == "quarter":
        return (t.year.astype(str) + "-Q" + t.quarter.astype(str)).to_numpy(dtype=object)
    if frequency == "month":
        return t.strftime("%Y-%m").to_numpy(dtype=object)
    raise ValueError(f"unknown frequency {frequency!r}")


def window_labels(times, windows: list[Window]) -> np.ndarray:
    """Label every time by the window holding it ('' for none). Windows must not overlap."""
    ws = sorted(windows, key=lambda w: w.start)
    for a, b in zip(ws, ws[1:]):
        if b.start <= a.end:
            raise UsmGeoError(f"periods {a.label} and {b.label} overlap", fix="use windows that do not overlap")
    t = np.asarray(pd.to_datetime(np.asarray(times)), dtype="datetime64[ns]")
    starts = np.array([np.datetime64(w.start, "ns") for w in ws])
    ends = np.array([np.datetime64(w.end + dt.timedelta(days=1), "ns") for w in ws])  # exclusive
    i = np.searchsorted(starts, t, side="right") - 1
    ok = (i >= 0) & (t < ends[np.clip(i, 0, None)])
    names = np.array([w.label for w in ws] + [""], dtype=object)
    return names[np.where(ok, i, len(ws))]


def all_periods(start: dt.date, end: dt.date, frequency: str) -> list[str]:
    """Every label from the period holding ``start`` to the one holding ``end``, in order."""
    freq = {"year": "Y", "quarter": "Q", "month": "M"}[frequency]
    rng = pd.period_range(pd.Timestamp(start), pd.Timestamp(end), freq=freq)
    return list(labels(rng.to_timestamp(), frequency))


def period_bounds(label: str) -> Window:
    """The first and last day of a label (``2019``, ``2019-Q1``, ``2019-03`` or a window)."""
    if "/" in label:
        return parse_window(label)
    try:
        if "-Q" in label:
            y, q = label.split("-Q")
            p = pd.Period(year=int(y), quarter=int(q), freq="Q")
        elif len(label) == 7:
            p = pd.Period(label, freq="M")
        else:
            p = pd.Period(label, freq="Y") if label.isdigit() and len(label) == 4 else None
            if p is None:
                raise ValueError
    except ValueError:
        raise UsmGeoError(f"'{label}' is not a period label", fix="use 2019, 2019-Q1, 2019-03 or 2019-01-01/2019-06-30") from None
    return Window(p.start_time.date(), p.end_time.date())
