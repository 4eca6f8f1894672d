"""Bad coordinates: text, missing, infinite, swapped, projected, zeros, outside the study area, no CRS."""

from __future__ import annotations

import numpy as np
import pytest

from usm_geo.errors import CoordinateError, CRSError, StudyError

from .helpers import (
    OUTSIDE,
    assert_error,
    entries,
    good_rows,
    incidents_csv,
    ledger_rows,
    run,
    study_file,
)

XY = "id,x,y,date,category"
XY_STUDY = 'path = "incidents.csv"\nx = "x"\ny = "y"\ncrs = "EPSG:32633"'


@pytest.mark.parametrize(
    "lon, lat, reason, detail",
    [
        ("abc", "52.40", "coordinate_not_numeric", "column 'lon' = abc"),
        ("15.07", "52°24'N", "coordinate_not_numeric", "column 'lat' = 52°24'N"),
        ("", "52.40", "missing_coordinates", "column 'lon' is empty"),
        ("NaN", "52.40", "missing_coordinates", "column 'lon' is empty"),
        ("15.07", "NULL", "missing_coordinates", "column 'lat' is empty"),
        ("inf", "52.40", "coordinate_not_finite", "infinite value"),
        ("15.07", "-inf", "coordinate_not_finite", "infinite value"),
        ("0", "0", "null_island", "longitude and latitude are both 0"),
        ("0.0", "0.000", "null_island", "longitude and latitude are both 0"),
        ("200", "100", "coordinate_out_of_range", "longitude outside ±180 or latitude outside ±90"),
        (str(OUTSIDE[0]), str(OUTSIDE[1]), "outside_study_area", "the point is not inside the study area"),
    ],
    ids=["text", "degrees-minutes", "empty", "nan", "null", "inf", "minus-inf", "null-island", "null-island-decimals",
         "out-of-range", "outside-study-area"],
)
def test_unusable_coordinate_drops_its_row(tmp_path, lon, lat, reason, detail):
    incidents_csv(tmp_path, *good_rows(3), f"4,{lon},{lat},2021-05-04,theft", *good_rows(1))
    intake = run(study_file(tmp_path))
    assert entries(intake) == [(4, "dropped", reason), (5, "kept", "duplicate")]
    assert ledger_rows(intake, reason)["detail"].tolist() == [detail]
    assert intake.ledger.totals()["incidents"] == {"read": 5, "used": 4, "dropped": 1}
    assert np.isfinite(intake.incidents[["lon", "lat", "x", "y"]].to_numpy()).all()


def test_swapped_row_is_fixed_when_the_study_area_makes_it_unambiguous(tmp_path):
    # (52.40, 15.07) is a valid lon/lat (in the Indian Ocean) and so is (15.07, 52.40) (in the study area)
    incidents_csv(tmp_path, *good_rows(3), "4,52.40,15.07,2021-05-04,theft", "5,52.40,95,2021-05-05,theft")
    intake = run(study_file(tmp_path))
    assert entries(intake) == [(4, "changed", "lat_lon_swapped"), (5, "dropped", "coordinate_out_of_range")]
    assert ledger_rows(intake, "lat_lon_swapped")["detail"].tolist() == ["lon/lat were 52.4,15.07"]
    row4 = intake.incidents.set_index("row").loc[4]
    assert (row4["lon"], row4["lat"]) == (15.07, 52.40)
    assert 500_000 < row4["x"] < 510_000 and 5_800_000 < row4["y"] < 5_810_000


def test_swapped_row_without_study_area_is_left_alone(tmp_path):
    # both readings are valid degrees and nothing says which place is meant
    incidents_csv(tmp_path, *good_rows(3), "4,52.40,15.07,2021-05-04,theft")
    intake = run(study_file(tmp_path, boundaries=False, top=""))
    assert entries(intake) == []
    row4 = intake.incidents.set_index("row").loc[4]
    assert (row4["lon"], row4["lat"]) == (52.40, 15.07)


def test_whole_columns_swapped_inside_the_degree_range_is_an_error_with_a_study_area(tmp_path):
    incidents_csv(tmp_path, *good_rows(3), header="id,lat,lon,date,category")  # the header is wrong
    assert_error(CoordinateError, study_file(tmp_path), "incidents.csv: 3 of 3 points are in the study area only with "
                 "longitude and latitude swapped", 'name them lon = "lat" and lat = "lon"')


def test_whole_columns_swapped_outside_the_degree_range_is_an_error(tmp_path):
    # Sydney: longitude 151 read as a latitude is impossible, whatever the study area
    incidents_csv(tmp_path, "1,-33.87,151.21,2021-05-01,theft", "2,-33.80,151.10,2021-05-02,theft",
                  header="id,longitude,latitude,date,category")
    assert_error(CoordinateError, study_file(tmp_path, boundaries=False, top=""),
                 "incidents.csv: most coordinates only make sense with longitude and latitude swapped",
                 'lon = "latitude" and lat = "longitude"')


