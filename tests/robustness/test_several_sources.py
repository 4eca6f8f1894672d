"""Several incident files: a list ``path`` (same columns) and repeated ``[[inputs.incidents]]``
(different columns, each with its own keys and ``category_value``), one table of used incidents
with a ``source`` column, each file under its own name in the ledger."""

from __future__ import annotations

import pandas as pd
import pytest

from usm_geo.errors import InputFileError, StudyError, UsmGeoError
from usm_geo.pipeline import run_units
from usm_geo.study import load_study

from .helpers import INSIDE, OUTSIDE, assert_message, entries, incidents_csv, run, study_file

ONE = 'path = "incidents.csv"'


def _files(tmp_path):
    """jan.csv and feb.csv (same columns, lon/lat); burglary.csv (other column names, no category)."""
    incidents_csv(tmp_path, f"1,{INSIDE[0][0]},{INSIDE[0][1]},2021-01-03,theft",
                  f"2,{OUTSIDE[0]},{OUTSIDE[1]},2021-01-04,theft",  # outside the study area
                  f"3,{INSIDE[1][0]},{INSIDE[1][1]},2021-01-05,robbery", name="jan.csv")
    incidents_csv(tmp_path, f"1,{INSIDE[2][0]},{INSIDE[2][1]},2021-02-03,theft",
                  f"2,{INSIDE[2][0]},{INSIDE[2][1]},2021-02-03,theft",  # not a duplicate: its id differs
                  f"2,{INSIDE[2][0]},{INSIDE[2][1]},2021-02-03,theft", name="feb.csv")  # an exact duplicate of row 2
    # rows as a burglary extract: other names, day-first dates, no category column
    incidents_csv(tmp_path, f"B1;{INSIDE[3][1]};{INSIDE[3][0]};03/01/2021", f"B2;{INSIDE[4][1]};{INSIDE[4][0]};",
                  header="ref;Latitude;Longitude;Reported", name="burglary.csv")


SEVERAL = '''
[[inputs.incidents]]
path = ["jan.csv", "feb.csv"]
category = "category"

[[inputs.incidents]]
path = "burglary.csv"
lon = "Longitude"
lat = "Latitude"
datetime = "Reported"
dayfirst = true
category_value = "burglary"
'''


def _several(tmp_path):
    _files(tmp_path)
    return study_file(tmp_path, incidents=None, extra=SEVERAL)


def test_a_list_path_and_repeated_tables_make_one_table_with_each_file_in_the_ledger(tmp_path):
    study = load_study(_several(tmp_path))
    assert [s.name for s in study.incident_inputs()] == ["incidents/jan.csv", "incidents/feb.csv", "incidents/burglary.csv"]
    assert study.incidents is study.incident_inputs()[0]
    intake = run(_several(tmp_path))
    inc = intake.incidents
    # an independent account of what each file holds (pandas on the raw files)
    raw = {n: pd.read_csv(tmp_path / n, sep=";" if n == "burglary.csv" else ",") for n in ("jan.csv", "feb.csv", "burglary.csv")}
    assert {k: v for k, v in intake.ledger.totals().items() if k.startswith("incidents")} == {
        "incidents/burglary.csv": {"read": len(raw["burglary.csv"]), "used": 1, "dropped": 1},
        "incidents/feb.csv": {"read": len(raw["feb.csv"]), "used": 3, "dropped": 0},
        "incidents/jan.csv": {"read": len(raw["jan.csv"]), "used": 2, "dropped": 1},
    }
    assert inc[["source", "row", "category"]].values.tolist() == [
        ["incidents/jan.csv", 1, "theft"], ["incidents/jan.csv", 3, "robbery"],
        ["incidents/feb.csv", 1, "theft"], ["incidents/feb.csv", 2, "theft"], ["incidents/feb.csv", 3, "theft"],
        ["incidents/burglary.csv", 1, "burglary"]]
    assert inc["occurred_at"].tolist()[-1] == pd.Timestamp("2021-01-03")  # 03/01/2021 day first
    assert entries(intake, "incidents/jan.csv") == [(2, "dropped", "outside_study_area")]
    assert entries(intake, "incidents/feb.csv") == [(3, "kept", "duplicate")]  # duplicates are found within a file
    assert entries(intake, "incidents/burglary.csv") == [(2, "dropped", "missing_date")]
    assert "source" not in run(study_file(tmp_path, incidents='path = "jan.csv"')).incidents  # one file: as before


