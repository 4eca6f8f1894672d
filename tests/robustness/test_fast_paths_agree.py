"""Messy files give the same intake with the fast paths and with the general ones.

``general`` switches every intake fast path off (dates read the general way, duplicates grouped
by the former algorithm, the text table read by the former decode-then-parse route); each file
is then read both ways and the used records and the whole ledger must be equal.
"""

from __future__ import annotations

import pandas as pd
import pytest

from usm_geo.intake import dates, files, records

from .helpers import incidents_csv, run, study_file, write_bytes


@pytest.fixture
def general(monkeypatch):
    def switch(on: bool):
        monkeypatch.setattr(dates, "FAST", not on)
        monkeypatch.setattr(records, "record_groups", records._record_groups_general if on else _fast_groups)
        monkeypatch.setattr(files, "FAST", not on)
    return switch


_fast_groups = records.record_groups


def assert_same_intake(study, general) -> None:
    general(False)
    fast = run(study)
    general(True)
    slow = run(study)
    general(False)
    pd.testing.assert_frame_equal(fast.incidents, slow.incidents)
    pd.testing.assert_frame_equal(fast.ledger.to_frame(), slow.ledger.to_frame())
    assert fast.ledger.totals() == slow.ledger.totals()


ROWS = [
    "1,15.03,52.38,2021-05-01 10:00,theft",
    "2,15.03,52.38,2021-05-01 10:00,theft",  # a duplicate but for its id
    "2,15.03,52.38,2021-05-01 10:00,theft",  # an exact duplicate of row 2
    "3,15.10,52.41,2021-02-30,theft",  # no such day
    "4,15.07,52.40,,",  # date and category missing
    "5,15.07,52.40,NA,NA",
    "5,15.07,52.40,NA,NA",  # duplicate with missing values
    "6,15.12,52.43,2021-05-02T14:30,assault",
    "7,15.02,52.36,2021-05-02 14:30:59,assault",
    '8,15.02,52.36,"2021-05-03 08:00","burglary, with ""quotes""\nand a line break"',
    "9,52.38,15.03,2021-05-04,theft",  # lon/lat swapped
    "10,15.07,52.40, 2021-05-05 ,theft",
    "11,15.07,52.40,0001-01-01,theft",
]


@pytest.mark.parametrize("extra_dates", [
    [],
    ["25/12/2021", "13/01/2022"],  # ISO mixed with day-first values
    ["2021-05-06T10:00:00+02:00", "2021-05-06T10:00:00Z"],  # offsets: the plain values become UTC too
    ["yesterday"],
], ids=["iso", "day-first", "offsets", "words"])
def test_messy_csv_same_with_and_without_fast_paths(tmp_path, general, extra_dates):
    rows = ROWS + [f"{20 + i},15.07,52.40,{d},theft" for i, d in enumerate(extra_dates)]
    incidents_csv(tmp_path, *rows)
    assert_same_intake(study_file(tmp_path), general)


def test_month_only_and_dayfirst_same_with_and_without_fast_paths(tmp_path, general):
    incidents_csv(tmp_path, "1,15.07,52.40,2022-01,theft", "2,15.07,52.40,2022-02,theft", "3,15.07,52.40,2022-02,theft",
                  header="id,lon,lat,month,category")
    assert_same_intake(study_file(tmp_path), general)
    incidents_csv(tmp_path, "1,15.07,52.40,03/04/2021,theft", "2,15.07,52.40,2021-04-03,theft")
    assert_same_intake(study_file(tmp_path, incidents='path = "incidents.csv"\ndayfirst = true'), general)


@pytest.mark.parametrize("encoding_case", ["bom", "latin1", "mixed", "utf16", "crlf"])
def test_encodings_same_with_and_without_fast_paths(tmp_path, general, encoding_case):
    header = "id,lon,lat,date,category"
    lines = [header, "1,15.03,52.38,2021-05-01,Ärger", "2,15.03,52.38,2021-05-01,Ärger", "3,15.10,52.41,2021-05-02,café"]
    text = "\n".join(lines) + "\n"
    if encoding_case == "bom":
        data = b"\xef\xbb\xbf" + text.encode("utf-8")
    elif encoding_case == "latin1":
        data = text.encode("latin-1")
    elif encoding_case == "mixed":  # one system appended cp1252 lines to a UTF-8 file
        data = "\n".join(lines[:2]).encode("utf-8") + b"\n" + "\n".join(lines[2:]).encode("cp1252") + b"\n"
    elif encoding_case == "utf16":
        data = text.encode("utf-16")
    else:
        data = text.replace("\n", "\r\n").encode("utf-8")
    write_bytes(tmp_path / "incidents.csv", data)
    assert_same_intake(study_file(tmp_path), general)


def test_ragged_rows_and_survey_free_text_same_with_and_without_fast_paths(tmp_path, general):
    incidents_csv(tmp_path, *ROWS[:3], "12,15.03,52.38,2021-05-01", "13,15.03,52.38,2021-05-01,theft,extra",
                  '14,15.03,52.38,2021-05-07,"a, b\nc"')
    assert_same_intake(study_file(tmp_path), general)
