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

from usm_geo.errors import UsmGeoError

__version__ = "0.1.0"

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
    "aggregate_points": ("usm_geo.cli_files", "aggregate_points"),
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
