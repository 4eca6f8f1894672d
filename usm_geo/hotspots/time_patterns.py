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


#: a Monday at 00:00: hours of the week are counted from it (weekday 0 = Monday, as pandas)
_MONDAY = np.datetime64("1970-01-05T00:00", "ns")


def aoristic_hour_weights(start, end) -> np.ndarray:
    """(N, 168) weights of each record's window ``[start, end)`` over the hours of the week (bin
    ``weekday · 24 + hour``, weekday 0 = Monday): the share of the window's time that falls in each
    hour of the week, summing to 1 per record (Ratcliffe 2002's aoristic weights). With ``x`` in hours
    since a Monday 00:00, the time of ``[0, x)`` spent in bin ``k`` is
    ``F_k(x) = floor(x/168) + clip(x − 168·floor(x/168) − k, 0, 1)``, so bin ``k`` holds
    ``(F_k(end) − F_k(start)) / (end − start)``. ``end > start`` is the caller's to ensure."""
    a = (np.asarray(start, dtype="datetime64[ns]") - _MONDAY) / np.timedelta64(1, "h")
    b = (np.asarray(end, dtype="datetime64[ns]") - _MONDAY) / np.timedelta64(1, "h")
    k = np.arange(168, dtype=float)[None, :]

    def cover(x):
        weeks = np.floor(x / 168.0)
        return weeks[:, None] + np.clip((x - 168.0 * weeks)[:, None] - k, 0.0, 1.0)

    return (cover(b) - cover(a)) / (b - a)[:, None]


def _aoristic_hours(start, end, window, timed, cats, categories, units, unit_ids) -> list[pd.DataFrame]:
    """``hour_weekday_aoristic`` rows: records with a window spread over the hours of the week
    (:func:`aoristic_hour_weights`), records with a time and no window at their hour (weight 1)."""
    from scipy import sparse

    c_code = pd.Categorical(cats, categories=categories).codes.astype(np.int64)
    hours = np.where(timed & ~window, pd.DatetimeIndex(start).day_of_week * 24 + pd.DatetimeIndex(start).hour, -1)
    rows_w = np.flatnonzero(window)
    frames = []
    for level, ids in unit_ids.items():
        ids = np.asarray(ids, dtype=object)
        u_code = pd.Categorical(np.asarray(units[level], dtype=object), categories=ids).codes.astype(np.int64)
        n_u, n_c = len(ids), len(categories)
        total = np.zeros((n_u * n_c, 168))
        pts = np.flatnonzero((hours >= 0) & (u_code >= 0))
        np.add.at(total, (u_code[pts] * n_c + c_code[pts], hours[pts]), 1.0)
        for chunk in np.array_split(rows_w, max(1, int(np.ceil(rows_w.size / 20_000)))):  # ≤ 20,000 × 168 at once
            chunk = chunk[u_code[chunk] >= 0]
            if not chunk.size:
                continue
            onehot = sparse.csr_matrix((np.ones(chunk.size), (u_code[chunk] * n_c + c_code[chunk], np.arange(chunk.size))),
                                       shape=(n_u * n_c, chunk.size))
            total += onehot @ aoristic_hour_weights(start[chunk], end[chunk])
        cube = total.reshape(n_u, n_c, 7, 24).transpose(0, 2, 3, 1)  # unit, weekday, hour, category
        cube = np.concatenate([cube, cube.sum(axis=-1, keepdims=True)], axis=-1)
        full = {"unit_id": ids, "weekday": np.arange(7, dtype=np.int64), "hour": np.arange(24, dtype=np.int64),
                "category": np.asarray(categories, dtype=object)}
        frames.append(_long(level, "hour_weekday_aoristic", full, categories, cube, column="aoristic_count"))
    return frames


def time_patterns(occurred_at, precision, category, units: dict[str, np.ndarray], unit_ids: dict[str, np.ndarray],
                  months: list[str], occurred_end=None) -> tuple[pd.DataFrame, dict]:
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
    occurred_end : array of datetime64, optional
        Each incident's window end (exclusive; NaT = no window; intake's ``occurred_end``). When some
        record has a window, the pattern ``hour_weekday_aoristic`` is added, with its values in the
        column ``aoristic_count`` (``count`` blank): each windowed record spread over the hours of
        the week of its window, every record with a time and no window at its hour.
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
    end = None if occurred_end is None else np.asarray(occurred_end, dtype="datetime64[ns]")
    start = np.asarray(t.to_numpy(), dtype="datetime64[ns]")
    window = (np.zeros(len(t), bool) if end is None else (~np.isnat(end) & ~np.isnat(start) & (end > start)))
    columns = COLUMNS
    if window.any():
        frames += _aoristic_hours(start, end, window, timed, cats, categories, units, unit_ids)
        columns = COLUMNS + ["aoristic_count"]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    summary = {
        "records": int(len(t)),
        "hour_weekday": {"counted": int(timed.sum()), "left_out": int((~timed).sum()),
                         "why": ("the times are all 00:00: dates without a time of day" if dates_only else
                                 "known only to the month or year") if (~timed).any() else None},
        "month": {"counted": int(has_month.sum()), "left_out": int((~has_month).sum()),
                  "why": "known only to the year" if (~has_month).any() else None},
    }
    if window.any():
        summary["hour_weekday_aoristic"] = {"windows": int(window.sum()), "points": int((timed & ~window).sum()),
                                            "left_out": int((~window & ~timed).sum())}
    return table, summary


def _long(level: str, pattern: str, axes: dict, categories: list[str], n: np.ndarray, column: str = "count"
          ) -> pd.DataFrame:
    """Dense counts on (unit, *time axes, category+all) → long rows, unit-major; ``column = "aoristic_count"``
    puts the (fractional) values there and leaves ``count`` blank."""
    labels = [axes["unit_id"]] + [axes[k] for k in axes if k not in ("unit_id", "category")] \
        + [np.asarray(list(categories) + [ALL], dtype=object)]
    grids = np.meshgrid(*[np.arange(len(a)) for a in labels], indexing="ij")
    out = {"level": level, "unit_id": labels[0][grids[0].ravel()]}
    names = [k for k in axes if k not in ("unit_id", "category")]
    for i, name in enumerate(names, start=1):
        out[name] = labels[i][grids[i].ravel()]
    out["category"] = labels[-1][grids[-1].ravel()]
    out["pattern"] = pattern
    if column == "count":
        out["count"] = n.ravel().astype(np.int64)
    else:
        out["count"] = pd.array([pd.NA] * n.size, dtype="Int64")
        out[column] = n.ravel().astype(float)
    frame = pd.DataFrame(out)
    # one type per column in every pattern (CSV via Arrow): weekday/hour integers or blank, month text
    for col in ("weekday", "hour"):
        frame[col] = pd.array(frame[col], dtype="Int64") if col in frame else pd.array([pd.NA] * len(frame), dtype="Int64")
    frame["month"] = frame["month"].astype(str).astype(object) if "month" in frame else None
    return frame
