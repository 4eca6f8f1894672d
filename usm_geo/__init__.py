"""usm_geo: area-based urban safety analysis.

Incidents (police and health records) and perception surveys are joined to neighbourhood
polygons or H3 hexagons; area indicators carry their uncertainty; every input record is
accounted for in a ledger.

The public API (everything else is private by default)::

    study = usm_geo.load_study("study.toml")
    info = usm_geo.run(study, "out/")                      # every stage, outputs written atomically
    intake = usm_geo.run_intake(study)                     # tables only: incidents, survey, ledger, levels
    located = usm_geo.run_units(intake)                    # every level and each record's unit
    info = usm_geo.run_demo("demo-out/")                   # `usm-geo demo`: Demo City inputs + run
    usm_geo.write_report("out/", "report.html", pdf=True)  # `usm-geo report`: printable, public by default
"""

import os as _os

from usm_geo.errors import UsmGeoError

__version__ = "0.1.0"


def _numba_cache_dir(package_dir: str, environ) -> str | None:
    """A folder for numba's compiled-kernel cache when numba would find none, else None.

    Every kernel is compiled with ``cache=True`` so that a process after the first loads it
    (~0.05 s) instead of compiling it (0.5-0.7 s). numba writes beside the source (``__pycache__``)
    or, when an installed package's folder is read-only, in the user's cache folder; where neither
    is writable (a service account without a home) it refuses to import a ``cache=True`` kernel
    (RuntimeError "no locator available"). Then a per-user folder in the temporary directory is used.
    """
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    user_cache = _os.path.join(environ.get("XDG_CACHE_HOME") or _os.path.expanduser("~/.cache"), "numba")
    for folder in (_os.path.join(package_dir, "units"), user_cache):
        probe = folder
        while not _os.path.exists(probe) and _os.path.dirname(probe) != probe:
            probe = _os.path.dirname(probe)  # numba creates the folder: its nearest existing parent must be writable
        if _os.access(probe, _os.W_OK):
            return None
    import tempfile

    uid = getattr(_os, "getuid", lambda: "user")()
    return _os.path.join(tempfile.gettempdir(), f"usm_geo-numba-cache-{uid}")


_cache = _numba_cache_dir(_os.path.dirname(_os.path.abspath(__file__)), _os.environ)
if _cache:  # read by numba when it is first imported (below this package)
    _os.environ["NUMBA_CACHE_DIR"] = _cache

_LAZY = {
    "load_study": ("usm_geo.study", "load_study"),
    "Study": ("usm_geo.study", "Study"),
    "run": ("usm_geo.pipeline", "run"),
    "run_intake": ("usm_geo.pipeline", "run_intake"),
    "run_units": ("usm_geo.pipeline", "run_units"),
    "run_population": ("usm_geo.pipeline", "run_population"),
    "run_measures": ("usm_geo.pipeline", "run_measures"),
    "run_indicators": ("usm_geo.pipeline", "run_indicators"),
    "run_hotspots": ("usm_geo.pipeline", "run_hotspots"),
    "run_impact": ("usm_geo.pipeline", "run_impact"),
    "run_demo": ("usm_geo.pipeline", "run_demo"),
    "aggregate_points": ("usm_geo.pipeline", "aggregate_points"),
    "export_run": ("usm_geo.export", "export_run"),
    "build_map": ("usm_geo.maps", "build_map"),
    "build_before_after": ("usm_geo.maps", "build_before_after"),
    "write_report": ("usm_geo.report", "write_report"),
    "Ledger": ("usm_geo.intake.ledger", "Ledger"),
    "generate_demo_inputs": ("usm_geo.demo", "generate_demo_inputs"),
}

__all__ = ["UsmGeoError", "__version__", *_LAZY]


def __getattr__(name: str):
    # imported on first use: `import usm_geo` stays fast for the CLI's --help
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'usm_geo' has no attribute {name!r}")
