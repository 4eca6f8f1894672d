"""time_patterns: counts by hour × weekday, month and month of year, checked against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.hotspots.time_patterns import time_patterns


def _example():
    t = pd.to_datetime(["2021-03-01 08:15", "2021-03-01 08:50", "2021-03-07 23:59", "2021-04-01 00:00",
                        "2021-04-15 13:00", "2021-05-01 00:00"])
    prec = np.array(["day", "day", "day", "month", "day", "day"], dtype=object)
    cat = np.array(["theft", "theft", "assault", "theft", "assault", "theft"], dtype=object)
    area = np.array(["A", "B", "A", "A", None, "B"], dtype=object)
    return t, prec, cat, area


def test_hand_counts():
    t, prec, cat, area = _example()
    table, summary = time_patterns(t.to_numpy(), prec, cat, {"area": area, "city": np.full(6, "city", object)},
                                   {"area": np.array(["A", "B", "C"], object), "city": np.array(["city"], object)},
                                   ["2021-03", "2021-04", "2021-05"])
    hw = table[(table.pattern == "hour_weekday") & (table.level == "city") & (table.category == "all")]
    assert len(hw) == 168 and hw["count"].sum() == 5  # the month-precision record has no hour
    # 2021-03-01 is a Monday (weekday 0): two records at 08h; 2021-03-07 a Sunday at 23h
    got = hw[hw["count"] > 0].set_index(["weekday", "hour"])["count"].to_dict()
    assert got == {(0, 8): 2, (6, 23): 1, (3, 13): 1, (5, 0): 1}
    m = table[(table.pattern == "month") & (table.level == "area") & (table.category == "theft")]
    assert m.set_index(["unit_id", "month"])["count"].to_dict() == {
        ("A", "2021-03"): 1, ("A", "2021-04"): 1, ("A", "2021-05"): 0, ("B", "2021-03"): 1, ("B", "2021-04"): 0,
        ("B", "2021-05"): 1, ("C", "2021-03"): 0, ("C", "2021-04"): 0, ("C", "2021-05"): 0}
    moy = table[(table.pattern == "month_of_year") & (table.level == "city") & (table.category == "all")]
    assert len(moy) == 12 and moy.set_index("month")["count"][["3", "4", "5"]].tolist() == [3, 2, 1]
    # the record in no area counts at the city only
    assert table[(table.level == "area") & (table.pattern == "month") & (table.category == "all")]["count"].sum() == 5
    assert summary["hour_weekday"] == {"counted": 5, "left_out": 1, "why": "known only to the month or year"}
    assert summary["month"] == {"counted": 6, "left_out": 0, "why": None}


def test_dates_without_times_have_no_hours():
    t = pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-03"])
    table, summary = time_patterns(t.to_numpy(), np.full(3, "day", object), np.full(3, "x", object),
                                   {"city": np.full(3, "city", object)}, {"city": np.array(["city"], object)},
                                   ["2021-03"])
    assert table[table.pattern == "hour_weekday"]["count"].sum() == 0
    assert summary["hour_weekday"]["left_out"] == 3 and "00:00" in summary["hour_weekday"]["why"]
    assert table[(table.pattern == "month") & (table.category == "all")]["count"].tolist() == [3]


def test_random_records_match_a_pandas_groupby():
    rng = np.random.default_rng(7)
    n = 5000
    t = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 730 * 24 * 60, n), unit="min")
    cat = rng.choice(np.array(["a", "b", "c"], object), n)
    unit = rng.choice(np.array(["u1", "u2", "u3", "u4", None], object), n)
    prec = rng.choice(np.array(["day", "day", "day", "month"], object), n)
    months = list(pd.period_range("2020-01", "2021-12", freq="M").strftime("%Y-%m"))
    table, _ = time_patterns(t.to_numpy(), prec, cat, {"u": unit}, {"u": np.array(["u1", "u2", "u3", "u4"], object)}, months)
    df = pd.DataFrame({"t": t, "cat": cat, "unit": unit, "prec": prec}).dropna(subset=["unit"])
    timed = df[df.prec == "day"]
    ref = timed.groupby([timed.unit, timed.t.dt.day_of_week, timed.t.dt.hour, timed.cat]).size()
    got = table[(table.pattern == "hour_weekday") & (table.category != "all") & (table["count"] > 0)]
    assert got.set_index(["unit_id", "weekday", "hour", "category"])["count"].sort_index().to_dict() == ref.sort_index().to_dict()
    ref_m = df.groupby([df.unit, df.t.dt.strftime("%Y-%m")]).size()
    got_m = table[(table.pattern == "month") & (table.category == "all") & (table["count"] > 0)]
    assert got_m.set_index(["unit_id", "month"])["count"].sort_index().to_dict() == ref_m.sort_index().to_dict()
    assert table[(table.pattern == "month_of_year") & (table.category == "all")]["count"].sum() == len(df)
