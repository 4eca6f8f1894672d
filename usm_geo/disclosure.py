"""Output profiles: ``internal`` (everything) and ``public`` (small-cell and complementary suppression).

:func:`apply_profile` takes a run's measures table and crosswalk and returns the table that a profile
may publish, with a report of what was withheld and why.

The public profile
------------------
**What is a cell.** Every count-based row of the measures table (``count``, ``harm`` and every rate
row, raw or smoothed, whose numerator is a count) is tied to one *count cell*: a level × unit ×
period × count variable. Rows that carry the same count share one cell and therefore one fate:
``count`` of category *c*, ``harm`` of *c*, ``incident_rate`` of *c* with its interval and its
``_eb`` / ``_seb`` smoothed values. A rate defined on a set of categories (``homicide_rate`` =
ICCS 01, ``violent_crime_rate`` = ICCS 01–04) is linked by its numbers, not by name: its numerator
is matched exactly against a single category's count or against a 0/1 sum of categories (a least
squares fit, verified exactly on every unit and period), which is what an attacker holding the
registry could do too. A set of two or more categories becomes a *composite* cell with its own
additive relations. Survey shares are cells of their own, sized by respondents ``n``.

**Primary suppression.** A count cell holding 1 … k−1 events is suppressed. Zero is published: a
zero reveals that nothing was recorded, which is standard practice in published crime statistics
and is what makes "suppressed ⇒ at least 1" true (used below). ``harm`` of ``all`` is suppressed
with its count. A survey share with ``n < min_n`` respondents or flagged ``small_n`` /
``small_eff_n`` is suppressed (its value, interval, numerator, denominator and ``n``).

**Additive relations in the published table** (each *parent = Σ children*, per period):

(a) categories: ``all`` = Σ categories of each unit; a composite = Σ its categories, and
    ``all`` = composite + Σ the other categories; ``harm`` of ``all`` = Σ harm of the categories;
(b) nested levels: Σ children = parent for every pair the crosswalk marks ``nested`` (H3 cells →
    neighbourhood is *not* nested: cells are assigned by their centre, so their sum is not the
    neighbourhood's count and is not treated as a relation);
(c) every level sums to the city (all units of a level → ``city``), whether or not the crosswalk
    lists it (a level that does not sum exactly, such as Chicago's police districts, only makes
    the protection more cautious);
(d) periods are *not* summed in the published table (no multi-period total is written), so they
    are independent: no relation across periods.

**Complementary suppression** (iterative, in the spirit of the hypercube method). Let *Z* be the
suppressed members of a relation, *m* = |*Z*|, and *S* the suppressed children's total, which an
attacker learns as parent − Σ published children whenever the parent is published. Since zeros are
published, each suppressed child holds at least 1, so the relation alone places each of them in
[1, S − m + 1]. A relation

* *must* change when m = 1 (differencing gives the cell away), or when the parent is published
  and S − m + 1 < 2 (every suppressed child is then exactly 1: m ones adding up to m);
* *should* change when the parent is published and S − m + 1 < k (the attacker could tell that
  every suppressed child is small), if a non-zero published child is left to do it.

A relation whose parent is suppressed too gives no bound. Weighted sums (harm of ``all``) and
survey shares only need m ≠ 1. In every round, each relation that must or should change gets one
more suppressed child: preferably one large enough to reach k (value ≥ k + m − S), among those the
one that sits in the most relations needing a change (one cell then mends several: the
2 × 2 "rectangle" of the classic methods), then the smallest; if none is large enough, the largest.
If no non-zero published child is left and the relation must change, its parent goes. Zeros are
never chosen (hiding a zero hides nothing and would break "suppressed ⇒ ≥ 1"). Rounds repeat until
nothing changes; they only add suppressions, so they end. Ties go to the lower cell id, so the
result is deterministic. ``harm`` of ``all`` is also suppressed whenever any category of its unit ×
period is: with public per-category harm weights a published harm total would be a second,
weighted equation over the suppressed categories that could separate them.

**Audit.** The rounds look at one relation at a time. An audit then plays an attacker who uses all
relations at once: bounds propagated through every relation to a fixed point (this includes
repeated differencing) and linear algebra (a cell is determined when its unit vector lies in the
row space of the relations restricted to the suppressed cells: two 2 × 2 rectangles joined by one
cell pass the per-relation rule, yet the joining cell is determined). Every cell it pins down gets
one more suppression in one of its relations, the rounds run again, and so does the audit, until
it finds nothing (the report gives the number of cells it found per pass).

**Guarantee.** In the published table no relation has exactly one unknown, no relation alone pins
a suppressed count, no combination of relations determines one (linear algebra, up to the
numerical test's tolerance) and bound propagation pins none; so the differencing attack (including
rate × population → count) recovers nothing. Suppressed counts are narrowed below k by a single
relation only where no published non-zero sibling was left to widen them (typically H3 cells
where every non-zero cell of a category is small; the attacker learns "between 1 and 3", not the
value). Not covered: information outside this table (hotspot statistics, KDE surfaces,
concentration indices, progress and gap tables are computed from unsuppressed counts) and
combining outputs made with different ``k`` or from differently filtered tables: apply the profile
to the whole measures table first and filter afterwards, so that every export shares one pattern.
Publishing zeros means a suppressed cell is known to be non-zero: at the H3 level this says where
at least one incident of a rare category happened (standard practice, but stated here).

**Smoothed rates.** An empirical Bayes value borrows from every unit of its level (global prior)
or from its neighbours (spatial prior), so it is a function of the suppressed counts too. In the
public profile, ``_eb`` / ``_seb`` rows are published only for a level × indicator × category ×
period in which no count is suppressed; otherwise the whole group is suppressed.

**Columns and flags.** Only the standard measures columns are kept (the measures table holds no
coordinates or free text; anything else is dropped). ``flags`` keeps only the known flag words
(:data:`KNOWN_FLAGS`); unknown words are removed and counted in the report. A suppressed row gets
``suppressed`` and loses ``small_count`` (which would say that the hidden count is below 10).
``population`` rows are published: population is not sensitive. ``n`` becomes a nullable integer.

The ``internal`` profile returns an unchanged copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.measures import COLUMNS

PROFILES = ("internal", "public")
ALL = "all"
KNOWN_FLAGS = frozenset({
    "small_count", "small_denominator", "no_denominator", "no_count", "population_missing", "population_zero",
    "population_partial", "population_conflict", "small_n", "small_eff_n", "no_respondents", "zero_weight",
    "no_df", "all_same_answer", "zero_variance", "no_sample_size", "missing", "smoothed", "prior_variance_zero",
    "no_neighbours", "rolled_up", "edge_cell", "suppressed", "not_in_source", "partial",
})
REVEALING_FLAGS = frozenset({"small_count"})  # say something about a hidden count: dropped when suppressed
SMOOTHED_SUFFIXES = ("_eb", "_seb")
SUPPRESSED_COLUMNS = ["numerator", "value", "lower", "upper", "n"]
#: measures never published: aoristic counts are fractional counts by period (a fraction can give a
#: small count back), so the public profile withholds every row of them (reason ``internal_only``)
INTERNAL_ONLY_MEASURES = ("aoristic_count",)
SURVEY_SUPPRESSED_COLUMNS = ["numerator", "denominator", "value", "lower", "upper", "n"]

RULES_PUBLIC = [
    "counts 1..k-1 are suppressed (primary); zeros are published",
    "count, harm, rate, interval and smoothed rows that share a count share its suppression",
    ("complementary suppression until every additive relation (categories -> all, composites, nested levels, "
     "every level -> city; one period at a time: periods are not summed) has 0 or >= 2 suppressed members and, "
     "when its parent is published, suppressed children totalling at least members + 1 (so no value is pinned), "
     "and at least k + members - 1 where a non-zero published sibling can make it so"),
    "harm of 'all' is suppressed whenever a category of its unit and period is suppressed",
    ("smoothed (_eb/_seb) rates are suppressed for a whole level x indicator x category x period when any of "
     "its counts is suppressed"),
    ("survey shares with n < min_n or flagged small_n/small_eff_n are suppressed, with complementary "
     "suppression across levels"),
    ("an audit (interval propagation and linear algebra over all relations at once) adds suppressions until "
     "no suppressed value is pinned"),
    "only the standard measures columns are kept; unknown flag words are removed",
]


# --------------------------------------------------------------------------------------------
# public entry point


def apply_profile(measures: pd.DataFrame, crosswalk: pd.DataFrame, *, profile: str = "public", k: int = 5,
                  min_n: int = 30) -> tuple[pd.DataFrame, dict]:
    """Apply an output profile to a measures table.

    Parameters
    ----------
    measures : DataFrame
        The long measures table (``level, unit_id, period, category, measure, numerator, denominator,
        value, lower, upper, n, flags``), as written to ``measures.csv``.
    crosswalk : DataFrame
        ``level, unit_id, to_level, to_unit_id, overlap_share, nested`` (``crosswalk.csv``).
    profile : ``"public"`` or ``"internal"``
    k : int
        Counts from 1 to ``k − 1`` are suppressed (the study's ``suppression_threshold``).
    min_n : int
        Survey shares on fewer respondents are suppressed.

    Returns
    -------
    (table, report)
        ``table`` has the same rows in the same order; suppressed rows have ``numerator``, ``value``,
        ``lower``, ``upper`` and ``n`` (survey shares also ``denominator``) blank and the flag
        ``suppressed``. ``report`` (JSON-serialisable) gives the profile, ``k``, ``min_n``, the rules,
        the number of suppressed rows by level and measure (``primary``, ``complementary``,
        ``smoothed_group``), suppressed cells by level, the relations checked, the measures linked to
        counts, dropped columns and removed flag words.

    The method and its guarantee are described in the module docstring.
    """
    if profile not in PROFILES:
        raise UsmGeoError(f"unknown output profile '{profile}'", where="profile",
                          fix="use 'public' or 'internal'")
    if int(k) != k or k < 1:
        raise UsmGeoError(f"suppression threshold must be a whole number of at least 1, not {k}",
                          where="outputs.suppression_threshold", fix="e.g. suppression_threshold = 5")
    missing = [c for c in COLUMNS if c not in measures.columns]
    if missing:
        raise UsmGeoError(f"the measures table has no column {', '.join(missing)}", where="measures",
                          fix="pass the measures table of a run (measures.csv)")
    if profile == "internal":
        return measures.copy(), {"profile": "internal", "k": int(k), "min_n": int(min_n),
                                 "rules": ["nothing is suppressed (internal use only)"], "rows_suppressed": 0}
    return _public(measures, crosswalk, int(k), int(min_n))


# --------------------------------------------------------------------------------------------
# helpers


def _base(measure: str) -> str:
    for suffix in SMOOTHED_SUFFIXES:
        if measure.endswith(suffix):
            return measure[: -len(suffix)]
    return measure


def _is_rate(measure: str) -> bool:
    return "rate" in measure


def _is_share(measure: str) -> bool:
    return "share" in measure


def _clean_flags(flags: pd.Series, suppressed: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Keep known flag words, add ``suppressed`` (dropping count-revealing words) on suppressed rows.
    Works on the unique (flags, suppressed) pairs, so it is fast on large tables."""
    fcodes, fwords = pd.factorize(flags.fillna("").astype(str).to_numpy(dtype=object))
    codes, pairs = pd.factorize(fcodes.astype(np.int64) * 2 + suppressed.astype(np.int64))
    removed: dict[str, int] = {}
    out = []
    counts = np.bincount(codes, minlength=len(pairs))
    for pair, count in zip(pairs, counts):
        words, sup = fwords[pair // 2], bool(pair % 2)
        parts = [w for w in str(words).split(";") if w]
        kept = []
        for w in parts:
            if w in KNOWN_FLAGS:
                if not (sup and w in REVEALING_FLAGS) and w not in kept:
                    kept.append(w)
            else:
                removed[w] = removed.get(w, 0) + int(count)
        if sup and "suppressed" not in kept:
            kept.append("suppressed")
        out.append(";".join(kept))
    return np.asarray(out, dtype=object)[codes], removed


def _parents(crosswalk: pd.DataFrame, units: pd.DataFrame, city_unit: str | None) -> pd.DataFrame:
    """(fine level, unit_id) → (coarse level, parent unit_id) for every relation of kinds (b) and (c):
    the crosswalk's nested pairs (the parent with the largest overlap if a unit lists several) and every
    unit of every level → the city."""
    cols = ["level", "unit_id", "to_level", "to_unit_id"]
    frames = []
    if crosswalk is not None and len(crosswalk):
        cw = crosswalk.copy()
        nested = cw["nested"] if "nested" in cw.columns else pd.Series(False, index=cw.index)
        nested = nested.map(lambda v: str(v).strip().lower() in ("true", "1", "yes", "t")).astype(bool)
        cw = cw[nested.to_numpy()]
        for c in cols:
            cw[c] = cw[c].astype(str).to_numpy(dtype=object)
        if "overlap_share" in cw.columns:
            cw = cw.assign(_o=pd.to_numeric(cw["overlap_share"], errors="coerce").fillna(0.0))
            cw = cw.sort_values(["level", "unit_id", "to_level", "_o"], ascending=[True, True, True, False],
                                kind="stable")
        frames.append(cw[cols])
    if city_unit is not None:
        fine = units[units["level"] != "city"]
        frames.append(pd.DataFrame({"level": fine["level"].to_numpy(dtype=object),
                                    "unit_id": fine["unit_id"].to_numpy(dtype=object),
                                    "to_level": "city", "to_unit_id": city_unit}))
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates(["level", "unit_id", "to_level"]).reset_index(drop=True)


def _check_ids(pmap: pd.DataFrame, units: pd.DataFrame) -> None:
    """A crosswalk whose ids do not match the table's (``35.0`` read as a number vs ``"35"``) would
    silently drop relations and with them the protection: refuse it."""
    known = set(zip(units["level"], units["unit_id"]))
    for (fine, coarse), pairs in pmap.groupby(["level", "to_level"], sort=True):
        if not any(lv == fine for lv, _ in known) or not any(lv == coarse for lv, _ in known):
            continue
        child = [(fine, u) in known for u in pairs["unit_id"]]
        parent = [(coarse, u) in known for u in pairs["to_unit_id"]]
        if not any(child) or not any(parent):
            raise UsmGeoError(f"the crosswalk's {fine} → {coarse} unit ids match no unit of the measures table",
                              where="crosswalk", fix="read unit_id and to_unit_id as text, as written by the run")


class _Cells:
    """Count cells (nodes) and the rows that use them."""

    def __init__(self):
        self.frames: list[pd.DataFrame] = []  # row, level, unit_id, period, fam, cat, value, nn, kind, priority

    def add(self, rows: pd.DataFrame, fam, cat, value, nn, kind: str, priority: int):
        """``fam`` (count variable family: ``count``, ``harm``, ``num|<rate>``, ``comp|<cats>``,
        ``share|<id>``) and ``cat`` (category, ``""`` for composites and shares) name the cell."""
        self.frames.append(pd.DataFrame({
            "row": rows.index.to_numpy(), "level": rows["level"].to_numpy(dtype=object),
            "unit_id": rows["unit_id"].to_numpy(dtype=object), "period": rows["period"].to_numpy(dtype=object),
            "fam": np.broadcast_to(np.asarray(fam, dtype=object), len(rows)),
            "cat": np.broadcast_to(np.asarray(cat, dtype=object), len(rows)),
            "value": np.asarray(value, dtype=float), "nn": np.asarray(nn, dtype=float), "kind": kind,
            "priority": priority}))


def _match_subset(target: pd.Series, pivot: pd.DataFrame, cats: list[str]) -> list[str] | None:
    """The categories whose counts add up to ``target`` in every unit × period (None if no 0/1 sum does)."""
    sub = pivot.reindex(target.index)
    if sub[cats].isna().any().any() or target.isna().any():
        return None
    b = target.to_numpy(float)
    for c in cats:  # a single category (homicide_rate = homicide)
        if np.array_equal(sub[c].to_numpy(float), b):
            return [c]
    a = sub[cats].to_numpy(float)
    if not len(a):
        return None
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    xr = np.round(x)
    if np.any(np.abs(x - xr) > 1e-6) or np.any((xr != 0) & (xr != 1)):
        return None
    if not np.array_equal(a @ xr, b):
        return None
    chosen = [c for c, w in zip(cats, xr) if w == 1]
    return chosen or None


# --------------------------------------------------------------------------------------------
# the public profile


def _public(measures: pd.DataFrame, crosswalk: pd.DataFrame, k: int, min_n: int) -> tuple[pd.DataFrame, dict]:
    """The public profile, one named step per rule: cells from counts, harm, rates and survey
    shares; primary suppression; the relations (categories, composites, harm, levels); complementary
    suppression with the attacker's audit; smoothed groups and internal-only measures; the report."""
    dropped_columns = [c for c in measures.columns if c not in COLUMNS]
    table = _typed_table(measures)
    rows = _RowKinds(table)
    cells = _Cells()
    cats = _count_cells(table, rows, cells)
    own_families: set[str] = set()
    _harm_cells(table, rows, cells, cats, own_families)
    linked, composites = _rate_cells(table, rows, cells, cats, own_families)
    _share_cells(table, rows, cells, min_n)

    if not cells.frames:
        out, removed = _finish(table, rows.internal, np.zeros(len(table), bool))
        return out, _report(k, min_n, table, rows.internal, np.where(rows.internal, "internal_only", "").astype(object),
                            dropped_columns, removed, {}, 0, {}, {}, 0)

    rowcells, nodes = _nodes(cells)
    value, kind, primary = _primary(nodes, k)
    rels = _Relations()
    _category_relations(rels, nodes, own_families)
    _composite_relations(rels, nodes, composites)
    _harm_relations(rels, nodes, own_families)
    _level_relations(rels, nodes, table, crosswalk, rows.city_unit)
    rel, mnode, mpar, rrange, rforced, rkind = rels.arrays()
    sup, rounds, unresolved, audits = _complementary(primary, value, kind, rel, mnode, mpar, rrange, rforced,
                                                     rels.count, k)

    row_sup, row_primary = _rows_of_cells(len(table), rowcells, sup, primary)
    group_sup = _smoothed_groups(table, rows, row_sup)
    reason = np.where(row_primary & row_sup, "primary", np.where(row_sup, "complementary",
                                                                  np.where(group_sup, "smoothed_group", "")))
    # measures kept for internal use only: withheld whole from the public profile
    reason = np.where(rows.internal, "internal_only", reason)
    group_sup |= rows.internal
    out, removed = _finish(table, row_sup | group_sup, rows.is_share)

    cell_levels = nodes["level"].to_numpy(dtype=object)
    by_cells: dict[str, dict[str, int]] = {}
    for lv in rows.levels:
        here = cell_levels == lv
        by_cells[lv] = {"cells": int(here.sum()), "primary": int((primary & sup & here).sum()),
                        "complementary": int((~primary & sup & here).sum())}
    rel_counts = pd.Series(rkind[np.unique(rel)]).value_counts().sort_index() if len(rel) else pd.Series(dtype=int)
    relations = {str(a): int(b) for a, b in rel_counts.items()}
    link_report = {key_: val for key_, val in sorted(linked.items())}
    report = _report(k, min_n, table, row_sup | group_sup, reason, dropped_columns, removed, by_cells, rounds,
                     relations, link_report, unresolved)
    report["audit"] = {"passes": len(audits), "exposed_per_pass": audits}
    if crosswalk is None or not len(crosswalk):
        report["warnings"] = [("no crosswalk: only the relations of every level to the city were protected, "
                               "not those between nested levels")]
    return out, report


_KEY = ["level", "unit_id", "period"]


def _typed_table(measures: pd.DataFrame) -> pd.DataFrame:
    """The measures' columns of :data:`COLUMNS`, labels as text and numbers as floats, index 0…n−1."""
    table = measures[COLUMNS].copy()
    table.index = pd.RangeIndex(len(table))
    for c in ("level", "unit_id", "period", "category", "measure"):
        table[c] = table[c].astype(str).to_numpy(dtype=object)
    for c in ("numerator", "denominator", "value", "lower", "upper", "n"):
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    return table


class _RowKinds:
    """What each row of the table is: a count, harm, a rate, a survey share, internal only."""

    def __init__(self, table: pd.DataFrame):
        measure = table["measure"].to_numpy(dtype=object)
        uniq = pd.unique(measure)
        self.measure = measure
        self.base_of = {m: _base(m) for m in uniq}
        self.is_count = measure == "count"
        self.is_harm = measure == "harm"
        self.internal = np.isin(measure, INTERNAL_ONLY_MEASURES)
        self.is_rate = np.isin(measure, [m for m in uniq if _is_rate(m)])
        self.is_share = np.isin(measure, [m for m in uniq if _is_share(m) and not _is_rate(m)])
        self.levels = list(pd.unique(table["level"]))
        city_units = pd.unique(table.loc[table["level"] == "city", "unit_id"])
        self.city_unit = str(city_units[0]) if len(city_units) == 1 else None


@dataclass
class _CountCells:
    """The count rows' categories and their (level, unit, period) × category pivot of ``n``."""

    cats: list
    plain: list  # the categories but ``all``
    pivot: pd.DataFrame
    any: bool


def _count_cells(table: pd.DataFrame, rows: _RowKinds, cells: "_Cells") -> _CountCells:
    """Rule: every count is a cell of the ``count`` family, sized by its number of records."""
    counts = table[rows.is_count]
    count_cats = sorted(pd.unique(counts["category"])) if len(counts) else []
    plain_cats = [c for c in count_cats if c != ALL]
    if len(counts):
        cells.add(counts, "count", counts["category"].to_numpy(dtype=object), counts["n"], counts["n"], "count", 0)
        pivot = counts.pivot_table(index=_KEY, columns="category", values="n", aggfunc="first")
    else:
        pivot = pd.DataFrame()
    return _CountCells(cats=count_cats, plain=plain_cats, pivot=pivot, any=bool(len(counts)))


def _harm_cells(table: pd.DataFrame, rows: _RowKinds, cells: "_Cells", cats: _CountCells, own_families: set) -> None:
    """Rule: harm of a category shares its count's cell; harm of `all` is a weighted cell of its own."""
    if not rows.is_harm.any():
        return
    harm = table[rows.is_harm]
    for cat, group in harm.groupby("category", sort=True):
        if cat != ALL and cat in cats.cats:
            cells.add(group, "count", cat, group["n"], group["n"], "count", 1)
        else:
            cells.add(group, "harm", cat, group["numerator"], group["n"], "weighted", 1)
            if cat != ALL or not cats.any:
                own_families.add("harm")


def _rate_cells(table: pd.DataFrame, rows: _RowKinds, cells: "_Cells", cats: _CountCells,
                own_families: set) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Rule: a rate is linked to the count it divides, found by its numerators (a category's count,
    a composite of categories, or a count family of its own); returns (links, composites)."""
    linked: dict[str, str] = {}
    composites: dict[str, list[str]] = {}  # var → categories
    if not rows.is_rate.any():
        return linked, composites
    pivot = cats.pivot
    rates = table[rows.is_rate].assign(_base=[rows.base_of[m] for m in rows.measure[rows.is_rate]])
    for (b, cat), group in rates.groupby(["_base", "category"], sort=True):
        raw = group[group["measure"] == b]
        src = raw if len(raw) else group
        target = src.drop_duplicates(_KEY).set_index(_KEY)["numerator"]
        var = None
        if len(pivot):
            if cat in pivot.columns:
                sub = pivot[cat].reindex(target.index)
                if not sub.isna().any() and np.array_equal(sub.to_numpy(float), target.to_numpy(float)):
                    var = ("count", cat)
            if var is None and cat == ALL and cats.plain:
                chosen = _match_subset(target, pivot, cats.plain)
                if chosen is not None:
                    if len(chosen) == 1:
                        var = ("count", chosen[0])
                    elif len(chosen) == len(cats.plain):
                        var = ("count", ALL)
                    else:
                        var = ("comp|" + "+".join(chosen), "")
                        composites[var[0]] = chosen
        if var is None:  # not a count the table holds: a count family of its own
            var = (f"num|{b}", cat)
            own_families.add(f"num|{b}")
        linked[f"{b}|{cat}"] = var[0] + (f"|{var[1]}" if var[1] else "")
        cells.add(group, var[0], var[1], group["numerator"], group["numerator"], "count", 2)
    return linked, composites


def _share_cells(table: pd.DataFrame, rows: _RowKinds, cells: "_Cells", min_n: int) -> None:
    """Rule: a survey share is a cell sized by its respondents, suppressed under ``min_n`` or when
    flagged ``small_n`` / ``small_eff_n``."""
    if not rows.is_share.any():
        return
    shares = table[rows.is_share]
    flags = shares["flags"].fillna("").astype(str)
    small = flags.str.contains(r"(?:^|;)(?:small_n|small_eff_n)(?:;|$)", regex=True).to_numpy()
    nn = shares["n"].fillna(0).to_numpy(float)
    # value carries n; nn carries the primary decision (1 = suppress)
    primary = (nn >= 1) & ((nn < min_n) | small)
    cells.add(shares, ("share|" + shares["measure"]).to_numpy(dtype=object), "", nn, primary.astype(float),
              "survey", 3)


def _nodes(cells: "_Cells") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(row → cell, cells): rows that share a (level, unit, period, family, category) share one cell,
    the one of the highest-priority row."""
    rowcells = pd.concat(cells.frames, ignore_index=True)
    rowcells = rowcells.sort_values(["priority", "row"], kind="stable")
    node_key = ["level", "unit_id", "period", "fam", "cat"]
    nodes = rowcells.drop_duplicates(node_key)[node_key + ["value", "nn", "kind"]].reset_index(drop=True)
    nodes["node"] = np.arange(len(nodes))
    rowcells = rowcells.merge(nodes[node_key + ["node"]], on=node_key, how="left")
    return rowcells, nodes


def _primary(nodes: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule (primary suppression): counts 1 … k−1, weighted cells of 1 … k−1 records, survey cells
    marked small. Returns (value, kind, primary)."""
    value = nodes["value"].fillna(0).to_numpy(float)
    kind = nodes["kind"].to_numpy(dtype=object)
    nn = nodes["nn"].fillna(0).to_numpy(float)
    primary = np.where(kind == "count", (value >= 1) & (value <= k - 1),
                       np.where(kind == "weighted", (nn >= 1) & (nn <= k - 1), nn >= 1))
    return value, kind, primary


class _Relations:
    """Additive relations between cells (parent = Σ children): membership (rel, node, is_parent)
    and, per relation, whether it is a range relation, forced, and its kind."""

    def __init__(self):
        self.members, self.rel_range, self.rel_forced, self.rel_kind = [], [], [], []
        self.count = 0

    def add(self, parent: pd.DataFrame, children: pd.DataFrame, rng: bool, forced: bool, label: str):
        """parent: (gkey..., node); children: (gkey..., node), joined on gkey = every column but node."""
        g = [c for c in parent.columns if c != "node"]
        if parent.empty or children.empty:
            return
        parent = parent.drop_duplicates(g)
        rid = parent[g].assign(rel=np.arange(self.count, self.count + len(parent)))
        ch = children.merge(rid, on=g, how="inner")
        if ch.empty:
            return
        used = np.unique(ch["rel"].to_numpy())
        pr = parent.assign(rel=rid["rel"].to_numpy())
        pr = pr[pr["rel"].isin(used)]
        self.members.append(pd.DataFrame({"rel": pr["rel"].to_numpy(), "node": pr["node"].to_numpy(), "parent": True}))
        self.members.append(pd.DataFrame({"rel": ch["rel"].to_numpy(), "node": ch["node"].to_numpy(), "parent": False}))
        count = len(parent)
        self.rel_range.append(np.full(count, rng))
        self.rel_forced.append(np.full(count, forced))
        self.rel_kind.append(np.full(count, label, dtype=object))
        self.count += count

    def arrays(self):
        """(rel, node, is_parent) per membership and (range, forced, kind) per relation."""
        if not self.members:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, dtype=object)
        mem = pd.concat(self.members, ignore_index=True)
        return (mem["rel"].to_numpy(np.int64), mem["node"].to_numpy(np.int64), mem["parent"].to_numpy(bool),
                np.concatenate(self.rel_range), np.concatenate(self.rel_forced), np.concatenate(self.rel_kind))


def _category_relations(rels: _Relations, nodes: pd.DataFrame, own_families: set) -> None:
    """Relation (a): the categories of a family sum to its `all`, per family with an `all`."""
    for family in ["count", *sorted(own_families)]:
        sel = nodes[nodes["fam"] == family]
        if sel.empty:
            continue
        rels.add(sel.loc[sel["cat"] == ALL, _KEY + ["node"]], sel.loc[sel["cat"] != ALL, _KEY + ["node"]],
                 family != "harm", False, "categories")


def _composite_relations(rels: _Relations, nodes: pd.DataFrame, composites: dict[str, list[str]]) -> None:
    """Relation (a), composites: composite = Σ its categories; all = composite + Σ the others."""
    count_nodes = nodes[(nodes["fam"] == "count") & (nodes["cat"] != ALL)]
    for var, cats in sorted(composites.items()):
        comp = nodes[nodes["fam"] == var]
        inside = count_nodes[count_nodes["cat"].isin(cats)]
        outside = count_nodes[~count_nodes["cat"].isin(cats)]
        rels.add(comp[_KEY + ["node"]], inside[_KEY + ["node"]], True, False, "composite")
        total = nodes[(nodes["fam"] == "count") & (nodes["cat"] == ALL)]
        rels.add(total[_KEY + ["node"]], pd.concat([comp[_KEY + ["node"]], outside[_KEY + ["node"]]]),
                 True, False, "composite")


def _harm_relations(rels: _Relations, nodes: pd.DataFrame, own_families: set) -> None:
    """Relation (a), harm: harm of all = Σ harm of categories (= the categories' count cells), forced."""
    count_nodes = nodes[(nodes["fam"] == "count") & (nodes["cat"] != ALL)]
    harm_all = nodes[(nodes["fam"] == "harm") & (nodes["cat"] == ALL)]
    if len(harm_all) and "harm" not in own_families:
        rels.add(harm_all[_KEY + ["node"]], count_nodes[_KEY + ["node"]], False, True, "harm")


def _level_relations(rels: _Relations, nodes: pd.DataFrame, table: pd.DataFrame, crosswalk: pd.DataFrame,
                     city_unit: str | None) -> None:
    """Relations (b), (c): the units of a finer level sum to their parent unit (crosswalk, city)."""
    units = table[["level", "unit_id"]].drop_duplicates()
    pmap = _parents(crosswalk, units, city_unit)
    _check_ids(pmap, units)
    for (fine, coarse), pairs in pmap.groupby(["level", "to_level"], sort=True):
        ch = nodes[nodes["level"] == fine]
        if ch.empty or fine == coarse:
            continue
        ch = ch.merge(pairs[["unit_id", "to_unit_id"]], on="unit_id", how="inner")
        par = nodes[nodes["level"] == coarse].rename(columns={"unit_id": "to_unit_id"})
        ch = ch.assign(fine=fine)
        par = par.assign(fine=fine)
        g = ["fine", "to_unit_id", "period", "fam", "cat"]
        rng_of_var = ~(par["kind"].isin(["weighted", "survey"]))
        for rng in (True, False):
            p = par[rng_of_var == rng]
            rels.add(p[g + ["node"]], ch[g + ["node"]], rng, False, f"{fine}->{coarse}")


def _complementary(primary, value, kind, rel, mnode, mpar, rrange, rforced, n_rel, k):
    """Rule (complementary suppression): every relation safe (:func:`_complete`), then an attacker
    with every relation at once (bounds and linear algebra, :func:`_audit`); each cell it can pin
    down gets one more suppression beside it, then the relations are made safe again.
    Returns (suppressed per cell, rounds, unresolved, exposed cells per audit pass)."""
    sup, rounds, unresolved = _complete(primary.copy(), value, rel, mnode, mpar, rrange, rforced, n_rel, k)
    integer = kind != "weighted"
    audits = []
    for _ in range(50):
        exposed = _audit(sup, value, integer, rel, mnode, mpar, rforced, n_rel)
        audits.append(int(exposed.sum()))
        if not exposed.any() or not _widen(exposed, sup, value, rel, mnode, mpar, n_rel):
            break
        sup, more, unresolved = _complete(sup, value, rel, mnode, mpar, rrange, rforced, n_rel, k)
        rounds += more
    return sup, rounds, unresolved, audits


def _rows_of_cells(nrows: int, rowcells: pd.DataFrame, sup: np.ndarray, primary: np.ndarray):
    """(suppressed, primary) per row of the table, from its cell."""
    row_sup = np.zeros(nrows, bool)
    row_primary = np.zeros(nrows, bool)
    rc_row = rowcells["row"].to_numpy(np.int64)
    rc_node = rowcells["node"].to_numpy(np.int64)
    row_sup[rc_row] = sup[rc_node]
    row_primary[rc_row] = primary[rc_node]
    return row_sup, row_primary


def _smoothed_groups(table: pd.DataFrame, rows: _RowKinds, row_sup: np.ndarray) -> np.ndarray:
    """Rule (smoothed groups): a whole level × indicator × category × period of smoothed rates goes
    when any of its counts does (the smoothing borrows from neighbours). True for the rows it adds."""
    nrows = len(table)
    smoothed = np.array([m != rows.base_of[m] for m in rows.measure]) & rows.is_rate
    group_sup = np.zeros(nrows, bool)
    if smoothed.any():
        sm = table[smoothed].assign(_s=row_sup[smoothed])
        hit = sm.groupby(["level", "measure", "category", "period"], sort=False)["_s"].transform("any").to_numpy(bool)
        group_sup[np.flatnonzero(smoothed)] = hit & ~sm["_s"].to_numpy(bool)
    return group_sup


def _complete(sup: np.ndarray, value: np.ndarray, rel: np.ndarray, node: np.ndarray, is_parent: np.ndarray,
              rng: np.ndarray, forced: np.ndarray, n_rel: int, k: int) -> tuple[np.ndarray, int, int]:
    """Complementary suppression: add suppressions until every relation is safe (module docstring).

    Returns (suppressed, rounds, relations that could not be made safe)."""
    rounds = 0
    if n_rel == 0:
        return sup, rounds, 0
    mvalue = value[node]
    positive = mvalue > 0
    order_node = node  # deterministic tie-break: lower cell id first
    while True:
        rounds += 1
        z = sup[node]
        m = np.bincount(rel, weights=z, minlength=n_rel)
        pz = np.bincount(rel, weights=z & is_parent, minlength=n_rel) > 0
        s = np.bincount(rel, weights=np.where(z & ~is_parent, mvalue, 0.0), minlength=n_rel)
        changed = False
        # harm of `all`: suppressed with any of its categories
        if forced.any():
            chz = np.bincount(rel, weights=z & ~is_parent, minlength=n_rel) > 0
            need_parent = forced & chz & ~pz
            if need_parent.any():
                hit = is_parent & need_parent[rel]
                sup[node[hit]] = True
                changed = True
        # the suppressed children of a relation with a published parent total s, each ≥ 1, so each
        # lies in [1, s − m + 1]: that range must hold 2 values at least (else all are 1) and should reach k
        spread = s - m + 1
        bounded = rng & ~pz & (m >= 2)
        must = (m == 1) | (bounded & (spread < 2))
        want = must | (bounded & (spread < k))
        need = np.where(pz | ~rng, 1.0, k + m - s)
        cand = want[rel] & ~is_parent & ~z & positive
        # a candidate that sits in several unsafe relations mends them all at once (fewer suppressions)
        mends = np.bincount(node[cand], minlength=len(sup))
        cr, cn, cv = rel[cand], order_node[cand], mvalue[cand]
        ok = cv >= need[cr]
        # per relation: an adequate value first, then the one mending most relations, then the smallest
        # value (the largest if none is adequate), then the lowest cell id
        score = np.where(ok, cv, -cv)
        order = np.lexsort((cn, score, -mends[cn], ~ok, cr))
        cr, cn = cr[order], cn[order]
        first = np.ones(len(cr), bool)
        first[1:] = cr[1:] != cr[:-1]
        sup[cn[first]] = True
        has_cand = np.zeros(n_rel, bool)
        has_cand[cr[first]] = True
        # no non-zero child left: the parent goes, if the relation would otherwise give a value away
        no_cand = must & ~has_cand
        par_hit = is_parent & no_cand[rel] & ~z
        sup[node[par_hit]] = True
        if not (first.any() or par_hit.any() or changed):
            return sup, rounds, int((no_cand & pz).sum())
        if rounds > 100_000:  # cannot happen: each round adds at least one suppression of a finite set
            return sup, rounds, int(must.sum())


def _audit(sup: np.ndarray, value: np.ndarray, integer: np.ndarray, rel: np.ndarray, node: np.ndarray,
           is_parent: np.ndarray, forced: np.ndarray, n_rel: int) -> np.ndarray:
    """Suppressed cells that the relations (all at once) pin to a single value.

    Two attackers: interval propagation (a suppressed cell is ≥ 1, parent = Σ children bounds every
    member; repeated to a fixed point, which includes differencing) and linear algebra (a cell is
    determined when its unit vector lies in the row space of the relations restricted to the
    suppressed cells; tested with random vectors projected on the null space, :func:`_determined`).
    Forced (weighted harm) relations are left out: their weights are not in the table."""
    keep = ~forced[rel]
    r, c = rel[keep], node[keep]
    sgn = np.where(is_parent[keep], 1.0, -1.0)
    if not len(r) or not sup.any():
        return np.zeros(len(sup), bool)
    lb = np.where(sup, np.where(integer, 1.0, 0.0), value)
    ub = np.where(sup, np.inf, value)
    for _ in range(100):
        lo = np.where(sgn > 0, lb[c], -ub[c])  # bounds of sign·x per member
        hi = np.where(sgn > 0, ub[c], -lb[c])
        lo_f, hi_f = np.isfinite(lo), np.isfinite(hi)
        lo_sum = np.bincount(r, weights=np.where(lo_f, lo, 0.0), minlength=n_rel)
        hi_sum = np.bincount(r, weights=np.where(hi_f, hi, 0.0), minlength=n_rel)
        lo_inf = np.bincount(r, weights=~lo_f, minlength=n_rel)
        hi_inf = np.bincount(r, weights=~hi_f, minlength=n_rel)
        # sign·x = −Σ others, so it lies in [−Σ hi of others, −Σ lo of others]
        new_lo = np.where(hi_inf[r] - ~hi_f > 0, -np.inf, -(hi_sum[r] - np.where(hi_f, hi, 0.0)))
        new_hi = np.where(lo_inf[r] - ~lo_f > 0, np.inf, -(lo_sum[r] - np.where(lo_f, lo, 0.0)))
        x_lo = np.where(sgn > 0, new_lo, -new_hi)
        x_hi = np.where(sgn > 0, new_hi, -new_lo)
        whole = integer[c]
        x_lo = np.where(whole & np.isfinite(x_lo), np.ceil(x_lo - 1e-6), x_lo)
        x_hi = np.where(whole & np.isfinite(x_hi), np.floor(x_hi + 1e-6), x_hi)
        lb2, ub2 = lb.copy(), ub.copy()
        np.maximum.at(lb2, c, x_lo)
        np.minimum.at(ub2, c, x_hi)
        if np.array_equal(lb2, lb) and np.array_equal(ub2, ub):
            break
        lb, ub = lb2, ub2
    exposed = sup & (ub - lb < 0.5)
    exposed |= _determined(sup, r, c, sgn)
    return exposed


def _determined(sup: np.ndarray, r: np.ndarray, c: np.ndarray, sgn: np.ndarray, probes: int = 3) -> np.ndarray:
    """Suppressed cells fixed by the linear relations: x_i is determined iff no vector of the null
    space of A (relations restricted to the suppressed cells) moves it. Projects seeded random vectors
    on that null space (x − Aᵀy, y the least-squares solution of Aᵀy = x) and reports the cells that
    none of them moves."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import lsmr

    keep = sup[c]
    cols = np.flatnonzero(sup)
    colmap = np.full(len(sup), -1, np.int64)
    colmap[cols] = np.arange(len(cols))
    rows, rr = np.unique(r[keep], return_inverse=True)
    at = sp.csr_matrix((sgn[keep], (colmap[c[keep]], rr)), shape=(len(cols), len(rows)))
    rng = np.random.default_rng(0)
    moved = np.zeros(len(cols), bool)
    with _one_blas_thread():  # vector products: threads only contend
        for _ in range(probes):
            x = rng.standard_normal(len(cols))
            y = lsmr(at, x, atol=1e-12, btol=1e-12, maxiter=50_000)[0]
            moved |= np.abs(x - at @ y) > 1e-6
    out = np.zeros(len(sup), bool)
    out[cols[~moved]] = True
    return out


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn (esda, libpysal)
    except ImportError:  # pragma: no cover
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _widen(exposed: np.ndarray, sup: np.ndarray, value: np.ndarray, rel: np.ndarray, node: np.ndarray,
           is_parent: np.ndarray, n_rel: int) -> bool:
    """For every exposed cell, suppress the smallest non-zero published member of one of its relations
    (a child if any, else the parent). Returns whether anything was added."""
    mvalue = value[node]
    touches = np.bincount(rel, weights=exposed[node], minlength=n_rel) > 0
    cand = touches[rel] & ~sup[node] & (mvalue > 0)
    if not cand.any():
        return False
    cr, cn, cv, cp = rel[cand], node[cand], mvalue[cand], is_parent[cand]
    order = np.lexsort((cn, cv, cp, cr))
    cr, cn = cr[order], cn[order]
    first = np.ones(len(cr), bool)
    first[1:] = cr[1:] != cr[:-1]
    # one relation per exposed cell: the first (lowest id) relation it belongs to that has a candidate
    has = np.zeros(n_rel, bool)
    has[cr[first]] = True
    ex_rel = rel[exposed[node] & has[rel]]
    ex_node = node[exposed[node] & has[rel]]
    o = np.lexsort((ex_rel, ex_node))
    pick = np.ones(len(o), bool)
    pick[1:] = ex_node[o][1:] != ex_node[o][:-1]
    chosen_rel = np.unique(ex_rel[o][pick])
    pos = np.searchsorted(cr[first], chosen_rel)
    sup[cn[first][pos]] = True
    return len(chosen_rel) > 0


def _finish(table: pd.DataFrame, suppressed: np.ndarray, is_share: np.ndarray) -> tuple[pd.DataFrame, dict]:
    out = table.copy()
    count_rows = suppressed & ~is_share
    share_rows = suppressed & is_share
    for c in SUPPRESSED_COLUMNS:
        out.loc[count_rows, c] = np.nan
    for c in SURVEY_SUPPRESSED_COLUMNS:
        out.loc[share_rows, c] = np.nan
    flags, removed = _clean_flags(out["flags"], suppressed)
    out["flags"] = flags
    out["n"] = out["n"].round().astype("Int64")
    return out, removed


def _report(k, min_n, table, suppressed, reason, dropped_columns, removed, by_cells, rounds, relations, linked,
            unresolved) -> dict:
    by: dict[str, dict[str, dict[str, int]]] = {}
    if suppressed.any():
        sub = pd.DataFrame({"level": table["level"].to_numpy()[suppressed],
                            "measure": table["measure"].to_numpy()[suppressed], "reason": reason[suppressed]})
        counts = sub.groupby(["level", "measure", "reason"], sort=True).size()
        for (lv, ms, rs), c in counts.items():
            entry = by.setdefault(str(lv), {}).setdefault(str(ms), {"primary": 0, "complementary": 0, "smoothed_group": 0})
            entry[str(rs)] = int(c)
    return {
        "profile": "public", "k": int(k), "min_n": int(min_n), "rules": list(RULES_PUBLIC),
        "rows": len(table), "rows_suppressed": int(suppressed.sum()),
        "suppressed_rows": by, "suppressed_cells": by_cells, "relations": relations, "rounds": int(rounds),
        "unresolved_relations": int(unresolved), "linked": linked, "dropped_columns": list(map(str, dropped_columns)),
        "removed_flags": {str(a): int(b) for a, b in sorted(removed.items())},
        "zeros": "published", "periods": "independent (no multi-period totals are published)",
    }


# --------------------------------------------------------------------------------------------
# time patterns


def profile_time_patterns(table: pd.DataFrame, crosswalk: pd.DataFrame | None, *, profile: str = "public",
                          k: int = 5) -> tuple[pd.DataFrame, dict]:
    """``time_patterns.csv`` (:mod:`usm_geo.time_patterns`) in an output profile.

    The public profile publishes category ``all`` only, and protects it with :func:`apply_profile`
    by seeing each pattern as a two-way table of units × time cells with both margins known:

    * ``hour_weekday``: one "period" whose 168 cells (weekday × hour) are the "categories"; their
      ``all`` is the unit's total of incidents with a time (an attacker can work it out from the
      published yearly counts), and the units add up to the city in every cell;
    * ``month``: one "period" per year whose 12 months are the "categories"; their ``all`` is the
      unit's count of that year (published in the measures), and the units add up to the city.

    So counts 1 … k−1 are suppressed with complementary suppression along the time axis and across
    units, exactly as :func:`apply_profile` does for categories and levels (its audit included); the
    margins themselves are not published. ``month_of_year`` (a sum of months across years, a relation
    across "periods" that :func:`apply_profile` does not know) is published for the city only, and
    only when none of the city's months is suppressed; every unit's is withheld. Returns the rows
    of category ``all`` with ``count`` a nullable integer (missing where withheld) and a boolean
    ``suppressed`` column, and the profile's report.
    """
    cells = table[table["category"].astype(str) == ALL].reset_index(drop=True)
    pattern = cells["pattern"].astype(str).to_numpy(dtype=object)
    count = pd.to_numeric(cells["count"]).to_numpy(float)
    month = cells["month"].astype(object).where(cells["month"].notna(), "").astype(str).to_numpy(dtype=object)
    wd = pd.to_numeric(cells["weekday"], errors="coerce").fillna(-1).to_numpy(int).astype(str).astype(object)
    hr = pd.to_numeric(cells["hour"], errors="coerce").fillna(-1).to_numpy(int).astype(str).astype(object)
    is_hw, is_month = pattern == "hour_weekday", pattern == "month"
    period = np.where(is_hw, "hour_weekday", np.where(is_month, np.array([m[:4] for m in month], dtype=object), ""))
    cat = np.where(is_hw, wd + "-" + hr, np.where(is_month, np.array([m[5:] for m in month], dtype=object), ""))
    used = is_hw | is_month
    body = pd.DataFrame({"level": cells["level"].astype(str).to_numpy(dtype=object)[used],
                         "unit_id": cells["unit_id"].astype(str).to_numpy(dtype=object)[used],
                         "period": period[used].astype(object), "category": cat[used].astype(object),
                         "value": count[used], "row": np.flatnonzero(used)})
    margins = body.groupby(["level", "unit_id", "period"], sort=False, as_index=False)["value"].sum()
    margins["category"], margins["row"] = ALL, -1
    both = pd.concat([body, margins], ignore_index=True)
    as_measures = both.assign(measure="count", numerator=both["value"], denominator=np.nan, lower=np.nan,
                              upper=np.nan, n=both["value"], flags="")
    out, report = apply_profile(as_measures.drop(columns="row"), crosswalk if crosswalk is not None else pd.DataFrame(
        columns=["level", "unit_id", "to_level", "to_unit_id", "nested"]), profile=profile, k=k)
    shown = np.full(len(cells), np.nan)
    rows = both["row"].to_numpy()
    keep = rows >= 0
    shown[rows[keep]] = out["value"].to_numpy(float)[keep]
    # month of year: the city's, when every month it sums is published; no unit's
    moy = pattern == "month_of_year"
    city = (cells["level"].astype(str) == "city").to_numpy()
    city_months_ok = not np.isnan(shown[is_month & city]).any()
    shown[moy & city] = count[moy & city] if city_months_ok else np.nan
    result = cells.copy()
    result["count"] = pd.array(shown, dtype="Float64").round().astype("Int64")
    result["suppressed"] = np.isnan(shown)
    report = {**report, "time_patterns": "category all only; month_of_year for the city only, when no month is suppressed"}
    return result, report
