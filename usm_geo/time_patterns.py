"""When incidents happen: counts by hour of day × weekday, by month of the study period, and by month
of the year (seasonality), for the city and for each unit of one level.

The table (``time_patterns.csv``) is long and dense (zeros included), one row per
``level, unit_id, category, pattern`` and time cell:

``pattern``        the cells
``hour_weekday``   ``weekday`` 0–6 (0 = Monday) × ``hour`` 0–23, from the incident's local time
``month``          ``month`` ``YYYY-MM``, every month from the first to the last of the study
``month_of_year``  ``month`` 1–12

``category`` is each incident category and ``all``. Times are the incidents' ``occurred_at`` (naive
local time in the study's time zone, DESIGN.md). Records known only to the month
(``date_precision = "month"``) have no day or hour: they count in the ``month`` and
``month_of_year`` patterns and are left out of ``hour_weekday``; records known only to the year are
left out of every pattern. A table whose times are all exactly midnight holds dates without times
(``00:00`` is how a date-only column reads): then no record has an hour. How many records each
pattern leaves out, and why, is returned with the table (run.json ``time_patterns``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.measures import ALL, dense, tally

COLUMNS = ["level", "unit_id", "category", "pattern", "weekday", "hour", "month", "count"]
#: share of day-precision records at exactly 00:00 above which a table is taken to hold dates only
MIDNIGHT_SHARE = 0.95


def _has_time(t: pd.DatetimeIndex, day: np.ndarray) -> tuple[np.ndarray, bool]:
    """Which records carry a time of day: day precision and not a date-only table."""
    midnight = (t.hour == 0) & (t.minute == 0) & (t.second == 0)
    dates_only = bool(day.any()) and midnight[day].mean() >= MIDNIGHT_SHARE
    return (day & ~dates_only), dates_only


def time_patterns(occurred_at, precision, category, units: dict[str, np.ndarray], unit_ids: dict[str, np.ndarray],
                  months: list[str]) -> tuple[pd.DataFrame, dict]:
    """The time-pattern table and a summary of what was left out.

    Parameters
    ----------
    occurred_at : array of datetime64
        Each incident's naive local time.
    precision : array of str
        ``"day"``, ``"month"`` or ``"year"`` per incident (the intake's ``date_precision``).
    category : array of str
        Each incident's category.
    units : dict
        level → each incident's unit id (None where it is in no unit of the level); include
        ``"city"`` for the city row.
    unit_ids : dict
        level → every unit id of the level, in output order (units without incidents get zeros).
    months : list of str
        ``YYYY-MM`` labels of the ``month`` pattern (the study's months, first to last).
    """
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(occurred_at)))
    prec = np.asarray(precision, dtype=object)
    day = prec == "day"
    has_month = day | (prec == "month")
    timed, dates_only = _has_time(t, day)
    cats = np.asarray(category, dtype=object)
    categories = sorted(set(cats))
    weekday = np.asarray(t.day_of_week, dtype=np.int64)
    hour = np.asarray(t.hour, dtype=np.int64)
    moy = np.asarray(t.month, dtype=np.int64)
    ym = np.asarray(t.strftime("%Y-%m"), dtype=object)

    specs = {  # pattern → (keys of each record, the records it counts, the axes of its cells)
        "hour_weekday": ({"weekday": weekday, "hour": hour}, timed,
                         {"weekday": np.arange(7, dtype=np.int64), "hour": np.arange(24, dtype=np.int64)}),
        "month": ({"month": ym}, has_month, {"month": np.asarray(months, dtype=object)}),
        "month_of_year": ({"month": moy}, has_month, {"month": np.arange(1, 13, dtype=np.int64)}),
    }
    frames = []
    for pattern, (keys, use, axes) in specs.items():
        sub_units = {lv: np.where(use, np.asarray(v, dtype=object), None) for lv, v in units.items()}
        sparse = tally(sub_units, {**{k: np.asarray(v, dtype=object) for k, v in keys.items()}, "category": cats})
        for level, ids in unit_ids.items():
            ids = np.asarray(ids, dtype=object)
            rows = sparse[sparse["level"] == level]
            full = {"unit_id": ids, **{k: np.asarray(a, dtype=object) for k, a in axes.items()},
                    "category": np.asarray(categories, dtype=object)}
            n = dense(rows, full)
            n = np.concatenate([n, n.sum(axis=-1, keepdims=True)], axis=-1)  # + category "all"
            frames.append(_long(level, pattern, full, categories, n))
    table = pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)
    summary = {
        "records": int(len(t)),
        "hour_weekday": {"counted": int(timed.sum()), "left_out": int((~timed).sum()),
                         "why": ("the times are all 00:00: dates without a time of day" if dates_only else
                                 "known only to the month or year") if (~timed).any() else None},
        "month": {"counted": int(has_month.sum()), "left_out": int((~has_month).sum()),
                  "why": "known only to the year" if (~has_month).any() else None},
    }
    return table, summary


def _long(level: str, pattern: str, axes: dict, categories: list[str], n: np.ndarray) -> pd.DataFrame:
    """Dense counts on (unit, *time axes, category+all) → long rows, unit-major."""
    labels = [axes["unit_id"]] + [axes[k] for k in axes if k not in ("unit_id", "category")] \
        + [np.asarray(list(categories) + [ALL], dtype=object)]
    grids = np.meshgrid(*[np.arange(len(a)) for a in labels], indexing="ij")
    out = {"level": level, "unit_id": labels[0][grids[0].ravel()]}
    names = [k for k in axes if k not in ("unit_id", "category")]
    for i, name in enumerate(names, start=1):
        out[name] = labels[i][grids[i].ravel()]
    out["category"] = labels[-1][grids[-1].ravel()]
    out["pattern"] = pattern
    out["count"] = n.ravel().astype(np.int64)
    frame = pd.DataFrame(out)
    # one type per column in every pattern (CSV via Arrow): weekday/hour integers or blank, month text
    for col in ("weekday", "hour"):
        frame[col] = pd.array(frame[col], dtype="Int64") if col in frame else pd.array([pd.NA] * len(frame), dtype="Int64")
    frame["month"] = frame["month"].astype(str).astype(object) if "month" in frame else None
    return frame
