"""Aoristic counts: each record with a time window spread over the periods it may have happened in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usm_geo.measures import aoristic_weights
from robustness.helpers import INSIDE, assert_error, incidents_csv, run, study_file
from usm_geo.errors import StudyError


def ts(*values):
    return np.array([np.datetime64(v, "ns") if v else np.datetime64("NaT") for v in values], dtype="datetime64[ns]")


def test_weights_by_hand_over_months():
    """Months 2021-01 … 2021-03 (31, 28, 31 days).
    r0: 2021-01-31 12:00 → 2021-02-02 00:00 (36 h): 12 h in January, 24 h in February → 1/3, 2/3.
    r1: no window → 1 in its month (February).
    r2: 2021-01-10 → 2021-03-10 (59 days): 22 d Jan, 28 d Feb, 9 d Mar → 22/59, 28/59, 9/59.
    r3: 2021-03-30 → 2021-04-05, beyond the study end (31 March): clipped to its 2 days in March → 1.
    r4: an end equal to its start: a point → 1 in January.
    """
    start = ts("2021-01-31T12:00", "2021-02-14T08:00", "2021-01-10", "2021-03-30", "2021-01-05T10:00")
    end = ts("2021-02-02", "", "2021-03-10", "2021-04-05", "2021-01-05T10:00")
    rec, per, w = aoristic_weights(start, end, ["2021-01", "2021-02", "2021-03"])
    got = {(int(r), int(p)): float(x) for r, p, x in zip(rec, per, w)}
    want = {(0, 0): 1 / 3, (0, 1): 2 / 3, (1, 1): 1.0, (2, 0): 22 / 59, (2, 1): 28 / 59, (2, 2): 9 / 59,
            (3, 2): 1.0, (4, 0): 1.0}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-15), key
    np.testing.assert_allclose(np.bincount(rec, weights=w), 1.0, rtol=1e-15)  # each record sums to 1


def test_weights_over_years_and_a_leap_year():
    """2019-12-01 → 2020-01-31 (exclusive end 2020-02-01: a date_end of 31 January): 31 days in each year."""
    rec, per, w = aoristic_weights(ts("2019-12-01"), ts("2020-02-01"), ["2019", "2020"])
    assert per.tolist() == [0, 1] and w.tolist() == [0.5, 0.5]


def _study(tmp_path, rows, header="id,lon,lat,date,date_to,category", keys='date = "date"\ndate_end = "date_to"'):
    incidents_csv(tmp_path, *rows, header=header)
    return study_file(tmp_path, incidents=f'path = "incidents.csv"\n{keys}',
                      extra='[periods]\nfrequency = "month"\nstart = 2021-01-01\nend = 2021-03-31')


def test_date_end_through_the_pipeline(tmp_path):
    """date_end covers its whole day: 2021-01-31 … 2021-02-01 is 2 days, half in each month; an empty
    end is a point; an unreadable end or one before the start is a point, `changed` in the ledger."""
    from usm_geo.pipeline import run_measures, run_units

    (lon0, lat0), (lon1, lat1) = INSIDE[0], INSIDE[1]
    rows = [f"1,{lon0},{lat0},2021-01-31,2021-02-01,burglary",   # N1: 1/2 Jan, 1/2 Feb
            f"2,{lon0},{lat0},2021-02-10,,burglary",             # N1: 1 Feb
            f"3,{lon1},{lat1},2021-01-20,2021-03-09,theft",      # 12 d Jan, 28 d Feb, 9 d Mar of 49
            f"4,{lon1},{lat1},2021-02-03,not a date,theft",      # point, changed
            f"5,{lon1},{lat1},2021-02-03,2021-02-01,theft"]      # end before start: point, changed
    intake = run(_study(tmp_path, rows))
    ledger = intake.ledger.to_frame()
    assert set(ledger[ledger.status == "changed"].reason) == {"unparseable_window_end", "window_end_before_start"}
    note = ledger[ledger.reason == "aoristic"].detail.iloc[0]
    assert note.startswith("2 of 5 used records have a time window")
    located = run_units(intake)
    m = run_measures(intake, located)
    a = m[(m.measure == "aoristic_count") & (m.level == "neighbourhood")].set_index(["unit_id", "period", "category"])
    c = m[(m.measure == "count") & (m.level == "neighbourhood")].set_index(["unit_id", "period", "category"])
    by_hand = {("N1", "2021-01", "burglary"): 0.5, ("N1", "2021-02", "burglary"): 1.5, ("N1", "2021-03", "burglary"): 0.0,
               ("N2", "2021-01", "theft"): 12 / 49, ("N2", "2021-02", "theft"): 28 / 49 + 2, ("N2", "2021-03", "theft"): 9 / 49}
    for key, value in by_hand.items():
        assert a.loc[key, "value"] == pytest.approx(value, rel=1e-12), key
    assert a.loc[("N2", "2021-02", "theft"), "n"] == 3  # records with a share in the cell
    # count keeps each record at its start; over the study both total the 5 records
    assert c.loc[("N1", "2021-01", "burglary"), "value"] == 1 and c.loc[("N2", "2021-01", "theft"), "value"] == 1
    city = m[(m.level == "city") & (m.category == "all")]
    assert city[city.measure == "aoristic_count"].value.sum() == pytest.approx(5.0, rel=1e-12)
    assert city[city.measure == "count"].value.sum() == 5


def test_datetime_end_with_times(tmp_path):
    """A datetime window 2021-01-31 18:00 → 2021-02-01 06:00: 6 h in each month."""
    from usm_geo.pipeline import run_measures, run_units

    lon, lat = INSIDE[0]
    rows = [f"1,{lon},{lat},2021-01-31 18:00,2021-02-01 06:00,theft", f"2,{lon},{lat},2021-03-02 09:00,,theft"]
    intake = run(_study(tmp_path, rows, header="id,lon,lat,from,to,category", keys='datetime = "from"\ndatetime_end = "to"'))
    m = run_measures(intake, run_units(intake))
    a = m[(m.measure == "aoristic_count") & (m.level == "city") & (m.category == "all")].set_index("period")["value"]
    assert a.to_dict() == pytest.approx({"2021-01": 0.5, "2021-02": 0.5, "2021-03": 1.0}, rel=1e-12)


def test_window_keys_need_their_start(tmp_path):
    incidents_csv(tmp_path, "1,15.03,52.38,2021-01-01,theft", header="id,lon,lat,date,category")
    path = study_file(tmp_path, incidents='path = "incidents.csv"\ndatetime = "date"\ndate_end = "date"')
    assert_error(StudyError, path, "date_end", "needs date")


def test_public_profile_withholds_aoristic_counts():
    from usm_geo.disclosure import apply_profile

    rows = pd.DataFrame({"level": "city", "unit_id": "city", "period": "2021", "category": "all",
                         "measure": ["count", "aoristic_count"], "numerator": [12.0, 11.5], "denominator": np.nan,
                         "value": [12.0, 11.5], "lower": np.nan, "upper": np.nan, "n": [12, 13], "flags": ""})
    out, report = apply_profile(rows, None, profile="public", k=5)
    assert out.loc[0, "value"] == 12 and np.isnan(out.loc[1, "value"]) and pd.isna(out.loc[1, "n"])
    assert report["suppressed_rows"]["city"]["aoristic_count"]["internal_only"] == 1


def test_hour_of_week_weights_by_hand():
    """Bins weekday·24 + hour, Monday 0. 2021-01-01 is a Friday.
    r0: Friday 18:00 → Monday 08:00 = 62 h: 1/62 in each of Fri 18–23, Sat, Sun, Mon 0–7.
    r1: Tuesday 2021-01-05 10:30 → 12:00: 0.5 h of 1.5 in Tue 10, 1 h in Tue 11 → 1/3, 2/3.
    r2: 8 days from Wednesday 2021-01-06 00:00: every hour once (1/192), Wednesday's hours twice (2/192)."""
    from usm_geo.hotspots.time_patterns import aoristic_hour_weights

    w = aoristic_hour_weights(ts("2021-01-01T18:00", "2021-01-05T10:30", "2021-01-06"),
                              ts("2021-01-04T08:00", "2021-01-05T12:00", "2021-01-14"))
    want0 = np.zeros(168)
    want0[4 * 24 + 18:] = 1 / 62
    want0[:8] = 1 / 62
    np.testing.assert_allclose(w[0], want0, rtol=1e-12, atol=1e-15)
    want1 = np.zeros(168)
    want1[1 * 24 + 10], want1[1 * 24 + 11] = 1 / 3, 2 / 3
    np.testing.assert_allclose(w[1], want1, rtol=1e-12, atol=1e-15)
    want2 = np.full(168, 1 / 192)
    want2[2 * 24:3 * 24] = 2 / 192
    np.testing.assert_allclose(w[2], want2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)


