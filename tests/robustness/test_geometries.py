"""Bad boundary layers (GPKG, GeoJSON, SHP written in tmp_path, EPSG:32633) and CRS problems."""

from __future__ import annotations

import pytest
import shapely
from shapely import MultiPolygon, Point, Polygon

from usm_geo.errors import BoundaryError, CRSError, InputFileError, UsmGeoError

from .helpers import (
    SIDE,
    X0,
    Y0,
    assert_error,
    box,
    districts,
    entries,
    good_rows,
    incidents_csv,
    ledger_rows,
    neighbourhoods,
    run,
    study_file,
    write_layer,
)

NBHD = "boundaries.neighbourhood"
DISTRICT_LEVEL = '[[inputs.boundaries]]\nlevel = "district"\npath = "{path}"\nid = "dist_id"'


def _study(tmp_path, layer=None, filename="nbhd.gpkg", extra="", top=None, parent=False):
    """Incidents inside the square, and ``layer`` (default: the standard neighbourhoods) as ``filename``."""
    if layer is not None:
        write_layer(layer, tmp_path / filename)
    incidents_csv(tmp_path, *good_rows(3))
    kwargs = {} if top is None else {"top": top}
    study = study_file(tmp_path, extra=extra, **kwargs)
    text = study.read_text().replace('path = "nbhd.gpkg"', f'path = "{filename}"')
    if parent:
        text = text.replace('name = "nbhd_name"', 'name = "nbhd_name"\nparent = "district"')
    study.write_text(text)
    return study


def test_bow_tie_polygon_is_repaired_and_ledgered(tmp_path):
    layer = neighbourhoods()
    # two triangles touching at (X0 + 2500, Y0 + 5000): 25 km² once repaired
    layer.loc[0, "geometry"] = Polygon([(X0, Y0), (X0 + 5000, Y0 + SIDE), (X0 + 5000, Y0), (X0, Y0 + SIDE)])
    intake = run(_study(tmp_path, layer))
    repaired = ledger_rows(intake, "invalid_geometry_repaired", NBHD)
    assert repaired[["row", "status", "detail"]].values.tolist() == [
        [1, "changed", "unit N1: Self-intersection[502500 5805000]"]]
    assert intake.ledger.totals()[NBHD] == {"read": 2, "used": 2, "dropped": 0}
    n1 = intake.levels["neighbourhood"].set_index("unit_id").geometry["N1"]
    assert n1.is_valid and n1.geom_type == "MultiPolygon"
    assert n1.area == pytest.approx(25e6)
    # incident 1 (x 502042, y 5803305) lies in the part of the square the bow-tie does not cover
    assert entries(intake) == [(1, "dropped", "outside_study_area")]


@pytest.mark.parametrize("filename, geometry", [("nbhd.gpkg", Polygon()), ("nbhd.geojson", None)],
                         ids=["empty-polygon-gpkg", "null-geometry-geojson"])
def test_empty_geometry_names_the_row(tmp_path, filename, geometry):
    layer = neighbourhoods()
    layer.loc[1, "geometry"] = geometry
    assert_error(BoundaryError, _study(tmp_path, layer, filename), f"{filename}:2: unit 'N2' has an empty geometry",
                 "draw the unit's polygon or remove the feature")


def test_point_layer_as_boundaries(tmp_path):
    layer = neighbourhoods(geometry=[Point(X0 + 2500, Y0 + 5000), Point(X0 + 7500, Y0 + 5000)])
    assert_error(BoundaryError, _study(tmp_path, layer), "nbhd.gpkg:1: unit 'N1' is a Point, not a polygon",
                 "boundaries must be polygons")


def test_3d_polygons_lose_z_with_a_note(tmp_path):
    layer = neighbourhoods()
    layer["geometry"] = shapely.force_3d(layer.geometry.to_numpy(), 35.0)
    intake = run(_study(tmp_path, layer, "nbhd.shp"))
    assert entries(intake, NBHD) == [(0, "note", "3d_geometry")]
    geom = intake.levels["neighbourhood"].geometry.to_numpy()
    assert not shapely.has_z(geom).any()
    assert shapely.area(geom).tolist() == [5e7, 5e7]


def test_duplicate_unit_ids_name_the_id_and_rows(tmp_path):
    layer = neighbourhoods(nbhd_id=["N7", "N7"])
    assert_error(BoundaryError, _study(tmp_path, layer), "nbhd.gpkg:1, column 'nbhd_id': unit id 'N7' appears 2 times "
                 "(rows 1, 2)", "unit ids must be unique")


