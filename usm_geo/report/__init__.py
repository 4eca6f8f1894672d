"""The printable report of a run (``usm-geo report``): :func:`build_report`, :func:`write_report`."""

from usm_geo.report.document import build_report, write_report

__all__ = ["build_report", "write_report"]
