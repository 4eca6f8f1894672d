"""usm_geo: area-based urban safety analysis.

Incidents (police and health records) and perception surveys are joined to neighbourhood
polygons or H3 hexagons; area indicators carry their uncertainty; every input record is
accounted for in a ledger.
"""

from usm_geo.errors import UsmGeoError

__version__ = "0.1.0"

__all__ = ["UsmGeoError", "__version__"]
