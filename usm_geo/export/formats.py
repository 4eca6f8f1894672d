"""One writer per output format of the area tables: GeoJSON, GeoParquet, the KDE GeoTIFF, the
offline map, the report card (the GeoPackage and CSV go through :mod:`usm_geo.io`, shapefiles
through :mod:`usm_geo.export.shapefiles`). Every file is written atomically (:mod:`usm_geo.io`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from usm_geo.disclosure.area_tables import AreaTables, kde_bytes
from usm_geo.io import atomic_path, write_bytes, write_csv, write_json

#
# ``export_run`` (reading a run folder) and ``write_run_exports`` (called by ``run`` with its
# in-memory tables) share everything below: the disclosure profile is applied to the whole
# measures table first (suppression looks across levels and categories), then the wide
# indicator table is built per level, joined to unit geometry and written in each format.

FORMATS = ("gpkg", "shp", "geojson", "parquet", "csv", "tif", "html")


GPKG_NAME, SHP_NAME, CSV_NAME, MAP_NAME = "areas.gpkg", "shapefiles.zip", "indicators.csv", "map.html"


def write_geojson(target: Path, frame) -> None:
    """RFC 7946 GeoJSON: EPSG:4326 (lon, lat), 7 decimals, atomically."""
    from usm_geo.errors import CRSError

    if frame.crs is None:
        raise CRSError("the units have no CRS, so they cannot be written as GeoJSON (EPSG:4326)", where=target,
                       fix="use GeoPackage or shapefiles for layers without a CRS")
    with atomic_path(target) as tmp:
        frame.to_crs(4326).to_file(tmp, driver="GeoJSON", engine="pyogrio",
                                   layer_options={"RFC7946": "YES", "WRITE_NAME": "NO"})


def write_geoparquet(target: Path, frame) -> None:
    """GeoParquet (``geo`` metadata with the CRS as PROJJSON), atomically."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def write_kde(target: Path, source: Path, *, profile: str, k: int) -> dict:
    """Write :func:`kde_bytes` to ``target`` (nothing when it cannot be published)."""
    data, report = kde_bytes(source, profile=profile, k=k)
    if data is not None:
        write_bytes(target, data)
    return report


def write_map(target: Path, tables: AreaTables, *, hotspots: dict | None = None, impact_areas=None,
              impact: dict | None = None, kde: Path | None = None, info: dict | None = None,
              definitions: dict | None = None, tiles=None, time_patterns: pd.DataFrame | None = None) -> bool:
    """``map.html`` of the area tables (after their profile): the default indicator at every level,
    Gi* (the profile's hot spot layers), the KDE (masked in the public profile) and the impact areas.
    Self-contained; ``tiles`` adds a basemap (:func:`usm_geo.maps.build.basemap`); ``time_patterns``
    (already in the tables' profile) puts each unit's hour × weekday and month-of-year counts in its
    tooltip. Returns whether a
    map was written (``False`` when the tables hold no indicator and no count)."""
    from usm_geo.maps import build_map, default_indicator
    from usm_geo.maps.data import from_area_tables

    surface = None
    if kde is not None and Path(kde).exists():
        surface = kde_bytes(Path(kde), profile=tables.profile, k=tables.k)[0]
    inputs = from_area_tables(tables, hotspots=hotspots, impact_areas=impact_areas, impact=impact, kde=surface,
                              info=info, definitions=definitions, time_patterns=time_patterns)
    indicator = default_indicator(inputs)
    if indicator is None:
        return False  # nothing to show: the caller must not list map.html as written
    build_map(inputs, target, indicator=indicator, tiles=tiles)
    return True


def write_report_card(folder: Path, card: pd.DataFrame) -> list[str]:
    """``report_card.json`` (a list of records, docs/report_card.md) and ``report_card.csv``."""
    from usm_geo.indicators.report_card import records

    folder = Path(folder)
    write_json(folder / "report_card.json", records(card))
    write_csv(folder / "report_card.csv", card)
    return ["report_card.json", "report_card.csv"]
