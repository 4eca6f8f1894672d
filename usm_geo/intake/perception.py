"""Perception as an area table: a score per unit (and period), without respondents.

Valid input (DESIGN.md): shown as it is, flagged ``no_sample_size``, with no interval. Rows are
matched to the units of one boundary level by id, or by name (ignoring case, accents are kept,
surrounding spaces dropped). Every row is used or in the ledger: ``unknown_unit`` when it matches
no unit, ``missing_score`` when none of its scores is a number, ``duplicate_unit`` when a unit and
period appear twice (the first row is kept).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.intake import columns as cols
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import normalise_ids
from usm_geo.periods import period_bounds
from usm_geo.study import PerceptionSource

SOURCE = "perception"


def _fold(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip().str.casefold().str.replace(r"\s+", " ", regex=True)


def read_perception(src: PerceptionSource, ledger: Ledger, layer, periods=None) -> pd.DataFrame:
    """Rows ``unit_id, period, <score columns>`` (floats; NaN where a score is missing).

    ``period`` is the period column as text (``2017``), or ``""`` when the table has none. With the
    study's ``periods`` (start/end), rows whose period lies wholly outside them go to the ledger
    as ``outside_study_period``; a label that is not a period (``spring``) as ``unparseable_period``.
    """
    raw = read_records(src.path, SOURCE, ledger, layer=src.sheet)
    ledger.open_source(SOURCE, src.path, raw.read)
    frame, rows = raw.frame, raw.rows
    ucol = cols.resolve(frame.columns, src.unit, "unit", src.path, "inputs.perception.unit")
    keep = np.ones(len(frame), dtype=bool)
    if src.match == "name":
        lookup = dict(zip(_fold(layer["name"]), layer["unit_id"]))
        ids = _fold(frame[ucol]).map(lookup)
    else:
        known = set(layer["unit_id"])
        ids = normalise_ids(frame[ucol])
        ids = ids.where(ids.isin(known), None)
    unknown = ids.isna().to_numpy()
    ledger.add(SOURCE, rows[unknown], "dropped", "unknown_unit",
               (f"{ucol} = '" + frame[ucol].astype(str).str.slice(0, 40) + f"' matches no {src.unit_level} "
                + ("name" if src.match == "name" else "id")).to_numpy(dtype=object)[unknown])
    keep &= ~unknown
    out = pd.DataFrame({"row": rows, "unit_id": ids.to_numpy(dtype=object)})
    if src.period is not None:
        pcol = cols.resolve(frame.columns, src.period, "period", src.path, "inputs.perception.period")
        out["period"] = normalise_ids(frame[pcol]).to_numpy(dtype=object)
    else:
        out["period"] = ""
    if src.period is not None and periods is not None and periods.start is not None and periods.end is not None:
        first, last = [], []
        for label in out["period"]:
            try:
                w = period_bounds(str(label))
                first.append(w.start), last.append(w.end)
            except UsmGeoError:
                first.append(None), last.append(None)
        bad = keep & np.array([f is None for f in first])
        ledger.add(SOURCE, rows[bad], "dropped", "unparseable_period", "the period is not a year, quarter, month or window")
        keep &= ~bad
        outside = keep & np.array([f is not None and (la < periods.start or f > periods.end) for f, la in zip(first, last)])
        ledger.add(SOURCE, rows[outside], "dropped", "outside_study_period", f"outside {periods.start}…{periods.end}")
        keep &= ~outside
    scores = []
    for name in src.scores:
        c = cols.resolve(frame.columns, name, "score", src.path, "inputs.perception.scores")
        out[name] = pd.to_numeric(frame[c].astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
        scores.append(name)
    empty = keep & np.isnan(out[scores].to_numpy(dtype=float)).all(axis=1)
    ledger.add(SOURCE, rows[empty], "dropped", "missing_score", "no score is a number")
    keep &= ~empty
    kept = out[keep]  # a duplicate is judged among kept rows only
    dup_kept = kept.duplicated(["unit_id", "period"], keep="first").to_numpy()
    dup = np.zeros(len(out), dtype=bool)
    dup[np.flatnonzero(keep)[dup_kept]] = True
    ledger.add(SOURCE, rows[dup], "dropped", "duplicate_unit", "the unit and period appear in an earlier row")
    keep &= ~dup
    result = out[keep].sort_values(["unit_id", "period"], kind="stable").reset_index(drop=True)
    ledger.close_source(SOURCE, len(result))
    return result
