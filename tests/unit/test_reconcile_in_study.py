"""Police and health records reconciled inside one study (issue 21 item 2): a hand calculation.

Three 1 km squares N1, N2, N3 (EPSG:32633) and one year (2019). Police (the primary records, counted
by the run) and health records, linked on the same day in the same unit ([reconcile] link):

    police  P1 N1 2019-03-01   P2 N2 2019-03-01   P3 N2 2019-03-01   P4 N2 2019-05-02
    health  H1 N1 2019-03-01   H2 N3 2019-03-01   H3 N3 2019-06-10

    unit   a  b  m   difference  ratio   exact binomial p (π = 1/2, X ~ Bin(a + b, 1/2))
    N1     1  1  1        0       1      1 (a = b)
    N2     3  0  0        3       ∞      2 · P(X ≤ 0) = 2 · 1/8 = 0.25
    N3     0  2  0       −2       0      2 · P(X ≤ 0) = 2 · 1/4 = 0.5
    city   4  3  1        1      4/3     2 · P(X ≤ 3), n = 7: 2 · (1 + 7 + 21 + 35)/128 = 1

Clopper–Pearson for π = a/(a + b) at 95 %, ratio = π/(1 − π), in closed form where n ≤ 3:
    N1 (1 of 2): P(X ≥ 1) = 1 − (1 − π)² = 0.025 → π_L = 1 − √0.975;  P(X ≤ 1) = 1 − π² = 0.025 → π_U = √0.975
    N2 (3 of 3): π³ = 0.025 → π_L = 0.025^(1/3); π_U = 1 (ratio upper ∞)
    N3 (0 of 2): π_L = 0; (1 − π)² = 0.025 → π_U = 1 − √0.025
Benjamini–Hochberg over N1..N3, p = (1, 0.25, 0.5): sorted 0.25·3/1 = 0.75, 0.5·3/2 = 0.75, 1·3/3 = 1,
cumulative minimum from the top → N2 0.75, N3 0.75, N1 1: no unit flagged.

Chapman N̂ = (a+1)(b+1)/(m+1) − 1, Seber Var = (a+1)(b+1)(a−m)(b−m)/((m+1)²(m+2)):
    N1: 2·2/2 − 1 = 1, Var 0          N2: 4·1/1 − 1 = 3, Var 0 (m = 0: no_overlap)
    N3: 1·3/1 − 1 = 2, Var 0 (no_overlap)
    city: 5·4/2 − 1 = 9, Var = 5·4·3·2/(2²·3) = 10; observed a + b − m = 6, f̂₀ = 3,
          Chao: C = exp(1.959964 · √ln(1 + 10/9)), interval 6 + 3/C … 6 + 3·C
"""

from __future__ import annotations

import datetime as dt
import math
import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from scipy.stats import binomtest

from usm_geo.pipeline import reconciliation_in_profile, run_intake, run_measures, run_reconciliation, run_units
from usm_geo.study import load_study

X0, Y0 = 500_000.0, 5_800_000.0
CENTRES = {"N1": (X0 + 500, Y0 + 500), "N2": (X0 + 1500, Y0 + 500), "N3": (X0 + 2500, Y0 + 500)}
POLICE = [("P1", "N1", "2019-03-01 10:00"), ("P2", "N2", "2019-03-01 11:00"), ("P3", "N2", "2019-03-01 12:00"),
          ("P4", "N2", "2019-05-02 09:00")]
HEALTH = [("H1", "N1", "2019-03-01 23:00"), ("H2", "N3", "2019-03-01 08:00"), ("H3", "N3", "2019-06-10 14:00")]


def _csv(path, rows):
    frame = pd.DataFrame([{"id": i, "x": CENTRES[u][0] + 10 * k, "y": CENTRES[u][1], "when": t}
                          for k, (i, u, t) in enumerate(rows)])
    frame.to_csv(path, index=False)


