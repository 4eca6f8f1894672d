"""The city report card: one record per indicator for the whole city and the current period.

It is the unit a city shares for local → city → global comparison and peer review: value with
its interval, the baseline and the change since (from the progress table), the target status,
the data-source kind and the SDG code. Works on tables only (the writer is
:func:`usm_geo.export.write_report_card`); the schema is documented in ``docs/report_card.md``.

Values always come from the ``measures`` given, so a card built from suppressed (public) measures
never shows more than they do: when the current or the baseline value is suppressed, the change
and the target status are withheld too (``target_status = "suppressed"``), and the trend (fitted on
every period) is withheld when any period of the indicator is suppressed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Column order of the card (see docs/report_card.md for types and meaning).
COLUMNS = [
    "city", "level", "unit_id", "indicator", "name", "theme", "sdg", "source", "kind", "unit", "lower_is_better",
    "period", "value", "lower", "upper", "n", "flags",
    "baseline_period", "baseline_value", "change", "change_lower", "change_upper", "trend_per_year",
    "target_year", "target_value", "target_status", "status_reason", "population_year",
]

#: the measures that are not indicators (counts and denominators); the one list every table writer uses
BASE_MEASURES = ("count", "harm", "population", "population_reported", "aoristic_count")
SMOOTHED = ("_eb", "_seb")
SUPPRESSED = "suppressed"


def _unit(defn: dict | None, kind: str | None) -> str | None:
    if kind == "rate":
        per = float((defn or {}).get("per") or 1000.0)
        return f"per {per:,.0f} residents"
    if kind == "share":
        return "proportion of residents (0-1)"
    if kind == "score":
        return "score as published by the source"
    return None


def _is_suppressed(flags) -> bool:
    return isinstance(flags, str) and SUPPRESSED in flags.split(";")


def _num(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA else x


def report_card(measures: pd.DataFrame, progress_table: pd.DataFrame | None, definitions: dict[str, dict] | None, *,
                baseline: str | None, current: str | None, city_name: str,
                population_year: str | None = None) -> pd.DataFrame:
    """One row per indicator for level ``city`` (category ``all``).

    Parameters
    ----------
    measures : DataFrame
        The long measures table (indicator rows included), suppressed or not.
    progress_table : DataFrame or None
        ``progress.csv``; its ``city`` row gives change, trend and target status.
    definitions : dict
        Indicator id → definition (``run.json["indicator_definitions"]``); ids without one (e.g.
        perception scores from an area table) are listed with what the measures say about them.
    baseline, current : str
        Period labels. An indicator with no value in ``current`` (a survey wave in another year)
        is shown for its latest period up to ``current`` (else its latest), named in ``period``.
    city_name : str
        The study's name.
    population_year : str or None
        The population base year of the denominators (``Study.population_base_year``; run.json's
        ``population_base_year``), written on rate indicators only; None = unknown.
    """
    definitions = definitions or {}
    city = measures[(measures["level"] == "city") & (measures["category"] == "all")
                    & ~measures["measure"].isin(BASE_MEASURES)]
    city = city[~city["measure"].str.endswith(SMOOTHED)]  # smoothing is for small areas, not the city
    ids = sorted(set(city["measure"]))
    prog = None
    if progress_table is not None and len(progress_table):
        p = progress_table[(progress_table["level"] == "city") & (progress_table["unit_id"] == "city")]
        prog = p.drop_duplicates("indicator").set_index("indicator")
    rows = []
    for ind in ids:
        sub = city[city["measure"] == ind].set_index("period")
        periods = sorted(sub.index)
        if current in sub.index:
            period = current
        else:
            earlier = [p for p in periods if current is None or p <= current]
            period = (earlier or periods)[-1]
        cur = sub.loc[period]
        defn = definitions.get(ind)
        flags = str(cur["flags"]) if isinstance(cur["flags"], str) else ""
        kind = (defn or {}).get("kind") or ("score" if "no_sample_size" in flags.split(";") else None)
        source = (defn or {}).get("source") or ("perception" if kind == "score" else None)
        value = _num(float(cur["value"])) if pd.notna(cur["value"]) else None
        base_value = None
        if baseline is not None and baseline in sub.index and baseline != period:
            b = sub.loc[baseline]
            base_value = float(b["value"]) if pd.notna(b["value"]) else None
        rec = {
            "city": city_name, "level": "city", "unit_id": "city", "indicator": ind,
            "name": (defn or {}).get("name") or ind, "theme": (defn or {}).get("theme"), "sdg": (defn or {}).get("sdg"),
            "source": source, "kind": kind, "unit": _unit(defn, kind),
            "lower_is_better": (defn or {}).get("lower_is_better"),
            "period": period, "value": value,
            "lower": float(cur["lower"]) if pd.notna(cur["lower"]) else None,
            "upper": float(cur["upper"]) if pd.notna(cur["upper"]) else None,
            "n": int(cur["n"]) if pd.notna(cur["n"]) else None, "flags": flags,
            "baseline_period": baseline if base_value is not None else None, "baseline_value": base_value,
            "change": None, "change_lower": None, "change_upper": None, "trend_per_year": None,
            "target_year": None, "target_value": None, "target_status": None, "status_reason": None,
            "population_year": population_year if kind == "rate" else None,
        }
        if prog is not None and ind in prog.index:
            pr = prog.loc[ind]
            same = str(pr.get("current")) == period and str(pr.get("baseline")) == str(baseline)
            if value is not None and base_value is not None and same:
                for key in ("change", "change_lower", "change_upper", "trend_per_year", "target_value"):
                    rec[key] = float(pr[key]) if key in pr and pd.notna(pr[key]) else None
                if "target_year" in pr and pd.notna(pr["target_year"]):
                    rec["target_year"] = int(pr["target_year"])
                for key, col in (("target_status", "status"), ("status_reason", "status_reason")):
                    if col in pr and isinstance(pr[col], str) and pr[col]:
                        rec[key] = pr[col]
        if any(_is_suppressed(f) for f in sub["flags"]):
            # the trend is fitted on every period: with the others published it would give a suppressed one back
            rec["trend_per_year"] = None
        base_flags = sub.loc[baseline]["flags"] if baseline is not None and baseline in sub.index else ""
        if _is_suppressed(flags) or _is_suppressed(base_flags):
            rec["target_status"] = SUPPRESSED
            rec["status_reason"] = "the current or baseline value is suppressed in this profile"
        rows.append(rec)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("n", "target_year"):
        frame[col] = pd.array(frame[col], dtype="Int64")
    for col in ("value", "lower", "upper", "baseline_value", "change", "change_lower", "change_upper",
                "trend_per_year", "target_value"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def match_measures(card: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """Re-take a card's values from other (e.g. suppressed) measures of the same run.

    Keeps the card's indicators, periods, targets and changes, but only where both the current and
    the baseline value are still published in ``measures``; otherwise they become null and
    ``target_status`` becomes ``suppressed`` (when a value is flagged so).
    """
    city = measures[(measures["level"] == "city") & (measures["category"] == "all")]
    keyed = city.set_index(["measure", "period"])
    out = card.copy()
    for i, rec in out.iterrows():
        key = (rec["indicator"], rec["period"])
        if key not in keyed.index:
            continue
        cur = keyed.loc[key]
        for col in ("value", "lower", "upper"):
            out.at[i, col] = float(cur[col]) if pd.notna(cur[col]) else np.nan
        out.at[i, "n"] = int(cur["n"]) if pd.notna(cur["n"]) else pd.NA
        out.at[i, "flags"] = cur["flags"] if isinstance(cur["flags"], str) else ""
        if city[(city["measure"] == rec["indicator"])]["flags"].map(_is_suppressed).any():
            out.at[i, "trend_per_year"] = np.nan  # fitted on every period (see report_card)
        base_ok, base_flags = True, ""
        if isinstance(rec["baseline_period"], str) and (rec["indicator"], rec["baseline_period"]) in keyed.index:
            b = keyed.loc[(rec["indicator"], rec["baseline_period"])]
            base_ok = pd.notna(b["value"])
            base_flags = b["flags"] if isinstance(b["flags"], str) else ""
            out.at[i, "baseline_value"] = float(b["value"]) if base_ok else np.nan
        if pd.isna(out.at[i, "value"]) or not base_ok:
            for col in ("change", "change_lower", "change_upper", "trend_per_year", "target_value"):
                out.at[i, col] = np.nan
            out.at[i, "target_year"] = pd.NA
            if _is_suppressed(out.at[i, "flags"]) or _is_suppressed(base_flags):
                out.at[i, "target_status"] = SUPPRESSED
                out.at[i, "status_reason"] = "the current or baseline value is suppressed in this profile"
            else:
                out.at[i, "target_status"] = None
                out.at[i, "status_reason"] = None
    return out


#: Columns a public card rounds, and how: values on the indicator's scale to 4 significant digits (as every
#: public page shows them), relative changes and trends to 0.001 (0.1 percentage point).
VALUE_COLUMNS = ("value", "lower", "upper", "baseline_value", "target_value")
CHANGE_COLUMNS = ("change", "change_lower", "change_upper", "trend_per_year")


def _significant(x: np.ndarray, digits: int) -> np.ndarray:
    """Each value to ``digits`` significant digits, as its shortest decimal (33.04, not 33.040000000000006)."""
    return np.array([float(f"{v:.{digits}g}") if np.isfinite(v) else np.nan for v in np.asarray(x, dtype=float)])


def round_public(card: pd.DataFrame) -> pd.DataFrame:
    """The card as the public profile publishes it: values and intervals to 4 significant digits (shares
    on their 0–1 scale, so 0.1198 = 11.98 %), changes and trends to 0.001. Full precision stays internal."""
    out = card.copy()
    for col in VALUE_COLUMNS:
        if col in out:
            out[col] = _significant(pd.to_numeric(out[col], errors="coerce").to_numpy(float), 4)
    for col in CHANGE_COLUMNS:
        if col in out:
            out[col] = np.round(pd.to_numeric(out[col], errors="coerce").to_numpy(float), 3)
    return out


def records(card: pd.DataFrame) -> list[dict]:
    """The card as JSON-ready records (NaN → null, numpy scalars → Python)."""
    out = []
    for rec in card.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                clean[k] = None
            elif isinstance(v, np.integer):
                clean[k] = int(v)
            elif isinstance(v, np.floating):
                clean[k] = float(v)
            elif isinstance(v, np.bool_):
                clean[k] = bool(v)
            else:
                clean[k] = v
        out.append(clean)
    return out
