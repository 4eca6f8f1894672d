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


def tally(units: dict[str, np.ndarray], keys: dict[str, np.ndarray], weight: np.ndarray | None = None) -> pd.DataFrame:
    """Sparse counts of records: one row per level × unit × key values holding at least one record.

    ``units`` maps each level to each record's unit: unit_id strings (None = in no unit) or, for an
    H3 level, ``uint64`` cells (0 = none), written as their string ids in the result. ``keys`` are
    further record labels (e.g. ``period``, ``category``). Records whose unit or a key is None are not
    counted. Returns columns ``level, unit_id, <keys…>, n`` (int64) and ``harm`` (sum of ``weight``,
    in record order) when ``weight`` is given. Tallies of disjoint sets of records (e.g. the parts
    of a dataset) add up: concatenate them and sum by the key columns
    (:func:`add_tallies`). Vectorised: one factorisation per column and one ``np.bincount`` per level.
    """
    from usm_geo.units.h3cells import cells_to_str

    names = list(keys)
    k_codes, k_uni = [], []
    for name in names:
        codes, uniques = pd.factorize(np.asarray(keys[name], dtype=object))
        k_codes.append(codes.astype(np.int64))
        k_uni.append(np.asarray(uniques, dtype=object))
    frames = []
    for level, values in units.items():
        values = np.asarray(values)
        if values.dtype == np.uint64:
            u_code, u_uni = pd.factorize(values)
            u_code = np.where(values == 0, -1, u_code).astype(np.int64)
            u_uni = cells_to_str(np.asarray(u_uni, dtype=np.uint64))
        else:
            u_code, u_uni = pd.factorize(values.astype(object))
            u_code = u_code.astype(np.int64)
            u_uni = np.asarray(u_uni, dtype=object)
        codes = [u_code, *k_codes]
        shape = (len(u_uni), *[len(u) for u in k_uni])
        ok = np.logical_and.reduce([c >= 0 for c in codes])
        if not ok.any() or 0 in shape:
            continue
        flat = np.ravel_multi_index(tuple(c[ok] for c in codes), shape)
        cells, inverse = np.unique(flat, return_inverse=True)
        frame = {"level": level}
        for axis, (name, uniques) in enumerate(zip(["unit_id", *names], [u_uni, *k_uni])):
            frame[name] = uniques[np.unravel_index(cells, shape)[axis]]
        frame["n"] = np.bincount(inverse, minlength=len(cells)).astype(np.int64)
        if weight is not None:
            frame["harm"] = np.bincount(inverse, weights=np.asarray(weight, float)[ok], minlength=len(cells))
        frames.append(pd.DataFrame(frame))
    if not frames:
        columns = {"level": object, "unit_id": object, **{n: object for n in names}, "n": np.int64}
        if weight is not None:
            columns["harm"] = float
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    return pd.concat(frames, ignore_index=True)


def add_tallies(tallies: list[pd.DataFrame]) -> pd.DataFrame:
    """The sum of sparse tallies (:func:`tally`) of disjoint sets of records, sorted by its keys."""
    frame = pd.concat([t for t in tallies if len(t)] or tallies[:1], ignore_index=True)
    keys = [c for c in frame.columns if c not in ("n", "harm")]
    return frame.groupby(keys, sort=True, dropna=False).sum().reset_index()


def dense(sparse: pd.DataFrame, axes: dict[str, np.ndarray], value: str = "n") -> np.ndarray:
    """A sparse tally's ``value`` column on the full grid of ``axes`` (column → labels in order),
    zeros where no record is; rows with a label not on an axis are left out."""
    shape = tuple(len(a) for a in axes.values())
    codes = [_codes(sparse[k].to_numpy(dtype=object), axes[k]) for k in axes]
    ok = np.logical_and.reduce([c >= 0 for c in codes]) if codes else np.ones(len(sparse), bool)
    values = sparse[value].to_numpy()
    out = np.zeros(int(np.prod(shape)), dtype=np.int64 if value == "n" else float)
    if ok.any():
        np.add.at(out, np.ravel_multi_index(tuple(c[ok] for c in codes), shape), values[ok])
    return out.reshape(shape)


