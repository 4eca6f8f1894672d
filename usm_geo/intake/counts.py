"""Area-coded counts: counts per unit code × period (× category), as statistics offices and police
forces publish them (``[[inputs.counts]]``, docs/study.md "Area-coded counts").

Long form: one row per unit, period (and category) with a ``count`` column and a ``period`` column
of labels (``2019``, ``2019-Q1``, ``2019-03``). Wide form: one row per unit (and category), one
column per period (``periods``: a list of columns, or a glob pattern such as ``"20*"``; each column
label is a period label). A *value* is one count: a long row, or one period cell of a wide row.

Every row is used or in the ledger, and so is every event:

* ``missing_unit`` / ``unknown_unit`` (dropped, the whole row, with the events it holds): the code is
  empty or matches no unit of ``unit_level`` (codes are normalised like every unit id);
* ``invalid_count`` (0 events: it is not a count): a value that is not a whole number ≥ 0 (``5.0``
  is 5; ``5.5``, ``-1``, text and blanks are not), with its column and value;
* ``unparseable_period`` / ``outside_study_period`` (with the value's events): a long row's period
  label that is no period, or a period not wholly inside ``[periods] start … end``.

A value problem on a row whose other values are used is status ``changed`` (the row is used without
that value); when no value of a row is used, its entries are ``dropped``. The ledger's ``events``
column holds the events each entry leaves out, so ``events read = events used + Σ events``.
"""

from __future__ import annotations

import fnmatch

import numpy as np
import pandas as pd

from usm_geo.errors import InputFileError, UsmGeoError
from usm_geo.intake import columns as cols
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import normalise_ids
from usm_geo.periods import labels as period_labels
from usm_geo.periods import period_bounds
from usm_geo.study import CountSource, Periods

TIDY_COLUMNS = ["source", "row", "unit_id", "period", "category", "count", "missing"]
_THOUSANDS = r"^\d{1,3}(,\d{3})+(\.0+)?$"  # "1,234" as printed by spreadsheets


