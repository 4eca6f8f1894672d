"""Bad survey responses located by unit: weights, answers, unit ids."""

from __future__ import annotations

import pandas as pd
import pytest

from .helpers import (
    entries,
    ledger_rows,
    neighbourhoods,
    run,
    study_file,
    write_layer,
    write_text,
)

SURVEY = """
[inputs.survey]
path = "survey.csv"
unit = "nbhd"
unit_level = "neighbourhood"
weight = "w"
[inputs.survey.questions.safe_after_dark]
column = "q1"
answers = ["yes", "no"]
"""


def _survey(tmp_path, *rows: str):
    write_text(tmp_path / "survey.csv", "\n".join(["resp,nbhd,w,q1,date", *rows]) + "\n")
    return study_file(tmp_path, incidents=None, extra=SURVEY)


GOOD = ("1,N1,1.5,yes,2021-05-01", "2,N2,0.5,no,2021-05-02")


@pytest.mark.parametrize(
    "weight, reason, detail",
    [
        ("-1", "invalid_weight", "w is negative"),
        ("0", "zero_weight", "w is 0: the response represents nobody"),
        ("0.0", "zero_weight", "w is 0: the response represents nobody"),
        ("nan", "invalid_weight", "w = nan"),
        ("", "invalid_weight", "w = "),
        ("inf", "invalid_weight", "w = inf"),
        ("heavy", "invalid_weight", "w = heavy"),
    ],
    ids=["negative", "zero", "zero-decimal", "nan", "empty", "inf", "text"],
)
def test_unusable_design_weight(tmp_path, weight, reason, detail):
    intake = run(_survey(tmp_path, *GOOD, f"3,N1,{weight},yes,2021-05-03"))
    assert entries(intake, "survey") == [(3, "dropped", reason)]
    assert ledger_rows(intake, reason, "survey")["detail"].tolist() == [detail]
    assert intake.ledger.totals()["survey"] == {"read": 3, "used": 2, "dropped": 1}
    assert intake.survey["weight"].tolist() == [1.5, 0.5]


def test_unknown_answer_code_becomes_missing(tmp_path):
    intake = run(_survey(tmp_path, *GOOD, "3,N1,1,maybe,2021-05-03", "4,N2,1,YES,2021-05-04", "5,N2,1,,2021-05-05"))
    changed = ledger_rows(intake, "unknown_answer", "survey")
    assert changed[["row", "status", "detail"]].values.tolist() == [
        [3, "changed", "q1 = 'maybe' is not a listed answer; treated as missing"]]
    assert entries(intake, "survey") == [(3, "changed", "unknown_answer")]
    answers = intake.survey.set_index("row")["safe_after_dark"]
    assert answers[[1, 2, 4]].tolist() == ["yes", "no", "yes"]  # case-insensitive, written as listed
    assert pd.isna(answers[3]) and pd.isna(answers[5])
    assert intake.ledger.totals()["survey"] == {"read": 5, "used": 5, "dropped": 0}


def test_unknown_and_missing_unit_ids(tmp_path):
    intake = run(_survey(tmp_path, *GOOD, "3,N9,1,yes,2021-05-03", "4,,1,yes,2021-05-04", "5, N2 ,1,no,2021-05-05"))
    assert entries(intake, "survey") == [(3, "dropped", "unknown_unit"), (4, "dropped", "missing_unit")]
    assert ledger_rows(intake, "unknown_unit", "survey")["detail"].tolist() == ["nbhd = N9 is not a neighbourhood id"]
    assert intake.survey["unit_id"].tolist() == ["N1", "N2", "N2"]  # spaces stripped


def test_numeric_unit_ids_match_whatever_their_spelling(tmp_path):
    # Chicago's community area 35 is "35.0" in one file and 35 in the other
    write_layer(neighbourhoods(nbhd_id=[35, 36]), tmp_path / "nbhd.gpkg")
    intake = run(_survey(tmp_path, "1,35.0,1,yes,2021-05-01", "2,36,1,no,2021-05-02", "3,35.5,1,no,2021-05-03"))
    assert entries(intake, "survey") == [(3, "dropped", "unknown_unit")]
    assert intake.survey["unit_id"].tolist() == ["35", "36"]
