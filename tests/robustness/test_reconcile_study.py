"""Police and health records in one study (issue 21 item 2): which study files are accepted, and the
``[reconcile]`` keys refused with a message naming the key and the fix. Each source keeps its own
ledger source; the run counts the primary records only."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.errors import InputFileError, StudyError
from usm_geo.study import load_study

from .helpers import INSIDE, OUTSIDE, assert_message, incidents_csv, run, study_file

BOTH = '''
[[inputs.incidents]]
path = "police.csv"
category = "category"
{police_extra}

[[inputs.incidents]]
path = "health.csv"
records = "health"
category_value = "assault"
{health_extra}
'''


def _files(tmp_path, *, health_rows=None):
    incidents_csv(tmp_path, f"1,{INSIDE[0][0]},{INSIDE[0][1]},2021-01-03,assault",
                  f"2,{INSIDE[1][0]},{INSIDE[1][1]},2021-01-05,assault", name="police.csv")
    rows = health_rows or [f"h1,{INSIDE[0][0]},{INSIDE[0][1]},2021-01-03,", f"h2,{OUTSIDE[0]},{OUTSIDE[1]},2021-01-09,",
                           f"h3,{INSIDE[2][0]},{INSIDE[2][1]},2021-02-01,"]
    incidents_csv(tmp_path, *rows, header="id,lon,lat,date,note", name="health.csv")


def _study(tmp_path, reconcile: str = "", police_extra: str = "", health_extra: str = ""):
    return study_file(tmp_path, incidents=None,
                      extra=BOTH.format(police_extra=police_extra, health_extra=health_extra) + reconcile)


def test_mixed_records_are_accepted_with_the_first_files_records_as_primary(tmp_path):
    _files(tmp_path)
    path = _study(tmp_path)
    study = load_study(path)
    assert study.reconcile is not None and study.reconcile.primary == "police" and study.reconcile.link == ()
    assert study.records == "police"
    assert [s.name for s in study.primary_inputs()] == ["incidents/police.csv"]
    assert [s.name for s in study.reconcile_inputs()] == ["incidents/health.csv"]
    intake = run(path)  # read == used + dropped for both files, each under its own name
    totals = intake.ledger.totals()
    assert totals["incidents/police.csv"] == {"read": 2, "used": 2, "dropped": 0}
    assert totals["incidents/health.csv"] == {"read": 3, "used": 2, "dropped": 1}  # h2 is outside the study area
    assert len(intake.incidents) == 2 and len(intake.reconcile_incidents) == 2


def test_explicit_primary_and_link(tmp_path):
    _files(tmp_path)
    study = load_study(_study(tmp_path, '\n[reconcile]\nprimary = "health"\nlink = ["unit", "date"]\nalpha = 0.1\n'))
    assert (study.reconcile.primary, study.reconcile.link, study.reconcile.alpha) == ("health", ("date", "unit"), 0.1)
    assert study.records == "health" and [s.name for s in study.primary_inputs()] == ["incidents/health.csv"]


def test_one_kind_of_records_has_no_reconciliation(tmp_path):
    _files(tmp_path)
    study = load_study(study_file(tmp_path, incidents=None, extra=BOTH.format(police_extra="", health_extra="")
                                  .replace('records = "health"', "")))
    assert study.reconcile is None and len(study.primary_inputs()) == 2 and study.reconcile_inputs() == ()


@pytest.mark.parametrize("table, key, fragments", [
    ('[reconcile]\nlnk = ["date", "unit"]', "'reconcile.lnk' is not a known key", ["did you mean 'link'?"]),
    ('[reconcile]\nprimary = "hospital"', "'reconcile.primary' must be one of 'police', 'health'", ['primary = "police"']),
    ('[reconcile]\nlink = ["date"]', "'reconcile.link' must be", ['link = ["date", "unit"]', 'link = ["id"]']),
    ('[reconcile]\nlink = "date,unit"', "'reconcile.link' must be a list", ['e.g. link = ["..."]']),
    ('[reconcile]\nlink = ["id"]', "'reconcile.link' = [\"id\"], but inputs.incidents[2] (incidents/health.csv) names no id",
     ['add id = "COLUMN" to inputs.incidents[2]']),
    ('[reconcile]\nalpha = 1.5', "'reconcile.alpha' must be between 0 and 1", ["alpha = 0.05"]),
])
def test_bad_reconcile_keys_are_refused_naming_the_key_and_the_fix(tmp_path, table, key, fragments):
    _files(tmp_path)
    with pytest.raises(StudyError) as info:
        load_study(_study(tmp_path, "\n" + table + "\n", police_extra='id = "id"'))
    assert_message(info.value.message, key, *fragments)


def test_reconcile_with_one_kind_of_records_is_refused(tmp_path):
    _files(tmp_path)
    with pytest.raises(StudyError) as info:
        load_study(study_file(tmp_path, extra='[reconcile]\nlink = ["date", "unit"]',
                              incidents='path = "police.csv"\ncategory = "category"'))
    assert_message(info.value.message, "'reconcile' is set, but every incident file holds police records",
                   'records = "health"', "or remove [reconcile]")


def test_the_cli_prints_the_error_without_traceback_and_exits_2(tmp_path):
    _files(tmp_path)
    path = _study(tmp_path, '\n[reconcile]\nlnk = ["date", "unit"]\n')
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'reconcile.lnk' is not a known key" in result.output


def test_every_primary_record_dropped_is_refused_even_with_health_records(tmp_path):
    _files(tmp_path)
    incidents_csv(tmp_path, f"1,{OUTSIDE[0]},{OUTSIDE[1]},2021-01-03,assault", name="police.csv")
    with pytest.raises(InputFileError) as info:
        run(_study(tmp_path))
    assert_message(info.value.message, "no usable police records: every row of incidents/police.csv was dropped",
                   '[reconcile] primary = "police"')
