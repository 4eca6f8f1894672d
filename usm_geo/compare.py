"""Peer review across cities: report cards lined up indicator by indicator, never a league table.

The Urban Safety Monitor asks cities to share a small set of comparable metrics so that each can
benchmark **its own** progress. :func:`compare_cards` reads several report cards
(``report_card.json`` with the ``metadata.json`` written beside it by ``usm-geo run``/``export``)
and, for each indicator:

* checks that the cities measure the same thing — same data source (police, health, survey), kind
  and unit, the same current period, the same ICCS categories, survey question and answer labels,
  and the same definition (a SHA-256 of the definition's fields, :func:`definition_hash`), and for
  rates the same population base year (the card's ``population_year``). A city that differs is
  marked not comparable with the reason (``source: health, others police``, ``population base year
  2011 vs 2021``). A rate whose card gives no base year is compared as if it had the others' year
  and flagged ``population_base_year_unknown``: the study did not say, which is not a difference
  that can be shown (docs/cli.md "compare");
* gives each city's own change since its baseline and its own target status;
* says which comparable cities' intervals do **not** overlap (``distinct_from``) instead of
  ordering them: overlapping intervals mean the data cannot tell the cities apart.

Rows are sorted by indicator and city name, never by value, unless ``rank=True`` — and then the
output says why ranking misleads (:data:`RANK_CAVEAT`). Only public cards are accepted unless
``profile="internal"`` (cards for a city's own staff carry unsuppressed small counts).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.maps.escape import esc

#: definition fields that change what an indicator measures (its name, theme and SDG label do not)
DEFINITION_FIELDS = ("kind", "source", "categories", "per", "question", "yes", "exclude", "never_go_out_rule")

#: what makes two cities' values of one indicator comparable, in the order reasons are given
SIGNATURE_FIELDS = ("source", "kind", "unit", "period", "categories", "question", "definition", "population_year")

#: a rate's note when its card does not say which year its population counts describe
UNKNOWN_YEAR_FLAG = "population_base_year_unknown"

RANK_CAVEAT = ("ranked on request: a ranking orders values whose intervals may overlap, ignores differences in "
               "recording and reporting between cities, and rewards the start point rather than the progress each "
               "city makes against its own baseline")

COLUMNS = ["indicator", "name", "sdg", "city", "source", "kind", "unit", "period", "value", "lower", "upper", "n",
           "baseline_period", "baseline_value", "change", "change_lower", "change_upper", "target_status",
           "comparable", "not_comparable_reason", "distinct_from", "flags", "card"]


@dataclass(frozen=True)
class Card:
    """One city's report card: its rows, the indicator definitions and the profile it was made in."""

    path: Path
    city: str
    profile: str | None
    rows: pd.DataFrame
    definitions: dict


def definition_hash(defn: dict | None) -> str | None:
    """SHA-256 (first 16 hex digits) of the fields of an indicator definition that change what it
    measures (:data:`DEFINITION_FIELDS`), as canonical JSON; None without a definition."""
    if not defn:
        return None
    core = {k: defn.get(k) for k in DEFINITION_FIELDS}
    text = json.dumps(core, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def load_card(path: Path) -> Card:
    """A report card from a run or export folder, or from a ``report_card.json`` file (its
    ``metadata.json``, when beside it, gives the definitions and the profile)."""
    path = Path(path)
    card_path = path / "report_card.json" if path.is_dir() else path
    if not card_path.is_file():
        raise UsmGeoError("no report card here", where=path,
                          fix="give a run folder (usm-geo run), an export folder (usm-geo export) or a report_card.json")
    try:
        records = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsmGeoError(f"not a report card: {exc}", where=card_path, fix="give the report_card.json that usm_geo wrote") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "indicator" in r for r in records):
        raise UsmGeoError("not a report card (expected a list of records with an 'indicator')", where=card_path,
                          fix="give the report_card.json that usm_geo wrote")
    rows = pd.DataFrame(records)
    meta_path = card_path.parent / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    city = str(rows["city"].iloc[0]) if len(rows) and "city" in rows else card_path.parent.name
    return Card(path=card_path, city=city, profile=meta.get("profile"), rows=rows,
                definitions=meta.get("indicators") or {})


def _signature(row: pd.Series, defn: dict | None) -> dict:
    d = defn or {}
    cats = d.get("categories")
    return {"source": row.get("source"), "kind": row.get("kind"), "unit": row.get("unit"), "period": row.get("period"),
            "categories": ",".join(map(str, cats)) if cats is not None else None,
            "question": d.get("question") if row.get("kind") == "share" else None,
            "definition": definition_hash(defn),
            "population_year": _year(row.get("population_year")) if row.get("kind") == "rate" else None}


