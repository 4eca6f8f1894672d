"""Maps: folium maps of an indicator from hexagons to the city, with Gi*, KDE and impact layers.

``build_map(run_dir, run_dir / "map.html")`` writes a run's map; ``build_before_after`` writes two
synchronised maps of two periods. Every string from data or the study is HTML-escaped and no user
string enters script source (see :mod:`usm_geo.maps.escape`); the same inputs give the same bytes.
"""

from usm_geo.maps.build import (CANVAS_THRESHOLD, FLAG_TEXT, build_before_after, build_map, default_indicator, describe,
                                level_label)
from usm_geo.maps.data import MapInputs, from_area_tables, load_run
from usm_geo.maps.escape import esc, plain_text, script_json

__all__ = ["CANVAS_THRESHOLD", "FLAG_TEXT", "MapInputs", "build_before_after", "build_map", "default_indicator", "describe", "from_area_tables", "esc",
           "level_label", "load_run", "plain_text", "script_json"]
