"""Empirical Bayes smoothing checked against esda (PySAL) on the St Louis homicide data, and by hand.

References:
* ``esda.smoothing.Empirical_Bayes(e, b).r`` and ``esda.smoothing.Spatial_Empirical_Bayes(e, b, w).r``
  (esda 2.9) on libpysal's builtin ``stl`` example (78 counties around St Louis, homicides HC8893 and
  population PO8893, 1988–93), queen contiguity built from the polygons. Tolerance 1e-12 relative.
* Hand calculations written out below, and a plain-loop restatement of Marshall's formulas for
  the cases esda does not cover (units with no population).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.smoothing import eb_global, eb_spatial

RTOL = 1e-12


@pytest.fixture(scope="module")
def stl():
    libpysal = pytest.importorskip("libpysal")
    gpd = pytest.importorskip("geopandas")
    gdf = gpd.read_file(libpysal.examples.get_path("stl_hom.shp"))
    table = pd.read_csv(libpysal.examples.get_path("stl_hom.csv"))
    assert (gdf["FIPSNO"].to_numpy() == table["FIPSNO"].to_numpy()).all()  # same order in both files
    w = libpysal.weights.Queen.from_dataframe(gdf, use_index=False)
    w.id_order = list(w.id_order)  # esda insists the order is set explicitly
    return table["HC8893"].to_numpy(), table["PO8893"].to_numpy(), w


def _plain_loop_spatial_eb(e, p, adjacency):
    """Marshall's local EB restated with explicit loops (reference only; units with p = 0 left out)."""
    n = len(e)
    out = np.full(n, np.nan)
    for i in range(n):
        group = [j for j in range(n) if (j == i or adjacency[i, j]) and p[j] > 0]
        if p[i] <= 0 or not group:
            continue
        ps = sum(p[j] for j in group)
        b = sum(e[j] for j in group) / ps
        s2 = sum(p[j] * (e[j] / p[j] - b) ** 2 for j in group) / ps
        a = max(0.0, s2 - b / (ps / len(group)))
        w = a / (a + b / p[i]) if a + b / p[i] > 0 else 0.0
        out[i] = b + (e[i] / p[i] - b) * w
    return out


def test_eb_global_matches_esda_on_st_louis(stl):
    esda = pytest.importorskip("esda")
    e, p, _ = stl
    ours = eb_global(e, p)
    ref = esda.smoothing.Empirical_Bayes(e, p).r.ravel()
    np.testing.assert_allclose(ours["value"], ref, rtol=RTOL, atol=0)
    # the prior variance is positive here, so esda's lack of a clamp does not matter
    assert (ours["flags"] == "").all()
    np.testing.assert_allclose(ours["raw"], e / p, rtol=1e-15)
    assert ours["prior"].iloc[0] == pytest.approx(e.sum() / p.sum(), rel=1e-15)


def test_eb_spatial_matches_esda_on_st_louis(stl):
    esda = pytest.importorskip("esda")
    e, p, w = stl
    ours = eb_spatial(e, p, w.sparse)
    ref = esda.smoothing.Spatial_Empirical_Bayes(e, p, w).r.ravel()
    np.testing.assert_allclose(ours["value"], ref, rtol=RTOL, atol=0)
    # 31 of the 78 counties have a negative local prior variance (clamped, in esda too)
    assert (ours["flags"] == "prior_variance_zero").sum() == 31
    clamped = ours["flags"] == "prior_variance_zero"
    np.testing.assert_allclose(ours.loc[clamped, "value"], ours.loc[clamped, "prior"], rtol=1e-15)
    # row-standardised weights are binarised: same answer
    w.transform = "r"
    np.testing.assert_allclose(eb_spatial(e, p, w.sparse)["value"], ref, rtol=RTOL, atol=0)
    w.transform = "o"


def test_eb_global_hand_case():
    """counts (2, 30), populations (1000, 1000):
    b = 32/2000 = 0.016; r = (0.002, 0.030); s² = (1000·0.014² + 1000·0.014²)/2000 = 0.000196;
    a = 0.000196 − 0.016/1000 = 0.00018; w = 0.00018/(0.00018 + 0.016/1000) = 45/49;
    smoothed = (45·0.002 + 4·0.016)/49 = 0.154/49 and (45·0.030 + 4·0.016)/49 = 1.414/49."""
    out = eb_global([2, 30], [1000, 1000], per=1000)
    np.testing.assert_allclose(out["weight"], [45 / 49, 45 / 49], rtol=1e-13)
    np.testing.assert_allclose(out["value"], [154 / 49, 1414 / 49], rtol=1e-13)
    np.testing.assert_allclose(out["raw"], [2.0, 30.0], rtol=1e-15)
    np.testing.assert_allclose(out["prior"], [16.0, 16.0], rtol=1e-15)


def test_eb_global_negative_prior_variance_is_clamped():
    """counts (9, 11, 10), populations 1000 each: b = 0.01; s² = (1000·0.001² · 2)/3000 = 6.67e-7;
    b/(Σp/n) = 0.01/1000 = 1e-5 > s², so a < 0 → a = 0 → every w = 0 → every rate = b = 0.01."""
    out = eb_global([9, 11, 10], [1000, 1000, 1000])
    np.testing.assert_allclose(out["value"], [0.01, 0.01, 0.01], rtol=1e-15)
    assert (out["weight"] == 0).all()
    assert (out["flags"] == "prior_variance_zero").all()


