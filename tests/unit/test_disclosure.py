"""Public/internal profiles: small-cell and complementary suppression, checked by hand and by an
attacker who holds only the public table, the crosswalk and the (public) indicator definitions.

The attacker (:func:`attack`) is written here from scratch, independently of ``usm_geo.disclosure``:

* it reads every count the public table gives away: ``count`` rows, ``harm`` rows' ``n``, rate rows'
  numerators, and rate × population / per where only the rate is shown;
* it knows every additive relation of the published table: categories → ``all``; composite rates
  (e.g. violent crime = ICCS 01–04) = Σ their categories; children → parent for the crosswalk's
  nested pairs; every level → ``city``;
* **differencing**: a relation with exactly one unknown gives it away; repeated until nothing changes;
* **intervals**: a suppressed count is ≥ 1 (zeros are published); bounds are propagated through every
  relation to a fixed point (this includes differencing);
* **linear algebra** (:func:`determined`): a suppressed count is determined when its unit vector lies
  in the row space of all the relations restricted to the suppressed cells (projection of random
  vectors on the null space).

The integration (Demo City) and real-data (Chicago) tests import it from here.
"""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usm_geo.disclosure import KNOWN_FLAGS, apply_profile
from usm_geo.errors import UsmGeoError
from usm_geo.measures import COLUMNS

KEY = ["level", "unit_id", "period"]


# --------------------------------------------------------------------------------------------
# the attacker


def registry_definitions(categories: list[str]) -> dict[str, list[str]]:
    """What any reader knows from the shipped registry and ICCS table: rate id → local categories
    (for the rates defined on ICCS sections rather than on every category)."""
    data = resources.files("usm_geo.indicators") / "data"
    reg = tomllib.loads((data / "registry.toml").read_text())
    iccs = pd.read_csv(data / "iccs_categories.csv", dtype=str)
    code = dict(zip(iccs["label"], iccs["iccs"]))
    out = {}
    for ind in reg["indicator"]:
        if ind["kind"] == "rate" and ind["categories"] != ["*"]:
            cats = sorted(c for c in categories if code.get(c) in ind["categories"])
            if cats:
                out[ind["id"]] = cats
    return out


def _known_counts(public: pd.DataFrame, definitions: dict[str, list[str]]) -> pd.DataFrame:
    """One row per (level, unit_id, period, var) with the count the table gives away (NaN if none).
    var: ``c:<category>`` or ``v:<category+category>`` (a composite rate's categories)."""
    t = public.copy()
    for c in ("numerator", "denominator", "value", "n"):
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float)
    frames = []

    def add(rows, var, count):
        frames.append(pd.DataFrame({**{c: rows[c].to_numpy(dtype=object) for c in KEY},
                                    "var": np.broadcast_to(np.asarray(var, dtype=object), len(rows)),
                                    "value": np.asarray(count, dtype=float)}))

    cnt = t[t["measure"] == "count"]
    add(cnt, ("c:" + cnt["category"]).to_numpy(dtype=object), cnt["value"])
    harm = t[(t["measure"] == "harm") & (t["category"] != "all")]
    add(harm, ("c:" + harm["category"]).to_numpy(dtype=object), harm["n"])
    rates = t[t["measure"].str.contains("rate")]
    for measure, rows in rates.groupby("measure"):
        base = measure.removesuffix("_seb").removesuffix("_eb")
        count = rows["numerator"].copy()
        if base == measure:  # raw rate: value × population / per, per read off any published row
            ratio = (rows["value"] * rows["denominator"] / rows["numerator"]).replace([np.inf, -np.inf], np.nan).dropna()
            if len(ratio):
                per = float(ratio.round(6).mode().iloc[0])
                count = count.where(count.notna(), (rows["value"] * rows["denominator"] / per).round())
        if base in definitions:
            cats = definitions[base]
            var = ("c:" + cats[0]) if len(cats) == 1 else "v:" + "+".join(sorted(cats))
        else:
            var = ("c:" + rows["category"]).to_numpy(dtype=object)
        add(rows, var, count)
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values("value", na_position="last", kind="stable").drop_duplicates(KEY + ["var"])
    return out.sort_values(KEY + ["var"], kind="stable").reset_index(drop=True)


