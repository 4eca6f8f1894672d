"""Risk and resilience factors as area tables (``[[inputs.covariates]]``).

One row per unit of the table's boundary level, one numeric column per factor. Numbers may carry
thousands separators (``12,345``); decimals are written with a point. Every row is accounted for in the ledger: a unit id that matches no
unit (``unknown_unit``), a repeated unit (``duplicate_unit``) or a value that is not a number
(``invalid_covariate``, the value is then missing for that unit) — units left without a value are
left out of the model, which says how many.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.intake import columns as cols
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import normalise_ids
from usm_geo.study import CovariateSource


def read_covariates(src: CovariateSource, ledger: Ledger, unit_ids) -> pd.DataFrame:
    """``unit_id`` + one float column per factor (NaN where missing or not a number), one row per
    matched unit, sorted by ``unit_id``. ``unit_ids``: the ids of ``src.unit_level``."""
    raw = read_records(src.path, src.name, ledger, layer=src.sheet)
    ledger.open_source(src.name, src.path, raw.read)
    frame, rows = raw.frame, raw.rows
    ucol = cols.resolve(frame.columns, src.unit, "unit", src.path, f"{src.name}.unit")
    ids = normalise_ids(frame[ucol])
    known = ids.isin(set(unit_ids)).to_numpy()
    ledger.add(src.name, rows[~known], "dropped", "unknown_unit",
               (f"{ucol} = '" + frame[ucol].astype(str).str.slice(0, 40) + f"' is not a {src.unit_level} id").to_numpy(dtype=object)[~known])
    dup = known & ids.where(known).duplicated(keep="first").to_numpy() & ids.where(known).notna().to_numpy()
    ledger.add(src.name, rows[dup], "dropped", "duplicate_unit", "the unit appears in an earlier row")
    keep = known & ~dup
    out = pd.DataFrame({"unit_id": ids.to_numpy(dtype=object)})
    for name in src.columns:
        c = cols.resolve(frame.columns, name, "covariate", src.path, f"{src.name}.columns")
        text = frame[c].astype(str).str.strip().str.replace(",", "", regex=False)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, copy=True)
        blank = frame[c].isna().to_numpy() | text.isin(["", "nan", "NaN", "NA", "None"]).to_numpy()
        bad = keep & ~np.isfinite(values) & ~blank
        ledger.add(src.name, rows[bad], "changed", "invalid_covariate",
                   (f"{c} = '" + frame[c].astype(str).str.slice(0, 30) + "' is not a number; missing for this unit").to_numpy(dtype=object)[bad])
        values[~np.isfinite(values)] = np.nan
        out[name] = values
    result = out[keep].sort_values("unit_id", kind="stable").reset_index(drop=True)
    ledger.close_source(src.name, len(result))
    return result
