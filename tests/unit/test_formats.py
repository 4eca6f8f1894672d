"""The same ten incidents read from every supported format give the same incidents table."""

from __future__ import annotations

import datetime as dt
import gzip
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import CRS

from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import Context, read_point_records
from usm_geo.study import RecordSource

LON = np.array([13.40, 13.41, 13.42, 13.43, 13.44, 13.45, 13.46, 13.47, 13.48, 13.49])
LAT = np.array([52.50, 52.51, 52.52, 52.53, 52.54, 52.55, 52.56, 52.57, 52.58, 52.59])
WHEN = [f"2021-0{1 + i % 9}-1{i} 0{i}:30" for i in range(10)]
CATS = ["theft", "assault", "Körperverletzung", "theft", "robbery", "theft", "assault", "burglary", "theft", "vandalism"]


def _points() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"when": WHEN, "kind": CATS}, geometry=gpd.points_from_xy(LON, LAT), crs="EPSG:4326")


def _table() -> pd.DataFrame:
    return pd.DataFrame({"when": WHEN, "kind": CATS, "lon": LON, "lat": LAT})


def _write(fmt: str, folder) -> tuple:
    """Write the incidents as ``fmt``; return (path, extra RecordSource settings)."""
    if fmt == "csv":
        p = folder / "inc.csv"
        _table().to_csv(p, index=False)
    elif fmt == "csv.gz":
        p = folder / "inc.csv.gz"
        p.write_bytes(gzip.compress(_table().to_csv(index=False).encode()))
    elif fmt == "tsv":
        p = folder / "inc.tab"
        _table().to_csv(p, index=False, sep="\t")
    elif fmt == "semicolon":
        p = folder / "inc.csv"
        _table().to_csv(p, index=False, sep=";")
    elif fmt == "projected":
        p = folder / "inc.csv"
        pts = _points().to_crs(25833)
        pd.DataFrame({"when": WHEN, "kind": CATS, "easting": pts.geometry.x, "northing": pts.geometry.y}).to_csv(p, index=False)
        return p, {"x": "easting", "y": "northing", "crs": "EPSG:25833"}
    elif fmt == "gpkg":
        p = folder / "inc.gpkg"
        _points().to_file(p, layer="incidents")
    elif fmt == "shp":
        p = folder / "inc.shp"
        _points().to_crs(25833).to_file(p)
    elif fmt == "shp.zip":
        sub = folder / "shp"
        sub.mkdir()
        _points().to_file(sub / "inc.shp")
        p = folder / "inc.zip"
        with zipfile.ZipFile(p, "w") as zf:
            for f in sorted(sub.iterdir()):
                zf.write(f, f.name)
    elif fmt == "geojson":
        p = folder / "inc.geojson"
        _points().to_file(p, driver="GeoJSON")
    elif fmt == "kml":
        p = folder / "inc.kml"
        _points().to_file(p, driver="KML")
    elif fmt == "parquet":
        p = folder / "inc.parquet"
        _points().to_parquet(p)
    return p, {}


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "tsv", "semicolon", "projected", "gpkg", "shp", "shp.zip", "geojson", "kml", "parquet"])
def test_every_format_reads_the_same_incidents(tmp_path, fmt):
    path, extra = _write(fmt, tmp_path)
    src = RecordSource(name="incidents", path=path, datetime="when", category="kind", **extra)
    ledger = Ledger()
    ctx = Context(working_crs=CRS.from_epsg(32633), timezone="Europe/Berlin", now=dt.datetime(2026, 1, 1))
    out = read_point_records(src, ledger, ctx)
    assert ledger.totals()["incidents"] == {"read": 10, "used": 10, "dropped": 0}
    assert out["row"].tolist() == list(range(1, 11))
    np.testing.assert_allclose(out["lon"], LON, atol=1e-7)  # ~1 cm: shapefile/KML round-trips
    np.testing.assert_allclose(out["lat"], LAT, atol=1e-7)
    # x/y in the working CRS (UTM 33N), checked against pyproj directly
    expected = gpd.GeoSeries(gpd.points_from_xy(LON, LAT), crs=4326).to_crs(32633)
    np.testing.assert_allclose(out["x"], expected.x, atol=0.01)
    np.testing.assert_allclose(out["y"], expected.y, atol=0.01)
    assert out["occurred_at"].tolist() == pd.to_datetime(WHEN).tolist()
    assert out["category"].tolist() == CATS
