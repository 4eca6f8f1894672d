"""The sections of the report, each a function of the run folder read back (:class:`RunFolder`)
returning escaped HTML. Numbers are shown by the maps' one rule (:func:`usm_geo.maps.build.shown_number`);
every string from data or the study goes through :func:`usm_geo.maps.escape.esc`.

Each table has a ``<caption>`` "Table N. …" and a last row "Table N — end", which lets a test find
where a table starts and ends on the printed pages.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from usm_geo.indicators.small_area_rows import LABEL
from usm_geo.maps import classify
from usm_geo.maps.build import GISTAR_LABELS, class_ranges, describe, level_label, shown_number
from usm_geo.maps.escape import esc
from usm_geo.report import figures

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SUPPRESSED_MARK = "–"  # what a suppressed count shows (never a number)


def fmt(x, unit: str = "") -> str:
    """A number as every page shows it (4 significant digits, separators from 1,000), escaped."""
    v = shown_number(x) if x is not None and not (isinstance(x, float) and math.isnan(x)) and x is not pd.NA else None
    if v is None:
        return ""
    text = f"{v:,}" if isinstance(v, int) else f"{v:,.4g}" if abs(v) >= 1 else f"{v:.4g}"
    return esc(text + unit)


def pct(x, digits: int = 1) -> str:
    return f"{abs(float(x)) * 100:.{digits}f} %"


class Tables:
    """Numbers the tables of one document, in order."""

    def __init__(self):
        self.n = 0

    def open(self, title: str, head: list[str], cls: str = "", attrs: str = "") -> str:
        self.n += 1
        cells = "".join(f"<th>{h}</th>" for h in head)
        return (f'<table class="usm-table {cls}" id="table-{self.n}" {attrs}><caption>Table {self.n}. {title}</caption>'
                f"<thead><tr>{cells}</tr></thead><tbody>")

    def close(self, columns: int, note: str = "") -> str:
        end = f"Table {self.n} — end" + (f". {note}" if note else "")
        return f'</tbody><tfoot><tr><td class="usm-end" colspan="{columns}">{end}</td></tr></tfoot></table>'


# --------------------------------------------------------------------------------- report card

def _value_text(rec: dict) -> tuple[str, str]:
    """(value, interval) of a card row as shown: shares in %, rates per their unit."""
    kind = rec.get("kind")
    scale, unit = (100.0, " %") if kind == "share" else (1.0, "")
    if rec.get("value") is None or (isinstance(rec["value"], float) and math.isnan(rec["value"])):
        return "withheld (suppressed)" if "suppressed" in str(rec.get("flags") or "") else "no value", ""
    value = fmt(rec["value"] * scale, unit)
    lo, hi = rec.get("lower"), rec.get("upper")
    if lo is None or hi is None or any(isinstance(v, float) and math.isnan(v) for v in (lo, hi)):
        return value, ""
    return value, f"{fmt(lo * scale, unit)} to {fmt(hi * scale, unit)}"


def _missing(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def card_sentence(rec: dict) -> str:
    """The card row in plain language: value and interval, change since the baseline, progress to target."""
    name = esc(rec.get("name") or rec.get("indicator"))
    value, interval = _value_text(rec)
    unit = "" if rec.get("kind") == "share" else (" " + esc(rec["unit"]) if rec.get("unit") else "")
    parts = []
    if value.startswith(("withheld", "no value")):
        parts.append(f"{name}: {value} in {esc(rec.get('period'))}.")
    else:
        iv = f" (95 % interval {interval})" if interval else ""
        parts.append(f"{name}: <b>{value}</b>{unit if value else ''} in {esc(rec.get('period'))}{iv}.")
    base = rec.get("baseline_value")
    if not _missing(base) and not _missing(rec.get("value")):
        scale, u = (100.0, " %") if rec.get("kind") == "share" else (1.0, "")
        parts.append(f"In {esc(rec.get('baseline_period'))} it was {fmt(base * scale, u)}.")
    ch, lo, hi = rec.get("change"), rec.get("change_lower"), rec.get("change_upper")
    if not _missing(ch):
        way = "lower" if ch < 0 else "higher"
        text = f"That is {pct(ch)} {way} than in {esc(rec.get('baseline_period'))}"
        if not _missing(lo) and not _missing(hi):
            if lo < 0 < hi:
                text += (f" — but the 95 % interval ({pct(lo)} {'lower' if lo < 0 else 'higher'} to "
                         f"{pct(hi)} {'lower' if hi < 0 else 'higher'}) includes no change, so the change may be chance")
            else:
                text += (f" (95 % interval {pct(lo)} to {pct(hi)} {way}): a change larger than chance alone would "
                         "explain")
        parts.append(text + ".")
    target, year, status = rec.get("target_value"), rec.get("target_year"), rec.get("target_status")
    if not _missing(target) and not _missing(year):
        scale, u = (100.0, " %") if rec.get("kind") == "share" else (1.0, "")
        text = f"Target: {fmt(target * scale, u)} by {int(year)}"
        if not _missing(base) and not _missing(rec.get("value")) and base != target:
            done = (base - rec["value"]) / (base - target)
            if done >= 0:
                text += f"; {done * 100:.0f} % of the way from the {esc(rec.get('baseline_period'))} level has been covered"
            else:
                text += "; the value has moved away from the target since the baseline"
        parts.append(text + (f" — <b>{esc(status)}</b>." if status else "."))
    elif status == "suppressed":
        parts.append("Progress is withheld: a value it depends on is suppressed in this profile.")
    return " ".join(parts)


def report_card_section(card: pd.DataFrame, tables: Tables) -> str:
    from usm_geo.indicators.report_card import records

    recs = records(card)
    if not recs:
        return "<p>This run has no city indicators (no population and no survey).</p>"
    rows = []
    for rec in recs:
        value, interval = _value_text(rec)
        scale, u = (100.0, " %") if rec.get("kind") == "share" else (1.0, "")
        base = "" if _missing(rec.get("baseline_value")) else fmt(rec["baseline_value"] * scale, u)
        change = "" if _missing(rec.get("change")) else (("−" if rec["change"] < 0 else "+") + pct(rec["change"]))
        rows.append(f"<tr><td>{esc(rec.get('name'))}<div class='usm-unit'>{esc(rec.get('unit') or '')}</div></td>"
                    f"<td>{esc(rec.get('period'))}</td><td class='num'>{value}</td><td class='num'>{interval}</td>"
                    f"<td class='num'>{base}</td><td class='num'>{change}</td><td>{esc(rec.get('target_status') or '')}</td></tr>")
    head = ["Indicator", "Period", "Value", "95 % interval", "Baseline", "Change", "Target"]
    html = [tables.open("The city report card", head, "usm-card")] + rows + [tables.close(len(head))]
    html.append('<ul class="usm-sentences">' + "".join(f"<li>{card_sentence(r)}</li>" for r in recs) + "</ul>")
    return "".join(html)


# --------------------------------------------------------------------------------- maps

def choropleths(run, indicator: str | None, period: str | None) -> str:
    """A static choropleth of ``indicator`` in ``period`` for every level but the city."""
    t = run.tables
    if indicator is None or not t.layers:
        return "<p>No indicator to map.</p>"
    ind = describe(indicator, run.info.get("indicator_definitions") or {})
    scale = 100.0 if ind.percent else 1.0
    out = []
    for level, layer in t.layers.items():
        if level == "city" or indicator not in layer.columns:
            continue
        rows = layer[layer["period"] == period] if period else layer
        if rows.empty or rows[indicator].notna().sum() == 0:
            continue
        if len(rows) > figures.MAX_FEATURES:  # a printed page cannot show them; matplotlib would take minutes
            out.append(f"<p><b>{esc(level_label(level))}</b>: {len(rows):,} units are too many for a printed map "
                       f"(at most {figures.MAX_FEATURES:,}); see map.html.</p>")
            continue
        pooled = pd.to_numeric(layer[indicator], errors="coerce").to_numpy(float) * scale
        bins = classify.breaks(pooled, "quantiles", 5)
        colours = classify.palette("YlOrRd" if ind.lower_is_better else "YlGnBu", max(len(bins), 1))
        v = pd.to_numeric(rows[indicator], errors="coerce").to_numpy(float) * scale
        cls = classify.assign(v, bins)
        low = np.nanmin(pooled) if np.isfinite(pooled).any() else np.nan
        labels = class_ranges([low, *bins], " %" if ind.percent else "")
        title = f"{ind.name}, {period}" if period else ind.name
        svg = figures.choropleth(rows, cls, colours[: len(labels)], labels, no_value=classify.NO_VALUE,
                                 legend_title=textwrap.fill(ind.units, 30), alt=esc(f"Map: {title} by {level_label(level)}"))
        suppressed = int(rows[f"{indicator}_flags"].fillna("").str.contains("suppressed").sum()) \
            if f"{indicator}_flags" in rows else 0
        note = (f" {suppressed} of {len(rows)} units withheld (suppressed) in this profile." if suppressed else "")
        out.append(f'<figure class="usm-map"><figcaption><b>{esc(level_label(level))}</b>: {esc(title)} '
                   f"({esc(ind.units)}); classes are quintiles of every period.{esc(note)}</figcaption>{svg}</figure>")
    return "".join(out) or "<p>No level has values to map.</p>"


def hotspot_map(run) -> str:
    """The Gi* map of the first polygon level with hot spot results (bins at the FDR-adjusted p)."""
    hot = run.hotspots
    period = (run.info.get("hotspots") or {}).get("period")
    levels = [lv for lv in hot if not lv.startswith("h3_")] + [lv for lv in hot if lv.startswith("h3_")]
    for level in levels:
        layer = hot[level]
        if "gistar_bin" not in layer.columns or len(layer) > figures.MAX_FEATURES:
            continue
        b = pd.to_numeric(layer["gistar_bin"], errors="coerce").to_numpy(float)
        if not np.isfinite(b).any():
            continue
        cls = np.where(np.isfinite(b), b + 3, -1).astype(np.int64)
        svg = figures.choropleth(layer, cls, figures.GISTAR_COLOURS, GISTAR_LABELS, no_value=classify.NO_VALUE,
                                 legend_title="Gi* (FDR-adjusted)", alt=esc(f"Map: Gi* hot spots by {level_label(level)}"))
        n_hot, n_cold = int((b > 0).sum()), int((b < 0).sum())
        note = (f"{n_hot} hot and {n_cold} cold spots of {len(layer)} units at 90 % confidence or more, after the "
                "false discovery rate correction.")
        return (f'<figure class="usm-map"><figcaption><b>Hot spots (Gi*)</b>: {esc(level_label(level))}'
                f"{', ' + esc(period) if period else ''}. {esc(note)}</figcaption>{svg}</figure>")
    return "<p>This run has no hot spot results (too few units, or no incidents).</p>"


# --------------------------------------------------------------------------------- impact

AREA_NAMES = {"treated": "Treated area", "buffer": "Buffer (displacement ring)", "control": "Control area"}


def impact_section(run, tables: Tables) -> str:
    imp = run.impact
    if not imp:
        return "<p>This run has no intervention (no <code>[intervention]</code> in the study).</p>"
    iv = imp.get("intervention") or {}
    public = run.tables.profile == "public"
    html = [f"<p><b>{esc(iv.get('name') or 'Intervention')}</b>: before {esc(' to '.join(iv.get('before') or []))}, "
            f"after {esc(' to '.join(iv.get('after') or []))}"
            + (f", buffer {fmt(iv.get('buffer_m'))} m" if iv.get("buffer_m") is not None else "") + ".</p>"]
    counts = imp.get("counts") or {}
    w = float((imp.get("weights") or {}).get("before") or 1.0)
    areas = imp.get("areas_report") or {}
    head = ["Area", "Size (km²)", "Before", "Before, per after-period length", "After", "Change"]
    html.append(tables.open("Incidents before and after the intervention", head, "usm-impact"))
    for area in ("treated", "buffer", "control"):
        if area not in counts:
            continue
        size = areas.get(f"{area}_area_m2")
        c = counts[area]
        before, after = c.get("before"), c.get("after")
        if public:
            cells = [SUPPRESSED_MARK] * 4
        else:
            scaled = before / w if before is not None else None
            change = "" if not scaled else (("−" if after < scaled else "+") + pct(after / scaled - 1))
            cells = [fmt(before), fmt(scaled), fmt(after), change]
        html.append(f"<tr><td>{AREA_NAMES[area]}</td><td class='num'>{fmt(size / 1e6) if size else ''}</td>"
                    + "".join(f"<td class='num'>{x}</td>" for x in cells) + "</tr>")
    html.append(tables.close(len(head), "Public profile: counts withheld (totals over areas built from published "
                                        "unit counts could give suppressed cells back)" if public else
                             f"Before counts divided by {w:.4g} (before/after period lengths)"))
    wdq, wdd, ci = imp.get("wdq"), imp.get("wdd"), imp.get("wdd_ci")
    words = []
    if wdq is not None:
        kind = ("diffusion of benefits into the buffer" if wdq > 0 else "displacement into the buffer" if wdq < 0
                else "no displacement or diffusion")
        words.append(f"Weighted displacement quotient (WDQ): {'' if public else fmt(wdq) + ' — '}{kind} "
                     "(positive = diffusion of benefits, negative = displacement; it has no standard error).")
    if wdd is not None and ci:
        sig = not (ci[0] < 0 < ci[1])
        direction = "a reduction" if wdd < 0 else "an increase"
        num = "" if public else f"{fmt(wdd)} incidents (95 % interval {fmt(ci[0])} to {fmt(ci[1])}): "
        words.append(f"Weighted displacement difference (WDD): {num}{direction} in the treated area relative to the "
                     f"control, {'statistically significant' if sig else 'not statistically significant'} at the 5 % level.")
    if not public and imp.get("reading"):
        words.append(esc(imp["reading"]))
    for warning in areas.get("warnings") or []:
        words.append(f"Caution: {esc(warning)}.")
    html.append('<ul class="usm-sentences">' + "".join(f"<li>{x}</li>" for x in words) + "</ul>")
    return "".join(html)


# --------------------------------------------------------------------------------- time patterns

def _count_cell(v, suppressed: bool, attrs: str, colour: str | None = None, dark: bool = False,
                separators: bool = True) -> str:
    style = f' style="background:{colour}{";color:#fff" if dark else ""}"' if colour else ""
    if suppressed:
        return f'<td class="num n usm-supp" {attrs}>{SUPPRESSED_MARK}</td>'
    return f'<td class="num n" {attrs}{style}>{fmt(int(v)) if separators else int(v)}</td>'


def _heat_class(v, top: float) -> int | None:
    """Which of 6 equal-width classes of 0 … ``top`` a cell's count falls in (None: no colour)."""
    if v is None or not np.isfinite(v) or top <= 0:
        return None
    return min(5, int(6 * float(v) / top))