def test_whole_number_ids_in_a_float_column_are_duplicates_too(tmp_path):
    # a GIS that stores ids as reals: 35.0 and 35 are the same unit "35"
    layer = neighbourhoods(nbhd_id=[35.0, 35.0])
    assert_error(BoundaryError, _study(tmp_path, layer, "nbhd.geojson"), "unit id '35' appears 2 times")


def test_unknown_parent_id(tmp_path):
    write_layer(districts(), tmp_path / "dist.gpkg")
    layer = neighbourhoods(district=["D1", "D9"])
    study = _study(tmp_path, layer, extra=DISTRICT_LEVEL.format(path="dist.gpkg"), parent=True)
    assert_error(BoundaryError, study, "nbhd.gpkg:2, column 'district': 1 parent id(s) in column 'district' name no district unit: 'D9' "
                 "(1 neighbourhood unit(s) in all; first: unit 'N2')",
                 "use ids from the district layer (D1, …)")


def test_multipolygons_are_accepted(tmp_path):
    layer = neighbourhoods()
    # N1 in two strips with a 1 km gap between them (x 502000-503000)
    layer.loc[0, "geometry"] = MultiPolygon([box(X0, Y0, X0 + 2000, Y0 + SIDE), box(X0 + 3000, Y0, X0 + 5000, Y0 + SIDE)])
    intake = run(_study(tmp_path, layer, "nbhd.geojson"))
    level = intake.levels["neighbourhood"]
    assert level["geometry"].geom_type.tolist() == ["MultiPolygon", "Polygon"]
    assert entries(intake, NBHD) == []
    # incident 1 is at x = 502042, in the gap
    assert entries(intake) == [(1, "dropped", "outside_study_area")]


def test_missing_id_column_suggests_the_close_match(tmp_path):
    study = _study(tmp_path)
    study.write_text(study.read_text().replace('id = "nbhd_id"', 'id = "nbhd_idx"'))
    assert_error(InputFileError, study, "nbhd.gpkg: the study names column 'nbhd_idx' (inputs.boundaries.neighbourhood.id)",
                 "did you mean 'nbhd_id'?", "columns in the file: nbhd_id, nbhd_name, district, geometry")


# --------------------------------------------------------------------------- CRS


def test_shapefile_without_prj_and_no_crs_in_the_study(tmp_path):
    write_layer(neighbourhoods(), tmp_path / "nbhd.shp")
    (tmp_path / "nbhd.prj").unlink()
    assert_error(CRSError, _study(tmp_path, filename="nbhd.shp"), "nbhd.shp: boundary level 'neighbourhood' has no CRS",
                 'add crs = "EPSG:...." to [[inputs.boundaries]] level "neighbourhood"')


def test_shapefile_without_prj_with_crs_in_the_study(tmp_path):
    write_layer(neighbourhoods(), tmp_path / "nbhd.shp")
    (tmp_path / "nbhd.prj").unlink()
    study = _study(tmp_path, filename="nbhd.shp")
    study.write_text(study.read_text().replace('id = "nbhd_id"', 'id = "nbhd_id"\ncrs = "EPSG:32633"'))
    intake = run(study)
    assert intake.levels["neighbourhood"].crs.to_epsg() == 32633
    assert intake.ledger.totals()["incidents"] == {"read": 3, "used": 3, "dropped": 0}


def test_levels_in_different_crs_are_reprojected_with_a_note(tmp_path):
    write_layer(districts().to_crs("EPSG:4326"), tmp_path / "dist.geojson")
    study = _study(tmp_path, extra=DISTRICT_LEVEL.format(path="dist.geojson"), parent=True, top="")  # working CRS auto
    intake = run(study)
    assert str(intake.working_crs.to_epsg()) == "32633"  # local UTM, from the finest level
    assert entries(intake, "boundaries.district") == [(0, "note", "reprojected")]
    assert ledger_rows(intake, "reprojected", "boundaries.district")["detail"].tolist() == ["from EPSG:4326 to EPSG:32633"]
    assert entries(intake, NBHD) == []
    assert {name: level.crs.to_epsg() for name, level in intake.levels.items()} == {"neighbourhood": 32633, "district": 32633}
    assert intake.levels["district"].geometry.area.iloc[0] == pytest.approx(1e8, rel=1e-6)


@pytest.mark.parametrize("crs, fragment", [("EPSG:4326", "WGS 84 is not projected"),
                                           ("EPSG:2263", "has units of US survey foot, not metres")],
                         ids=["degrees", "feet"])
