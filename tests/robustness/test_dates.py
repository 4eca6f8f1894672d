"""Bad dates: ambiguous, future, too old, outside the study period, mixed, unparseable, missing."""

from __future__ import annotations

import pandas as pd
import pytest

from usm_geo.errors import DateError, InputFileError

from .helpers import (
    NOW,
    assert_error,
    entries,
    incidents_csv,
    ledger_rows,
    run,
    study_file,
)

PERIODS = '[periods]\nstart = "2019-01-01"\nend = "2022-12-31"'


def _with_dates(tmp_path, *dates: str, header: str = "id,lon,lat,date,category"):
    rows = [f"{i},15.07,52.40,{d},theft" for i, d in enumerate(dates, 1)]
    return incidents_csv(tmp_path, *rows, header=header)


def test_ambiguous_day_month_asks_for_dayfirst(tmp_path):
    _with_dates(tmp_path, "03/04/2021", "03/04/2021", "03/04/2021")
    assert_error(DateError, study_file(tmp_path), "incidents.csv: dates in column 'date' such as '03/04/2021' could be "
                 "day/month or month/day", "dayfirst = true", 'date_format = "%d/%m/%Y"')


@pytest.mark.parametrize("setting, expected", [("dayfirst = true", "2021-04-03"), ("dayfirst = false", "2021-03-04"),
                                               ('date_format = "%d/%m/%Y"', "2021-04-03")])
def test_ambiguous_day_month_with_a_setting(tmp_path, setting, expected):
    _with_dates(tmp_path, "03/04/2021", "03/04/2021")
    intake = run(study_file(tmp_path, incidents=f'path = "incidents.csv"\n{setting}'))
    assert intake.incidents["occurred_at"].tolist() == [pd.Timestamp(expected)] * 2
    assert entries(intake) == []


def test_future_dates_relative_to_now(tmp_path):
    assert NOW == pd.Timestamp("2024-06-30 12:00")
    _with_dates(tmp_path, "2024-06-30 11:59", "2024-06-30 12:01", "2025-01-01", "2021-05-01")
    intake = run(study_file(tmp_path))
    assert entries(intake) == [(2, "dropped", "future_date"), (3, "dropped", "future_date")]
    assert intake.incidents["row"].tolist() == [1, 4]


def test_dates_outside_the_study_period(tmp_path):
    _with_dates(tmp_path, "1900-01-01", "2018-12-31 23:59", "2019-01-01", "2022-12-31 23:59", "2023-01-01")
    intake = run(study_file(tmp_path, extra=PERIODS))
    out = ledger_rows(intake, "outside_study_period")
    assert out[["row", "status", "detail"]].values.tolist() == [
        [1, "dropped", "before the study start 2019-01-01"],
        [2, "dropped", "before the study start 2019-01-01"],
        [5, "dropped", "after the study end 2022-12-31"],
    ]
    assert intake.incidents["row"].tolist() == [3, 4]


@pytest.mark.parametrize("date", ["1900-01-01", "1899-12-30", "1900-06-15 10:00"])
def test_placeholder_dates_without_a_study_period(tmp_path, date):
    # without [periods], 1900-01-01 (and Excel's day 0) are missing dates in disguise
    _with_dates(tmp_path, "2021-05-01", date, "1901-01-01")
    intake = run(study_file(tmp_path))
    assert entries(intake) == [(2, "dropped", "implausible_date")]


def test_mixed_iso_and_day_first_formats(tmp_path):
    _with_dates(tmp_path, "2021-05-01", "2021-05-02 14:30", "25/12/2021", "13/01/2022")
    intake = run(study_file(tmp_path))
    assert intake.incidents["occurred_at"].tolist() == [
        pd.Timestamp("2021-05-01"), pd.Timestamp("2021-05-02 14:30"), pd.Timestamp("2021-12-25"), pd.Timestamp("2022-01-13")]
    note = ledger_rows(intake, "date_formats")
    assert note[["row", "status", "detail"]].values.tolist() == [
        [0, "note", "dates read with several formats: ISO8601 (2), %d/%m/%Y (2)"]]