def test_eb_zero_population_is_nan_and_flagged_without_warnings():
    e = np.array([2.0, 30.0, 4.0, 0.0])
    p = np.array([1000.0, 1000.0, 0.0, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = eb_global(e, p, per=1000)
        adj = sparse.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0]]))
        sp = eb_spatial(e, p, adj, per=1000)
    # the unit with no population is left out of the prior: same as the hand case on the first two
    np.testing.assert_allclose(out["value"][:2], [154 / 49, 1414 / 49], rtol=1e-13)
    assert out["value"][2:].isna().all() and out["raw"][2:].isna().all()
    assert out["flags"].tolist() == ["", "", "no_denominator", "no_denominator"]
    ref = _plain_loop_spatial_eb(e, np.nan_to_num(p), adj.toarray()) * 1000
    np.testing.assert_allclose(sp["value"], ref, rtol=1e-13)
    assert sp["value"][2:].isna().all()
    assert sp["flags"][2].startswith("no_denominator") and sp["flags"][3].startswith("no_denominator")
    assert not np.isinf(sp[["raw", "value", "weight", "prior"]].to_numpy()).any()


def test_eb_spatial_against_plain_loops_with_islands_and_clamps():
    rng = np.random.default_rng(7)
    n = 60
    p = rng.integers(0, 5000, n).astype(float)
    p[[3, 17]] = 0
    e = rng.poisson(np.where(p > 0, p, 100) * rng.gamma(4, 0.0005, n)).astype(float)
    upper = sparse.random(n, n, density=0.06, random_state=3, format="csr")
    adj = ((upper + upper.T) > 0).astype(float).tolil()
    adj[5, :] = 0
    adj[:, 5] = 0  # an island
    adj = adj.tocsr()
    out = eb_spatial(e, p, adj)
    ref = _plain_loop_spatial_eb(e, p, adj.toarray() > 0)
    np.testing.assert_allclose(out["value"], ref, rtol=1e-12, equal_nan=True)
    assert "no_neighbours" in out["flags"][5]
    assert out["value"][5] == pytest.approx(e[5] / p[5], rel=1e-14)  # island: its own rate is its prior


def test_eb_no_events_and_bad_inputs():
    out = eb_global([0, 0], [100, 200])
    assert (out["value"] == 0).all() and (out["weight"] == 0).all()
    with pytest.raises(UsmGeoError, match="population"):
        eb_global([1, 2, 3], [10, 20])
    with pytest.raises(UsmGeoError, match="0 or more"):
        eb_global([1, -2], [10, 20])
    with pytest.raises(UsmGeoError, match="same units"):
        eb_spatial([1, 2], [10, 20], sparse.identity(3, format="csr"))


def _rate_rows_first_period_empty():
    """Rate rows (measures-table columns) of one indicator per 1,000 on a 3×3 grid of units: 2019 has no
    event anywhere, 2020 has events. The old code took the scale of the first group (2019: 1.0)."""
    ids = [f"u{i}" for i in range(9)]
    pop = np.array([1200, 800, 5000, 300, 2500, 900, 4000, 700, 1500], dtype=float)
    e20 = np.array([30, 2, 90, 12, 20, 4, 110, 1, 15], dtype=float)
    frames = []
    for period, e in (("2019", np.zeros(9)), ("2020", e20)):
        frames.append(pd.DataFrame({"level": "area", "unit_id": ids, "period": period, "category": "all",
                                    "measure": "incident_rate", "numerator": e, "denominator": pop,
                                    "value": e / pop * 1000, "lower": np.nan, "upper": np.nan,
                                    "n": e.astype(np.int64), "flags": ""}))
    return pd.concat(frames, ignore_index=True), ids, pop, e20


def test_smoothed_rows_keep_the_indicator_scale_when_the_first_period_has_no_events():
    """Issue #19 point 1: every group of an indicator is smoothed on the indicator's own ``per``.
    Reference: esda.smoothing.Empirical_Bayes / Spatial_Empirical_Bayes (rates per person) × 1000."""
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    gpd = pytest.importorskip("geopandas")
    from types import SimpleNamespace

    from shapely.geometry import box

    from usm_geo.indicators.compute import smoothed_rows

    rows, ids, pop, e20 = _rate_rows_first_period_empty()
    layer = gpd.GeoDataFrame({"unit_id": ids}, geometry=[box(c, r, c + 1, r + 1) for r in range(3) for c in range(3)])
    w = libpysal.weights.Queen.from_dataframe(layer, use_index=False)
    w.id_order = list(w.id_order)
    units = SimpleNamespace(kinds={"area": "polygon"}, levels={"area": layer})
    ref_eb = esda.smoothing.Empirical_Bayes(e20, pop).r.ravel() * 1000
    ref_seb = esda.smoothing.Spatial_Empirical_Bayes(e20, pop, w).r.ravel() * 1000
    for per in (None, {"incident_rate": 1000.0}):  # read back from the rows, or given by the definitions
        out = smoothed_rows(rows, units, {"area": w.sparse}, per=per)
        got = out[out.period == "2020"].set_index(["measure", "unit_id"])["value"]
        np.testing.assert_allclose(got["incident_rate_eb"].reindex(ids), ref_eb, rtol=1e-12)
        np.testing.assert_allclose(got["incident_rate_seb"].reindex(ids), ref_seb, rtol=1e-12)
        assert (out.loc[out.period == "2019", "value"] == 0).all()