def _year(v) -> str | None:
    """A card's population base year as text (JSON may hold 2021 or "2021"); None when unknown."""
    if _missing(v) or v == "":
        return None
    return str(int(v)) if isinstance(v, (int, float)) else str(v)


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _overlaps(a_lo, a_hi, b_lo, b_hi) -> bool:
    if any(math.isnan(v) for v in (a_lo, a_hi, b_lo, b_hi)):
        return True  # without an interval nothing can be told apart
    return a_lo <= b_hi and b_lo <= a_hi


def compare_cards(cards: list[Card], *, profile: str = "public", rank: bool = False) -> pd.DataFrame:
    """The comparison table (:data:`COLUMNS`; ``rank`` added when asked), one row per indicator and
    city, sorted by indicator and city name. See the module docstring for the rules."""
    if len(cards) < 2:
        raise UsmGeoError(f"a comparison needs at least two report cards, got {len(cards)}",
                          fix="give two or more run or export folders")
    if profile not in ("public", "internal"):
        raise UsmGeoError(f"unknown profile '{profile}'", fix="use public (default) or internal")
    if profile == "public":
        for c in cards:
            if c.profile != "public":
                raise UsmGeoError(f"the report card of {c.city} was made in the {c.profile or 'unknown'} profile, not public",
                                  where=c.path, fix="export it first (usm-geo export RUN --out DIR writes a public card), "
                                                    "or pass --profile internal for a comparison kept inside the city")
    cities = [c.city for c in cards]
    dup = sorted({x for x in cities if cities.count(x) > 1})
    if dup:
        raise UsmGeoError(f"two report cards are for the same city: {dup[0]}",
                          fix="compare each city once (a city's own years are in its progress table)")
    out = []
    for c in cards:
        for _, row in c.rows.iterrows():
            if row.get("level", "city") != "city":
                continue
            ind = str(row["indicator"])
            sig = _signature(row, c.definitions.get(ind))
            out.append({"indicator": ind, "name": row.get("name"), "sdg": row.get("sdg"), "city": c.city,
                        "source": row.get("source"), "kind": row.get("kind"), "unit": row.get("unit"),
                        "period": row.get("period"), "value": _num(row.get("value")), "lower": _num(row.get("lower")),
                        "upper": _num(row.get("upper")), "n": row.get("n"), "baseline_period": row.get("baseline_period"),
                        "baseline_value": _num(row.get("baseline_value")), "change": _num(row.get("change")),
                        "change_lower": _num(row.get("change_lower")), "change_upper": _num(row.get("change_upper")),
                        "target_status": row.get("target_status"), "flags": row.get("flags") or "",
                        "card": str(c.path), "_sig": sig, "_lib": row.get("lower_is_better")})
    table = pd.DataFrame(out)
    comparable, reasons = [], []
    for _, grp in table.groupby("indicator", sort=False):
        sigs = [dict(sig) for sig in grp["_sig"]]
        # an unknown base year takes the year most of the others state (ties: the earliest), and says so
        known = pd.Series([sig["population_year"] for sig in sigs if sig["population_year"] is not None], dtype=object)
        for idx, sig in zip(grp.index, sigs):
            if sig["kind"] == "rate" and sig["population_year"] is None:
                if len(known):
                    counts = known.value_counts()
                    sig["population_year"] = sorted(counts[counts == counts.max()].index)[0]
                table.at[idx, "flags"] = ";".join(f for f in (table.at[idx, "flags"], UNKNOWN_YEAR_FLAG) if f)
        if len(sigs) == 1:
            comparable.append((grp.index[0], False))
            reasons.append((grp.index[0], "only one city reports this indicator"))
            continue
        # the reference is the signature most cities share (ties: the first city by name)
        keyed = [json.dumps(s, sort_keys=True, default=str) for s in sigs]
        order = np.argsort(grp["city"].to_numpy(dtype=str), kind="stable")
        counts = pd.Series(keyed).value_counts()
        best = max(counts.max(), 1)
        ref = next(keyed[i] for i in order if counts[keyed[i]] == best)
        ref_sig = json.loads(ref)
        for i, (idx, s) in enumerate(zip(grp.index, sigs)):
            diff = [f for f in SIGNATURE_FIELDS if s.get(f) != ref_sig.get(f)]
            if keyed[i] == ref and counts[ref] >= 2:
                comparable.append((idx, True))
                reasons.append((idx, ""))
            elif keyed[i] == ref:
                comparable.append((idx, False))
                reasons.append((idx, "no other city measures it the same way (see their reasons)"))
            else:
                comparable.append((idx, False))
                reasons.append((idx, "; ".join(_reason(f, s.get(f), ref_sig.get(f)) for f in diff)))
    table["comparable"] = pd.Series(dict(comparable))
    table["not_comparable_reason"] = pd.Series(dict(reasons))
    distinct = {}
    for _, grp in table[table["comparable"]].groupby("indicator", sort=False):
        for idx, row in grp.iterrows():
            apart = [o["city"] for _, o in grp.iterrows() if o["city"] != row["city"]
                     and not _overlaps(row["lower"], row["upper"], o["lower"], o["upper"])]
            distinct[idx] = ";".join(sorted(apart))
    table["distinct_from"] = pd.Series(distinct).reindex(table.index).fillna("")
    table = table.sort_values(["indicator", "city"], kind="stable")
    if rank:
        ranks = {}
        for _, grp in table[table["comparable"]].groupby("indicator", sort=False):
            lower_better = bool(grp["_lib"].iloc[0]) if grp["_lib"].iloc[0] is not None else True
            r = grp["value"].rank(method="min", ascending=lower_better)
            ranks.update(r.to_dict())
        table["rank"] = pd.Series(ranks).reindex(table.index).astype("Int64")
        table = table.sort_values(["indicator", "rank", "city"], kind="stable", na_position="last")
    return table.drop(columns=["_sig", "_lib"])[[*COLUMNS, *(["rank"] if rank else [])]].reset_index(drop=True)