def _relations(cells: pd.DataFrame, crosswalk: pd.DataFrame, definitions: dict[str, list[str]]):
    """(rel, cell, sign) rows with Σ sign · x = 0 for every additive relation of the table."""
    cells = cells.assign(cell=np.arange(len(cells)))
    parts, nrel = [], 0

    def add(parent, children, on):
        nonlocal nrel
        parent = parent.drop_duplicates(on)
        rid = parent[on].assign(rel=np.arange(nrel, nrel + len(parent)))
        nrel += len(parent)
        p, c = parent.merge(rid, on=on), children.merge(rid, on=on)
        parts.append(pd.DataFrame({"rel": p["rel"], "cell": p["cell"], "sign": 1.0}))
        parts.append(pd.DataFrame({"rel": c["rel"], "cell": c["cell"], "sign": -1.0}))

    plain = cells[cells["var"].str.startswith("c:") & (cells["var"] != "c:all")]
    total = cells[cells["var"] == "c:all"]
    add(total, plain, KEY)
    for cats in definitions.values():
        if len(cats) > 1:
            comp = cells[cells["var"] == "v:" + "+".join(sorted(cats))]
            inside = plain["var"].isin(["c:" + c for c in cats])
            add(comp, plain[inside], KEY)
            add(total, pd.concat([comp, plain[~inside]]), KEY)
    cw = crosswalk[crosswalk["nested"].astype(str).str.lower().isin(["true", "1"])]
    cw = cw[["level", "unit_id", "to_level", "to_unit_id"]].astype(str)
    units = cells.loc[cells["level"] != "city", ["level", "unit_id"]].drop_duplicates()
    cw = pd.concat([cw, units.assign(to_level="city", to_unit_id="city")]).drop_duplicates(["level", "unit_id", "to_level"])
    for (fine, coarse), pairs in cw.groupby(["level", "to_level"]):
        ch = cells[cells["level"] == fine].merge(pairs[["unit_id", "to_unit_id"]], on="unit_id")
        par = cells[cells["level"] == coarse].rename(columns={"unit_id": "to_unit_id"})
        add(par, ch, ["to_unit_id", "period", "var"])
    return pd.concat(parts, ignore_index=True), nrel


def attack(public: pd.DataFrame, crosswalk: pd.DataFrame, definitions: dict[str, list[str]] | None = None):
    """Returns (cells, relations): cells with ``value`` (what the table shows), ``recovered`` (exact
    values learnt by differencing, NaN if none) and ``lb``/``ub`` (bounds learnt from intervals)."""
    definitions = definitions or {}
    cells = _known_counts(public, definitions)
    rel, nrel = _relations(cells, crosswalk, definitions)
    r, c, sgn = rel["rel"].to_numpy(), rel["cell"].to_numpy(), rel["sign"].to_numpy()
    shown = cells["value"].notna().to_numpy()
    known, val = shown.copy(), cells["value"].fillna(0).to_numpy(float, copy=True)
    while True:  # differencing
        unk = ~known[c]
        m = np.bincount(r, weights=unk, minlength=nrel)
        rest = np.bincount(r, weights=np.where(unk, 0.0, sgn * val[c]), minlength=nrel)
        hit = unk & (m[r] == 1)
        if not hit.any():
            break
        val[c[hit]] = -rest[r[hit]] / sgn[hit]
        known[c[hit]] = True
    recovered = np.where(known & ~shown, val, np.nan)
    lb = np.where(shown, cells["value"].fillna(0), 1.0)  # intervals
    ub = np.where(shown, lb, np.inf)
    for _ in range(500):
        lo = np.where(sgn > 0, lb[c], -ub[c])
        hi = np.where(sgn > 0, ub[c], -lb[c])
        lf, hf = np.isfinite(lo), np.isfinite(hi)
        lo_s = np.bincount(r, weights=np.where(lf, lo, 0), minlength=nrel)
        hi_s = np.bincount(r, weights=np.where(hf, hi, 0), minlength=nrel)
        lo_n = np.bincount(r, weights=~lf, minlength=nrel)
        hi_n = np.bincount(r, weights=~hf, minlength=nrel)
        s_lo = np.where(hi_n[r] - ~hf > 0, -np.inf, -(hi_s[r] - np.where(hf, hi, 0)))
        s_hi = np.where(lo_n[r] - ~lf > 0, np.inf, -(lo_s[r] - np.where(lf, lo, 0)))
        x_lo, x_hi = np.where(sgn > 0, s_lo, -s_hi), np.where(sgn > 0, s_hi, -s_lo)
        lb2, ub2 = lb.copy(), ub.copy()
        np.maximum.at(lb2, c, np.ceil(x_lo - 1e-6))
        np.minimum.at(ub2, c, np.floor(x_hi + 1e-6))
        if np.array_equal(lb2, lb) and np.array_equal(ub2, ub):
            break
        lb, ub = lb2, ub2
    return cells.assign(recovered=recovered, lb=lb, ub=ub), rel