def count_measures(assignment: pd.DataFrame, units: UnitSet, *, period: np.ndarray, periods: list[str],
                   category: np.ndarray, weight: np.ndarray | None = None) -> pd.DataFrame:
    """Counts (and harm sums when ``weight`` is given) per level × unit × period × category.

    ``assignment`` has one column per level holding each record's unit_id (None = in no unit);
    ``period`` the record's period label ('' = in no listed period); ``category`` its category.
    Counted with ``np.bincount`` on one flat index per level (no per-record Python work).
    """
    sparse = tally({level: assignment[level].to_numpy(dtype=object) for level in units.names},
                   {"period": period, "category": category}, weight)
    return measures_from_tally(sparse, units, periods, sorted(set(np.asarray(category, dtype=object))),
                               harm=weight is not None)


def aoristic_weights(start, end, periods: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each record's weight in each period it may have happened in (aoristic analysis, Ratcliffe 2002).

    ``start``: when each record's window opens (``occurred_at``, naive local time); ``end``: its
    exclusive end (``occurred_end``), NaT for a record known to one moment. A record with a window
    ``[s, e)`` gets, in period ``[a, b)`` (``b`` = the day after the period's last day),
    ``w = |[s, e) ∩ [a, b)| / |[s, e) ∩ study|`` with ``study`` = the first period's start … the last
    period's end: the time spent in each period over the time of the window inside the study, so a
    record's weights sum to 1 (a window reaching beyond the study period is clipped to it). A record
    without a window, or with ``e = s``, has weight 1 in the period holding ``s``. Records whose start
    lies in no listed period get no weight.

    Returns (record index, period index, weight) of every record × period with a positive weight,
    ordered by record then period. Vectorised: one ``searchsorted`` and one ``np.repeat``.
    """
    from usm_geo.periods import period_bounds

    s = np.asarray(start, dtype="datetime64[ns]")
    e = np.asarray(end, dtype="datetime64[ns]") if end is not None else np.full(s.shape, np.datetime64("NaT"), "datetime64[ns]")
    bounds = [period_bounds(str(p)) for p in periods]  # one per period
    a = np.array([np.datetime64(b.start, "ns") for b in bounds], dtype="datetime64[ns]")
    b = np.array([np.datetime64(b.end, "ns") + np.timedelta64(1, "D") for b in bounds], dtype="datetime64[ns]")
    if not len(a):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    window = ~np.isnat(e) & ~np.isnat(s) & (e > s)
    first = np.searchsorted(a, s, side="right") - 1  # the period holding s
    inside = ~np.isnat(s) & (first >= 0) & (s < b[np.clip(first, 0, None)])
    last = np.where(window, np.searchsorted(a, np.where(window, e, s), side="left") - 1, first)
    last = np.minimum(last, len(a) - 1)
    keep = np.flatnonzero(inside)
    span = (last[keep] - first[keep] + 1).astype(np.int64)
    rec = np.repeat(keep, span)
    per = np.repeat(first[keep], span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
    w = np.ones(rec.size)
    win = window[rec]
    if win.any():
        lo = np.maximum(s[rec][win], a[per][win])
        hi = np.minimum(e[rec][win], b[per][win])
        part = np.maximum((hi - lo).astype(np.int64), 0).astype(float)  # ns of the window in the period
        total = np.bincount(rec[win], weights=part, minlength=s.size)[rec[win]]
        w[win] = part / total
    ok = w > 0
    return rec[ok], per[ok], w[ok]


def measures_from_tally(sparse: pd.DataFrame, units: UnitSet, periods: list[str], categories: list[str],
                        harm: bool = False) -> pd.DataFrame:
    """The count (and harm) rows of the measures table from a sparse tally with ``period`` and
    ``category`` keys: every unit of every level × period × category (plus ``all``), zeros included."""
    labels = list(categories) + [ALL]
    frames = []
    for level in units.names:
        ids = units.levels[level]["unit_id"].to_numpy(dtype=object)
        sub = sparse[sparse["level"] == level]
        axes = {"unit_id": ids, "period": np.asarray(periods, dtype=object), "category": np.asarray(categories, dtype=object)}
        n = dense(sub, axes)
        n_all = np.concatenate([n, n.sum(axis=2, keepdims=True)], axis=2)
        frames.append(_long(level, ids, periods, labels, "count", n_all, n_all))
        if harm:
            h = dense(sub, axes, "harm")
            h_all = np.concatenate([h, h.sum(axis=2, keepdims=True)], axis=2)
            frames.append(_long(level, ids, periods, labels, "harm", h_all, n_all))
    return sort_measures(pd.concat(frames, ignore_index=True))


def sort_measures(frame: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: level as listed, then unit, period, category, measure."""
    level_order = {name: i for i, name in enumerate(pd.unique(frame["level"]))}
    key = frame["level"].map(level_order)
    # one text dtype whichever path built the table (a Dask tally or a database read gives objects,
    # pandas 3 gives str): the same table compares equal and writes the same bytes
    text = {c: pd.StringDtype(na_value=np.nan) for c in ("level", "unit_id", "period", "category", "measure", "flags")
            if c in frame.columns}
    numbers = {c: np.float64 for c in ("numerator", "denominator", "value", "lower", "upper") if c in frame.columns}
    if "n" in frame.columns and frame["n"].dtype == object:  # an object column from a Dask tally
        numbers["n"] = np.int64
    frame = frame.astype({**text, **numbers})
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

    Returns one record per (fine, coarse) pair: the largest difference, the number of unit × period ×
    category cells that differ, and ``by`` — how the crosswalk was made (``code``, ``code via <level>``,
    ``geometry``, ``h3``, ``city``). Differences arise from points in the slivers where a level does not
    nest exactly: with a hierarchy by code, a point in the part of a unit outside its coded parent
    is counted directly in the parent it falls in, while the rollup puts it in the coded one. In a
    hierarchy that nests exactly they are zero (tested).
    """
    report = []
    by = {(p["fine"], p["coarse"]): p["by"] for p in getattr(units, "report", {}).get("pairs", [])}
    counts = measures[(measures["measure"] == "count")]
    # numbers, whatever an empty frame concatenated before made of the column (NaN = not reported)
    counts = counts.assign(numerator=pd.to_numeric(counts["numerator"]).astype(float),
                           denominator=pd.to_numeric(counts["denominator"]).astype(float))
    counted = set(counts["level"])
    for (fine, coarse), nested in sorted(units.nested.items()):
        if not nested or (units.kinds[fine] == "h3" and units.kinds[coarse] == "polygon"):
            continue
        if fine not in counted or coarse not in counted:  # area-coded counts reach only some levels
            continue
        rolled = roll_up(counts, units, fine, coarse).set_index(["unit_id", "period", "category"])["numerator"]
        direct = counts[counts["level"] == coarse].set_index(["unit_id", "period", "category"])["numerator"]
        diff = direct.sub(rolled, fill_value=0).abs()
        report.append({"fine": fine, "coarse": coarse, "max_abs_difference": float(diff.max()) if len(diff) else 0.0,
                       "cells_differing": int((diff > 0).sum()),
                       "by": by.get((fine, coarse), "h3" if units.kinds[coarse] == "h3" else "city" if units.kinds[coarse] == "city" else "geometry")})
    return report


# --------------------------------------------------------------------------- area-coded counts

NOT_IN_SOURCE = "not_in_source"
PARTIAL = "partial"


def count_levels(units: UnitSet, unit_level: str) -> tuple[list[str], dict[str, str]]:
    """The levels area-coded counts at ``unit_level`` reach: that level and every coarser level it
    nests in (through the crosswalk). Returns (levels, {other level: why it gets no count rows})."""
    names = units.names
    i = names.index(unit_level)
    reached, why = [unit_level], {}
    for level in names:
        if level == unit_level:
            continue
        if units.kinds[level] == "h3":
            why[level] = ("area-coded counts cannot be placed in H3 cells (their events have no location inside "
                          f"a {unit_level} unit; usm_geo never spreads them by area)")
        elif names.index(level) < i:
            why[level] = f"finer than {unit_level}, the level the counts are coded to"
        elif units.nested.get((unit_level, level)):
            reached.append(level)
        else:
            why[level] = f"{unit_level} does not nest in {level}, so its counts cannot be added up to it"
    return reached, why


def _reported_population(level, ids, periods, parent, full, partial, fine_ids, population) -> pd.DataFrame:
    """``population_reported`` rows of the ``partial`` (unit, period) cells (``partial``: L × P mask):
    the population of the fine units fully reported in that period (``full``: U × P; NaN where the
    fine level has no population)."""
    L, P = partial.shape
    if population is not None:
        pop = population.set_index("unit_id")["population"].reindex(fine_ids).to_numpy(float)
        ok = parent >= 0
        total = np.zeros((L, P))
        np.add.at(total, parent[ok], np.where(full[ok], np.nan_to_num(pop[ok])[:, None], 0.0))
        unknown = np.zeros((L, P), np.int64)
        np.add.at(unknown, parent[ok], (full[ok] & np.isnan(pop[ok])[:, None]).astype(np.int64))
        value = np.where(unknown > 0, np.nan, total)
    else:
        value = np.full((L, P), np.nan)
    u, t = np.nonzero(partial)
    v = value[u, t]
    return pd.DataFrame({"level": level, "unit_id": ids[u], "period": np.asarray(periods, dtype=object)[t],
                         "category": ALL, "measure": "population_reported", "numerator": v, "denominator": np.nan, "value": v,
                         "lower": np.nan, "upper": np.nan, "n": 0, "flags": PARTIAL})


def area_count_measures(tidy: pd.DataFrame, units: UnitSet, unit_level: str, periods: list[str],
                        categories: list[str], population: pd.DataFrame | None = None,
                        reported_population: bool = True) -> tuple[pd.DataFrame, dict]:
    """Count rows of the measures table from area-coded counts (``tidy``: ``source, unit_id, period,
    category, count, missing`` at ``unit_level``, :mod:`usm_geo.intake.counts`), at ``unit_level`` and
    rolled up through the crosswalk to every level it nests in (:func:`count_levels`); every unit ×
    period × category (plus ``all``).

    A unit with no row in the sources of a category is *not reported*, not zero: value NaN, ``n`` 0,
    flag ``not_in_source``; so is a unit × period whose value was not a count (``missing``). A unit
    listed by a source is otherwise reported for every period: values the source does not list are
    0 (long tables often leave out zero rows). A coarser unit adds up its reported units (flag
    ``rolled_up``); some not reported → flag ``partial`` (the value is a lower bound); none → NaN and
    ``not_in_source``. ``all`` is partial where any category is not reported.

    A partial unit × period also gets a ``population_reported`` row (category ``all``): the
    population of its fully reported units of ``unit_level`` (from ``population``: ``unit_id,
    population`` at that level; NaN without it), so that its rate divides the events counted by the
    people they were counted among; ``reported_population=False`` (a study without population)
    leaves them out.

    Returns (rows, report): report["not_in_source"][level][unit_id] = {"missing": most units of
    ``unit_level`` inside not (fully) reported in a period, "of": units of ``unit_level`` inside} for
    every unit not reported or partial in some period (category ``all``), with "levels" (reached)
    and "not_counted" ({level: why}).
    """
    fine_ids = units.levels[unit_level]["unit_id"].to_numpy(dtype=object)
    labels = list(categories) + [ALL]
    axes = {"unit_id": fine_ids, "period": np.asarray(periods, dtype=object), "category": np.asarray(categories, dtype=object)}
    holes = tidy["missing"].astype(bool).to_numpy() if "missing" in tidy else np.zeros(len(tidy), bool)
    n = dense(tidy.assign(n=tidy["count"].astype(np.int64)), axes)  # (U, P, C)
    missing = dense(tidy[holes].assign(n=1), axes) > 0
    # listed[u, c]: some source carrying category c has a count for unit u
    listed = np.zeros((len(fine_ids), len(categories)), dtype=bool)
    for _, part in tidy[~holes].groupby("source", sort=True):
        u = _codes(pd.unique(part["unit_id"]), fine_ids)
        c = _codes(pd.unique(part["category"]), categories)
        listed[np.ix_(u[u >= 0], c[c >= 0])] = True
    reported = listed[:, None, :] & ~missing  # (U, P, C)
    # per level: sums over reported fine units, the number reported (per category; "all" = every
    # category reported) and the number of fine units inside
    full = np.concatenate([reported, reported.all(axis=2, keepdims=True)], axis=2)  # (U, P, C+1)
    seen = np.concatenate([reported, reported.any(axis=2, keepdims=True)], axis=2)
    n_all = np.concatenate([n, n.sum(axis=2, keepdims=True)], axis=2).astype(float)
    reached, skipped = count_levels(units, unit_level)
    frames, coverage = [], {}
    for level in reached:
        ids = units.levels[level]["unit_id"].to_numpy(dtype=object)
        if level == unit_level:
            parent = np.arange(len(fine_ids))
        else:
            parent = _codes(units.parents(unit_level, level).reindex(fine_ids).to_numpy(dtype=object), ids)
        ok = parent >= 0
        sums = np.zeros((len(ids), len(periods), len(labels)))
        np.add.at(sums, parent[ok], np.where(seen[ok], n_all[ok], 0.0))
        n_seen = np.zeros(sums.shape, np.int64)
        np.add.at(n_seen, parent[ok], seen[ok].astype(np.int64))
        n_full = np.zeros(sums.shape, np.int64)
        np.add.at(n_full, parent[ok], full[ok].astype(np.int64))
        inside = np.bincount(parent[ok], minlength=len(ids))[:, None, None]
        none = n_seen == 0
        value = np.where(none, np.nan, sums)
        flag = np.where(none, NOT_IN_SOURCE, np.where(n_full < inside, PARTIAL, "")).astype(object)
        if level != unit_level:
            flag = np.where(flag == "", "rolled_up", np.char.add(flag.astype(str), ";rolled_up")).astype(object)
        rows = _long(level, ids, periods, labels, "count", np.nan_to_num(value), np.nan_to_num(value).astype(np.int64))
        rows["value"] = rows["numerator"] = value.reshape(-1)
        rows["flags"] = flag.reshape(-1)
        frames.append(rows)
        short = (inside[:, :, 0] - n_full[:, :, -1])  # (L, P): fine units inside not fully reported
        partial = (short > 0) & (n_seen[:, :, -1] > 0)
        if partial.any() and reported_population:
            frames.append(_reported_population(level, ids, periods, parent, full[:, :, -1], partial, fine_ids, population))
        worst = short.max(axis=1) if short.shape[1] else np.zeros(len(ids), np.int64)
        coverage[level] = {str(ids[i]): {"missing": int(worst[i]), "of": int(inside[i, 0, 0])} for i in np.flatnonzero(worst > 0)}
    out = sort_measures(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=COLUMNS)
    return out, {"levels": reached, "not_counted": skipped, "not_in_source": coverage}


def harm_from_counts(count_rows: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """``harm`` rows from area-coded ``count`` rows (:func:`area_count_measures`): each category's
    count × its harm weight (``weights``: category → weight, 0 where the table has none), ``all`` the
    sum over categories; a not-reported count stays NaN (the same flags), ``n`` is the count."""
    cats = count_rows[count_rows["category"] != ALL]
    w = cats["category"].map(weights).fillna(0.0).to_numpy(float)
    part = cats.assign(numerator=cats["numerator"].to_numpy(float) * w)
    g = part.groupby(["level", "unit_id", "period"], sort=False)
    total = g["numerator"].sum(min_count=1).rename("numerator").reset_index()
    everything = count_rows[count_rows["category"] == ALL].drop(columns="numerator").merge(
        total, on=["level", "unit_id", "period"], how="left")
    out = pd.concat([part, everything[COLUMNS]], ignore_index=True).assign(measure="harm")
    out["value"] = out["numerator"]
    return sort_measures(out)