def tiny_study(folder, *, link='["date", "unit"]', profile="internal"):
    squares = gpd.GeoDataFrame({"nbhd": list(CENTRES), "geometry": [shapely.box(x - 500, y - 500, x + 500, y + 500)
                                                                    for x, y in CENTRES.values()]}, crs="EPSG:32633")
    squares.to_file(folder / "units.gpkg", engine="pyogrio")
    _csv(folder / "police.csv", POLICE)
    _csv(folder / "health.csv", HEALTH)
    text = f"""
        [study]
        name = "Tiny"
        timezone = "UTC"
        working_crs = "EPSG:32633"

        [[inputs.incidents]]
        path = "police.csv"
        x = "x"
        y = "y"
        crs = "EPSG:32633"
        datetime = "when"
        id = "id"
        category_value = "assault"

        [[inputs.incidents]]
        path = "health.csv"
        x = "x"
        y = "y"
        crs = "EPSG:32633"
        datetime = "when"
        id = "id"
        category_value = "assault"
        records = "health"

        [[inputs.boundaries]]
        level = "neighbourhood"
        path = "units.gpkg"
        id = "nbhd"

        [periods]
        start = 2019-01-01
        end = 2019-12-31

        [reconcile]
        link = {link}

        [outputs]
        profile = "{profile}"
        """
    (folder / "study.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_study(folder / "study.toml")


@pytest.fixture
def reconciled(tmp_path):
    study = tiny_study(tmp_path)
    intake = run_intake(study, now=dt.datetime(2024, 1, 1))
    located = run_units(intake)
    return intake, located, run_reconciliation(intake, located)


def test_counts_comparison_and_chapman_by_hand(reconciled):
    intake, located, recon = reconciled
    t = recon.table.set_index(["level", "unit_id"])
    assert list(t["period"].unique()) == ["2019"]
    for unit, (a, b, m) in {"N1": (1, 1, 1), "N2": (3, 0, 0), "N3": (0, 2, 0)}.items():
        row = t.loc[("neighbourhood", unit)]
        assert (row["a"], row["b"], row["m"], row["difference"]) == (a, b, m, a - b)
    city = t.loc[("city", "city")]
    assert (city["a"], city["b"], city["m"], city["difference"]) == (4, 3, 1, 1)

    n1, n2, n3 = (t.loc[("neighbourhood", u)] for u in ("N1", "N2", "N3"))
    s975, s025 = math.sqrt(0.975), math.sqrt(0.025)
    assert n1["ratio"] == 1.0 and n1["p"] == 1.0
    assert n1["ratio_lower"] == pytest.approx((1 - s975) / s975, rel=1e-9)
    assert n1["ratio_upper"] == pytest.approx(s975 / (1 - s975), rel=1e-9)
    pl = 0.025 ** (1 / 3)
    assert math.isinf(n2["ratio"]) and math.isinf(n2["ratio_upper"])
    assert n2["ratio_lower"] == pytest.approx(pl / (1 - pl), rel=1e-9) and n2["p"] == pytest.approx(0.25, rel=1e-12)
    assert n3["ratio"] == 0.0 and n3["ratio_lower"] == 0.0
    assert n3["ratio_upper"] == pytest.approx((1 - s025) / s025, rel=1e-9) and n3["p"] == pytest.approx(0.5, rel=1e-12)
    assert [n1["p_fdr"], n2["p_fdr"], n3["p_fdr"]] == pytest.approx([1.0, 0.75, 0.75], rel=1e-12)
    assert [n1["flags"], n2["flags"], n3["flags"]] == ["", "", ""]
    # the city's interval (no closed form at n = 7) against scipy's exact Clopper–Pearson
    ci = binomtest(4, 7).proportion_ci(0.95, method="exact")
    assert city["ratio"] == pytest.approx(4 / 3, rel=1e-12) and city["p"] == pytest.approx(1.0)
    assert (city["ratio_lower"], city["ratio_upper"]) == pytest.approx((ci.low / (1 - ci.low), ci.high / (1 - ci.high)),
                                                                      rel=1e-9)

    assert [n1["total_estimate"], n2["total_estimate"], n3["total_estimate"]] == pytest.approx([1.0, 3.0, 2.0], rel=1e-12)
    assert [n1["total_se"], n2["total_se"], n3["total_se"]] == [0.0, 0.0, 0.0]
    assert [n1["total_flags"], n2["total_flags"], n3["total_flags"]] == ["", "no_overlap", "no_overlap"]
    c = math.exp(1.959963984540054 * math.sqrt(math.log(1 + 10 / 9)))
    assert city["total_estimate"] == pytest.approx(9.0, rel=1e-12)
    assert city["total_se"] == pytest.approx(math.sqrt(10), rel=1e-12)
    assert (city["total_lower"], city["total_upper"]) == pytest.approx((6 + 3 / c, 6 + 3 * c), rel=1e-12)


def test_the_run_counts_the_primary_records_only(reconciled):
    intake, located, recon = reconciled
    assert intake.incidents["source"].tolist() == ["incidents/police.csv"] * 4
    assert intake.reconcile_incidents["source"].tolist() == ["incidents/health.csv"] * 3
    m = run_measures(intake, located)
    counts = m[(m["measure"] == "count") & (m["category"] == "all")].set_index(["level", "unit_id"])["value"]
    # 4 police records in the city, N2 holds 3: the 3 health records are not added (no double counting)
    assert counts[("city", "city")] == 4 and counts[("neighbourhood", "N2")] == 3 and counts[("neighbourhood", "N3")] == 0
    totals = intake.ledger.totals()
    assert totals["incidents/police.csv"]["used"] == 4 and totals["incidents/health.csv"]["used"] == 3
    s = recon.summary
    assert s["primary"] == "police" and s["a"]["sources"] == ["incidents/police.csv"]
    assert s["b"] == {"records": "health", "sources": ["incidents/health.csv"], "used": 3}
    assert "count the police records only" in s["rule"] and "feed only reconciliation.csv" in s["rule"]


def test_primary_health_swaps_the_sides(tmp_path):
    study = tiny_study(tmp_path)
    text = (tmp_path / "study.toml").read_text().replace('link = ["date", "unit"]', 'primary = "health"')
    (tmp_path / "study.toml").write_text(text)
    study = load_study(tmp_path / "study.toml")
    assert study.records == "health" and [s.name for s in study.primary_inputs()] == ["incidents/health.csv"]
    intake = run_intake(study, now=dt.datetime(2024, 1, 1))
    recon = run_reconciliation(intake, run_units(intake))
    city = recon.table.set_index("level").loc["city"]
    assert (city["a"], city["b"]) == (3, 4) and "m" not in recon.table  # no link: no capture–recapture


def test_link_by_id(tmp_path):
    # ids P1… and H1… never coincide: nothing is linked, every Chapman estimate is flagged no_overlap
    study = tiny_study(tmp_path, link='["id"]')
    intake = run_intake(study, now=dt.datetime(2024, 1, 1))
    recon = run_reconciliation(intake, run_units(intake))
    assert recon.table["m"].tolist() == [0, 0, 0, 0]
    assert set(recon.table["total_flags"]) == {"no_overlap"}


def test_public_profile_withholds_small_counts_and_what_derives_from_them():
    # one level of four units and the city, one period; a: 10, 3, 20, 30 (city 63), b: 0, 12, 8, 9 (city 29)
    from usm_geo.reconcile import reconcile_tables

    units = ["U1", "U2", "U3", "U4"]
    a = pd.DataFrame({"lv": np.repeat(units, [10, 3, 20, 30]), "period": "2020"})
    b = pd.DataFrame({"lv": np.repeat(units, [0, 12, 8, 9]), "period": "2020"})
    for f in (a, b):
        f["city"] = "city"
    result = reconcile_tables(a, b, {"lv": np.array(units, dtype=object), "city": np.array(["city"], dtype=object)}, ["2020"])
    xw = pd.DataFrame({"level": "lv", "unit_id": units, "to_level": "city", "to_unit_id": "city", "overlap_share": 1.0,
                       "nested": True})
    out, report = reconciliation_in_profile(result, xw, profile="public", k=5)
    t = out.set_index("unit_id")
    # U2's a = 3 is below k: withheld, and (the city being published) one more unit of a goes with it, or the
    # city minus the published units would give it back
    assert pd.isna(t.loc["U2", "a"]) and t["a"].isna().sum() == 2 and t.loc["city", "a"] == 63
    hidden_a = t.index[t["a"].isna()]
    # b: 12, 8, 9 and a zero are all publishable; the zero stays (a zero reveals nothing)
    assert t.loc["U1", "b"] == 0 and t["b"].notna().all()
    # the difference, ratio and test of a row go with its withheld a; other rows keep theirs
    for u in hidden_a:
        assert pd.isna(t.loc[u, "difference"]) and np.isnan(t.loc[u, "ratio"]) and np.isnan(t.loc[u, "p"])
        assert t.loc[u, "flags"] == "suppressed"
    kept = [u for u in units if u not in hidden_a]
    assert (t.loc[kept, "difference"].astype(int) == t.loc[kept, "a"].astype(int) - t.loc[kept, "b"].astype(int)).all()
    # no count 1 … k−1 anywhere (a difference of two published counts may be small: it is no count)
    for col in ("a", "b"):
        v = pd.to_numeric(out[col]).dropna()
        assert not ((v >= 1) & (v < 5)).any()
    assert report["rows_suppressed"] == 2
    internal, _ = reconciliation_in_profile(result, xw, profile="internal")
    pd.testing.assert_frame_equal(internal, result)