def determined(cells: pd.DataFrame, rel: pd.DataFrame) -> np.ndarray:
    """Boolean per cell: suppressed and fixed by the linear relations (e_i in the row space of A)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import lsmr
    from threadpoolctl import threadpool_limits

    unknown = cells["value"].isna().to_numpy()
    r, c, s = rel["rel"].to_numpy(), rel["cell"].to_numpy(), rel["sign"].to_numpy()
    keep = unknown[c]
    cols = np.flatnonzero(unknown)
    out = np.zeros(len(cells), bool)
    if not len(cols) or not keep.any():
        out[cols] = not keep.any()
        return out
    colmap = np.full(len(cells), -1)
    colmap[cols] = np.arange(len(cols))
    _, rr = np.unique(r[keep], return_inverse=True)
    at = sp.csr_matrix((s[keep], (colmap[c[keep]], rr)), shape=(len(cols), rr.max() + 1))
    moved = np.zeros(len(cols), bool)
    rng = np.random.default_rng(12345)
    with threadpool_limits(1, user_api="blas"):
        for _ in range(3):
            x = rng.standard_normal(len(cols))
            y = lsmr(at, x, atol=1e-12, btol=1e-12, maxiter=50_000)[0]
            moved |= np.abs(x - at @ y) > 1e-6
    out[cols[~moved]] = True
    return out


def check_attack(internal: pd.DataFrame, public: pd.DataFrame, crosswalk: pd.DataFrame, k: int,
                 definitions: dict[str, list[str]] | None = None) -> dict:
    """Run every attacker on the public table and assert that it learns no suppressed count."""
    cells, rel = attack(public, crosswalk, definitions)
    truth = _known_counts(internal, definitions or {})
    assert (truth[KEY + ["var"]].to_numpy() == cells[KEY + ["var"]].to_numpy()).all()
    true = truth["value"].to_numpy(float)
    hidden = cells["value"].isna().to_numpy()
    small = hidden & (true >= 1) & (true <= k - 1)
    # the attacker is sound: the truth always lies inside what it believes
    assert not (hidden & ((true < cells["lb"]) | (true > cells["ub"]))).any()
    rec = cells["recovered"].to_numpy(float)
    assert not (small & (rec == true)).any(), "differencing recovered a suppressed small count"
    assert not (hidden & ~np.isnan(rec)).any(), "differencing recovered a suppressed count"
    pinned = hidden & (cells["lb"] == cells["ub"]).to_numpy()
    assert not pinned.any(), cells[pinned].head()
    det = determined(cells, rel)
    assert not det.any(), cells[det].head()
    return {"hidden": int(hidden.sum()), "hidden_small": int(small.sum()), "relations": int(rel["rel"].nunique()),
            "narrowed_below_k": int((small & (cells["ub"].to_numpy() < k)).sum())}


# --------------------------------------------------------------------------------------------
# hand-built tables

PER = 1000.0


def _table(counts: dict[tuple[str, str], dict[str, int]], parents: dict[str, str], *, period: str = "2020",
           pop: float = 10_000.0, composite: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measures (count, incident_rate, population; optional composite rates) for neighbourhoods given
    as {(neighbourhood, category): count}-style dict {neighbourhood: {category: count}}, rolled up to
    districts (``parents``) and the city; and the crosswalk."""
    nb = pd.DataFrame(counts).T.fillna(0).astype(int)  # rows: neighbourhoods, columns: categories
    nb.index.name = "unit_id"
    cats = list(nb.columns)
    levels = {"neighbourhood": nb}
    dist = nb.groupby(pd.Series(parents))[cats].sum()
    levels["district"] = dist
    levels["city"] = pd.DataFrame([nb.sum()], index=["city"])
    rows = []
    for level, tab in levels.items():
        tab = tab.copy()
        tab["all"] = tab[cats].sum(axis=1)
        size = {"neighbourhood": 1, "district": 3, "city": 6}[level]
        for unit, r in tab.iterrows():
            p = pop * size
            rows.append([level, unit, period, "all", "population", p, np.nan, p, np.nan, np.nan, 0, ""])
            for cat in [*cats, "all"]:
                n = int(r[cat])
                rows.append([level, unit, period, cat, "count", n, np.nan, n, np.nan, np.nan, n, ""])
                rows.append([level, unit, period, cat, "incident_rate", n, p, n / p * PER, n / p * PER * 0.5,
                             n / p * PER * 2 + 1, n, "small_count" if n < 10 else ""])
            for cid, members in (composite or {}).items():
                n = int(sum(r[m] for m in members))
                rows.append([level, unit, period, "all", cid, n, p, n / p * PER, np.nan, np.nan, n,
                             "small_count" if n < 10 else ""])
    measures = pd.DataFrame(rows, columns=COLUMNS)
    cw = [("neighbourhood", u, "district", d, 1.0, True) for u, d in parents.items()]
    cw += [("neighbourhood", u, "city", "city", 1.0, True) for u in parents]
    cw += [("district", d, "city", "city", 1.0, True) for d in sorted(set(parents.values()))]
    crosswalk = pd.DataFrame(cw, columns=["level", "unit_id", "to_level", "to_unit_id", "overlap_share", "nested"])
    return measures, crosswalk