def test_outside_units_entries_name_their_own_file(tmp_path):
    _files(tmp_path)
    # a study area wider than the neighbourhoods: a point in it but in no neighbourhood stays, counted at the city
    area = tmp_path / "area.geojson"
    import geopandas as gpd
    import shapely

    from .helpers import CRS, SIDE, X0, Y0
    gpd.GeoDataFrame(geometry=[shapely.box(X0 - 20_000, Y0 - 20_000, X0 + SIDE + 20_000, Y0 + SIDE + 20_000)], crs=CRS).to_file(area)
    incidents_csv(tmp_path, "1,15.07,52.40,2021-02-03,theft", "2,14.95,52.40,2021-02-03,theft", name="feb.csv")
    intake = run(study_file(tmp_path, incidents=None, extra=SEVERAL + '\n[units]\nstudy_area = "area.geojson"'))
    located = run_units(intake)
    assert located.incidents["neighbourhood"].isna().sum() == 1
    assert entries(intake, "incidents/feb.csv") == [(2, "kept", "outside_units")]
    assert not any(s == "incidents" for s, *_ in intake.ledger.to_frame().itertuples(index=False))


def test_files_with_the_same_name_are_numbered(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    incidents_csv(tmp_path / "a", "1,15.07,52.40,2021-02-03,theft", name="street.csv")
    incidents_csv(tmp_path / "b", "1,15.07,52.40,2021-03-03,theft", name="street.csv")
    intake = run(study_file(tmp_path, incidents='path = ["a/street.csv", "b/street.csv"]'))
    assert sorted(intake.ledger.totals())[1:] == ["incidents[1]", "incidents[2]"]
    assert intake.incidents["source"].tolist() == ["incidents[1]", "incidents[2]"]


@pytest.mark.parametrize("body, key, fragment", [
    ('path = "jan.csv"\ncategory = "category"\ncategory_value = "burglary"', "inputs.incidents.category_value",
     "cannot be combined with category"),
    ('path = []', "inputs.incidents.path", "non-empty list"),
    ('path = ["jan.csv", "nope.csv"]', "inputs.incidents.path[2]", "does not exist"),
])
def test_study_errors_for_several_sources(tmp_path, body, key, fragment):
    _files(tmp_path)
    with pytest.raises(StudyError) as info:
        load_study(study_file(tmp_path, incidents=body))
    assert_message(info.value.message, f"'{key}", fragment)


def test_several_files_disagreeing_on_weights_are_refused(tmp_path):
    _files(tmp_path)
    with pytest.raises(StudyError) as info:
        load_study(study_file(tmp_path, incidents=None, extra=SEVERAL.replace('category = "category"', 'category = "category"\nweight = "id"')))
    assert_message(info.value.message, "disagree on 'weight'")


def test_one_empty_file_of_several_is_in_the_ledger_and_all_empty_is_refused(tmp_path):
    _files(tmp_path)
    incidents_csv(tmp_path, f"1,{OUTSIDE[0]},{OUTSIDE[1]},2021-02-03,theft", name="feb.csv")
    intake = run(study_file(tmp_path, incidents=None, extra=SEVERAL))
    assert intake.ledger.totals()["incidents/feb.csv"] == {"read": 1, "used": 0, "dropped": 1}
    incidents_csv(tmp_path, f"1,{OUTSIDE[0]},{OUTSIDE[1]},2021-02-03,theft", name="jan.csv")
    incidents_csv(tmp_path, f"B1;{OUTSIDE[1]};{OUTSIDE[0]};03/01/2021", header="ref;Latitude;Longitude;Reported", name="burglary.csv")
    with pytest.raises(InputFileError) as info:
        run(study_file(tmp_path, incidents=None, extra=SEVERAL))
    assert_message(info.value.message, "all 3 rows of the 3 incident files were dropped", "outside_study_area: 3")


def test_the_dask_path_refuses_several_files(tmp_path):
    from usm_geo.pipeline import _count_incidents
    from usm_geo.intake.ledger import Ledger

    study = load_study(_several(tmp_path))
    with pytest.raises(UsmGeoError) as info:
        _count_incidents(study, {}, None, None, None, Ledger(), scheduler=None)
    assert_message(info.value.message, "3 incident files cannot be counted on Dask")
