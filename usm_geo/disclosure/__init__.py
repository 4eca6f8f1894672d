"""Floor 5: what a profile may publish, before anything is written.

:mod:`usm_geo.disclosure.profiles` holds the rules (``internal`` shows everything; ``public`` applies
small-cell and complementary suppression, one named step per rule); :mod:`usm_geo.disclosure.area_tables`
reads a run folder back and returns its area tables, hot spot and impact layers in one profile — what
maps, reports and exports read, so none of them needs another's module.
"""

from usm_geo.disclosure.profiles import (  # noqa: F401
    KNOWN_FLAGS,
    PROFILES,
    apply_profile,
    profile_time_patterns,
)
from usm_geo.disclosure.area_tables import (  # noqa: F401
    DEFAULT_K,
    DEFAULT_MIN_N,
    IMPACT_COUNT_COLUMNS,
    PARTS,
    PUBLIC_HOTSPOT_COLUMNS,
    SMOOTHED,
    AreaTables,
    RunFolder,
    apply_disclosure,
    area_tables,
    indicator_ids,
    kde_bytes,
    kde_threshold,
    public_hotspots,
    public_impact_areas,
    read_run,
    run_report_card,
    shown_ids,
    time_patterns_in_profile,
    wide_table,
)
