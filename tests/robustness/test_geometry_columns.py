"""A point layer that also carries coordinate columns which disagree with its geometry: a ledger note
with the count, the largest distance and which was used (the geometry)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from .helpers import CRS, INSIDE, ledger_rows, run, study_file, write_layer


def _layer(tmp_path, columns: dict, crs: str = "EPSG:4326"):
    pts = gpd.GeoDataFrame({"date": ["2021-05-01"] * 5, "category": ["theft"] * 5, **columns},
                           geometry=gpd.points_from_xy([p[0] for p in INSIDE], [p[1] for p in INSIDE]), crs="EPSG:4326")
    write_layer(pts.to_crs(crs), tmp_path / "points.gpkg")
    return study_file(tmp_path, incidents='path = "points.gpkg"')


def test_lon_lat_columns_that_differ_from_the_geometry_are_noted(tmp_path):
    lon = np.array([p[0] for p in INSIDE])
    lat = np.array([p[1] for p in INSIDE])
    lon_col = lon.copy()
    lon_col[[1, 3]] += [0.001, 0.01]  # 68 m and 680 m east at 52.4°N
    intake = run(_layer(tmp_path, {"longitude": lon_col, "latitude": lat}, crs=CRS))
    # independent distance: geodesic on the WGS 84 ellipsoid (pyproj.Geod), within 0.5 %
    from pyproj import Geod
    _, _, d = Geod(ellps="WGS84").inv(lon, lat, lon_col, lat)
    assert (d > 2).sum() == 2
    note = ledger_rows(intake, "geometry_columns_disagree")
    assert note["status"].tolist() == ["note"]
    detail = note["detail"][0]
    assert detail.startswith("2 of 5 points differ by more than 2 m between the geometry and columns longitude/latitude")
    shown = float(detail.split("up to ")[1].split(" m")[0].replace(",", ""))
    assert abs(shown - d.max()) / d.max() < 0.005
    assert "the geometry was used" in detail
    # the geometry's positions are the ones used
    assert np.allclose(intake.incidents["lon"], lon)


def test_projected_xy_columns_in_the_layers_crs(tmp_path):
    pts = gpd.GeoSeries(shapely.points([p for p in INSIDE]), crs="EPSG:4326").to_crs(CRS)
    x, y = pts.x.to_numpy(), pts.y.to_numpy()
    agree = run(_layer(tmp_path, {"easting": np.round(x, 1), "northing": np.round(y, 1)}, crs=CRS))
    assert ledger_rows(agree, "geometry_columns_disagree").empty  # rounding to 0.1 m is agreement
    x2 = x.copy()
    x2[0] += 50.0
    intake = run(_layer(tmp_path, {"easting": x2, "northing": y}, crs=CRS))
    assert ledger_rows(intake, "geometry_columns_disagree")["detail"][0].startswith(
        "1 of 5 points differ by more than 2 m between the geometry and columns easting/northing (up to 50 m)")