HEAT = classify.palette("YlOrRd", 6)


def city_patterns(tp: pd.DataFrame) -> dict:
    """The city's ``all`` rows of each pattern (a view of the profiled table)."""
    sub = tp[(tp["level"] == "city") & (tp["category"] == "all")]
    return {p: sub[sub["pattern"] == p] for p in ("hour_weekday", "month", "month_of_year")}


def time_section(run, tables: Tables) -> str:
    tp = run.time_patterns()
    if tp is None:
        return "<p>This run has no time patterns (no point incidents).</p>"
    summary = run.info.get("time_patterns") or {}
    pats = city_patterns(tp)
    html = []
    hw = pats["hour_weekday"]
    left = (summary.get("hour_weekday") or {})
    note = (f"{fmt(left.get('counted'))} incidents with a time of day are counted; "
            f"{fmt(left.get('left_out'))} are left out ({esc(left.get('why'))})." if left.get("left_out")
            else f"All {fmt(left.get('counted'))} incidents carry a time of day." if left else "")
    html.append(f"<div class='usm-block'><h3>Hour of day × weekday</h3><p>City, every category and year together. {note} Weekday 0 is Monday; "
                "times are local times in the study's time zone.</p>")
    grid = np.full((7, 24), np.nan)
    supp = np.zeros((7, 24), bool)
    w = pd.to_numeric(hw["weekday"]).to_numpy(int)
    h = pd.to_numeric(hw["hour"]).to_numpy(int)
    grid[w, h] = pd.to_numeric(hw["count"]).to_numpy(float)
    supp[w, h] = hw["suppressed"].to_numpy(bool)
    margins = not supp.any()  # totals with a suppressed cell would give it back
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0
    head = ["Weekday"] + [f"{x:02d}" for x in range(24)] + (["Total"] if margins else [])
    html.append(tables.open("Incidents by hour of day and weekday (city)", head, "usm-heat",
                            'data-pattern="hour_weekday"'))
    for d in range(7):
        cells = []
        for x in range(24):
            c = None if supp[d, x] else _heat_class(grid[d, x], top)
            cells.append(_count_cell(grid[d, x], supp[d, x], f'data-weekday="{d}" data-hour="{x}"',
                                     None if c is None else HEAT[c], dark=c is not None and c >= 4, separators=False))
        cells = "".join(cells)
        total = f'<td class="num total" data-total="weekday" data-weekday="{d}">{int(np.nansum(grid[d]))}</td>' \
            if margins else ""
        html.append(f"<tr><th>{WEEKDAYS[d]}</th>{cells}{total}</tr>")
    if margins:
        cols = "".join(f'<td class="num total" data-total="hour" data-hour="{x}">{int(np.nansum(grid[:, x]))}</td>'
                       for x in range(24))
        html.append(f'<tr class="usm-total"><th>Total</th>{cols}<td class="num total" data-total="all">'
                    f"{int(np.nansum(grid))}</td></tr>")
    html.append(tables.close(len(head), "" if margins else "Totals left out: a cell is suppressed") + "</div>")

    mo = pats["month"].sort_values("month")
    labels = mo["month"].astype(str).tolist()
    counts = [None if s else int(c) for c, s in zip(mo["count"].fillna(0), mo["suppressed"])]
    left = summary.get("month") or {}
    note = f" {fmt(left.get('left_out'))} incidents known only to the year are left out." if left.get("left_out") else ""
    html.append(f"<div class='usm-block'><h3>Month by month</h3><p>City, every category.{note}</p>")
    html.append('<figure class="usm-chart" data-chart="month">' + figures.month_series(
        labels, counts, "Chart: incidents per month, city") + "</figure>")
    years = sorted({lab[:4] for lab in labels})
    head = ["Year"] + [m[:3] for m in MONTHS] + (["Total"] if not any(c is None for c in counts) else [])
    html.append(tables.open("Incidents per month (city)", head, "usm-months", 'data-pattern="month"'))
    by = dict(zip(labels, zip(counts, mo["suppressed"].tolist())))
    for y in years:
        cells, total, full = [], 0, True
        for m in range(1, 13):
            key = f"{y}-{m:02d}"
            if key not in by:
                cells.append("<td></td>")
                continue
            c, s = by[key]
            cells.append(_count_cell(c, s, f'data-month="{key}"'))
            total += c or 0
            full &= not s
        tot = f'<td class="num total" data-total="year" data-year="{y}">{fmt(total)}</td>' if len(head) == 14 else ""
        html.append(f"<tr><th>{y}</th>{''.join(cells)}{tot}</tr>")
    html.append(tables.close(len(head)) + "</div>")

    moy = pats["month_of_year"].assign(_m=lambda f: pd.to_numeric(f["month"])).sort_values("_m")
    counts = [None if s else int(c) for c, s in zip(moy["count"].fillna(0), moy["suppressed"])]
    html.append("<div class='usm-block'><h3>Month of the year (seasonality)</h3><p>City, every category; each month summed over the "
                "study's years.</p>")
    html.append('<figure class="usm-chart" data-chart="month_of_year">' + figures.month_of_year(
        counts, "Chart: incidents by month of the year, city") + "</figure>")
    head = [m[:3] for m in MONTHS]
    html.append(tables.open("Incidents by month of the year (city)", head, "usm-moy", 'data-pattern="month_of_year"'))
    html.append("<tr>" + "".join(_count_cell(c, s, f'data-month="{m}"') for m, c, s in
                                 zip(moy["_m"], counts, moy["suppressed"])) + "</tr>")
    html.append(tables.close(len(head)) + "</div>")
    return "".join(html)