@pytest.mark.parametrize(
    "value, reason, detail",
    [
        ("yesterday", "unparseable_date", "date = yesterday"),
        ("2021-02-30", "unparseable_date", "date = 2021-02-30"),
        # outside what a timestamp holds (1677-2262): placeholders, read as no date
        ("0001-01-01", "unparseable_date", "date = 0001-01-01"),
        ("9999-12-31", "unparseable_date", "date = 9999-12-31"),
        ("", "missing_date", "column 'date' is empty"),
        ("NULL", "missing_date", "column 'date' is empty"),
    ],
    ids=["words", "30-february", "year-1", "year-9999", "empty", "null"],
)
def test_unparseable_or_missing_date(tmp_path, value, reason, detail):
    _with_dates(tmp_path, "2021-05-01", value, "2021-05-03")
    intake = run(study_file(tmp_path))
    assert entries(intake) == [(2, "dropped", reason)]
    assert ledger_rows(intake, reason)["detail"].tolist() == [detail]


def test_date_format_that_reads_nothing_leaves_no_usable_records(tmp_path):
    _with_dates(tmp_path, "2021-05-01", "2021-05-02")
    study = study_file(tmp_path, incidents='path = "incidents.csv"\ndate_format = "%d.%m.%Y"')
    assert_error(InputFileError, study, "incidents.csv: no usable records: all 2 rows were dropped (unparseable_date: 2)")


def test_no_date_column(tmp_path):
    incidents_csv(tmp_path, "1,15.03,52.38,theft", header="id,lon,lat,category")
    assert_error(InputFileError, study_file(tmp_path), "incidents.csv: no date column found", 'datetime = "..."')


def test_declared_date_column_missing_suggests_the_close_match(tmp_path):
    _with_dates(tmp_path, "2021-05-01", header="id,lon,lat,occurred_at,category")
    study = study_file(tmp_path, incidents='path = "incidents.csv"\ndatetime = "ocurred_at"')
    assert_error(InputFileError, study, "incidents.csv: the study names column 'ocurred_at' (incidents.datetime)",
                 "did you mean 'occurred_at'?")


def test_separate_date_and_time_columns(tmp_path):
    incidents_csv(tmp_path, "1,15.03,52.38,01/05/2021,14:30,theft", "2,15.03,52.38,02/05/2021,,theft",
                  "3,15.03,52.38,13/05/2021,25:99,theft", "4,15.03,52.38,14/05/2021,23:59:59,theft",
                  header="id,lon,lat,day,hour,category")
    intake = run(study_file(tmp_path, incidents='path = "incidents.csv"\ndate = "day"\ntime = "hour"\ndayfirst = true'))
    assert entries(intake) == [(0, "note", "date_formats"), (3, "dropped", "unparseable_date")]
    assert ledger_rows(intake, "unparseable_date")["detail"].tolist() == ["day + hour = 13/05/2021 25:99"]
    assert ledger_rows(intake, "date_formats")["detail"].tolist() == [
        "dates read with several formats: %d/%m/%Y %H:%M:%S (1), %d/%m/%Y %H:%M (1), %d/%m/%Y (1)"]
    assert intake.incidents["occurred_at"].tolist() == [
        pd.Timestamp("2021-05-01 14:30"), pd.Timestamp("2021-05-02"), pd.Timestamp("2021-05-14 23:59:59")]
    assert set(intake.incidents["date_precision"]) == {"day"}


@pytest.mark.parametrize("column", ["month", "date"])
def test_month_only_dates(tmp_path, column):
    _with_dates(tmp_path, "2022-01", "2022-02", "2022-12", header=f"id,lon,lat,{column},category")
    intake = run(study_file(tmp_path))
    assert entries(intake) == []
    assert intake.incidents["occurred_at"].tolist() == [pd.Timestamp("2022-01-01"), pd.Timestamp("2022-02-01"),
                                                        pd.Timestamp("2022-12-01")]
    assert set(intake.incidents["date_precision"]) == {"month"}
