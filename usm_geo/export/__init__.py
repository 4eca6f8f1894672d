"""Floor 6: the files a run's area tables are handed on in, one module per job.

``fields``      the field dictionary (what each column means, its unit, its definition)
``formats``     one writer per format (GeoJSON, GeoParquet, KDE GeoTIFF, map, report card)
``shapefiles``  the shapefile zip (short field names, a layer per level and period, fields.csv)
``run_export``  a run's area exports in one layout: :func:`export_run`, :func:`write_run_exports`
``postgis``     a run's tables into PostgreSQL/PostGIS (``usm-geo export --to``)

The tables themselves, in a profile, come from :mod:`usm_geo.disclosure`; atomic writing from
:mod:`usm_geo.io`. This package re-exports its own public names.
"""

from usm_geo.export.fields import LAYER_FIELDS, field_dictionary, indicator_definitions  # noqa: F401
from usm_geo.export.formats import (CSV_NAME, FORMATS, GPKG_NAME, MAP_NAME, SHP_NAME, write_geojson,  # noqa: F401
                                    write_geoparquet, write_kde, write_map, write_report_card)
from usm_geo.export.run_export import export_run, extra_layers, write_area_outputs, write_run_exports  # noqa: F401
from usm_geo.export.shapefiles import check_dbf_values, write_shapefiles  # noqa: F401