PARENTS = {"N1": "D1", "N2": "D1", "N3": "D1", "N4": "D2", "N5": "D2", "N6": "D2"}
TWO_BY_THREE = {  # 2 districts × 3 neighbourhoods × 2 categories; one small count (N1, a) = 2
    "N1": {"a": 2, "b": 20}, "N2": {"a": 10, "b": 15}, "N3": {"a": 12, "b": 30},
    "N4": {"a": 8, "b": 9}, "N5": {"a": 7, "b": 11}, "N6": {"a": 30, "b": 40},
}


def _hidden(public: pd.DataFrame, measure: str = "count") -> set[tuple[str, str, str]]:
    rows = public[(public["measure"] == measure) & public["value"].isna()]
    return set(zip(rows["level"], rows["unit_id"], rows["category"]))


def test_two_districts_by_hand():
    """(N1, a) = 2 is suppressed. By hand (k = 5):

    * N1's categories then have one unknown: its other category, b = 20, goes too;
    * D1's a (N1..N3 → D1) and the city's a (N1..N6 → city) have one unknown: the smallest sibling
      that sits in both, (N2, a) = 10, goes (it mends both relations at once);
    * now N2's categories, D1's b and the city's b each have one unknown: (N2, b) = 15 sits in all
      three and goes.

    The four cells form a rectangle: every relation holds 0 or 2 of them, with suppressed totals
    12 (a: 2 + 10), 35 (b), 22 (N1) and 25 (N2), so each cell could hold anything from 1 to ≥ 11.
    """
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    public, report = apply_profile(measures, cw, k=5)
    expected = {("neighbourhood", "N1", "a"), ("neighbourhood", "N1", "b"),
                ("neighbourhood", "N2", "a"), ("neighbourhood", "N2", "b")}
    assert _hidden(public) == expected
    assert _hidden(public, "incident_rate") == expected  # a rate on a suppressed count goes with it
    assert report["suppressed_cells"]["neighbourhood"] == {"cells": 18, "primary": 1, "complementary": 3}
    assert report["suppressed_cells"]["district"]["complementary"] == 0
    assert report["suppressed_rows"]["neighbourhood"]["count"] == {"primary": 1, "complementary": 3, "smoothed_group": 0}
    assert report["audit"]["exposed_per_pass"] == [0]
    # what differencing leaves an attacker: N1's a lies in [1, 11]
    cells, _ = attack(public, cw)
    n1a = cells[(cells.unit_id == "N1") & (cells["var"] == "c:a")].iloc[0]
    assert np.isnan(n1a.recovered) and (n1a.lb, n1a.ub) == (1, 11)
    stats = check_attack(measures, public, cw, k=5)
    assert stats["hidden_small"] == 1 and stats["narrowed_below_k"] == 0


