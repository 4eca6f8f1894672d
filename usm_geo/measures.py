"""The measures table: counts per unit × period × category, harm-weighted sums, population, and
rollups that add numerators and denominators (never average rates).

Columns (DESIGN.md): ``level, unit_id, period, category, measure, numerator, denominator, value,
lower, upper, n, flags``. ``category`` is ``all`` for the total. Polygon levels (and the city) list
every unit, zeros included, for every period and every category seen; H3 levels list their cells
(the study-area cover plus any cell holding a point).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.units.hierarchy import UnitSet

COLUMNS = ["level", "unit_id", "period", "category", "measure", "numerator", "denominator", "value", "lower", "upper", "n", "flags"]
ALL = "all"


def _codes(values, categories) -> np.ndarray:
    return pd.Categorical(np.asarray(values, dtype=object), categories=list(categories)).codes.astype(np.int64)


def _long(level: str, unit_ids, periods, categories, measure: str, numerator: np.ndarray, n: np.ndarray) -> pd.DataFrame:
    """(U, P, C) arrays → long rows, ordered by unit, period, category."""
    U, P, C = numerator.shape
    return pd.DataFrame({
        "level": level,
        "unit_id": np.repeat(np.asarray(unit_ids, dtype=object), P * C),
        "period": np.tile(np.repeat(np.asarray(periods, dtype=object), C), U),
        "category": np.tile(np.asarray(categories, dtype=object), U * P),
        "measure": measure,
        "numerator": numerator.reshape(-1).astype(float),
        "denominator": np.nan,
        "value": numerator.reshape(-1).astype(float),
        "lower": np.nan,
        "upper": np.nan,
        "n": n.reshape(-1).astype(np.int64),
        "flags": "",
    })


def count_measures(assignment: pd.DataFrame, units: UnitSet, *, period: np.ndarray, periods: list[str],
                   category: np.ndarray, weight: np.ndarray | None = None) -> pd.DataFrame:
    """Counts (and harm sums when ``weight`` is given) per level × unit × period × category.

    ``assignment`` has one column per level holding each record's unit_id (None = in no unit);
    ``period`` the record's period label ('' = in no listed period); ``category`` its category.
    Counted with ``np.bincount`` on one flat index per level (no per-record Python work).
    """
    cats = sorted(set(np.asarray(category, dtype=object)))
    p_code = _codes(period, periods)
    c_code = _codes(category, cats)
    P, C = len(periods), len(cats)
    frames = []
    for level in units.names:
        ids = units.levels[level]["unit_id"].to_numpy(dtype=object)
        u_code = _codes(assignment[level].to_numpy(dtype=object), ids)
        ok = (u_code >= 0) & (p_code >= 0) & (c_code >= 0)
        flat = (u_code[ok] * P + p_code[ok]) * C + c_code[ok]
        shape = (len(ids), P, C)
        n = np.bincount(flat, minlength=len(ids) * P * C).reshape(shape)
        n_all = np.concatenate([n, n.sum(axis=2, keepdims=True)], axis=2)
        labels = cats + [ALL]
        frames.append(_long(level, ids, periods, labels, "count", n_all, n_all))
        if weight is not None:
            h = np.bincount(flat, weights=np.asarray(weight, float)[ok], minlength=len(ids) * P * C).reshape(shape)
            h_all = np.concatenate([h, h.sum(axis=2, keepdims=True)], axis=2)
            frames.append(_long(level, ids, periods, labels, "harm", h_all, n_all))
    return sort_measures(pd.concat(frames, ignore_index=True))


def sort_measures(frame: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: level as listed, then unit, period, category, measure."""
    level_order = {name: i for i, name in enumerate(pd.unique(frame["level"]))}
    key = frame["level"].map(level_order)
    return (frame.assign(_k=key).sort_values(["_k", "unit_id", "period", "category", "measure"], kind="stable")
            .drop(columns="_k").reset_index(drop=True)[COLUMNS])


def roll_up(measures: pd.DataFrame, units: UnitSet, fine: str, coarse: str) -> pd.DataFrame:
    """Sum numerators, denominators and n of ``fine`` units into their ``coarse`` unit (crosswalk).

    Values are recomputed from the sums (for counts, value = numerator); rates are never averaged.
    """
    parent = units.parents(fine, coarse)
    sub = measures[measures["level"] == fine].copy()
    sub["unit_id"] = sub["unit_id"].map(parent)
    sub = sub[sub["unit_id"].notna()]
    keys = ["unit_id", "period", "category", "measure"]
    out = sub.groupby(keys, sort=True, dropna=False)[["numerator", "denominator", "n"]].sum(min_count=1).reset_index()
    out["n"] = out["n"].fillna(0).astype(np.int64)
    out["level"] = coarse
    out["value"] = out["numerator"]
    out["lower"] = np.nan
    out["upper"] = np.nan
    out["flags"] = "rolled_up"
    return out[COLUMNS]


def check_rollups(measures: pd.DataFrame, units: UnitSet) -> list[dict]:
    """Compare each nested coarser level's direct counts with the sum of its finer units' counts.

    Returns one record per (fine, coarse) pair: the number of units and the largest difference.
    Differences arise only from points on boundaries that do not nest exactly; in a hierarchy
    that nests exactly they are zero (tested).
    """
    report = []
    counts = measures[(measures["measure"] == "count")]
    for (fine, coarse), nested in sorted(units.nested.items()):
        if not nested or (units.kinds[fine] == "h3" and units.kinds[coarse] == "polygon"):
            continue
        rolled = roll_up(counts, units, fine, coarse).set_index(["unit_id", "period", "category"])["numerator"]
        direct = counts[counts["level"] == coarse].set_index(["unit_id", "period", "category"])["numerator"]
        diff = direct.sub(rolled, fill_value=0).abs()
        report.append({"fine": fine, "coarse": coarse, "max_abs_difference": float(diff.max()) if len(diff) else 0.0,
                       "cells_differing": int((diff > 0).sum())})
    return report