def _reason(field: str, mine, others) -> str:
    if field == "population_year":
        return f"population base year {_show(mine)} vs {_show(others)}"
    return f"{field}: {_show(mine)}, others {_show(others)}"


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _show(v) -> str:
    return "none" if _missing(v) else str(v)


def _txt(v, default: str = "") -> str:
    return default if _missing(v) or v == "" else str(v)


# ------------------------------------------------------------------------------------------ HTML

def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.{digits}g}" if abs(v) < 1e6 else f"{v:,.0f}"


def _chart(grp: pd.DataFrame) -> str:
    """Dot and interval per comparable city, with an arrow from its baseline value (own progress)."""
    rows = grp[grp["comparable"]]
    if rows.empty:
        return ""
    vals = np.concatenate([rows[c].to_numpy(float) for c in ("value", "lower", "upper", "baseline_value")])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return ""
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    width, left, right, step = 560, 150, 20, 28
    height = 30 + step * len(rows)

    def x(v):
        return left + (v - lo) / (hi - lo) * (width - left - right)

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             f'<line x1="{left}" y1="{height - 18}" x2="{width - right}" y2="{height - 18}" class="axis"/>',
             f'<text x="{left}" y="{height - 4}" class="tick">{esc(_fmt(lo))}</text>',
             f'<text x="{width - right}" y="{height - 4}" class="tick" text-anchor="end">{esc(_fmt(hi))}</text>']
    for i, (_, r) in enumerate(rows.iterrows()):
        y = 16 + step * i
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" class="city">{esc(r["city"])}</text>')
        if math.isfinite(r["baseline_value"]) and math.isfinite(r["value"]):
            parts.append(f'<line x1="{x(r["baseline_value"]):.1f}" y1="{y}" x2="{x(r["value"]):.1f}" y2="{y}" '
                         f'class="progress" marker-end="url(#arrow)"/>')
        if math.isfinite(r["lower"]) and math.isfinite(r["upper"]):
            parts.append(f'<line x1="{x(r["lower"]):.1f}" y1="{y}" x2="{x(r["upper"]):.1f}" y2="{y}" class="interval"/>')
        if math.isfinite(r["value"]):
            parts.append(f'<circle cx="{x(r["value"]):.1f}" cy="{y}" r="4" class="dot"><title>{esc(r["city"])}: '
                         f'{esc(_fmt(r["value"]))} ({esc(_fmt(r["lower"]))}–{esc(_fmt(r["upper"]))})</title></circle>')
    parts.insert(1, '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
                    'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9aa5b1"/></marker></defs>')
    parts.append("</svg>")
    return "".join(parts)