def parse_counts(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts from text: (int64 values, valid mask). Valid = a whole number ≥ 0 (``5``, ``5.0``,
    ``1,234``); invalid values are 0 in the first array."""
    t = text.astype(str).str.strip().where(text.notna(), "")
    t = t.where(~t.str.match(_THOUSANDS), t.str.replace(",", "", regex=False))
    v = pd.to_numeric(t, errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v >= 0) & (np.floor(v) == v)
    return np.where(ok, v, 0).astype(np.int64), ok


def _value_columns(frame: pd.DataFrame, src: CountSource) -> list[str]:
    """The wide table's period columns: those listed, or those matching the glob pattern."""
    if isinstance(src.periods, str):
        found = [c for c in map(str, frame.columns) if fnmatch.fnmatchcase(c.strip(), src.periods)]
        if not found:
            raise InputFileError(f"no column matches periods = '{src.periods}'", where=src.path,
                                 fix=f"columns in the file: {', '.join(map(str, frame.columns[:30]))}; write a pattern "
                                     'such as "20*" or list the columns: periods = ["2019", "2020"]')
        return found
    return [cols.resolve(frame.columns, c, "period", src.path, f"{src.name}.periods") for c in src.periods]


def study_label(label: str, frequency: str) -> tuple[str | None, object]:
    """The study period (of ``frequency``) holding the whole of a count's period ``label``, and the
    label's window; (None, None) for a label that is not a period. A label coarser than the study
    frequency (a year in a monthly study) raises :class:`InputFileError` from the caller."""
    try:
        w = period_bounds(str(label))
    except UsmGeoError:
        return None, None
    first, last = period_labels(np.array([np.datetime64(w.start), np.datetime64(w.end)]), frequency)
    return (first if first == last else ""), w


def _period_map(labels: list[str], frequency: str, periods: Periods, src: CountSource, where: str):
    """label → (study period label | None, reason | None): None for a label that is not a period
    (``unparseable_period``) or not wholly inside the study period (``outside_study_period``)."""
    out = {}
    for label in labels:  # distinct labels only: a few dozen at most
        study, w = study_label(label, frequency)
        if study is None:
            out[label] = (None, "unparseable_period")
        elif study == "":
            raise InputFileError(f"the count period '{label}' spans more than one {frequency} of the study ({where})",
                                 where=src.path, fix=f"set [periods] frequency to the counts' own period (e.g. "
                                 f"frequency = \"year\" for yearly counts): a count cannot be split over {frequency}s")
        elif (periods.start is not None and w.start < periods.start) or (periods.end is not None and w.end > periods.end):
            out[label] = (None, "outside_study_period")
        else:
            out[label] = (study, None)
    return out


def read_counts(src: CountSource, ledger: Ledger, unit_ids, periods: Periods) -> pd.DataFrame:
    """Read one count source into the tidy table ``source, row, unit_id, period, category, count,
    missing`` (one row per value used, zeros included; ``period`` is the study's period label, by
    ``periods.frequency``), accounting for every row and every event in ``ledger``. Rows with
    ``missing`` True (count 0) mark a value of a known unit and a study period that is not a count
    (``invalid_count``): that unit × period × category is not reported by the file."""
    raw = read_records(src.path, src.name, ledger, fmt=src.format, layer=src.layer, delimiter=src.delimiter,
                       encoding=src.encoding)
    frame, rows = raw.frame, np.asarray(raw.rows, dtype=np.int64)
    if raw.spatial:  # the codes place the counts; a geometry column is not needed
        frame = pd.DataFrame(frame.drop(columns="geometry"))
    ucol = cols.resolve(frame.columns, src.unit, "unit", src.path, f"{src.name}.unit")
    ids = normalise_ids(frame[ucol]).to_numpy(dtype=object)
    n = len(frame)

    # values: (n rows × k values) of counts, validity and period labels
    if src.wide:
        vcols = _value_columns(frame, src)
        labels = [c.strip() for c in vcols]
        parsed = [parse_counts(frame[c]) for c in vcols]
        values = np.column_stack([p[0] for p in parsed]) if parsed else np.zeros((n, 0), np.int64)
        valid = np.column_stack([p[1] for p in parsed]) if parsed else np.zeros((n, 0), bool)
        raw_text = np.column_stack([frame[c].astype(str).to_numpy(dtype=object) for c in vcols])
        label_of = np.tile(np.asarray(labels, dtype=object), (n, 1))
        col_of = np.tile(np.asarray(vcols, dtype=object), (n, 1))
    else:
        ccol = cols.resolve(frame.columns, src.count, "count", src.path, f"{src.name}.count")
        pcol = cols.resolve(frame.columns, src.period, "period", src.path, f"{src.name}.period")
        v, ok = parse_counts(frame[ccol])
        values, valid = v[:, None], ok[:, None]
        raw_text = frame[ccol].astype(str).to_numpy(dtype=object)[:, None]
        label_of = normalise_ids(frame[pcol]).to_numpy(dtype=object)[:, None]
        col_of = np.full((n, 1), ccol, dtype=object)
    k = values.shape[1]
    events = np.where(valid, values, 0)
    ledger.open_source(src.name, src.path, raw.read, events=int(events.sum()))

    if src.category_value is not None:
        category = np.full(n, src.category_value, dtype=object)
    elif src.category is not None:
        kcol = cols.resolve(frame.columns, src.category, "category", src.path, f"{src.name}.category")
        text = frame[kcol].astype(str).str.strip().where(frame[kcol].notna(), "")
        category = np.where(text.to_numpy(dtype=object) == "", "unknown", text.to_numpy(dtype=object))
    else:
        category = np.full(n, "uncategorised", dtype=object)

    # whole rows: the unit code
    known = set(unit_ids)
    missing = ids == ""
    unknown = ~missing & ~np.isin(ids, np.asarray(sorted(known), dtype=object))
    row_events = events.sum(axis=1)
    ledger.add(src.name, rows[missing], "dropped", "missing_unit", f"column '{ucol}' is empty", events=row_events[missing])
    detail = np.char.add(np.char.add(f"{ucol} = '", ids.astype(str)),
                         np.char.add(f"' matches no {src.unit_level} id; ", row_events.astype(str)))
    ledger.add(src.name, rows[unknown], "dropped", "unknown_unit", np.char.add(detail, " events")[unknown],
               events=row_events[unknown])
    row_ok = ~missing & ~unknown

    # single values: the count, then its period
    distinct = sorted({str(x) for x in pd.unique(label_of.reshape(-1))})
    pmap = _period_map(distinct, periods.frequency, periods, src, f"{src.name}")
    flat = pd.Series(label_of.reshape(-1).astype(str))
    study = flat.map({x: p[0] or "" for x, p in pmap.items()}).to_numpy(dtype=object).reshape(n, k)
    why = flat.map({x: p[1] or "" for x, p in pmap.items()}).to_numpy(dtype=object).reshape(n, k)
    bad_count = row_ok[:, None] & ~valid
    bad_period = row_ok[:, None] & valid & (why != "")
    used = row_ok[:, None] & valid & (why == "")
    row_used = used.any(axis=1)
    status = np.where(row_used, "changed", "dropped")
    r_i, c_i = np.nonzero(bad_count)
    ledger_value(ledger, src.name, rows, r_i, status, "invalid_count",
                 ("column '" + _texts(col_of[r_i, c_i]) + "' = '" + _texts(raw_text[r_i, c_i]).str.slice(0, 40)
                  + "' is not a whole number ≥ 0").to_numpy(dtype=object), np.zeros(len(r_i), np.int64))
    for reason in ("unparseable_period", "outside_study_period"):
        r_i, c_i = np.nonzero(bad_period & (why == reason))
        text = "is not a year, quarter, month or window" if reason == "unparseable_period" else \
            f"is not inside {periods.start or '…'} … {periods.end or '…'}"
        ledger_value(ledger, src.name, rows, r_i, status, reason,
                     ("period '" + _texts(label_of[r_i, c_i]) + "' (column '" + _texts(col_of[r_i, c_i]) + f"') {text}")
                     .to_numpy(dtype=object), events[r_i, c_i])

    r_i, c_i = np.nonzero(used)
    tidy = pd.DataFrame({"source": src.name, "row": rows[r_i], "unit_id": ids[r_i], "period": study[r_i, c_i],
                         "category": category[r_i], "count": values[r_i, c_i].astype(np.int64), "missing": False})
    repeated = tidy.duplicated(["unit_id", "period", "category"], keep="first").to_numpy()
    if repeated.any():  # both are events: added, and said
        ledger.add(src.name, tidy["row"].to_numpy()[repeated], "kept", "repeated_unit_period",
                   "the unit, period and category appear in an earlier row: the counts are added", events=0)
    ledger.close_source(src.name, int(row_used.sum()), events_used=int(tidy["count"].sum()))
    # a value that is not a count, for a known unit and a period of the study: that unit × period ×
    # category has no count from this file (``missing``, count 0), so the measures say "not reported"
    r_i, c_i = np.nonzero(bad_count & (why == ""))
    holes = pd.DataFrame({"source": src.name, "row": rows[r_i], "unit_id": ids[r_i], "period": study[r_i, c_i],
                          "category": category[r_i], "count": np.zeros(len(r_i), np.int64), "missing": True})
    tidy = pd.concat([tidy, holes], ignore_index=True) if len(holes) else tidy
    return tidy.sort_values(["unit_id", "period", "category", "row"], kind="stable").reset_index(drop=True)


def _texts(values: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object)).astype(str)


