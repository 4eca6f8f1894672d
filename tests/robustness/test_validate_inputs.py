"""`usm-geo validate` reads every input the run reads (population, periods, intervention included)
and shows the ledger and file notes; a failing run or validation keeps its ledger and lists its reasons."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

from .helpers import good_rows, incidents_csv, study_file, write_text

PERIODS = "[periods]\nstart = 2021-01-01\nend = 2021-12-31\n"


def _validate(study, *extra):
    return CliRunner().invoke(main, ["validate", str(study), "--quiet", *extra])


def test_validate_prints_the_ledger_summary_and_file_notes(tmp_path):
    rows = good_rows(3, category="Straße") + ["4,15.03,52.38,,theft"]  # one row without a date
    incidents_csv(tmp_path, *rows, encoding="cp1252")
    study = study_file(tmp_path, extra=PERIODS)
    result = _validate(study)
    assert result.exit_code == 0, result.output
    # 4 read: 3 used, 1 dropped for its missing date
    assert "incidents: read 4, used 3, dropped 1" in result.output
    assert "incidents: missing_date (dropped)" in result.output
    assert "file notes:" in result.output
    assert "incidents: encoding:" in result.output
    assert "neighbourhood: 2 units" in result.output
    assert "population: none given" in result.output
    assert result.output.rstrip().endswith("valid")


def test_validate_reads_the_population_table(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    write_text(tmp_path / "pop.csv", "code,residents\nN1,1200\nN2,3400\nN7,99\n")
    study = study_file(tmp_path, extra=PERIODS + '[inputs.population]\npath = "pop.csv"\nlevel = "neighbourhood"\n'
                                                'id = "code"\ncolumn = "residents"\n')
    result = _validate(study)
    assert result.exit_code == 0, result.output
    assert "population: read 3, used 2, dropped 1" in result.output  # N7 is no unit
    assert "population: unknown_unit (dropped)" in result.output
    assert f"population at neighbourhood: 2 of 2 units, total {1200 + 3400:,}" in result.output


def test_a_broken_population_file_fails_validate(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    write_text(tmp_path / "pop.csv", "code,residents\nN1,1200\nN2,3400\n")
    study = study_file(tmp_path, extra=PERIODS + '[inputs.population]\npath = "pop.csv"\nlevel = "neighbourhood"\n'
                                                'id = "code"\ncolumn = "pop_total"\n')
    result = _validate(study)
    assert result.exit_code == 2
    assert "usm-geo: error:" in result.output and "pop.csv" in result.output and "pop_total" in result.output
    assert "Traceback" not in result.output


def test_an_intervention_unit_that_does_not_exist_fails_validate(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path, extra=PERIODS + '[intervention]\nname = "lights"\nunits = ["N1", "N9"]\n'
                                                'level = "neighbourhood"\nstart = 2021-05-02\n')
    result = _validate(study)
    assert result.exit_code == 2, result.output
    assert "[intervention]" in result.output and "N9" in result.output and "intervention.units" in result.output


def test_an_intervention_that_exists_is_listed_as_checked(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path, extra=PERIODS + '[intervention]\nname = "lights"\nunits = ["N1"]\n'
                                                'level = "neighbourhood"\nstart = 2021-05-02\n')
    result = _validate(study)
    assert result.exit_code == 0, result.output
    assert "intervention 'lights': 1 unit(s) of neighbourhood, starts 2021-05-02" in result.output


@pytest.mark.parametrize("extra, messages", [
    ('[intervention]\nname = "lights"\nunits = ["N1"]\nlevel = "neighbourhood"\nstart = 2023-01-01\n',
     ["intervention.start 2023-01-01 is not inside the study period (2021-01-01 … 2021-12-31)"]),
    ('baseline = "2015"\ncurrent = "2021"\n',
     ["periods.baseline = '2015' lies outside the study period (2021-01-01 … 2021-12-31, yearly: 2021 … 2021)",
      "[periods] baseline"]),
    ('current = "2021-Q2"\n', ["periods.current = '2021-Q2' is not a year period of the study"]),
], ids=["intervention_start_outside", "baseline_outside", "current_wrong_frequency"])
def test_periods_and_intervention_outside_the_study_fail_validate(tmp_path, extra, messages):
    incidents_csv(tmp_path, *good_rows(3))
    result = _validate(study_file(tmp_path, extra=PERIODS + extra))
    assert result.exit_code == 2
    for message in messages:
        assert message in result.output


def test_a_failed_run_keeps_its_ledger_and_lists_the_reasons(tmp_path):
    incidents_csv(tmp_path, *good_rows(3), "4,13.40,52.52,2021-05-04,theft")  # 3 in 2021, 1 outside the area
    study = study_file(tmp_path, extra="[periods]\nstart = 2030-01-01\nend = 2030-12-31\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 2
    assert "no usable records: all 4 rows were dropped" in result.output
    assert "above" not in result.output  # nothing was printed above the error
    assert "ledger of the failed attempt (reason: rows):" in result.output
    assert "incidents: outside_study_period (dropped): 3" in result.output
    assert "incidents: outside_study_area (dropped): 1" in result.output
    failed = tmp_path / "out.failed-ledger.csv"
    assert f"ledger written to {failed}" in result.output
    assert not out.exists()  # the run's folder is not swapped in
    ledger = pd.read_csv(failed)
    dropped = ledger[ledger.status == "dropped"]
    assert dropped.groupby("reason").size().to_dict() == {"outside_study_area": 1, "outside_study_period": 3}
    assert sorted(dropped.row) == [1, 2, 3, 4]

    # once the study is fixed the run succeeds and the stale ledger of the failure goes
    study = study_file(tmp_path, extra=PERIODS)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert not failed.exists() and (out / "ledger.csv").is_file()


def test_validate_writes_the_ledger_of_a_failed_check(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path, extra="[periods]\nstart = 2030-01-01\nend = 2030-12-31\n")
    path = tmp_path / "ledger.csv"
    result = _validate(study, "--ledger", str(path))
    assert result.exit_code == 2
    assert "incidents: outside_study_period (dropped): 3" in result.output
    assert (pd.read_csv(path).reason == "outside_study_period").sum() == 3