def _sentence(grp: pd.DataFrame) -> str:
    comp = grp[grp["comparable"]]
    if len(comp) < 2:
        return "Fewer than two cities measure this the same way: no comparison is made."
    if (comp["distinct_from"] == "").all():
        return ("All the comparable cities' intervals overlap: these data cannot tell the cities apart. "
                "Read each city's own change since its baseline instead.")
    pairs = sorted({tuple(sorted((r["city"], o))) for _, r in comp.iterrows() for o in r["distinct_from"].split(";") if o})
    return ("Intervals that do not overlap: " + "; ".join(f"{a} and {b}" for a, b in pairs)
            + ". Differences in recording between cities may explain part of any gap.")


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;max-width:60rem;color:#1f2933}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem} .note{color:#52606d}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem} th,td{border-bottom:1px solid #d9e2ec;padding:.25rem .5rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} .no{color:#9f1239}
.chart .axis{stroke:#9aa5b1} .chart .tick,.chart .city{font-size:11px;fill:#3e4c59}
.chart .interval{stroke:#1f4e79;stroke-width:2} .chart .dot{fill:#1f4e79} .chart .progress{stroke:#9aa5b1;stroke-width:1.5;stroke-dasharray:3 2}
@media print{body{margin:0} section{break-inside:avoid}}
"""


def comparison_html(table: pd.DataFrame, *, rank: bool = False) -> str:
    """A self-contained page (no script, no network): per indicator a sentence, a chart and a table."""
    cities = sorted(set(table["city"]))
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc('Peer review: ' + ', '.join(cities))}</title><style>{STYLE}</style></head><body>",
           f"<h1>Peer review of {len(cities)} cities</h1>",
           f'<p class="note">Cities: {esc(", ".join(cities))}. Each city benchmarks its own progress: values are shown '
           "with their 95 % intervals and the change since each city's own baseline (dashed arrow). Cities are listed by "
           "name, not by value. An indicator is compared only where the cities measure it the same way.</p>"]
    if rank:
        out.append(f'<p class="note"><strong>Ranks shown on request.</strong> {esc(RANK_CAVEAT)}.</p>')
    for ind, grp in table.groupby("indicator", sort=True):
        first = grp.iloc[0]
        title = _txt(first["name"], ind) + (f" (SDG {first['sdg']})" if _txt(first["sdg"]) else "")
        out.append(f'<section><h2 id="{esc(ind)}">{esc(title)}</h2><p>{esc(_sentence(grp))}</p>{_chart(grp)}')
        head = ["city", "period", "value", "95 % interval", "baseline", "change since baseline", "target", "comparable"]
        if rank:
            head.insert(1, "rank")
        out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
        for _, r in grp.iterrows():
            change = "–" if not math.isfinite(r["change"]) else (
                f"{r['change']:+.1%} ({r['change_lower']:+.1%} to {r['change_upper']:+.1%})"
                if math.isfinite(r["change_lower"]) else f"{r['change']:+.1%}")
            cells = [esc(r["city"]), esc(r["period"]), f'<td class="num">{esc(_fmt(r["value"]))}</td>',
                     f'<td class="num">{esc(_fmt(r["lower"]))}–{esc(_fmt(r["upper"]))}</td>',
                     f'<td class="num">{esc(_fmt(r["baseline_value"]))} ({esc(_txt(r["baseline_period"], "–"))})</td>',
                     f'<td class="num">{esc(change)}</td>', esc(_txt(r["target_status"], "–")),
                     "yes" if r["comparable"] else f'<span class="no">no: {esc(r["not_comparable_reason"])}</span>']
            if rank:
                cells.insert(1, esc("" if pd.isna(r["rank"]) else int(r["rank"])))
            out.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table></section>")
    out.append("</body></html>\n")
    return "".join(out)


def compare(inputs: list[Path], out: Path, *, profile: str = "public", rank: bool = False) -> dict:
    """Read the cards, write ``comparison.csv`` and ``comparison.html`` into ``out`` (atomically);
    return a summary (cities, indicators, comparable and not comparable counts, files)."""
    from usm_geo.io import write_csv, write_text

    cards = [load_card(Path(p)) for p in inputs]
    table = compare_cards(cards, profile=profile, rank=rank)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "comparison.csv", table)
    write_text(out / "comparison.html", comparison_html(table, rank=rank))
    return {"cities": sorted(c.city for c in cards), "indicators": int(table["indicator"].nunique()),
            "comparable_rows": int(table["comparable"].sum()), "not_comparable_rows": int((~table["comparable"]).sum()),
            "files": ["comparison.csv", "comparison.html"]}