def test_working_crs_not_in_metres(tmp_path, crs, fragment):
    study = _study(tmp_path, top=f'[study]\nworking_crs = "{crs}"')
    assert_error(CRSError, study, f"study.toml: 'study.working_crs' = '{crs}': the working CRS", fragment,
                 'use "auto" (local UTM)')


def test_overlapping_neighbourhoods_are_kept_with_a_ledger_line_and_count_once(tmp_path):
    from usm_geo.pipeline import run_units

    layer = neighbourhoods()
    # N2 reaches 1 km into N1: x 504000-505000 lies in both (10 km², 20 % of N1's 50 km²)
    layer.loc[1, "geometry"] = box(X0 + 4000, Y0, X0 + SIDE, Y0 + SIDE)
    intake = run(_study(tmp_path, layer))
    lines = ledger_rows(intake, "overlapping_units", NBHD)
    assert lines[["row", "status", "detail"]].values.tolist() == [
        [1, "kept", "unit N1 and unit N2 (row 2) overlap on 20.0% of the smaller; a point there is counted once, in N1"]]
    # incident 3 (x 504763) is in the overlap: one unit, N1, never both
    located = run_units(intake).incidents
    assert located["neighbourhood"].tolist() == ["N1", "N2", "N1"]


def test_slivers_between_neighbourhoods_are_one_note(tmp_path):
    layer = neighbourhoods()
    layer.loc[1, "geometry"] = box(X0 + SIDE / 2 - 2, Y0, X0 + SIDE, Y0 + SIDE)  # a 2 m overlap: 0.04 %
    intake = run(_study(tmp_path, layer))
    assert ledger_rows(intake, "overlapping_units", NBHD).empty
    note = ledger_rows(intake, "overlap_slivers", NBHD)
    assert note[["row", "status", "detail"]].values.tolist() == [
        [0, "note", "1 pair(s) of units overlap by less than 0.1% of the smaller unit (digitising slivers)"]]


def test_point_in_a_hole_is_outside_the_study_area(tmp_path):
    layer = neighbourhoods()
    # N1 with a 1 km² hole around incident 1 (x 502042, y 5803305) that no unit fills
    layer.loc[0, "geometry"] = Polygon(box(X0, Y0, X0 + SIDE / 2, Y0 + SIDE).exterior.coords,
                                       [box(X0 + 1500, Y0 + 2800, X0 + 2500, Y0 + 3800).exterior.coords])
    intake = run(_study(tmp_path, layer))
    assert entries(intake) == [(1, "dropped", "outside_study_area")]
    assert intake.ledger.totals()["incidents"] == {"read": 3, "used": 2, "dropped": 1}


def test_mixed_geometry_types_name_the_row(tmp_path):
    layer = neighbourhoods()
    layer.loc[1, "geometry"] = shapely.LineString([(X0 + 5000, Y0), (X0 + SIDE, Y0 + SIDE)])
    assert_error(BoundaryError, _study(tmp_path, layer, "nbhd.geojson"), "unit 'N2' is a LineString, not a polygon",
                 "nbhd.geojson:2", "boundaries must be polygons or multipolygons")


def test_huge_values_in_a_hot_spot_analysis_do_not_overflow(tmp_path):
    """Gi* and Moran's I do not change when every value is multiplied by 1e290 (they are scale-free);
    computed naively, the squares and fourth powers of such values overflow."""
    import geopandas as gpd
    import numpy as np

    from usm_geo.hotspots.analysis import hotspot_layer

    cells = [box(X0 + 1000 * i, Y0 + 1000 * j, X0 + 1000 * (i + 1), Y0 + 1000 * (j + 1)) for i in range(5) for j in range(5)]
    layer = gpd.GeoDataFrame({"unit_id": [f"u{k}" for k in range(25)]}, geometry=cells, crs="EPSG:32633")
    y = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3], dtype=float)
    # 25 units: below the default min_units = 30, so the refusal is overridden here (issue #19)
    small, g_small, _ = hotspot_layer(layer, y, permutations=99, min_units=3)
    huge, g_huge, _ = hotspot_layer(layer, y * 1e290, permutations=99, min_units=3)
    for col in ("gistar_z", "gistar_p", "gistar_bin", "lisa_i", "lisa_z", "lisa_p_sim"):
        np.testing.assert_allclose(huge[col].to_numpy(float), small[col].to_numpy(float), rtol=1e-12, err_msg=col)
    assert g_huge["moran"]["I"] == pytest.approx(g_small["moran"]["I"], rel=1e-12)
    y[3] = np.inf
    with pytest.raises(UsmGeoError, match=r"1 unit\(s\) have an infinite value \(rows 4"):
        hotspot_layer(layer, y)