def test_suppressed_rows_are_blank_and_flagged_the_rest_untouched():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    public, _ = apply_profile(measures, cw, k=5)
    assert list(public.columns) == COLUMNS and len(public) == len(measures)
    hidden = public["flags"].str.contains("suppressed")
    assert public.loc[hidden, ["numerator", "value", "lower", "upper", "n"]].isna().all().all()
    assert public.loc[hidden, "denominator"].notna().sum() == (public.loc[hidden, "measure"] == "incident_rate").sum()
    assert not public.loc[hidden, "flags"].str.contains("small_count").any()  # would say "fewer than 10"
    same = ~hidden
    pd.testing.assert_frame_equal(public.loc[same, ["value", "numerator", "denominator", "lower", "upper"]],
                                  measures.loc[same, ["value", "numerator", "denominator", "lower", "upper"]])
    assert (public.loc[same, "n"].astype(int) == measures.loc[same, "n"]).all()
    assert public["n"].dtype == "Int64"
    assert (public.loc[public.measure == "population", "flags"] == "").all()  # population is published


def test_zeros_are_published_and_never_used_as_complements():
    counts = {"N1": {"a": 3, "b": 0}, "N2": {"a": 0, "b": 50}, "N3": {"a": 40, "b": 60},
              "N4": {"a": 0, "b": 5}, "N5": {"a": 0, "b": 6}, "N6": {"a": 20, "b": 7}}
    measures, cw = _table(counts, PARENTS)
    public, _ = apply_profile(measures, cw, k=5)
    zeros = (measures["measure"] == "count") & (measures["value"] == 0)
    assert (public.loc[zeros, "value"] == 0).all()
    # N1: a = 3 and b = 0 → N1's total (3) is itself small: it goes, and no zero is touched
    assert ("neighbourhood", "N1", "all") in _hidden(public)
    check_attack(measures, public, cw, k=5)


def test_two_ones_alone_under_a_parent_take_the_parent_with_them():
    """(N1, a) = 1 and (N2, a) = 1 with (N3, a) = 0: D1's a = 2 is small anyway; but even at the
    city an attacker who knows that suppressed cells hold ≥ 1 would read 1 and 1 off a total of 2."""
    counts = {"N1": {"a": 1, "b": 30}, "N2": {"a": 1, "b": 30}, "N3": {"a": 0, "b": 30},
              "N4": {"a": 0, "b": 30}, "N5": {"a": 0, "b": 30}, "N6": {"a": 0, "b": 30}}
    measures, cw = _table(counts, PARENTS)
    public, _ = apply_profile(measures, cw, k=5)
    hidden = _hidden(public)
    assert {("district", "D1", "a"), ("city", "city", "a")} <= hidden
    check_attack(measures, public, cw, k=5)


