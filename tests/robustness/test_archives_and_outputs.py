"""Zipped shapefiles (good, unsafe, ambiguous) and output folders that must not be replaced."""

from __future__ import annotations

import os
import zipfile

import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.errors import InputFileError, OutputError
from usm_geo.pipeline import run as run_study
from usm_geo.study import load_study

from .helpers import (
    NOW,
    assert_error,
    entries,
    good_rows,
    incidents_csv,
    neighbourhoods,
    run,
    study_file,
    write_layer,
)


def _zipped_study(tmp_path, layers=("nbhd",), extra_entry: str | None = None, layer: str | None = None):
    """Boundaries from x.zip holding each layer as a shapefile under folder/ (plus an optional odd entry)."""
    parts = tmp_path / "parts"
    parts.mkdir()
    for name in layers:
        write_layer(neighbourhoods(), parts / f"{name}.shp")
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        for f in sorted(parts.iterdir()):
            zf.write(f, f"folder/{f.name}")
        if extra_entry is not None:
            zf.writestr(extra_entry, "not a shapefile")
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path)
    study.write_text(study.read_text().replace('path = "nbhd.gpkg"', 'path = "x.zip"' + (f'\nlayer = "{layer}"' if layer else "")))
    (tmp_path / "nbhd.gpkg").unlink()
    return study


def test_zipped_shapefile_is_read(tmp_path):
    intake = run(_zipped_study(tmp_path, extra_entry="__MACOSX/folder/._nbhd.shp"))
    level = intake.levels["neighbourhood"]
    assert level["unit_id"].tolist() == ["N1", "N2"]
    assert level["name"].tolist() == ["Nord-West", "Süd-Ost"]
    assert level.crs.to_epsg() == 32633
    assert intake.ledger.totals()["incidents"] == {"read": 3, "used": 3, "dropped": 0}
    assert entries(intake, "boundaries.neighbourhood") == []


@pytest.mark.parametrize("entry", ["../../evil.txt", "folder/../../evil.txt", "/etc/evil.txt", "C:\\evil.txt",
                                   "..\\evil.txt"])
def test_zip_slip_entry_refuses_the_archive(tmp_path, entry):
    study = _zipped_study(tmp_path, extra_entry=entry)
    assert_error(InputFileError, study, f"x.zip: the archive holds an unsafe entry '{entry}'", "relative paths only")


def test_archive_with_two_shapefiles_needs_a_layer(tmp_path):
    assert_error(InputFileError, _zipped_study(tmp_path, layers=("north", "south")), "x.zip: the archive holds 2 .shp files",
                 'name one with layer = "...": north, south')


def test_archive_with_two_shapefiles_and_a_layer(tmp_path):
    intake = run(_zipped_study(tmp_path, layers=("north", "south"), layer="south"))
    assert intake.levels["neighbourhood"]["unit_id"].tolist() == ["N1", "N2"]


def test_archive_layer_that_is_not_there(tmp_path):
    assert_error(InputFileError, _zipped_study(tmp_path, layers=("north", "south"), layer="east"),
                 "x.zip: the archive has no layer 'east'", "use one of: north, south")


def test_zip_that_is_not_a_zip(tmp_path):
    study = _zipped_study(tmp_path)
    (tmp_path / "x.zip").write_bytes(b"PK but not really")
    assert_error(InputFileError, study, "x.zip: not a valid zip archive", "re-create the archive")


# --------------------------------------------------------------------------- output folders


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli_run(study, out, *fragments):
    result = CliRunner().invoke(main, ["run", "--quiet", str(study), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output
    assert "fix:" in result.output


def test_non_empty_folder_without_run_json_is_left_untouched(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path)
    out = tmp_path / "Documents"
    (out / "thesis").mkdir(parents=True)
    (out / "thesis" / "chapter1.docx").write_bytes(b"years of work")
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    with pytest.raises(OutputError) as info:
        run_study(load_study(study), out, now=NOW)
    assert str(out) in info.value.message
    assert "non-empty folder that usm_geo did not write" in info.value.message
    assert "\n  fix: choose a new or empty folder" in info.value.message
    _cli_run(study, out, "non-empty folder that usm_geo did not write")
    assert _snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["Documents", "incidents.csv", "nbhd.gpkg", "study.toml"]  # no temp folders


@pytest.mark.parametrize("marker", [False, True], ids=["plain-folder", "previous-run-folder"])
def test_output_folder_holding_the_inputs_is_refused(tmp_path, marker):
    data = tmp_path / "data"
    data.mkdir()
    incidents_csv(data, *good_rows(3))
    if marker:
        (data / "run.json").write_text("{}")  # even a folder usm_geo wrote once
    study = study_file(tmp_path, incidents='path = "data/incidents.csv"')
    before = _snapshot(tmp_path)
    for out in (data, tmp_path):
        with pytest.raises(OutputError) as info:
            run_study(load_study(study), out, now=NOW)
        assert info.value.message.startswith(f"{out}: the output folder holds the study's inputs")
        assert "\n  fix: choose another --out folder" in info.value.message
        _cli_run(study, out, "holds the study's inputs")
    assert _snapshot(tmp_path) == before


def test_output_folder_holding_the_inputs_is_refused_through_dot_dot(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "elsewhere").mkdir()
    incidents_csv(data, *good_rows(3))
    (data / "run.json").write_text("{}")
    study = study_file(tmp_path, incidents='path = "data/incidents.csv"')
    try:
        with pytest.raises(OutputError):
            run_study(load_study(study), tmp_path / "elsewhere" / ".." / "data", now=NOW)
    finally:
        assert (data / "incidents.csv").exists(), "the input file was deleted"
