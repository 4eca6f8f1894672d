"""Period labels, written out by hand."""

import datetime as dt

import numpy as np
import pytest

from usm_geo.errors import UsmGeoError
from usm_geo.periods import Window, all_periods, labels, parse_window, period_bounds, window_labels

TIMES = np.array(["2019-01-01T00:00", "2019-03-31T23:59", "2019-04-01T00:00", "2020-12-31T23:59"], dtype="datetime64[ns]")


def test_labels_by_frequency():
    assert labels(TIMES, "year").tolist() == ["2019", "2019", "2019", "2020"]
    assert labels(TIMES, "quarter").tolist() == ["2019-Q1", "2019-Q1", "2019-Q2", "2020-Q4"]
    assert labels(TIMES, "month").tolist() == ["2019-01", "2019-03", "2019-04", "2020-12"]


def test_windows_include_both_end_dates():
    w = [parse_window("2019-01-01:2019-03-31"), parse_window("2019-04-01/2019-06-30")]
    assert window_labels(TIMES, w).tolist() == ["2019-01-01/2019-03-31", "2019-01-01/2019-03-31", "2019-04-01/2019-06-30", ""]
    with pytest.raises(UsmGeoError, match="overlap"):
        window_labels(TIMES, [parse_window("2019-01-01:2019-06-30"), parse_window("2019-06-30:2019-12-31")])
    with pytest.raises(UsmGeoError, match="ends before it starts"):
        parse_window("2019-12-31:2019-01-01")


def test_all_periods_and_bounds():
    assert all_periods(dt.date(2019, 11, 5), dt.date(2020, 2, 1), "month") == ["2019-11", "2019-12", "2020-01", "2020-02"]
    assert all_periods(dt.date(2019, 1, 1), dt.date(2020, 12, 31), "quarter")[-1] == "2020-Q4"
    assert all_periods(dt.date(2019, 1, 1), dt.date(2023, 12, 31), "year") == ["2019", "2020", "2021", "2022", "2023"]
    assert period_bounds("2019-Q2") == Window(dt.date(2019, 4, 1), dt.date(2019, 6, 30))
    assert period_bounds("2020-02") == Window(dt.date(2020, 2, 1), dt.date(2020, 2, 29))
    assert period_bounds("2021") == Window(dt.date(2021, 1, 1), dt.date(2021, 12, 31))
    with pytest.raises(UsmGeoError):
        period_bounds("spring")