def test_whole_columns_swapped_near_a_pole_explains_the_working_crs_failure(tmp_path):
    # Chicago with the columns swapped: (41.85, -87.65) is valid but polar, and no UTM zone holds it
    incidents_csv(tmp_path, "1,41.85,-87.65,2021-05-01,theft", "2,41.88,-87.62,2021-05-02,theft")
    assert_error(CRSError, study_file(tmp_path, boundaries=False, top=""),
                 "incidents.csv: cannot choose a working CRS: longitude and latitude look swapped", "latitude -87.6",
                 'name them lon = "lat" and lat = "lon"')


@pytest.mark.parametrize("declared", [False, True], ids=["detected-columns", "declared-columns"])
def test_projected_values_given_as_degrees(tmp_path, declared):
    incidents_csv(tmp_path, "1,502042.0,5803304.6,2021-05-01,theft", "2,506802.1,5806645.8,2021-05-02,theft")
    body = 'path = "incidents.csv"' + ('\nlon = "lon"\nlat = "lat"' if declared else "")
    assert_error(CoordinateError, study_file(tmp_path, incidents=body),
                 "incidents.csv: 2 of 2 coordinates are outside ±180/±90: they look like projected metres",
                 'x = "..." and y = "..." with crs = "EPSG:...."')


def test_exact_zero_in_projected_data(tmp_path):
    incidents_csv(tmp_path, "1,502042.0,5803304.6,2021-05-01,theft", "2,0,5806645.8,2021-05-02,theft",
                  "3,506802.1,0,2021-05-03,theft", "4,0,0,2021-05-04,theft", "5,506802.1,5806645.8,2021-05-05,theft",
                  header=XY)
    intake = run(study_file(tmp_path, incidents=XY_STUDY))
    assert entries(intake) == [(2, "dropped", "zero_coordinate"), (3, "dropped", "zero_coordinate"),
                               (4, "dropped", "zero_coordinate")]
    assert ledger_rows(intake, "zero_coordinate")["detail"].str.contains("x or y is exactly 0").all()
    used = intake.incidents
    assert used["x"].tolist() == [502042.0, 506802.1]  # same CRS as the working CRS: not transformed
    np.testing.assert_allclose(used[["lon", "lat"]].to_numpy(), [[15.03, 52.38], [15.10, 52.41]], atol=1e-6)


def test_detected_xy_columns_without_crs(tmp_path):
    incidents_csv(tmp_path, "1,502042.0,5803304.6,2021-05-01,theft", "2,506802.1,5806645.8,2021-05-02,theft", header=XY)
    assert_error(CRSError, study_file(tmp_path),
                 "incidents.csv: columns 'x'/'y' hold projected coordinates but the study names no CRS",
                 'add crs = "EPSG:...."')


def test_declared_xy_columns_without_crs(tmp_path):
    incidents_csv(tmp_path, "1,502042.0,5803304.6,2021-05-01,theft", header=XY)
    assert_error(StudyError, study_file(tmp_path, incidents='path = "incidents.csv"\nx = "x"\ny = "y"'),
                 "study.toml: 'inputs.incidents.crs' is missing: x/y columns need the CRS they are in")


def test_impact_from_files_swaps_back_a_row_the_treated_area_explains(tmp_path):
    """`usm-geo impact` has no study area, but its treated and control polygons say where the points are
    meant to be: (52.40, 15.07) is valid lon/lat in the Indian Ocean and, swapped, inside them."""
    from usm_geo.pipeline import impact_from_files

    from .helpers import neighbourhoods, write_layer

    write_layer(neighbourhoods().iloc[[0]], tmp_path / "treated.gpkg")  # N1, the west half of the square
    write_layer(neighbourhoods().iloc[[1]], tmp_path / "control.gpkg")  # N2, the east half
    incidents_csv(tmp_path, *good_rows(3), "4,52.40,15.07,2021-05-04,theft", "5,-60.0,-30.0,2021-05-04,theft")
    _, ledger = impact_from_files(tmp_path / "incidents.csv", treated=tmp_path / "treated.gpkg",
                                  control=tmp_path / "control.gpkg", before="2021-01-01:2021-04-30",
                                  after="2021-05-01:2021-12-31", time="date")
    frame = ledger.to_frame()
    assert frame[["row", "status", "reason"]].values.tolist() == [[4, "changed", "lat_lon_swapped"]]
    # row 5 (South America; swapped, Antarctica) is far from every known polygon: left as it is
