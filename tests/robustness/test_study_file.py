"""A bad study file: unknown keys, wrong types, missing files, invalid TOML, refused settings."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.errors import StudyError

from .helpers import STUDY_TOP, assert_error, good_rows, incidents_csv, study_file


def _study(tmp_path, incidents='path = "incidents.csv"', **kwargs):
    incidents_csv(tmp_path, *good_rows(3))
    return study_file(tmp_path, incidents=incidents, **kwargs)


@pytest.mark.parametrize(
    "where, key, suggestion",
    [
        ("incidents", "latitude", "did you mean 'lat'?"),
        ("incidents", "dayfrist", "did you mean 'dayfirst'?"),
        ("top", "timezon", "did you mean 'timezone'?"),
        ("extra", "period", "did you mean 'periods'?"),
    ],
)
def test_unknown_key_is_named_with_the_close_match(tmp_path, where, key, suggestion):
    if where == "incidents":
        study = _study(tmp_path, incidents=f'path = "incidents.csv"\n{key} = "x"')
        full = f"inputs.incidents.{key}"
    elif where == "top":
        study = _study(tmp_path, top=f'{STUDY_TOP}\n{key} = "UTC"')
        full = f"study.{key}"
    else:
        study = _study(tmp_path, extra=f'[{key}]\nstart = "2019-01-01"')
        full = key
    assert_error(StudyError, study, f"study.toml: '{full}' is not a known key", suggestion)


@pytest.mark.parametrize(
    "body, top, message",
    [
        ('path = "incidents.csv"\ndayfirst = "yes"', STUDY_TOP,
         "'inputs.incidents.dayfirst' must be a boolean, not a string ('yes')"),
        ('path = "incidents.csv"', STUDY_TOP + '\nseed = "42"', "'study.seed' must be an integer, not a string ('42')"),
        # a list of paths is valid (several incident files, docs/study.md): a number is not
        ('path = 42', STUDY_TOP, "'inputs.incidents.path' must be a string, not an integer"),
        ('path = "incidents.csv"\nduplicates = "remove"', STUDY_TOP,
         "'inputs.incidents.duplicates' must be one of 'keep', 'drop', not 'remove'\n  fix: e.g. duplicates = \"keep\""),
    ],
    ids=["bool", "int", "list", "choice"],
)
def test_wrong_type(tmp_path, body, top, message):
    study = _study(tmp_path, incidents=body, top=top)
    assert_error(StudyError, study, f"study.toml: {message}")


def test_missing_input_file(tmp_path):
    study = _study(tmp_path, incidents='path = "data/incidents_2021.csv"')
    assert_error(StudyError, study, "study.toml: 'inputs.incidents.path' names a file that does not exist",
                 "data/incidents_2021.csv", f"relative paths start from {tmp_path}")


def test_missing_study_file(tmp_path):
    assert_error(StudyError, tmp_path / "stduy.toml", "stduy.toml: the study file does not exist", "usm-geo demo")


def test_invalid_toml(tmp_path):
    study = _study(tmp_path, incidents='path = "incidents.csv\nlat = "lat"')
    assert_error(StudyError, study, "study.toml: is not valid TOML", "(at line 5, column 22)", "check quotes")


def test_not_utf8(tmp_path):
    study = _study(tmp_path, top='[study]\nname = "Köln"')
    study.write_bytes(study.read_text().encode("latin-1"))
    assert_error(StudyError, study, "study.toml: the study file is not UTF-8 text", "save it as UTF-8")


@pytest.mark.parametrize("key", ["folder", "path"])
def test_output_folder_in_the_study_is_refused(tmp_path, key):
    study = _study(tmp_path, extra=f'[outputs]\n{key} = "results"')
    assert_error(StudyError, study, f"study.toml: 'outputs.{key}' is not set in the study file", "--out DIR")


def test_database_path_is_refused_without_showing_the_password(tmp_path):
    study = _study(tmp_path, incidents='path = "postgresql://analyst:s3cret@db.city.example/safety?table=incidents"')
    message = assert_error(StudyError, study, "study.toml: 'inputs.incidents.path' names a database",
                           "not a file", 'write source = "postgresql://USER@HOST:PORT/DB" with table = ')
    assert "s3cret" not in message
    result = CliRunner().invoke(main, ["validate", str(study)])
    assert "s3cret" not in result.output


@pytest.mark.parametrize("zone", ["Europe/Londres", "CEST", "UTC+2", "../../etc/passwd"])
def test_unknown_timezone(tmp_path, zone):
    study = _study(tmp_path, top=f'{STUDY_TOP}\ntimezone = "{zone}"')
    assert_error(StudyError, study, f"study.toml: 'study.timezone' is not an IANA time zone: '{zone}'", "Europe/London")