def test_composite_rates_are_linked_to_their_categories():
    """violent = a + b: published beside a suppressed a, it would give a away (violent − b)."""
    counts = {"N1": {"a": 2, "b": 30, "c": 12}, "N2": {"a": 9, "b": 25, "c": 40}, "N3": {"a": 12, "b": 30, "c": 50},
              "N4": {"a": 8, "b": 9, "c": 11}, "N5": {"a": 7, "b": 11, "c": 19}, "N6": {"a": 30, "b": 40, "c": 8}}
    definitions = {"violent_crime_rate": ["a", "b"], "a_rate": ["a"]}
    measures, cw = _table(counts, PARENTS, composite={"violent_crime_rate": ["a", "b"], "a_rate": ["a"]})
    public, report = apply_profile(measures, cw, k=5)
    assert report["linked"]["violent_crime_rate|all"] == "comp|a+b"
    assert report["linked"]["a_rate|all"] == "count|a"
    a_rate = public[(public.measure == "a_rate") & (public.unit_id == "N1")].iloc[0]
    assert np.isnan(a_rate["value"])
    check_attack(measures, public, cw, k=5, definitions=definitions)
    # without the composite's relations the attacker would have won: a published violent count
    # and a published b in the same unit as a suppressed a
    naive = measures.copy()
    small = (naive.measure.isin(["count", "incident_rate", "a_rate"])) & naive["n"].between(1, 4)
    naive.loc[small, ["numerator", "value", "n"]] = np.nan
    cells, _ = attack(naive, cw, definitions)
    assert cells["recovered"].notna().any()


def test_the_attacker_wins_against_primary_suppression_alone():
    """The attacker works: blanking only the small cells (and not their rates) gives them away."""
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    naive = measures.copy()
    small = naive["n"].between(1, 4)
    naive.loc[small & (naive.measure == "count"), ["numerator", "value", "n"]] = np.nan
    naive.loc[small & (naive.measure == "incident_rate"), ["numerator", "n"]] = np.nan  # the rate itself stays
    cells, _ = attack(naive, cw)
    n1a = cells[(cells.unit_id == "N1") & (cells["var"] == "c:a")].iloc[0]
    assert n1a.value == 2  # the rate × population / 1,000 gives it away
    naive.loc[small & (naive.measure == "incident_rate"), ["value", "lower", "upper"]] = np.nan
    cells, _ = attack(naive, cw)
    n1a = cells[(cells.unit_id == "N1") & (cells["var"] == "c:a")].iloc[0]
    assert n1a.recovered == 2  # N1's total minus its b


def test_the_linear_algebra_attacker_finds_a_bridge():
    """Two 2 × 2 rectangles joined by one cell: every relation has ≥ 2 unknowns (differencing fails),
    yet the joining cell is fixed: Σ(rows 1, 2) − Σ(columns 1, 2) isolates it."""
    cells = pd.DataFrame({"level": "x", "unit_id": [f"u{i}" for i in range(9)], "period": "p", "var": "c:a",
                          "value": np.nan})
    # cells 0..3: rows R1,R2 × cols C1,C2; 4..7: rows R3,R4 × cols C3,C4; 8: row R2 × col C3
    member = {"R1": [0, 1], "R2": [2, 3, 8], "R3": [4, 5], "R4": [6, 7], "C1": [0, 2], "C2": [1, 3],
              "C3": [4, 6, 8], "C4": [5, 7]}
    rel = pd.DataFrame([(i, c, -1.0) for i, cs in enumerate(member.values()) for c in cs], columns=["rel", "cell", "sign"])
    assert determined(cells, rel).tolist() == [False] * 8 + [True]


def test_survey_shares_below_min_n_are_suppressed_with_a_complement():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    units = measures[measures.measure == "population"][KEY].drop_duplicates()
    n = {"N1": 12, "N2": 40, "N3": 55, "N4": 80, "N5": 90, "N6": 33, "D1": 107, "D2": 203, "city": 310}
    share = units.assign(category="all", measure="safe_after_dark_share")
    share["n"] = share["unit_id"].map(n)
    share["numerator"] = share["n"] * 0.6 * 100
    share["denominator"] = share["n"] * 100.0
    share["value"], share["lower"], share["upper"] = 0.6, 0.5, 0.7
    share["flags"] = np.where(share["n"] < 30, "small_n;small_eff_n", "")
    share.loc[share.unit_id == "N6", "flags"] = "small_eff_n"  # n ≥ 30 but design effect too large
    table = pd.concat([measures, share[COLUMNS]], ignore_index=True)
    public, report = apply_profile(table, cw, k=5, min_n=30)
    s = public[public.measure == "safe_after_dark_share"].set_index("unit_id")
    hidden = set(s.index[s["value"].isna()])
    # N1 (n = 12) and N6 (small_eff_n); D1's other two: the smaller, N2 (40); D2's: N4 (80)
    assert hidden == {"N1", "N6", "N2", "N4"}
    assert s.loc[list(hidden), ["numerator", "denominator", "lower", "upper", "n"]].isna().all().all()
    assert s.loc["N1", "flags"] == "small_n;small_eff_n;suppressed"
    assert report["suppressed_rows"]["neighbourhood"]["safe_after_dark_share"] == {
        "primary": 2, "complementary": 2, "smoothed_group": 0}


