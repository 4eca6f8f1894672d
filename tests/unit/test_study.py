"""study.toml parsing: defaults, resolution of paths, and one clear error per mistake."""

import datetime as dt

import pytest

from usm_geo.errors import StudyError
from usm_geo.study import load_study

MINIMAL = """
[study]
name = "Testville"
timezone = "Europe/Berlin"
working_crs = "EPSG:32633"
seed = 7

[inputs.incidents]
path = "data/inc.csv"
lon = "lon"
lat = "lat"

[periods]
frequency = "quarter"
start = 2020-01-01
end = "2020-12-31"
baseline = "2020-Q1"
"""


@pytest.fixture
def inc(tmp_path):
    (tmp_path / "data").mkdir()
    f = tmp_path / "data" / "inc.csv"
    f.write_text("lon,lat\n13.4,52.5\n")
    return f


def test_minimal_study_resolves_paths_and_fills_defaults(write_study, inc):
    study = load_study(write_study(MINIMAL))
    assert study.name == "Testville"
    assert study.incidents.path == inc.resolve()  # relative to the study file, not the cwd
    assert study.incidents.duplicates == "keep"
    assert study.incidents.dayfirst is None
    assert study.periods.frequency == "quarter"
    # TOML dates and ISO strings are both accepted
    assert study.periods.start == dt.date(2020, 1, 1) and study.periods.end == dt.date(2020, 12, 31)
    assert study.outputs.suppression_threshold == 5 and study.outputs.profile == "internal"
    assert study.units.h3_resolution == ()
    assert len(study.sha256) == 64


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (("lon = \"lon\"", "lon = \"lon\"\nlatt = \"lat\""), ["'inputs.incidents.latt' is not a known key", "did you mean 'lat'"]),
        (("seed = 7", "seed = \"seven\""), ["'study.seed' must be an integer", "not a string"]),
        (("data/inc.csv", "data/missing.csv"), ["'inputs.incidents.path' names a file that does not exist", "missing.csv"]),
        (("frequency = \"quarter\"", "frequency = \"week\""), ["'periods.frequency' must be one of"]),
        (("Europe/Berlin", "Mars/Olympus"), ["'study.timezone' is not an IANA time zone"]),
        (("EPSG:32633", "EPSG:999999"), ["'study.working_crs' is not a CRS pyproj knows"]),
        (("start = 2020-01-01", "start = \"2021-01-01\""), ["'periods.start' (2021-01-01) is after periods.end"]),
        (("lat = \"lat\"", ""), ["'inputs.incidents.lon/lat' must be given together"]),
        (("[periods]", "[outputs]\nfolder = \"x\"\n[periods]"), ["'outputs.folder' is not set in the study file", "--out"]),
        (("data/inc.csv", "postgresql://me@db:5432/city"), ["names a database", 'write source = "postgresql://', "table = "]),
        (("name = \"Testville\"", "name = \"Testville"), ["is not valid TOML"]),
    ],
)
def test_each_mistake_gives_one_clear_error(write_study, inc, edit, fragments):
    text = MINIMAL.replace(*edit)
    path = write_study(text)
    with pytest.raises(StudyError) as err:
        load_study(path)
    message = str(err.value)
    assert str(path) in message  # names the file
    for fragment in fragments:
        assert fragment in message
    assert "postgresql://me@" not in message  # never echo credentials-bearing URLs whole


def test_survey_needs_weights_and_questions(write_study, inc):
    base = MINIMAL + '\n[inputs.survey]\npath = "data/inc.csv"\n'
    with pytest.raises(StudyError, match="survey responses need design weights"):
        load_study(write_study(base))
    with pytest.raises(StudyError, match="a survey needs at least one question"):
        load_study(write_study(base + 'weight = "w"\n'))
    study = load_study(write_study(base + 'weight = "w"\n[inputs.survey.questions.safe]\ncolumn = "q"\nanswers = ["safe", "unsafe"]\n'))
    assert study.survey.questions[0].id == "safe" and study.survey.questions[0].answers == ("safe", "unsafe")


def test_boundary_levels_finest_first_and_reserved_names(write_study, inc, tmp_path):
    (tmp_path / "b.gpkg").write_bytes(b"")
    text = MINIMAL + '\n[[inputs.boundaries]]\nlevel = "city"\npath = "b.gpkg"\nid = "id"\n'
    with pytest.raises(StudyError, match="'city' is reserved"):
        load_study(write_study(text))
    text = MINIMAL + '\n[[inputs.boundaries]]\nlevel = "n"\npath = "b.gpkg"\nid = "id"\nparent = "d"\n'
    with pytest.raises(StudyError, match="'n' is the coarsest level"):
        load_study(write_study(text))


def test_missing_study_file_points_to_demo(tmp_path):
    with pytest.raises(StudyError, match="usm-geo demo"):
        load_study(tmp_path / "nope.toml")
