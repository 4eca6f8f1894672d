"""Andresen's spatial point pattern test (SPPT): is the current period's spread of incidents over
the units the baseline's spread?

For one level and category, with baseline counts ``b_i`` and current ("test") counts ``c_i`` per unit
``i`` (every unit of the level, zeros included):

1. ``m = round(0.85 · Σ c)`` current incidents are drawn without replacement, 200 times; draw ``r``
   gives each unit's share ``s_ir = (incidents of unit i in the draw) / m · 100`` (per cent).
   The counts of a draw are a multivariate hypergeometric sample of the unit counts ``c`` (the same
   distribution as drawing the incidents one by one, as R's ``sppt`` does), so no point is touched.
2. A unit's 95 % interval is the 6th and the 195th of its 200 shares sorted
   (``floor(0.025·200) + 1`` and ``ceil(0.975·200)``, the R package's rule).
3. The unit is *similar* (``similar = 1``) when its baseline share ``100·b_i/Σb`` lies in the
   interval (ends included); ``local_s = +1`` when the baseline share lies below the interval (the
   unit holds a larger share now), ``−1`` above it (a smaller share now), else 0 (R's ``localS``).
4. ``S = mean(similar)`` over all units; the robust S-index is the mean over the units with at least
   one incident in either period (``b_i + c_i > 0``); the generalised robust S-index is
   ``Σ similar (robust units) / min(Σb, Σc, robust units)`` (Wheeler, Steenbeek & Andresen 2018).

S near 1: the two periods' patterns are alike unit by unit; Andresen's rule of thumb calls ≥ 0.80
similar. Draws come from ``numpy.random.default_rng(seed)``: same seed, same result.

References: Andresen, M.A. (2009) Testing for similarity in area-based spatial patterns: a
nonparametric Monte Carlo approach. Applied Geography 29, 333–345. Andresen, M.A. (2016) An
area-based nonparametric spatial point pattern test: the test, its applications, and the future.
Canadian Journal of Criminology and Criminal Justice 58, 223–239 (the robust S-index). Wheeler,
A.P., Steenbeek, W. & Andresen, M.A. (2018) Testing for similarity in area-based spatial patterns:
alternative methods to Andresen's spatial point pattern test. Transactions in GIS 22, 760–774.
Steenbeek, W. ``sppt`` R package (github.com/wsteenbeek/sppt), ``sppt()`` defaults.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError

__all__ = ["DRAWS", "SAMPLE", "sppt", "sppt_summary"]

DRAWS, SAMPLE, LEVEL = 200, 0.85, 0.95


def sppt(base, test, *, draws: int = DRAWS, sample: float = SAMPLE, level: float = LEVEL,
         seed: int | np.random.Generator = 0, return_draws: bool = False):
    """Andresen's SPPT of the current (``test``) counts against the baseline (``base``) counts per unit.

    Parameters
    ----------
    base, test : array_like of whole numbers ≥ 0, one per unit (same order, every unit of the level).
    draws : number of samples of the test incidents (200).
    sample : fraction of the test incidents in each sample (0.85).
    level : interval level (0.95: the 6th and 195th of 200 sorted shares).
    seed : seed or Generator of the draws.
    return_draws : also return the (draws × units) shares drawn, per cent.

    Returns
    -------
    DataFrame, one row per unit: ``base_count``, ``test_count``, ``base_pct``, ``test_pct``, ``lower_pct``,
    ``upper_pct`` (per cent of the period's incidents), ``local_s`` (−1/0/+1), ``similar`` (0/1),
    ``robust`` (True where the unit has an incident in either period). With no incident in one of
    the periods there is nothing to compare: :class:`UsmGeoError`.
    """
    b = np.asarray(base, dtype=float).ravel()
    c = np.asarray(test, dtype=float).ravel()
    if b.shape != c.shape:
        raise UsmGeoError(f"SPPT: {b.size} baseline counts but {c.size} current counts", fix="pass one count per unit in both")
    if np.any(~np.isfinite(b)) or np.any(~np.isfinite(c)) or np.any(b < 0) or np.any(c < 0) \
            or np.any(b != np.round(b)) or np.any(c != np.round(c)):
        raise UsmGeoError("SPPT counts must be whole numbers ≥ 0")
    if not (0 < sample <= 1) or draws < 1 or not (0 < level < 1):
        raise UsmGeoError(f"SPPT needs 0 < sample ≤ 1, draws ≥ 1 and 0 < level < 1 (got {sample}, {draws}, {level})")
    nb, nc = b.sum(), c.sum()
    if nb == 0 or nc == 0:
        raise UsmGeoError("SPPT: a period has no incidents, so there is no pattern to compare",
                          fix="choose periods.baseline and periods.current with incidents")
    m = int(np.round(sample * nc))  # R's round(): half to even, as numpy
    if m == 0:
        raise UsmGeoError(f"SPPT: {sample:.0%} of {int(nc)} current incidents rounds to none", fix="use more incidents")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    # method "count" for small totals, "marginals" otherwise (numpy's advice); same distribution
    method = "count" if nc <= 1_000_000 else "marginals"
    counts = rng.multivariate_hypergeometric(c.astype(np.int64), m, size=draws, method=method)
    shares = counts / m * 100.0
    ordered = np.sort(shares, axis=0)
    lo_col = math.floor((1 - level) / 2 * draws) + 1  # 1-based, as R: 6 and 195 for 200 draws
    hi_col = math.ceil((1 - (1 - level) / 2) * draws)
    lower, upper = ordered[lo_col - 1], ordered[hi_col - 1]
    base_pct, test_pct = b / nb * 100.0, c / nc * 100.0
    local_s = np.where(base_pct < lower, 1, np.where(base_pct > upper, -1, 0)).astype(np.int64)
    out = pd.DataFrame({
        "base_count": b.astype(np.int64), "test_count": c.astype(np.int64), "base_pct": base_pct, "test_pct": test_pct,
        "lower_pct": lower, "upper_pct": upper, "local_s": local_s, "similar": (local_s == 0).astype(np.int64),
        "robust": (b + c) > 0,
    })
    out.attrs.update(sample_size=m, draws=draws, sample=sample, level=level)
    return (out, shares) if return_draws else out


def sppt_summary(table: pd.DataFrame) -> dict:
    """S-index, robust S-index and generalised robust S-index of one :func:`sppt` table, with the
    number of units in each and of units whose share rose (``local_s = +1``) or fell (−1)."""
    robust = table["robust"].to_numpy(bool)
    similar = table["similar"].to_numpy(float)
    denom = min(float(table["base_count"].sum()), float(table["test_count"].sum()), float(robust.sum()))
    return {
        "units": int(len(table)),
        "s_index": float(similar.mean()) if len(table) else None,
        "robust_units": int(robust.sum()),
        "robust_s_index": float(similar[robust].mean()) if robust.any() else None,
        "generalized_robust_s_index": float(similar[robust].sum() / denom) if denom > 0 else None,
        "higher_share_units": int((table["local_s"] == 1).sum()),
        "lower_share_units": int((table["local_s"] == -1).sum()),
        "baseline_n": int(table["base_count"].sum()),
        "current_n": int(table["test_count"].sum()),
        "sample_size": int(table.attrs.get("sample_size", 0)),
    }


def sppt_table(counts: pd.DataFrame, unit_ids: dict, baseline: str, current: str, *, seed: int = 0,
               draws: int = DRAWS, sample: float = SAMPLE, level: float = LEVEL) -> tuple[pd.DataFrame, dict]:
    """:func:`sppt` of ``current`` against ``baseline`` for every level of ``unit_ids`` (level → the
    level's unit ids, every unit) and every category of ``counts`` (measures-table ``count`` rows:
    ``level, unit_id, period, category, value``; ``all`` is the total).

    Each (level, category) draws from its own generator, ``default_rng([seed, crc32(level),
    crc32(category)])``: the same inputs and seed give the same draws, and adding a level or a category
    does not change the others'. A category with no incident in one of the two periods is skipped (summary
    ``skipped``). Returns (``sppt.csv``: ``level, unit_id, category, baseline, current`` + the
    :func:`sppt` columns, sorted; summary: level → category → :func:`sppt_summary` or the reason skipped).
    """
    sel = counts[counts["period"].isin([baseline, current])]
    categories = sorted(set(sel["category"]))
    frames, summary = [], {}
    for lv in sorted(unit_ids):
        ids = pd.Index(np.asarray(unit_ids[lv], dtype=object))
        summary[lv] = {}
        at = sel[sel["level"] == lv]
        for cat in categories:
            sub = at[at["category"] == cat]
            per = {p: sub[sub["period"] == p].groupby("unit_id")["value"].sum().reindex(ids).fillna(0).to_numpy(float)
                   for p in (baseline, current)}
            if per[baseline].sum() == 0 or per[current].sum() == 0:
                summary[lv][cat] = {"skipped": "no incidents in the baseline or the current period"}
                continue
            table = sppt(per[baseline], per[current], draws=draws, sample=sample, level=level,
                         seed=np.random.default_rng([int(seed) % (1 << 64), zlib.crc32(lv.encode()), zlib.crc32(cat.encode())]))
            summary[lv][cat] = sppt_summary(table)
            frames.append(pd.concat([pd.DataFrame({"level": lv, "unit_id": ids.to_numpy(), "category": cat,
                                                   "baseline": baseline, "current": current}), table], axis=1))
    columns = ["level", "unit_id", "category", "baseline", "current", "base_count", "test_count", "base_pct", "test_pct",
               "lower_pct", "upper_pct", "local_s", "similar", "robust"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    out = out.sort_values(["level", "category", "unit_id"], kind="stable").reset_index(drop=True)
    return out, summary