def test_time_patterns_aoristic_hours_through_the_pipeline(tmp_path):
    """time_patterns: a record with a window is spread over its hours; a timed point sits at its hour."""
    from usm_geo.pipeline import run_time_patterns, run_units

    lon, lat = INSIDE[0]
    rows = [f"1,{lon},{lat},2021-01-05 10:30,2021-01-05 12:00,theft", f"2,{lon},{lat},2021-01-05 11:15,,theft"]
    intake = run(_study(tmp_path, rows, header="id,lon,lat,from,to,category", keys='datetime = "from"\ndatetime_end = "to"'))
    table, summary = run_time_patterns(intake, run_units(intake))
    a = table[(table.pattern == "hour_weekday_aoristic") & (table.level == "city") & (table.category == "all")]
    got = a[a.aoristic_count > 0].set_index(["weekday", "hour"])["aoristic_count"].to_dict()
    assert got == pytest.approx({(1, 10): 1 / 3, (1, 11): 2 / 3 + 1}, rel=1e-12)
    assert a["count"].isna().all() and len(a) == 168
    # the plain pattern still counts each record once at its start
    hw = table[(table.pattern == "hour_weekday") & (table.level == "city") & (table.category == "all")]
    assert hw.set_index(["weekday", "hour"])["count"][(1, 10)] == 1 and hw["count"].sum() == 2
    assert summary["hour_weekday_aoristic"] == {"windows": 1, "points": 1, "left_out": 0}
