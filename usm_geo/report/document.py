"""``report.html``: a self-contained, printable document of a run for a planners' meeting.

It reads the run folder's outputs only (through :func:`usm_geo.export.read_run`, never the inputs)
in one profile — public by default, suppressed exactly as ``usm-geo export`` does — and holds no
script, no link and no font or image from elsewhere: every figure is inline SVG or a PNG data URI,
so opening it makes no network request. Print CSS lays it out for A4 or Letter with no table cut
across pages (``break-inside: avoid``; a table's header repeats if one is ever taller than a page).
"""

from __future__ import annotations

from pathlib import Path

from usm_geo.errors import UsmGeoError
from usm_geo.maps.escape import esc
from usm_geo.report import sections

SECTIONS = [("card", "City report card"), ("maps", "Maps by level"), ("hotspots", "Hot spots"),
            ("impact", "Intervention impact"), ("time", "When incidents happen"), ("quality", "Data quality"),
            ("methods", "Methods")]
PAPERS = {"a4": "A4", "letter": "letter"}

CSS = """
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #222; margin: 0 auto; max-width: 190mm;
       padding: 8mm; line-height: 1.35; }
h1 { font-size: 18pt; margin: 0 0 2mm; } h2 { font-size: 13pt; border-bottom: 1px solid #999; margin: 6mm 0 2mm; }
h3 { font-size: 10.5pt; margin: 4mm 0 1mm; }
.usm-sub { color: #555; margin: 0 0 4mm; }
.usm-profile { display: inline-block; padding: 1px 6px; border: 1px solid #555; border-radius: 3px; font-size: 8.5pt; }
table.usm-table { border-collapse: collapse; width: 100%; margin: 2mm 0 3mm; font-size: 8.5pt;
                  break-inside: avoid; page-break-inside: avoid; }
table.usm-table caption { text-align: left; font-weight: bold; padding: 0 0 1mm; caption-side: top; }
table.usm-table thead { display: table-header-group; }
table.usm-table tfoot { display: table-row-group; }
table.usm-table tr { break-inside: avoid; page-break-inside: avoid; }
table.usm-table th, table.usm-table td { border: 1px solid #ccc; padding: 1px 3px; vertical-align: top; }
table.usm-table th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; white-space: nowrap; }
td.usm-end { border: 0; color: #777; font-size: 7.5pt; text-align: right; }
table.usm-heat { font-size: 5.8pt; } table.usm-heat th, table.usm-heat td { padding: 1px 1px; }
td.usm-supp { color: #777; background: repeating-linear-gradient(45deg, #eee, #eee 2px, #fff 2px, #fff 4px); }
tr.usm-total td, td.total { font-weight: bold; }
.usm-unit { color: #666; font-size: 7.5pt; }
figure { margin: 2mm 0 4mm; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-size: 8.5pt; margin-bottom: 1mm; }
.usm-fig { width: 100%; height: auto; display: block; }
ul.usm-sentences li, ul.usm-methods li { margin-bottom: 1.5mm; }
nav ol { columns: 2; font-size: 9pt; }
h2, h3 { break-after: avoid; page-break-after: avoid; }
.usm-block { break-inside: avoid; page-break-inside: avoid; }
section#methods, section#quality, section#time { break-before: page; page-break-before: always; }
@page { size: %(paper)s; margin: 12mm; }
@media print { body { padding: 0; max-width: none; } a { color: inherit; text-decoration: none; } nav { display: none; } }
"""


def build_report(run_dir, *, profile: str = "public", k: int | None = None, paper: str = "a4") -> str:
    """The report of a run folder as HTML text (``profile`` public by default, as ``usm-geo export``;
    ``k`` default: the run's ``outputs.suppression_threshold``; ``paper`` ``a4`` or ``letter``)."""
    from usm_geo.area_tables import read_run, run_report_card
    from usm_geo.indicators.report_card import round_public  # as write_area_outputs rounds report_card.csv
    from usm_geo.maps.build import default_indicator
    from usm_geo.maps.data import from_area_tables

    if paper not in PAPERS:
        raise UsmGeoError(f"unknown paper size '{paper}'", where="--paper", fix="use a4 or letter")
    run = read_run(run_dir, profile=profile, k=k)
    info = run.info
    card = run_report_card(run)
    if run.tables.profile == "public":
        card = round_public(card)
    indicator = default_indicator(from_area_tables(run.tables, info=info))
    period = (info.get("periods") or {}).get("current")
    if period not in set(run.tables.periods):
        period = run.tables.periods[-1] if run.tables.periods else None
    tables = sections.Tables()
    body = {
        "card": sections.report_card_section(card, tables),
        "maps": sections.choropleths(run, indicator, period),
        "hotspots": sections.hotspot_map(run),
        "impact": sections.impact_section(run, tables),
        "time": sections.time_section(run, tables),
        "quality": sections.quality_section(run, tables),
        "methods": sections.methods_section(run),
    }
    name = (info.get("study") or {}).get("name") or "usm_geo run"
    public = run.tables.profile == "public"
    badge = (f"public profile: counts from 1 to {run.tables.k - 1} suppressed" if public
             else "internal profile: exact values, not for publication")
    nav = "<nav><ol>" + "".join(f'<li><a href="#{key}">{esc(title)}</a></li>' for key, title in SECTIONS) + "</ol></nav>"
    parts = [f'<section id="{key}" data-section="{key}"><h2>{esc(title)}</h2>{body[key]}</section>'
             for key, title in SECTIONS]
    periods = info.get("periods") or {}
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # no request of any kind: the policy forbids loading anything but inline styles and data images
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">"
        f"<title>{esc(name)} — safety report</title><style>{CSS.replace('%(paper)s', PAPERS[paper])}</style></head><body>"
        f"<header><h1>{esc(name)}: urban safety report</h1>"
        f"<p class=\"usm-sub\">{esc(_period_line(periods, period))} · "
        f"<span class=\"usm-profile\">{esc(badge)}</span> · usm_geo {esc(info.get('usm_geo'))}</p></header>"
        f"{nav}{''.join(parts)}</body></html>\n")


def _period_line(periods: dict, shown: str | None) -> str:
    """"Current period 2023, baseline 2019" — or the period the maps show when the study names none."""
    if periods.get("current"):
        text = f"Current period {periods['current']}"
        return text + (f", baseline {periods['baseline']}" if periods.get("baseline") else "")
    return f"Period shown: {shown}" if shown else "No period"


def write_report(run_dir, out, *, profile: str = "public", k: int | None = None, pdf: bool = False,
                 paper: str = "a4") -> dict:
    """Write ``out`` (``report.html``) atomically, and with ``pdf`` the same document printed to
    ``out`` with a ``.pdf`` suffix through headless Chromium (:func:`usm_geo.report.pdf.print_pdf`).
    Returns ``{"html": path, "pdf": path or None, "profile": …}``."""
    from usm_geo.io import write_text

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsmGeoError("--out names the report's HTML file", where=out, fix=f"e.g. --out {out.with_suffix('.html')}")
    if not out.parent.is_dir():
        raise UsmGeoError("the folder of --out does not exist", where=out.parent, fix="create it or choose another --out")
    write_text(out, build_report(run_dir, profile=profile, k=k, paper=paper))
    result = {"html": out, "pdf": None, "profile": profile}
    if pdf:
        from usm_geo.report.pdf import print_pdf

        result["pdf"] = print_pdf(out, out.with_suffix(".pdf"))
    return result