# --------------------------------------------------------------------------------- data quality

def quality_section(run, tables: Tables) -> str:
    info = run.info
    sources = info.get("sources") or {}
    head = ["Source", "Read", "Used", "Dropped", "Read = used + dropped"]
    html = ["<p>Every record read is either used or listed in <code>ledger.csv</code> with the reason it was "
            "dropped or changed; nothing is left out silently.</p>",
            tables.open("Records read, used and dropped", head, "usm-ledger")]
    for name, t in sorted(sources.items()):
        ok = t.get("read") == (t.get("used") or 0) + (t.get("dropped") or 0)
        html.append(f"<tr><td>{esc(name)}</td><td class='num'>{fmt(t.get('read'))}</td><td class='num'>"
                    f"{fmt(t.get('used'))}</td><td class='num'>{fmt(t.get('dropped'))}</td><td>{'yes' if ok else 'NO'}</td></tr>")
    html.append(tables.close(len(head)))
    reasons = info.get("ledger_reasons") or {}
    head = ["Source", "What happened", "Why", "Records"]
    html.append(tables.open("Why records were dropped or changed (the ledger)", head, "usm-reasons"))
    rows = 0
    for source, by in sorted(reasons.items()):
        for key, n in sorted(by.items(), key=lambda kv: (-kv[1], kv[0])):
            status, _, reason = key.partition(":")
            html.append(f"<tr><td>{esc(source)}</td><td>{esc(status)}</td><td>{esc(reason.replace('_', ' '))}</td>"
                        f"<td class='num'>{fmt(n)}</td></tr>")
            rows += 1
    if not rows:
        html.append(f"<tr><td colspan='{len(head)}'>No record was dropped or changed.</td></tr>")
    html.append(tables.close(len(head)))
    notes = (info.get("hotspots") or {}).get("notes") or []
    not_computed = (info.get("indicators") or {}).get("not_computed") or {}
    if not_computed:
        items = not_computed.items() if isinstance(not_computed, dict) else [(x, "") for x in not_computed]
        html.append("<p>Indicators not computed:</p><ul>" + "".join(
            f"<li>{esc(k)}: {esc(v)}</li>" for k, v in items) + "</ul>")
    if notes:
        html.append("<p>Hot spot notes:</p><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(html)


# --------------------------------------------------------------------------------- methods

def methods_section(run) -> str:
    info, t = run.info, run.tables
    periods = info.get("periods") or {}
    public = t.profile == "public"
    items = [
        f"<b>Data.</b> Incidents are placed in units by their coordinates (working CRS {esc(info.get('working_crs'))}); "
        f"times are local times in {esc(info.get('timezone'))}. Periods: {esc(periods.get('frequency'))}, from "
        f"{esc(periods.get('start'))} to {esc(periods.get('end'))}"
        + (f"; baseline {esc(periods.get('baseline'))}" if periods.get("baseline") else "")
        + (f", current {esc(periods.get('current'))}" if periods.get("current") else "") + ".",
        "<b>Rates</b> are incidents per resident population (per 1,000 or 100,000), with exact Poisson (Garwood) "
        "95 % intervals. Larger areas add up the counts and populations of their parts; rates are never averaged.",
        "<b>Survey shares</b> are weighted proportions with design-based 95 % intervals; shares from fewer than "
        f"{esc((info.get('outputs') or {}).get('min_n'))} respondents are not shown in public outputs.",
        *([f"<b>Model-based estimates</b> (“{esc(LABEL)}”, flag model_based) of survey shares combine each unit's "
           "direct share with a regression on area covariates, weighted by their precision (Fay–Herriot EBLUP, "
           "REML, Prasad–Rao MSE, 95 % normal intervals); they are shown as indicators of their own, never mixed "
           "with the direct shares, and are published also where a direct share is withheld."]
          if info.get("small_area") else []),
        "<b>Change and targets.</b> Change is current ÷ baseline − 1 with an exact conditional rate-ratio interval; "
        "the trend is a quasi-Poisson regression over every period; a target is on track when the trend reaches it by "
        "the target year.",
        "<b>Maps</b> class units by quintiles pooled over every period, so maps of different periods compare.",
        "<b>Hot spots.</b> Getis-Ord Gi* on each level, its p-values corrected for the false discovery rate "
        "(Benjamini-Hochberg); the bins are 90/95/99 % confidence hot and cold spots.",
        "<b>Impact.</b> Treated, buffer and control areas before and after the intervention, with before counts scaled "
        "to the after period's length; the weighted displacement quotient (WDQ, Bowers and Johnson) compares the buffer's "
        "change with the treated area's, both against the control; the weighted displacement difference (WDD, Wheeler "
        "and Ratcliffe) has a standard error and a 95 % interval.",
        "<b>Time patterns</b> count incidents by hour × weekday (records with a time of day), month and month of the "
        "year; records known only to the month are left out of the hour table.",
        (f"<b>Disclosure.</b> Public profile: counts from 1 to {t.k - 1} are suppressed (shown as “{SUPPRESSED_MARK}”), "
         "with complementary suppression so that no suppressed value can be recovered by differencing; intervention "
         "counts are withheld; totals of a time table with a suppressed cell are left out; the report card is rounded "
         "to 4 significant digits." if public else
         "<b>Disclosure.</b> Internal profile: exact values, for the city's own staff; <b>not for publication</b>."),
        f"<b>Software.</b> usm_geo {esc(info.get('usm_geo'))}; every figure traces to the run's run.json "
        f"(study {esc((info.get('study') or {}).get('file'))}, sha256 {esc(((info.get('study') or {}).get('sha256') or '')[:12])}…).",
    ]
    return "<ul class='usm-methods'>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>"
