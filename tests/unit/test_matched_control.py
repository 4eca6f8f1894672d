"""Matched control (``[intervention] control = "matched"``): Mahalanobis distance by hand."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from scipy.spatial.distance import mahalanobis

from usm_geo.errors import StudyError, UsmGeoError
from usm_geo.impact import matched_control, ring_buffer

# six 1 km squares in a row, A … F (metres, a projected CRS); A is treated, B lies in its 400 m ring
IDS = ["A", "B", "C", "D", "E", "F"]
LAYER = gpd.GeoDataFrame({"unit_id": IDS, "name": [f"Unit {u}" for u in IDS]},
                         geometry=[shapely.box(1000 * i, 0, 1000 * (i + 1), 1000) for i in range(6)], crs="EPSG:32633")
COUNT = np.array([30.0, 25, 12, 28, 40, 9])
POP = np.array([1000.0, 1200, 800, 900, 2000, 600])


def test_mahalanobis_by_hand():
    """Rates per 1,000: 30, 20.833…, 15, 31.111…, 20, 15. Target = A's (30, 1000). S = the sample
    covariance of the six (rate, population) pairs, written out; d_i² = Δᵀ S⁻¹ Δ with the 2×2 inverse
    by hand. B is in the buffer; of C–F the two nearest are chosen."""
    rate = COUNT / POP * 1000
    n = 6
    mr, mp = rate.sum() / n, POP.sum() / n
    s_rr = ((rate - mr) ** 2).sum() / (n - 1)
    s_pp = ((POP - mp) ** 2).sum() / (n - 1)
    s_rp = ((rate - mr) * (POP - mp)).sum() / (n - 1)
    det = s_rr * s_pp - s_rp ** 2
    inv = np.array([[s_pp, -s_rp], [-s_rp, s_rr]]) / det
    dist = {}
    for i, u in enumerate(IDS[2:], start=2):
        dr, dp = rate[i] - 30.0, POP[i] - 1000.0
        dist[u] = math.sqrt(dr * dr * inv[0, 0] + 2 * dr * dp * inv[0, 1] + dp * dp * inv[1, 1])
        # the same by scipy
        assert dist[u] == pytest.approx(mahalanobis([rate[i], POP[i]], [30.0, 1000.0], inv), rel=1e-12)
    want = sorted(dist, key=dist.get)[:2]
    ring = ring_buffer(LAYER.geometry.iloc[0], 400)
    control, report = matched_control(LAYER, ["A"], baseline_count=COUNT, population=POP, buffer=ring, k=2)
    assert [r["unit_id"] for r in report["chosen"]] == want
    for r in report["chosen"]:
        assert r["distance"] == pytest.approx(dist[r["unit_id"]], rel=1e-12)
        assert r["baseline_rate"] == pytest.approx(rate[IDS.index(r["unit_id"])], rel=1e-15)
    assert report["candidates"] == 4 and report["excluded_in_buffer"] == 1
    assert report["target"] == {"baseline_rate": 30.0, "population": 1000.0}
    np.testing.assert_allclose(report["covariance"], [[s_rr, s_rp], [s_rp, s_pp]], rtol=1e-12)
    want_area = shapely.union_all([LAYER.geometry.iloc[IDS.index(u)] for u in want])
    assert shapely.equals(control, want_area)


def test_without_population_counts_alone_and_fewer_candidates_than_k():
    """No population: the baseline count alone, d = |Δ| / s (the 1-D Mahalanobis distance)."""
    ring = ring_buffer(LAYER.geometry.iloc[0], 400)
    _, report = matched_control(LAYER, ["A"], baseline_count=COUNT, population=None, buffer=ring, k=10)
    s = COUNT.std(ddof=1)
    got = {r["unit_id"]: r["distance"] for r in report["chosen"]}
    assert list(got) == ["D", "E", "C", "F"]  # |Δ| = 2, 10, 18, 21
    for u, d in got.items():
        assert d == pytest.approx(abs(COUNT[IDS.index(u)] - 30) / s, rel=1e-12)
    assert report["features"] == ["baseline_count"] and "fewer than k = 10" in report["warning"]


def test_no_candidate_is_an_error():
    ring = ring_buffer(LAYER.geometry.iloc[0], 6000)  # the ring covers every other unit
    with pytest.raises(UsmGeoError, match="no untreated unit"):
        matched_control(LAYER, ["A"], baseline_count=COUNT, population=POP, buffer=ring, k=2)


def test_study_keys(tmp_path):
    from robustness.helpers import incidents_csv, study_file
    from usm_geo.study import load_study

    incidents_csv(tmp_path, "1,15.03,52.38,2021-01-01,theft")
    base = '[intervention]\nname = "pilot"\nstart = 2021-06-01\n'
    ok = study_file(tmp_path, extra=base + 'units = ["N1"]\nlevel = "neighbourhood"\ncontrol = "matched"\nk = 3')
    iv = load_study(ok).intervention
    assert iv.matched and iv.k == 3 and iv.control is None
    assert load_study(study_file(tmp_path, extra=base + 'units = ["N1"]\nlevel = "neighbourhood"\ncontrol = "matched"')).intervention.k == 5
    for extra, words in ((base + 'units = ["N1"]\nlevel = "neighbourhood"\nk = 3', 'applies only to control = "matched"'),
                         (base + 'path = "nbhd.gpkg"\ncontrol = "matched"', "must be given as units"),
                         (base + 'units = ["N1"]\nlevel = "neighbourhood"\ncontrol = "matched"\nk = 0', "≥ 1")):
        with pytest.raises(StudyError, match=words):
            load_study(study_file(tmp_path, extra=extra))
