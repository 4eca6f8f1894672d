"""Dates given in parts (YEAR, MONTH, DAY, HOUR, MINUTE integer columns, as the Vancouver police
publish them): combined, checked part by part, detected, and refused with the keys to write."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usm_geo.errors import DateError, InputFileError, StudyError
from usm_geo.study import load_study

from .helpers import assert_error, assert_message, entries, incidents_csv, ledger_rows, run, study_file

HEADER = "id,lon,lat,YEAR,MONTH,DAY,HOUR,MINUTE,TYPE"
PARTS = 'year = "YEAR"\nmonth = "MONTH"\nday = "DAY"\nhour = "HOUR"\nminute = "MINUTE"'
ROWS = [  # id, year, month, day, hour, minute
    ("1", "2022", "1", "5", "13", "7"),
    ("2", "2022", "13", "1", "0", "0"),     # month 13
    ("3", "2022", "2", "31", "0", "0"),     # 31 February
    ("4", "2022", "", "3", "1", "2"),       # blank month
    ("5", "2022", "x", "3", "1", "2"),      # not a number
    ("6", "2022", "3", "3", "24", "0"),     # hour 24
    ("7", "2022", "3", "3", "2", "60"),     # minute 60
    ("8", "2022", "3.5", "3", "2", "1"),    # not a whole number
    ("9", " 2021", "12.0", "31", "23", "59"),  # spaces and "12.0" are still the month 12
    ("10", "2024", "2", "29", "0", "0"),    # a leap day
]


def _csv(tmp_path, rows=ROWS, header=HEADER):
    return incidents_csv(tmp_path, *(f"{i},15.07,52.40,{y},{m},{d},{h},{mi},theft" for i, y, m, d, h, mi in rows),
                         header=header)


def _expected(rows):
    """The dates pandas builds from the parts, NaT where a part is invalid (independent of usm_geo)."""
    raw = pd.DataFrame(rows, columns=["id", "year", "month", "day", "hour", "minute"]).drop(columns="id")
    num = raw.apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))
    whole = num.notna().all(axis=1) & (num == num.round()).all(axis=1)
    whole &= num["hour"].between(0, 23) & num["minute"].between(0, 59) & num["month"].between(1, 12)
    return pd.to_datetime(num.where(whole, np.nan).fillna({"month": 1, "day": 1}), errors="coerce").where(whole)


def test_date_parts_combine_and_invalid_parts_go_to_the_ledger(tmp_path):
    _csv(tmp_path)
    intake = run(study_file(tmp_path, incidents=f'path = "incidents.csv"\n{PARTS}'))
    want = _expected(ROWS)
    assert want.notna().sum() == 3  # rows 1, 9 and 10
    used = intake.incidents
    assert used["row"].tolist() == [i + 1 for i in np.flatnonzero(want.notna())]
    assert used["occurred_at"].tolist() == want.dropna().tolist()
    assert used["occurred_at"].tolist()[1] == pd.Timestamp("2021-12-31 23:59")
    assert set(used["date_precision"]) == {"day"}
    bad = ledger_rows(intake, "invalid_date_parts")
    assert bad["row"].tolist() == [i + 1 for i in np.flatnonzero(want.isna())]
    assert set(bad["status"]) == {"dropped"}
    assert bad["detail"].tolist()[0] == "YEAR=2022, MONTH=13, DAY=1, HOUR=0, MINUTE=0"
    assert bad["detail"].tolist()[2] == "YEAR=2022, MONTH=, DAY=3, HOUR=1, MINUTE=2"


def test_year_and_month_give_month_precision(tmp_path):
    rows = [("1", "2021", "5", "", "", ""), ("2", "2021", "12", "", "", ""), ("3", "2021", "0", "", "", "")]
    _csv(tmp_path, rows)
    intake = run(study_file(tmp_path, incidents='path = "incidents.csv"\nyear = "YEAR"\nmonth = "MONTH"',
                            extra='[periods]\nfrequency = "month"'))
    assert intake.incidents["occurred_at"].tolist() == [pd.Timestamp("2021-05-01"), pd.Timestamp("2021-12-01")]
    assert set(intake.incidents["date_precision"]) == {"month"}
    assert entries(intake) == [(3, "dropped", "invalid_date_parts")]


def test_a_year_alone_is_counted_in_its_year_and_refused_for_a_finer_frequency(tmp_path):
    _csv(tmp_path, [("1", "2021", "", "", "", ""), ("2", "2022", "", "", "", "")])
    intake = run(study_file(tmp_path, incidents='path = "incidents.csv"\nyear = "YEAR"'))
    assert intake.incidents["occurred_at"].tolist() == [pd.Timestamp("2021-01-01"), pd.Timestamp("2022-01-01")]
    assert set(intake.incidents["date_precision"]) == {"year"}
    assert_error(DateError, study_file(tmp_path, incidents='path = "incidents.csv"\nyear = "YEAR"',
                                       extra='[periods]\nfrequency = "quarter"'),
                 "known only to the year", "counts per quarter", 'frequency = "year"', 'month = "..."')


def test_date_parts_are_detected_when_no_date_is_named(tmp_path):
    """An integer MONTH is never the date column: the parts are combined, and a note names them."""
    _csv(tmp_path, ROWS[:1] + ROWS[8:])
    intake = run(study_file(tmp_path))
    assert intake.incidents["occurred_at"].tolist() == _expected(ROWS[:1] + ROWS[8:]).tolist()
    note = ledger_rows(intake, "date_parts")
    assert note["status"].tolist() == ["note"]
    assert 'year = "YEAR", month = "MONTH", day = "DAY", hour = "HOUR", minute = "MINUTE"' in note["detail"][0]


def test_a_month_column_of_integers_without_a_year_is_refused_with_the_candidates(tmp_path):
    incidents_csv(tmp_path, "1,15.07,52.40,5,3,theft", "2,15.07,52.40,6,4,theft", header="id,lon,lat,MONTH,DAY,TYPE")
    assert_error(InputFileError, study_file(tmp_path), "no date column found", 'month = "MONTH"', 'day = "DAY"',
                 "a year column is needed too", "candidate columns: MONTH, DAY")


def test_a_declared_datetime_of_small_integers_names_the_part_keys(tmp_path):
    _csv(tmp_path, ROWS[:1])
    assert_error(InputFileError, study_file(tmp_path, incidents='path = "incidents.csv"\ndatetime = "MONTH"'),
                 "column 'MONTH' (incidents.datetime) holds small whole numbers", 'year = "YEAR", month = "MONTH"')


def test_yyyymmdd_integers_are_still_a_date_column(tmp_path):
    incidents_csv(tmp_path, "1,15.07,52.40,20210503,theft", header="id,lon,lat,date,TYPE")
    intake = run(study_file(tmp_path))
    assert intake.incidents["occurred_at"].tolist() == [pd.Timestamp("2021-05-03")]


@pytest.mark.parametrize("keys, bad, fragment", [
    ('year = "YEAR"\nmonth = "MONTH"\nhour = "HOUR"', "inputs.incidents.hour", "needs day too"),
    ('year = "YEAR"\nmonth = "MONTH"\nday = "DAY"\nminute = "MINUTE"', "inputs.incidents.minute", "needs hour too"),
    ('month = "MONTH"', "inputs.incidents.month", "needs year too"),
    ('year = "YEAR"\ndatetime = "d"', "inputs.incidents.datetime", "cannot be combined with date parts"),
    ('year = "YEAR"\ndate_precision = "month"', "inputs.incidents.date_precision", "does not apply to date parts"),
])
def test_inconsistent_date_part_keys_are_study_errors(tmp_path, keys, bad, fragment):
    _csv(tmp_path, ROWS[:1])
    with pytest.raises(StudyError) as info:
        load_study(study_file(tmp_path, incidents=f'path = "incidents.csv"\n{keys}'))
    assert_message(info.value.message, f"'{bad}'", fragment)


def test_survey_interview_dates_in_parts(tmp_path):
    from .helpers import write_text

    write_text(tmp_path / "survey.csv", "resp,nbhd,w,q1,iv_year,iv_month\n1,N1,1.5,yes,2021,5\n2,N2,0.5,no,2021,13\n")
    survey = '''
    [inputs.survey]
    path = "survey.csv"
    unit = "nbhd"
    unit_level = "neighbourhood"
    weight = "w"
    year = "iv_year"
    month = "iv_month"
    [inputs.survey.questions.safe_after_dark]
    column = "q1"
    answers = ["yes", "no"]
    '''
    intake = run(study_file(tmp_path, incidents=None, extra=survey))
    assert intake.survey["occurred_at"].tolist() == [pd.Timestamp("2021-05-01")]
    assert set(intake.survey["date_precision"]) == {"month"}
    assert entries(intake, "survey") == [(2, "dropped", "invalid_date_parts")]