def test_smoothed_rates_go_for_the_whole_group():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    rate = measures[(measures.measure == "incident_rate") & (measures.level == "neighbourhood")]
    eb = rate.assign(measure="incident_rate_eb", value=rate["value"] * 0.9, lower=np.nan, upper=np.nan, flags="smoothed")
    table = pd.concat([measures, eb], ignore_index=True)
    public, report = apply_profile(table, cw, k=5)
    e = public[public.measure == "incident_rate_eb"]
    # category a and b each hold a suppressed count: every neighbourhood's smoothed a and b go
    # (a global or spatial prior borrows from the suppressed counts); `all` has none and stays
    assert e.loc[e.category.isin(["a", "b"]), "value"].isna().all()
    assert e.loc[e.category == "all", "value"].notna().all()
    assert report["suppressed_rows"]["neighbourhood"]["incident_rate_eb"] == {
        "primary": 1, "complementary": 3, "smoothed_group": 8}


def test_harm_follows_its_counts():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    weight = {"a": 365.0, "b": 2.0}
    cnt = measures[measures.measure == "count"].copy()
    harm = cnt.assign(measure="harm")
    harm["numerator"] = [n * weight[c] if c in weight else np.nan for n, c in zip(cnt["n"], cnt["category"])]
    tot = harm[harm.category != "all"].groupby(KEY)["numerator"].sum()
    is_all = harm.category == "all"
    harm.loc[is_all, "numerator"] = tot.reindex(pd.MultiIndex.from_frame(harm.loc[is_all, KEY])).to_numpy()
    harm["value"] = harm["numerator"]
    table = pd.concat([measures, harm], ignore_index=True)
    public, report = apply_profile(table, cw, k=5)
    counts_hidden = _hidden(public)
    harm_hidden = _hidden(public, "harm")
    assert counts_hidden - {(lv, u, c) for lv, u, c in counts_hidden if c == "all"} <= harm_hidden
    # harm of `all` goes wherever a category of its unit goes: with public weights (365 vs 2 days)
    # it would be a second, weighted equation that separates a from b
    assert {("neighbourhood", "N1", "all"), ("neighbourhood", "N2", "all")} <= harm_hidden
    assert report["relations"]["harm"] > 0
    check_attack(table, public, cw, k=5)


def test_columns_and_flags_are_cleaned():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    measures["address"] = "12 Some Street"  # free text that must never reach a public output
    measures.loc[0, "flags"] = "population_partial;victim name"
    public, report = apply_profile(measures, cw)
    assert "address" not in public.columns and report["dropped_columns"] == ["address"]
    assert public.loc[0, "flags"] == "population_partial"
    assert report["removed_flags"] == {"victim name": 1}
    words = {w for f in public["flags"] for w in f.split(";") if w}
    assert words <= KNOWN_FLAGS


def test_internal_profile_changes_nothing():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    internal, report = apply_profile(measures, cw, profile="internal")
    pd.testing.assert_frame_equal(internal, measures)
    assert internal is not measures
    assert report["profile"] == "internal" and report["rows_suppressed"] == 0


def test_bad_arguments_are_clear_errors():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    with pytest.raises(UsmGeoError, match="unknown output profile 'secret'"):
        apply_profile(measures, cw, profile="secret")
    with pytest.raises(UsmGeoError, match="at least 1"):
        apply_profile(measures, cw, k=0)
    with pytest.raises(UsmGeoError, match="no column flags"):
        apply_profile(measures.drop(columns="flags"), cw)