def ledger_value(ledger: Ledger, source: str, rows: np.ndarray, r_i: np.ndarray, status: np.ndarray, reason: str,
                 detail: np.ndarray, events: np.ndarray) -> None:
    """Ledger entries for single values (``r_i``: their row positions), ``changed`` where the row is
    still used, ``dropped`` where it is not."""
    for st in ("changed", "dropped"):
        sel = status[r_i] == st
        if sel.any():
            ledger.add(source, rows[r_i[sel]], st, reason, detail[sel], events=np.asarray(events)[sel])


def read_count_sources(sources, ledger: Ledger, unit_ids, periods: Periods) -> pd.DataFrame:
    """Every count source of the study in one tidy table (:data:`TIDY_COLUMNS`); an error when no
    value of any source is used."""
    parts = [read_counts(src, ledger, unit_ids, periods) for src in sources]
    out = pd.concat(parts, ignore_index=True)[TIDY_COLUMNS] if parts else pd.DataFrame(columns=TIDY_COLUMNS)
    if not (~out["missing"].astype(bool)).any():
        top = sorted(((n, r) for (s, st, r), n in ledger.reason_counts().items()
                      if s in {x.name for x in sources} and st == "dropped"), reverse=True)[:3]
        raise InputFileError("no usable counts: every row of the count files was dropped"
                             + (" (" + ", ".join(f"{r}: {n:,}" for n, r in top) + ")" if top else ""),
                             where="inputs.counts", fix="see the ledger reasons listed with this error; check unit, "
                             "unit_level, the period columns and the study period")
    return out
