"""Messages a new user meets (#22 item 4): a wrong layer name, --out under a file, a data file given
as the study, a lon/lat typo or swap, and --quiet. Each is tried through the CLI (exit 2, no
traceback, the suggested name or path in the text) and through the helper behind it."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from robustness.helpers import (INSIDE, assert_error, districts, good_rows, incidents_csv, neighbourhoods, study_file,
                                write_layer)
from usm_geo.cli import check_out, main
from usm_geo.errors import CRSError, InputFileError, OutputError, StudyError, closest
from usm_geo.intake.columns import setting
from usm_geo.intake.files import layer_named
from usm_geo.study import load_study


def _cli(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def _cli_error(*args, fragments=()):
    result = _cli(*args)
    out = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}:\n{out}\n{result.exception!r}"
    assert "Traceback" not in out and "usm-geo: error:" in out and "fix:" in out, out
    for f in fragments:
        assert f in out, f"{f!r} not in:\n{out}"
    return out


def _two_layers(folder):
    path = folder / "city.gpkg"
    write_layer(neighbourhoods(), path, layer="neighbourhoods")
    write_layer(districts(), path, layer="districts", mode="a")
    assert [str(n) for n in pyogrio.list_layers(path)[:, 0]] == ["neighbourhoods", "districts"]
    return path


# --------------------------------------------------------------------------- helpers


def test_closest_is_case_insensitive_and_keeps_the_spelling():
    assert closest("longitud", ["Date", "Longitude", "Latitude"]) == "Longitude"
    assert closest("LONGITUD", ["Longitude", "Latitude"]) == "Longitude"  # difflib alone misses it (case)
    assert closest("wrong", ["neighbourhoods", "districts"]) is None


def test_setting_says_option_or_study_key():
    assert setting("points.lon", "lon", "Longitude") == "use --lon Longitude"
    assert setting("points.datetime", "datetime", "when") == "use --time when"
    assert setting("incidents.lon", "lon", "Longitude") == 'set lon = "Longitude" in the study'


def test_layer_named(tmp_path):
    assert layer_named(tmp_path / "a.gpkg", "Districts", ["neighbourhoods", "districts"]) == "districts"
    with pytest.raises(InputFileError) as info:
        layer_named(tmp_path / "a.gpkg", "neighbourhood", ["neighbourhoods", "districts"])
    assert info.value.message == (f"layer 'neighbourhood' is not in {tmp_path / 'a.gpkg'}; its layers are: neighbourhoods, districts\n"
                                  "  fix: did you mean 'neighbourhoods'? set layer = \"neighbourhoods\" in the study, "
                                  "or --layer neighbourhoods on the command line")


def test_check_out(tmp_path):
    f = tmp_path / "incidents.csv"
    f.write_text("x\n")
    with pytest.raises(OutputError, match="cannot write under .*incidents.csv': it is a file"):
        check_out(f / "sub", "folder")
    with pytest.raises(OutputError, match="is a file; --out names a folder"):
        check_out(f, "folder", "run")
    with pytest.raises(OutputError, match="is a folder; --ledger names a file"):
        check_out(tmp_path, "file", "ledger.csv", option="--ledger")
    assert check_out(tmp_path / "new" / "deeper", "folder") == tmp_path / "new" / "deeper"
    assert check_out(f, "file") == f  # an existing file is replaced atomically by the writer


# --------------------------------------------------------------------------- 1. wrong layer name


def test_wrong_layer_in_the_study_lists_the_layers(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    path = _two_layers(tmp_path)
    study = study_file(tmp_path, boundaries=False, extra=f"""
        [[inputs.boundaries]]
        level = "neighbourhood"
        path = "{path.name}"
        layer = "neighbourhood"
        id = "nbhd_id"
    """)
    assert_error(InputFileError, study, f"layer 'neighbourhood' is not in {path}; its layers are: neighbourhoods, districts",
                 "did you mean 'neighbourhoods'?", 'layer = "neighbourhoods"')


def test_wrong_layer_on_hotspots(tmp_path):
    path = _two_layers(tmp_path)
    _cli_error("hotspots", path, "--layer", "wrong", "--value", "nbhd_id", "--out", tmp_path / "h.gpkg",
               fragments=[f"layer 'wrong' is not in {path}; its layers are: neighbourhoods, districts", "--layer neighbourhoods"])
    assert not (tmp_path / "h.gpkg").exists()


def test_aggregate_needs_and_takes_a_layer(tmp_path):
    path = _two_layers(tmp_path)
    pts = incidents_csv(tmp_path, *good_rows(5))
    _cli_error("aggregate", pts, "--units", f"{path}:nbhd_id", "--out", tmp_path / "c.csv",
               fragments=["the file holds 2 layers", "--layer NAME: neighbourhoods, districts"])
    _cli_error("aggregate", pts, "--units", f"{path}:nbhd_id", "--layer", "neighbourhod", "--out", tmp_path / "c.csv",
               fragments=["did you mean 'neighbourhoods'?"])
    result = _cli("aggregate", pts, "--units", f"{path}:nbhd_id", "--layer", "neighbourhoods", "--out", tmp_path / "c.csv")
    assert result.exit_code == 0, result.output
    # reference: geopandas point-in-polygon of the same five points
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(*zip(*INSIDE)), crs=4326).to_crs(neighbourhoods().crs)
    expected = gpd.sjoin(points, neighbourhoods(), predicate="within")["nbhd_id"].value_counts()
    got = pd.read_csv(tmp_path / "c.csv").set_index("unit_id")["count"]
    assert got.to_dict() == {k: int(expected.get(k, 0)) for k in ["N1", "N2"]}


# --------------------------------------------------------------------------- 2. --out under a file

FOLDER_COMMANDS = {
    "run": lambda s, o: ["run", s, "--out", o],
    "demo": lambda s, o: ["demo", "--out", o],
    "export": lambda s, o: ["export", s.parent, "--out", o],
    "compare": lambda s, o: ["compare", s.parent, "--out", o],
    "model": lambda s, o: ["model", s, "--out", o],
    "reconcile": lambda s, o: ["reconcile", s, s, "--out", o],
}
FILE_COMMANDS = {
    "aggregate": lambda s, o: ["aggregate", s.parent / "incidents.csv", "--units", "h3:8", "--out", o],
    "hotspots": lambda s, o: ["hotspots", s.parent / "nbhd.gpkg", "--value", "x", "--out", o],
    "impact": lambda s, o: ["impact", s.parent / "incidents.csv", "--treated", s.parent / "nbhd.gpkg", "--before",
                            "2020-01-01:2020-12-31", "--after", "2021-01-01:2021-12-31", "--out", o],
    "map": lambda s, o: ["map", s.parent, "--out", o],
    "report": lambda s, o: ["report", s.parent, "--out", o],
    "init": lambda s, o: ["init", s.parent / "incidents.csv", "--out", o],
    "validate": lambda s, o: ["validate", s, "--ledger", o],
}


@pytest.mark.parametrize("command", sorted({**FOLDER_COMMANDS, **FILE_COMMANDS}))
def test_out_under_a_file_is_refused_before_any_work(tmp_path, command):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = {**FOLDER_COMMANDS, **FILE_COMMANDS}[command](study, tmp_path / "incidents.csv" / "sub" / "x.html")
    option = "--ledger" if command == "validate" else "--out"
    _cli_error(*args, fragments=[f"{option} {tmp_path / 'incidents.csv' / 'sub' / 'x.html'}: cannot write under "
                                 f"'{tmp_path / 'incidents.csv'}': it is a file, not a folder",
                                 f"fix: name a path outside it, e.g. {option} {tmp_path / 'x.html'}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


@pytest.mark.parametrize("command", sorted(FOLDER_COMMANDS))
def test_out_naming_a_file_where_a_folder_goes(tmp_path, command):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path)
    target = tmp_path / "incidents.csv"
    data = target.read_bytes()
    _cli_error(*FOLDER_COMMANDS[command](study, target),
               fragments=[f"--out {target}: is a file; --out names a folder here", f"fix: name a folder, e.g. --out {tmp_path / 'incidents_'}"])
    assert target.read_bytes() == data


@pytest.mark.parametrize("command", sorted(set(FILE_COMMANDS) - {"validate"}))
def test_out_naming_a_folder_where_a_file_goes(tmp_path, command):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path)
    (tmp_path / "outdir").mkdir()
    _cli_error(*FILE_COMMANDS[command](study, tmp_path / "outdir"),
               fragments=[f"--out {tmp_path / 'outdir'}: is a folder; --out names a file here", "fix: name the file, e.g. --out"])
    assert list((tmp_path / "outdir").iterdir()) == []


# --------------------------------------------------------------------------- 3. study path that is not a study


@pytest.mark.parametrize("name, kind", [("nbhd.gpkg", "a GeoPackage"), ("incidents.csv", "a CSV table")])
def test_data_file_given_as_the_study(tmp_path, monkeypatch, name, kind):
    incidents_csv(tmp_path, *good_rows(3))
    study_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StudyError):
        load_study(name)
    _cli_error("validate", name, fragments=[f"{tmp_path / name} is {kind}, not a study.toml",
                                            f"fix: run `usm-geo init {name} …`"])


def test_folder_given_as_the_study(tmp_path):
    incidents_csv(tmp_path, *good_rows(3))
    study = study_file(tmp_path)
    _cli_error("validate", tmp_path, fragments=[f"{tmp_path} is a folder, not a study file", f"name the study file in it: {study}"])
    empty = tmp_path / "empty"
    empty.mkdir()
    _cli_error("run", empty, "--out", tmp_path / "o", fragments=[f"{empty / 'study.toml'} not found", "usm-geo init"])
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- 4. lon/lat typo and swap


def test_lon_typo_in_the_study(tmp_path):
    incidents_csv(tmp_path, *good_rows(3), header="id,Longitude,Latitude,date,category")
    study = study_file(tmp_path, incidents='path = "incidents.csv"\nlon = "longitud"\nlat = "Latitude"')
    assert_error(InputFileError, study, "the study names column 'longitud' (incidents.lon) but the file has no such column "
                 "(row 1 header)", "did you mean 'Longitude'? set lon = \"Longitude\" in the study")


def test_lon_typo_on_the_command_line(tmp_path):
    pts = incidents_csv(tmp_path, *good_rows(3), header="id,Longitude,Latitude,date,category")
    _cli_error("aggregate", pts, "--units", "h3:8", "--lon", "LONGITUD", "--lat", "Latitude", "--out", tmp_path / "c.csv",
               fragments=["--lon names column 'LONGITUD' but the file has no such column (row 1 header)",
                          "did you mean 'Longitude'? use --lon Longitude"])


def test_swapped_columns_on_the_command_line(tmp_path):
    pts = incidents_csv(tmp_path, *good_rows(3), header="id,lat,lon,date,category")  # the header is wrong
    study_file(tmp_path)  # writes nbhd.gpkg
    _cli_error("aggregate", pts, "--units", f"{tmp_path / 'nbhd.gpkg'}:nbhd_id", "--lon", "lon", "--lat", "lat",
               "--out", tmp_path / "c.csv",
               fragments=["3 of 3 points are in the study area only with longitude and latitude swapped",
                          "fix: the columns are the other way round: use --lon lat --lat lon"])
    # Chicago swapped: no study area, but latitude -87.6 is beyond every UTM zone
    chi = incidents_csv(tmp_path, "1,41.85,-87.65,2021-05-01,theft", "2,41.88,-87.62,2021-05-02,theft", name="chi.csv",
                        header="id,longitude,latitude,date,category")
    _cli_error("aggregate", chi, "--units", "h3:8", "--lon", "longitude", "--lat", "latitude", "--out", tmp_path / "c.csv",
               fragments=["longitude and latitude look swapped", "latitude -87.635",
                          "use --lon latitude --lat longitude"])
    assert not (tmp_path / "c.csv").exists()


def test_swapped_columns_error_class(tmp_path):
    incidents_csv(tmp_path, "1,41.85,-87.65,2021-05-01,theft", "2,41.88,-87.62,2021-05-02,theft",
                  header="id,longitude,latitude,date,category")
    assert_error(CRSError, study_file(tmp_path, boundaries=False, top=""), "longitude and latitude look swapped",
                 'name them lon = "latitude" and lat = "longitude" in the study')


# --------------------------------------------------------------------------- 5. --quiet keeps the ledger summary


def test_quiet_keeps_the_ledger_summary(tmp_path):
    incidents_csv(tmp_path, *good_rows(3), "4,,,2021-05-04,theft")
    study = study_file(tmp_path)
    loud = CliRunner().invoke(main, ["validate", str(study)])
    quiet = CliRunner().invoke(main, ["validate", "--quiet", str(study)])
    assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
    summary = "incidents: read 4, used 3, dropped 1"
    assert summary in quiet.stdout and "missing_coordinates" in quiet.stdout
    assert quiet.stdout == loud.stdout  # only the stage lines on stderr differ
    assert "· " in loud.stderr and "· " not in quiet.stderr
    agg = CliRunner().invoke(main, ["aggregate", str(tmp_path / "incidents.csv"), "--units", "h3:8", "--quiet",
                                    "--out", str(tmp_path / "c.csv")])
    assert agg.exit_code == 0, agg.output
    assert "points: read 4, used 3, dropped 1" in agg.stdout and "missing_coordinates" in agg.stdout