def test_same_input_same_output():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    a, ra = apply_profile(measures, cw)
    b, rb = apply_profile(measures.sample(frac=1, random_state=1).sort_index(), cw.iloc[::-1])
    pd.testing.assert_frame_equal(a, b)
    assert ra == rb


# --------------------------------------------------------------------------------------------
# random small tables: the attacker never wins


@st.composite
def _random_study(draw):
    n_dist = draw(st.integers(2, 3))
    parents = {}
    for d in range(n_dist):
        for j in range(draw(st.integers(2, 4))):
            parents[f"N{d}{j}"] = f"D{d}"
    cats = ["a", "b", "c"][: draw(st.integers(1, 3))]
    small = st.one_of(st.integers(0, 6), st.integers(0, 40))
    counts = {u: {c: draw(small) for c in cats} for u in parents}
    k = draw(st.sampled_from([3, 5, 10]))
    return counts, parents, k


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_random_study())
def test_random_tables_resist_every_attacker(study):
    counts, parents, k = study
    three = len(next(iter(counts.values()))) == 3
    definitions = {"violent_crime_rate": ["a", "b"]} if three else {}  # a composite beside its categories
    measures, cw = _table(counts, parents, composite=definitions)
    public, report = apply_profile(measures, cw, k=k)
    assert report["unresolved_relations"] == 0
    check_attack(measures, public, cw, k=k, definitions=definitions)
    # every count 1..k−1 is hidden
    small = (measures.measure == "count") & measures["n"].between(1, k - 1)
    assert public.loc[small, "value"].isna().all()


def test_crosswalk_ids_read_as_numbers_are_refused():
    measures, cw = _table(TWO_BY_THREE, PARENTS)
    nb = cw["level"] == "neighbourhood"
    cw.loc[nb, "unit_id"] = cw.loc[nb, "unit_id"].str.replace("N", "") + ".0"  # ids 1.0, 2.0, …: wrong ids
    with pytest.raises(UsmGeoError, match="crosswalk's neighbourhood → district unit ids match no unit"):
        apply_profile(measures, cw)


def test_the_audit_widens_a_bridge_that_the_rounds_accept():
    """A 4 × 4 table with row and column totals: two suppressed 2 × 2 rectangles joined by one cell.
    Each row and column holds 0 or ≥ 2 suppressed cells, so the per-relation rounds accept it; the
    audit finds the joining cell determined and suppresses more until nothing is."""
    from usm_geo.disclosure.profiles import _audit, _complete, _widen

    value = np.concatenate([np.full(16, 10.0), np.full(8, 40.0)])  # cells, 4 row totals, 4 column totals
    rel, node, parent = [], [], []
    for i in range(4):
        rel += [i] * 5
        node += [16 + i] + [i * 4 + j for j in range(4)]
        parent += [True] + [False] * 4
    for j in range(4):
        rel += [4 + j] * 5
        node += [20 + j] + [i * 4 + j for i in range(4)]
        parent += [True] + [False] * 4
    rel, node, parent = np.array(rel), np.array(node), np.array(parent)
    rng, forced = np.ones(8, bool), np.zeros(8, bool)
    sup = np.zeros(24, bool)
    sup[[0, 1, 4, 5, 10, 11, 14, 15, 6]] = True  # rectangles (rows 0–1 × cols 0–1, rows 2–3 × cols 2–3) + (1, 2)
    again, _, _ = _complete(sup.copy(), value, rel, node, parent, rng, forced, 8, 5)
    assert (again == sup).all()  # the rounds see nothing wrong
    exposed = _audit(sup, value, np.ones(24, bool), rel, node, parent, forced, 8)
    assert np.flatnonzero(exposed).tolist() == [6]
    for _ in range(10):
        assert _widen(exposed, sup, value, rel, node, parent, 8)
        sup, _, _ = _complete(sup, value, rel, node, parent, rng, forced, 8, 5)
        exposed = _audit(sup, value, np.ones(24, bool), rel, node, parent, forced, 8)
        if not exposed.any():
            break
    assert not exposed.any() and sup[6]
