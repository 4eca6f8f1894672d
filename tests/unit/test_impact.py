"""Impact measurement (usm_geo.impact) against published worked examples and hand calculations.

References and tolerances:

* WDD: Wheeler & Ratcliffe (2018), *Crime Science* 7:11, worked example (as reproduced in the R
  package ptools' own test "Est & Variance Paper"): treated 207 → 110, control 308 → 318,
  displacement area 178 → 157, its control 150 → 140 give WDD = −118, variance 1568, z = −2.98 and a
  95 % interval of −196 to −40 (the paper's rounding; ours to 1e-9 before rounding). ptools' other
  examples (``wdd(c(20,20), c(20,10))`` = −10; ``time_weights = c(2, 1)``) worked by hand below.
* WDQ and TNE: Bowers & Johnson (2003), formulas as printed in Guerette (2009), POP Center Tool
  Guide 10, Appendix B; reading thresholds from its Appendix C. Hand examples written out, exact or
  to 1e-12.
* DiD, harm weights, unequal periods: hand calculations in the comments (1e-12).
* Interval coverage: a seeded Poisson simulation (coverage within 1.5 points of 95 %).

Every test runs with warnings as errors: no ZeroDivisionError, inf or NaN may slip through.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Point, box

from usm_geo.errors import CRSError, DateError, UsmGeoError
from usm_geo.impact import (
    REST_OF_CITY_WARNING,
    ImpactAreas,
    areas_from_units,
    count_in_areas,
    impact_areas,
    impact_measures,
    wdq_reading,
    window_days,
)

pytestmark = pytest.mark.filterwarnings("error")

KEYS = {"gross_effect", "net_effect", "wdq", "tne", "wdd", "wdd_se", "wdd_z", "wdd_p", "wdd_ci", "did",
        "did_ci", "reading", "status", "weights", "counts", "harm"}
MEASURES = {"gross_effect", "net_effect", "wdq", "tne", "wdd", "did"}


def _counts(rb, ra, db, da, cb, ca, **extra):
    out = {"treated": {"before": rb, "after": ra}, "control": {"before": cb, "after": ca}}
    out["buffer"] = None if db is None else {"before": db, "after": da}
    out.update(extra)
    return out


def _finite_everywhere(obj) -> None:
    """No float anywhere in the result is inf or NaN, and it is valid strict JSON."""
    json.dumps(obj, allow_nan=False)
    if isinstance(obj, dict):
        for v in obj.values():
            _finite_everywhere(v)
    elif isinstance(obj, list):
        for v in obj:
            _finite_everywhere(v)
    elif isinstance(obj, float):
        assert math.isfinite(obj)
    else:
        assert obj is None or isinstance(obj, (str, int, bool))


def _norm_p(z: float) -> float:
    """Two-sided normal p by a route independent of the module's (the error function directly)."""
    return 2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2))))


# =============================================================================== WDD


def test_wdd_wheeler_ratcliffe_2018_worked_example():
    # WDD = ΔT − ΔC + ΔD − ΔCD = (110−207) − (318−308) + (157−178) − (140−150)
    #     = −97 − 10 − 21 + 10 = −118
    # Var = 207+110+308+318+178+157+150+140 = 1568; se = 39.598; z = −2.98 (paper)
    # 95 % interval −118 ± 1.959964·39.598 = (−195.6, −40.4) → paper: (−196, −40)
    c = _counts(207, 110, 178, 157, 308, 318, buffer_control={"before": 150, "after": 140})
    r = impact_measures(c, before_days=365, after_days=365)
    assert r["wdd"] == -118
    assert r["wdd_se"] ** 2 == pytest.approx(1568, rel=1e-12)
    assert round(r["wdd_z"], 2) == -2.98
    assert [round(v) for v in r["wdd_ci"]] == [-196, -40]
    assert r["wdd_ci"][0] == pytest.approx(-118 - 1.959963984540054 * math.sqrt(1568), rel=1e-9)
    assert r["wdd_p"] == pytest.approx(_norm_p(-118 / math.sqrt(1568)), rel=1e-9)
    assert r["wdd_p"] == pytest.approx(0.00288, abs=5e-6)
    assert r["status"]["wdd"] == "ok"
    assert "reduction" in r["reading"] and "statistically significant" in r["reading"]
    assert set(r) == KEYS and set(r["status"]) == MEASURES
    _finite_everywhere(r)


def test_wdd_with_one_control_is_ptools_without_displacement_control():
    # Three areas (no separate control for the buffer) = ptools wdd(..., disp_control = c(0, 0)):
    # WDD = (110−207) − (318−308) + (157−178) = −97 − 10 − 21 = −128
    # Var = 207+110+308+318+178+157 = 1278
    r = impact_measures(_counts(207, 110, 178, 157, 308, 318), before_days=90, after_days=90)
    assert r["wdd"] == -128
    assert r["wdd_se"] == pytest.approx(math.sqrt(1278), rel=1e-12)
    assert r["wdd_z"] == pytest.approx(-128 / math.sqrt(1278), rel=1e-12)


def test_wdd_ptools_examples():
    # ptools: wdd(c(20,20), c(20,10)) → Est_Local = −10, variance 20+20+20+10 = 70
    r = impact_measures(_counts(20, 10, None, None, 20, 20), before_days=365, after_days=365)
    assert r["wdd"] == -10 and r["wdd_se"] == pytest.approx(math.sqrt(70), rel=1e-12)
    # ptools: wdd(c(20,20), c(20,10), time_weights = c(2,1)): two years before, one after.
    # est = (10/1 − 20/2) − (20/1 − 20/2) = 0 − 10 = −10
    # var = 10·1² + 20·(1/2)² + 20·1² + 20·(1/2)² = 10 + 5 + 20 + 5 = 40
    r = impact_measures(_counts(20, 10, None, None, 20, 20), before_days=730, after_days=365)
    assert r["wdd"] == -10 and r["wdd_se"] == pytest.approx(math.sqrt(40), rel=1e-12)
    assert r["weights"]["before"] == 2 and r["weights"]["after"] == 1


def test_wdd_level_changes_only_the_interval():
    c = _counts(207, 110, 178, 157, 308, 318)
    r90 = impact_measures(c, before_days=1, after_days=1, level=0.90)
    r95 = impact_measures(c, before_days=1, after_days=1)
    assert r90["wdd"] == r95["wdd"] and r90["wdd_p"] == r95["wdd_p"]
    # 90 %: z = 1.644854
    assert r90["wdd_ci"][1] == pytest.approx(-128 + 1.6448536269514722 * math.sqrt(1278), rel=1e-9)


# =============================================================================== WDQ, TNE, gross, net


def test_wdq_tne_bowers_johnson_hand_example():
    # Rb=100, Ra=70, Db=50, Da=60, Cb=1000, Ca=1000
    # success measure = Ra/Ca − Rb/Cb = 0.07 − 0.10 = −0.03  (treatment worked)
    # buffer measure  = Da/Ca − Db/Cb = 0.06 − 0.05 = +0.01  (displacement)
    # WDQ = 0.01 / −0.03 = −1/3: displacement smaller than the direct effect
    # TNE = [100·1 − 70] + [50·1 − 60] = 30 − 10 = 20 incidents prevented
    # gross = 70 − 100 = −30, −30 %; net = (70/100)/(1000/1000) − 1 = −30 %, absolute 70 − 100·1 = −30
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=365, after_days=365)
    assert r["wdq"] == pytest.approx(-1 / 3, rel=1e-15)
    assert r["tne"] == 20
    assert r["gross_effect"] == {"absolute": -30, "relative": pytest.approx(-0.3, rel=1e-15)}
    assert r["net_effect"] == {"absolute": -30, "relative": pytest.approx(-0.3, rel=1e-15)}
    assert all(s == "ok" for k, s in r["status"].items() if k != "did")
    assert "success measure -0.03" in r["reading"] and "buffer displacement measure +0.01" in r["reading"]
    assert "displacement into the buffer, smaller than the direct effect" in r["reading"]
    assert "20 incidents prevented" in r["reading"]


def test_wdq_tne_with_a_control_trend():
    # Control falls 10 %: Cb=1000, Ca=900. Rb=100, Ra=70, Db=50, Da=60.
    # WDQ = (60/900 − 50/1000) / (70/900 − 100/1000) = (0.0666… − 0.05) / (0.0777… − 0.1)
    #     = 0.01666… / −0.02222… = −0.75
    # TNE = [100·0.9 − 70] + [50·0.9 − 60] = 20 − 15 = 5
    # net: relative (70/100)/(900/1000) − 1 = 0.7/0.9 − 1 = −2/9; absolute 70 − 90 = −20
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 900), before_days=365, after_days=365)
    assert r["wdq"] == pytest.approx(-0.75, rel=1e-12)
    assert r["tne"] == pytest.approx(5, rel=1e-12)
    assert r["net_effect"]["relative"] == pytest.approx(-2 / 9, rel=1e-12)
    assert r["net_effect"]["absolute"] == pytest.approx(-20, rel=1e-12)
    # Diffusion: buffer 50 → 40 with the same control: WDQ = (40/900 − 0.05)/(−0.0222…) = 0.25
    r = impact_measures(_counts(100, 70, 50, 40, 1000, 900), before_days=365, after_days=365)
    assert r["wdq"] == pytest.approx(0.25, rel=1e-12)
    assert "diffusion of benefits" in r["reading"]
    # TNE = 20 + [45 − 40] = 25
    assert r["tne"] == pytest.approx(25, rel=1e-12)


@pytest.mark.parametrize("wdq, success, words", [
    (1.5, -0.1, "diffusion of benefits greater than the direct effect"),
    (0.4, -0.1, "diffusion of benefits into the buffer"),
    (0.0, -0.1, "neither displacement nor diffusion"),
    (-0.4, -0.1, "displacement into the buffer, smaller than the direct effect"),
    (-1.0, -0.1, "displacement into the buffer, smaller than the direct effect"),
    (-2.0, -0.1, "displacement greater than the direct effect"),
    (-2.0, 0.1, "no effect measurable"),
    (0.5, 0.0, "no effect measurable"),
])
def test_wdq_reading_thresholds(wdq, success, words):
    assert wdq_reading(wdq, success).startswith(words)


def test_success_measure_positive_is_not_read_as_displacement():
    # Treated rises while the control is flat: success = 0.12 − 0.10 > 0
    r = impact_measures(_counts(100, 120, 50, 60, 1000, 1000), before_days=1, after_days=1)
    # WDQ = (60·1000 − 50·1000)/(120·1000 − 100·1000) = 0.5, computed but not read
    assert r["wdq"] == pytest.approx(0.5) and r["status"]["wdq"] == "ok"
    assert "no effect measurable" in r["reading"]


# =============================================================================== zero counts


def test_zero_control_before():
    # Cb = 0: net effect, WDQ and TNE divide by Cb; gross effect and WDD do not.
    r = impact_measures(_counts(100, 70, 50, 60, 0, 10), before_days=365, after_days=365)
    for m in ("net_effect", "wdq", "tne"):
        assert r["status"][m].startswith("cannot compute: no incidents in the control area before (Cb = 0)")
    assert r["wdq"] is None and r["tne"] is None and r["net_effect"] == {"absolute": None, "relative": None}
    assert r["status"]["gross_effect"] == "ok" and r["status"]["wdd"] == "ok"
    # WDD = (70−100) − (10−0) + (60−50) = −30; var = 100+70+0+10+50+60 = 290
    assert r["wdd"] == -30 and r["wdd_se"] == pytest.approx(math.sqrt(290))
    _finite_everywhere(r)


def test_zero_control_after():
    # Ca = 0: WDQ's Ra/Ca is undefined; TNE = [100·0 − 70] + [50·0 − 60] = −130 still defined
    r = impact_measures(_counts(100, 70, 50, 60, 10, 0), before_days=1, after_days=1)
    assert r["wdq"] is None and r["status"]["wdq"] == "cannot compute: no incidents in the control area after (Ca = 0)"
    assert r["tne"] == -130 and "130 incidents added" in r["reading"]
    assert r["net_effect"]["absolute"] == 70 and r["net_effect"]["relative"] is None
    assert r["status"]["net_effect"].startswith("cannot compute: relative net effect")
    _finite_everywhere(r)


def test_zero_success_measure():
    # Ra/Ca − Rb/Cb = 20/200 − 10/100 = 0: the treated area moved exactly with the control.
    r = impact_measures(_counts(10, 20, 5, 9, 100, 200), before_days=1, after_days=1)
    assert r["wdq"] is None
    assert r["status"]["wdq"].startswith("cannot compute: the success measure Ra/Ca − Rb/Cb is 0")
    # net effect is then exactly 0; TNE = [10·2 − 20] + [5·2 − 9] = 1
    assert r["net_effect"] == {"absolute": 0, "relative": 0}
    assert r["tne"] == 1
    _finite_everywhere(r)


def test_zero_success_measure_with_floats_is_caught():
    # 0.1/0.3 − 0.2/0.6 is 0 in exact arithmetic, a rounding error in floating point.
    r = impact_measures(_counts(0.2, 0.1, 1, 2, 0.6, 0.3), before_days=1, after_days=1)
    assert r["wdq"] is None and r["status"]["wdq"].startswith("cannot compute: the success measure")


def test_all_zero():
    r = impact_measures(_counts(0, 0, 0, 0, 0, 0), before_days=365, after_days=365,
                        population={"treated": 1000, "control": 5000})
    assert r["status"] == {
        "gross_effect": "cannot compute: relative change: no incidents in the treated area before (Rb = 0); "
                        "the absolute change is given",
        "net_effect": "cannot compute: no incidents in the control area before (Cb = 0)",
        "wdq": "cannot compute: no incidents in the control area before (Cb = 0)",
        "tne": "cannot compute: no incidents in the control area before (Cb = 0)",
        "wdd": "cannot compute: no incidents in any area or period (the variance is 0)",
        "did": "cannot compute: no incidents in the treated or control area in either period",
    }
    assert r["gross_effect"] == {"absolute": 0, "relative": None}
    for k in ("wdq", "tne", "wdd", "wdd_se", "wdd_z", "wdd_p", "wdd_ci", "did", "did_ci"):
        assert r[k] is None
    _finite_everywhere(r)


def test_zero_treated_before():
    r = impact_measures(_counts(0, 5, 3, 3, 100, 100), before_days=1, after_days=1)
    assert r["gross_effect"] == {"absolute": 5, "relative": None}
    assert r["status"]["gross_effect"].startswith("cannot compute: relative change")
    assert r["net_effect"] == {"absolute": 5, "relative": None}
    # success = 5/100 − 0 > 0: WDQ = (3·100 − 3·100)/(5·100 − 0) = 0, not read
    assert r["wdq"] == 0 and "no effect measurable" in r["reading"]
    _finite_everywhere(r)


def test_no_buffer():
    r = impact_measures(_counts(100, 70, None, None, 1000, 1000), before_days=1, after_days=1)
    assert r["wdq"] is None and r["status"]["wdq"] == "cannot compute: no buffer area"
    # TNE: treated term only, 100 − 70 = 30; WDD = −30 − 0, var = 100+70+1000+1000
    assert r["tne"] == 30 and "(no buffer)" in r["reading"]
    assert r["wdd"] == -30 and r["wdd_se"] == pytest.approx(math.sqrt(2170))
    r2 = impact_measures({k: v for k, v in _counts(100, 70, None, None, 1000, 1000).items() if k != "buffer"},
                         before_days=1, after_days=1)
    assert r2["wdq"] is None and r2["wdd"] == -30


def test_small_counts_warn_in_reading():
    r = impact_measures(_counts(4, 1, 3, 3, 50, 50), before_days=1, after_days=1)
    assert "normal approximation is rough" in r["reading"]


def test_bad_inputs_raise():
    with pytest.raises(UsmGeoError, match="not both positive"):
        impact_measures(_counts(1, 1, 1, 1, 1, 1), before_days=0, after_days=365)
    with pytest.raises(UsmGeoError, match="count ≥ 0"):
        impact_measures(_counts(-1, 1, 1, 1, 1, 1), before_days=1, after_days=1)
    with pytest.raises(UsmGeoError, match="count ≥ 0"):
        impact_measures(_counts(float("nan"), 1, 1, 1, 1, 1), before_days=1, after_days=1)
    with pytest.raises(UsmGeoError, match="no 'control' area"):
        impact_measures({"treated": {"before": 1, "after": 1}}, before_days=1, after_days=1)
    with pytest.raises(UsmGeoError, match="level"):
        impact_measures(_counts(1, 1, 1, 1, 1, 1), before_days=1, after_days=1, level=95)


# =============================================================================== unequal periods


def test_unequal_periods_with_weights():
    # Before 730 days, after 365: w = 730/365 = 2; before counts are halved (per 365 days).
    # Rb=200, Ra=70, Db=100, Da=60, Cb=2000, Ca=1000 (the B&J example with a twice as long before)
    # gross: 70 − 200/2 = −30, −30 %; WDQ = (60·2000 − 100·1000)/(70·2000 − 200·1000) = 20000/−60000
    # TNE = [200·0.5 − 70] + [100·0.5 − 60] = 30 − 10 = 20 (unchanged by w)
    # WDD = (70 − 100) − (1000 − 1000) + (60 − 50) = −20
    # Var = 70 + 200/2² + 1000 + 2000/2² + 60 + 100/2² = 70 + 50 + 1000 + 500 + 60 + 25 = 1705
    # DiD (pop T 10,000, C 100,000), per 1,000 residents per 365 days:
    #   treated 7.0 − 10.0 = −3.0; control 10.0 − 10.0 = 0 → −3.0
    #   se = 1000·√(70/10⁴² + 200/(2·10⁴)² + 1000/10⁵² + 2000/(2·10⁵)²)
    #      = 1000·√(7e-7 + 5e-7 + 1e-7 + 5e-8) = 1000·√1.35e-6
    c = _counts(200, 70, 100, 60, 2000, 1000)
    r = impact_measures(c, before_days=730, after_days=365, population={"treated": 10_000, "control": 100_000})
    assert r["gross_effect"] == {"absolute": -30, "relative": pytest.approx(-0.3, rel=1e-12)}
    assert r["wdq"] == pytest.approx(-1 / 3, rel=1e-12) and r["tne"] == pytest.approx(20, rel=1e-12)
    assert r["wdd"] == pytest.approx(-20, rel=1e-12)
    assert r["wdd_se"] == pytest.approx(math.sqrt(1705), rel=1e-12)
    assert r["did"] == pytest.approx(-3.0, rel=1e-12)
    half = 1.959963984540054 * 1000 * math.sqrt(1.35e-6)
    assert r["did_ci"] == [pytest.approx(-3 - half, rel=1e-9), pytest.approx(-3 + half, rel=1e-9)]
    w = r["weights"]
    assert (w["before"], w["after"], w["before_days"], w["after_days"]) == (2, 1, 730, 365)
    assert "w = before_days / after_days = 730 / 365 = 2" in w["rule"]
    assert w["did_per"] == "1,000 residents per 365 days (the after period's length)"
    assert "Before values are divided by 2 (before/after period length)" in r["reading"]
    # Equal-length counts give the same measures as the rescaled ones.
    r1 = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=365, after_days=365)
    assert r1["wdd"] == pytest.approx(r["wdd"]) and r1["wdq"] == pytest.approx(r["wdq"])
    assert r1["weights"]["rule"] == "equal periods: counts are used as they are"


def test_did_hand_example_and_missing_population():
    # pop T 12,000, C 300,000; Rb=100, Ra=70, Cb=Ca=1000
    # treated 70/12 − 100/12 = −2.5 per 1,000; control 0 → DiD = −2.5
    # se = 1000·√((70+100)/12000² + (1000+1000)/300000²)
    pop = {"treated": 12_000, "control": 300_000}
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=365, after_days=365, population=pop)
    se = 1000 * math.sqrt(170 / 12_000**2 + 2000 / 300_000**2)
    assert r["did"] == pytest.approx(-2.5, rel=1e-12)
    assert r["did_ci"] == [pytest.approx(-2.5 - 1.959963984540054 * se, rel=1e-9),
                           pytest.approx(-2.5 + 1.959963984540054 * se, rel=1e-9)]
    # different populations before and after: treated 10,000 → 14,000
    # treated 70/14 − 100/10 = 5 − 10 = −5; control 0 → −5
    pop2 = {"treated": {"before": 10_000, "after": 14_000}, "control": 300_000}
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=1, after_days=1, population=pop2)
    assert r["did"] == pytest.approx(-5, rel=1e-12)
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=1, after_days=1)
    assert r["did"] is None and r["did_ci"] is None and r["status"]["did"] == "cannot compute: no population"
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=1, after_days=1,
                        population={"treated": 0, "control": 5})
    assert r["did"] is None and r["status"]["did"] == "cannot compute: the treated population is 0, not a positive number"
    r = impact_measures(_counts(100, 70, 50, 60, 1000, 1000), before_days=1, after_days=1,
                        population={"treated": 10})
    assert r["status"]["did"] == "cannot compute: no population for the control area"


# =============================================================================== areas


SQUARE = box(0, 0, 100, 100)


def test_buffer_ring_and_given_control():
    a = impact_areas(SQUARE, buffer_width=50, control=box(300, 0, 400, 100))
    assert isinstance(a, ImpactAreas)
    # ring = 4 sides 100×50 + 4 rounded corners; shapely's corners (8 segments a quarter) together
    # make a regular 32-gon of radius 50: area 32/2 · 50² · sin(2π/32). Vertices are snapped to the
    # 1 mm grid: each moves ≤ 0.71 mm, so the area moves by less than the ring's outer length × 1 mm.
    assert a.buffer.area == pytest.approx(4 * 100 * 50 + 16 * 50**2 * math.sin(2 * math.pi / 32), abs=0.72)
    assert shapely.area(shapely.intersection(a.buffer, a.treated)) < 1e-6
    assert a.report["buffer_source"] == "ring" and a.report["buffer_width_m"] == 50
    assert a.report["control_source"] == "given" and a.report["control_is_rest_of_city"] is False
    assert a.report["warnings"] == []
    assert a.report["treated_area_m2"] == 10_000 and a.report["control_area_m2"] == 10_000


def test_control_defaults_to_the_rest_of_the_study_area_with_a_warning():
    study = box(-1000, -1000, 1000, 1000)
    a = impact_areas(SQUARE, buffer_width=50, study_area=study)
    assert a.report["control_is_rest_of_city"] is True
    assert a.report["control_source"] == "rest of study area"
    assert REST_OF_CITY_WARNING in a.report["warnings"]
    assert REST_OF_CITY_WARNING == "control is the rest of the city: a weak comparison"
    assert a.control.area == pytest.approx(study.area - SQUARE.area - a.buffer.area, rel=1e-9)
    with pytest.raises(UsmGeoError, match="no control area and no study area"):
        impact_areas(SQUARE)


@pytest.mark.parametrize("kwargs, pair, m2", [
    # control [100,300]×[0,100] meets the ring's straight east strip [100,150]×[0,100]: 50·100 m²
    ({"buffer_width": 50, "control": box(100, 0, 300, 100)}, "buffer and control", "5,000.0"),
    # control [50,300]×[0,100] covers half of the treated square: checked before the buffer pair
    ({"buffer_width": 50, "control": box(50, 0, 300, 100)}, "treated and control", "5,000.0"),
    # a buffer polygon that still holds the treated area
    ({"buffer_area": box(-50, -50, 150, 150), "control": box(300, 0, 400, 100)}, "treated and buffer", "10,000.0"),
])
def test_overlapping_areas_raise_naming_the_pair(kwargs, pair, m2):
    with pytest.raises(UsmGeoError, match=f"the {pair} areas overlap by {m2} m²") as err:
        impact_areas(SQUARE, **kwargs)
    assert err.value.fix and "must not overlap" in err.value.fix
    assert err.value.where == pair.replace(" and ", "/")


def test_given_buffer_and_no_buffer():
    ring = box(-50, -50, 150, 150).difference(SQUARE)
    a = impact_areas(SQUARE, buffer_area=ring, control=box(300, 0, 400, 100))
    assert a.report["buffer_source"] == "given" and a.buffer.area == pytest.approx(30_000)
    a = impact_areas(SQUARE, buffer_width=None, control=box(300, 0, 400, 100))
    assert a.buffer.is_empty and a.report["buffer_source"] == "none"
    with pytest.raises(UsmGeoError, match="not a distance"):
        impact_areas(SQUARE, buffer_width=-5, control=box(300, 0, 400, 100))


def test_areas_accept_geoseries_and_reject_empty():
    a = impact_areas(gpd.GeoSeries([box(0, 0, 50, 100), box(50, 0, 100, 100)]), buffer_width=10,
                     control=gpd.GeoDataFrame(geometry=[box(300, 0, 400, 100)]))
    assert a.treated.area == pytest.approx(10_000)
    with pytest.raises(UsmGeoError, match="treated area is empty"):
        impact_areas(shapely.Polygon(), control=box(300, 0, 400, 100))
    with pytest.raises(UsmGeoError, match="not a polygon"):
        impact_areas(Point(0, 0), control=box(300, 0, 400, 100))


def test_areas_from_units():
    layer = gpd.GeoDataFrame({"unit_id": ["1", "2", "3"], "name": ["a", "b", "c"]},
                             geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(5, 5, 6, 6)], crs="EPSG:32633")
    g = areas_from_units(layer, [1, "2"])
    assert g.area == pytest.approx(2) and g.equals(box(0, 0, 2, 1))
    assert areas_from_units(layer, "3").equals(box(5, 5, 6, 6))
    with pytest.raises(UsmGeoError, match=r"2 unit id\(s\) not in the layer: '7', '9'"):
        areas_from_units(layer, ["1", "9", "7"])
    with pytest.raises(UsmGeoError, match="no unit ids"):
        areas_from_units(layer, [])
    with pytest.raises(CRSError, match="degrees"):
        areas_from_units(layer.set_crs("EPSG:4326", allow_override=True), ["1"])


# =============================================================================== counting


@pytest.fixture
def areas():
    # treated [0,100]², ring of 50 m, control [300,400]×[0,100]
    return impact_areas(SQUARE, buffer_width=50, control=box(300, 0, 400, 100))


BEFORE = ("2021-01-01", "2021-06-30")
AFTER = ("2022-01-01", "2022-06-30")


def test_count_in_areas_by_hand(areas):
    pts = [
        # x, y, time, harm                                  where, when
        (50, 50, "2021-01-01 00:00:00", 1.0),             # treated, before: first instant
        (50, 50, "2021-06-30 23:59:59.999", 2.0),         # treated, before: last millisecond
        (50, 50, "2020-12-31 23:59:59.999999999", 100.0),  # treated, 1 ns early: not counted
        (50, 50, "2021-07-01 00:00:00", 100.0),           # treated, just after the before window
        (100, 50, "2022-03-01 12:00", 3.0),               # on the treated/buffer boundary → treated, after
        (0, 0, "2022-06-30 23:59:59", 4.0),               # treated corner, after: last day included
        (120, 50, "2022-01-01 00:00", 5.0),               # buffer, after
        (150, 50, "2021-03-03", 6.0),                     # on the ring's outer edge → buffer, before
        (151, 50, "2021-03-03", 100.0),                   # just outside the ring: nowhere
        (137, 137, "2021-03-03", 100.0),                  # 52.3 m from the corner (100, 100): beyond the round corner
        (350, 50, "2021-02-02", 7.0),                     # control, before
        (300, 0, "2022-02-02", 8.0),                      # control corner, after
        (1000, 1000, "2022-02-02", 100.0),                # outside every area
        (np.nan, 50, "2022-02-02", 100.0),                # no coordinate
        (50, 50, None, 100.0),                            # no time
    ]
    x, y, t, h = zip(*pts)
    t = pd.to_datetime(list(t), format="ISO8601")
    c = count_in_areas(x, y, t, areas, BEFORE, AFTER)
    assert c == {"treated": {"before": 2, "after": 2}, "buffer": {"before": 1, "after": 1},
                 "control": {"before": 1, "after": 1}}
    ch = count_in_areas(np.array(x), np.array(y), t, areas, BEFORE, AFTER, weights=h)
    assert ch["treated"]["harm"] == {"before": 3.0, "after": 7.0}
    assert ch["treated"]["harm_sq"] == {"before": 1 + 4, "after": 9 + 16}
    assert ch["buffer"]["harm"] == {"before": 6.0, "after": 5.0}
    assert ch["control"]["harm_sq"] == {"before": 49.0, "after": 64.0}
    assert ch["control"]["before"] == 1


def test_count_windows_accept_dates_windows_and_strings(areas):
    from usm_geo.periods import parse_window
    x, y = [50, 50], [50, 50]
    t = np.array(["2021-06-30T18:00", "2022-01-01T00:00"], dtype="datetime64[ns]")
    for before, after in [
        ((dt.date(2021, 1, 1), dt.date(2021, 6, 30)), (dt.date(2022, 1, 1), dt.date(2022, 6, 30))),
        (parse_window("2021-01-01:2021-06-30"), parse_window("2022-01-01:2022-06-30")),
        ("2021-01-01:2021-06-30", "2022-01-01/2022-06-30"),
        ((pd.Timestamp("2021-01-01"), pd.Timestamp("2021-06-30")), AFTER),
    ]:
        c = count_in_areas(x, y, t, areas, before, after)
        assert c["treated"] == {"before": 1, "after": 1}
    # An end with a time of day is included up to that instant only.
    c = count_in_areas(x, y, t, areas, ("2021-01-01", "2021-06-30 12:00"), AFTER)
    assert c["treated"] == {"before": 0, "after": 1}


def test_count_times_tz_aware_keep_wall_clock(areas):
    t = pd.to_datetime(["2021-06-30 23:30", "2022-01-01 00:30"]).tz_localize("Europe/Berlin")
    c = count_in_areas([50, 50], [50, 50], t, areas, BEFORE, AFTER)
    assert c["treated"] == {"before": 1, "after": 1}


def test_count_errors(areas):
    with pytest.raises(DateError, match="must end before the after window starts"):
        count_in_areas([50], [50], pd.to_datetime(["2021-02-02"]), areas, BEFORE, ("2021-06-30", "2021-12-31"))
    with pytest.raises(DateError, match="ends before it starts"):
        count_in_areas([50], [50], pd.to_datetime(["2021-02-02"]), areas, ("2021-06-30", "2021-01-01"), AFTER)
    with pytest.raises(UsmGeoError, match="2 harm weights for 1 points"):
        count_in_areas([50], [50], pd.to_datetime(["2021-02-02"]), areas, BEFORE, AFTER, weights=[1, 2])
    with pytest.raises(UsmGeoError, match="missing or negative harm weight"):
        count_in_areas([50], [50], pd.to_datetime(["2021-02-02"]), areas, BEFORE, AFTER, weights=[np.nan])
    # a missing weight outside the windows does not matter
    c = count_in_areas([50], [50], pd.to_datetime(["2020-02-02"]), areas, BEFORE, AFTER, weights=[np.nan])
    assert c["treated"]["harm"] == {"before": 0.0, "after": 0.0}
    with pytest.raises(UsmGeoError, match="1 times for 2 points"):
        count_in_areas([50, 50], [50, 50], pd.to_datetime(["2021-02-02"]), areas, BEFORE, AFTER)


def test_count_without_buffer_gives_none():
    a = impact_areas(SQUARE, buffer_width=None, control=box(300, 0, 400, 100))
    c = count_in_areas([50, 120], [50, 50], pd.to_datetime(["2021-02-02"] * 2), a, BEFORE, AFTER)
    assert c["buffer"] is None and c["treated"] == {"before": 1, "after": 0}
    r = impact_measures(c, before_days=window_days(BEFORE), after_days=window_days(AFTER))
    assert r["status"]["wdq"] == "cannot compute: no buffer area"
    assert r["counts"]["buffer"] is None


def test_window_days():
    assert window_days(("2021-01-01", "2021-12-31")) == 365
    assert window_days("2020-01-01:2020-12-31") == 366
    assert window_days((dt.date(2022, 1, 1), dt.date(2022, 1, 1))) == 1
    assert window_days(("2022-01-01", "2022-01-01 12:00")) == pytest.approx(0.5, abs=1e-9)


# =============================================================================== harm


def _place(area_points: dict, areas_) -> tuple[np.ndarray, ...]:
    """Points at a fixed spot of each area: {(area, period, weight): n} → x, y, t, w."""
    spot = {"treated": (50, 50), "buffer": (125, 50), "control": (350, 50)}
    when = {"before": "2021-03-01", "after": "2022-03-01"}
    xs, ys, ts, ws = [], [], [], []
    for (area, period, weight), n in area_points.items():
        xs += [spot[area][0]] * n
        ys += [spot[area][1]] * n
        ts += [when[period]] * n
        ws += [weight] * n
    return np.array(xs, float), np.array(ys, float), pd.to_datetime(ts), np.array(ws, float)


def test_harm_weighted_wdd_is_compound_poisson_and_matches_ptools_wdd_harm(areas):
    # Two categories: A (harm 1) and B (harm 10).
    #   A: treated 10 → 5, control 20 → 20, buffer 8 → 9
    #   B: treated  4 → 2, control  6 → 7, buffer 3 → 3
    # Per category (ptools wdd): WDD_A = −5 − 0 + 1 = −4, Var_A = 10+5+20+20+8+9 = 72
    #                            WDD_B = −2 − 1 + 0 = −3, Var_B = 4+2+6+7+3+3 = 25
    # ptools wdd_harm: Σ w·WDD = −4 − 30 = −34; Var = Σ w²·Var = 72 + 100·25 = 2572
    # Harm sums: T 50 → 25, C 80 → 90, D 38 → 39; WDD_harm = −25 − 10 + 1 = −34
    # Σw²: T 410 → 205, C 620 → 720, D 308 → 309; total 2572 (compound Poisson)
    n = {("treated", "before", 1): 10, ("treated", "after", 1): 5, ("control", "before", 1): 20,
         ("control", "after", 1): 20, ("buffer", "before", 1): 8, ("buffer", "after", 1): 9,
         ("treated", "before", 10): 4, ("treated", "after", 10): 2, ("control", "before", 10): 6,
         ("control", "after", 10): 7, ("buffer", "before", 10): 3, ("buffer", "after", 10): 3}
    x, y, t, w = _place(n, areas)
    c = count_in_areas(x, y, t, areas, BEFORE, AFTER, weights=w)
    assert c["treated"]["harm"] == {"before": 50, "after": 25}
    assert c["treated"]["harm_sq"] == {"before": 410, "after": 205}
    r = impact_measures(c, before_days=181, after_days=181, population={"treated": 1000, "control": 2000})
    h = r["harm"]
    assert h["wdd"] == -34 and h["wdd_se"] == pytest.approx(math.sqrt(2572), rel=1e-12)
    assert h["wdd_z"] == pytest.approx(-34 / math.sqrt(2572), rel=1e-12)
    # counts version: WDD = (7−14) − (27−26) + (12−11) = −7, Var = 14+7+26+27+11+12 = 97
    assert r["wdd"] == -7 and r["wdd_se"] == pytest.approx(math.sqrt(97))
    # harm WDQ = (39·80 − 38·90)/(25·80 − 50·90) = (3120 − 3420)/(2000 − 4500) = 0.12
    assert h["wdq"] == pytest.approx(0.12, rel=1e-12)
    # harm TNE = [50·90/80 − 25] + [38·90/80 − 39] = 31.25 + 3.75 = 35
    assert h["tne"] == pytest.approx(35, rel=1e-12)
    # harm DiD per 1,000 residents: treated (25 − 50)/1 = −25; control (90 − 80)/2 = 5 → −30
    # se = 1000·√((25+... squared weights) = 1000·√((205+410)/1000² + (720+620)/2000²)
    assert h["did"] == pytest.approx(-30, rel=1e-12)
    se = 1000 * math.sqrt(615 / 1000**2 + 1340 / 2000**2)
    assert h["did_ci"][1] - h["did"] == pytest.approx(1.959963984540054 * se, rel=1e-9)
    assert set(h) == KEYS - {"weights", "counts", "harm"}
    assert all(s == "ok" for s in h["status"].values())
    assert "harm" in h["reading"]
    _finite_everywhere(r)


def test_harm_unequal_periods_variance():
    # Harm before (730 days) 40 with Σw² 400, after (365 days) 10 with Σw² 100; control 100/400 → 60/200
    # w = 2: WDD_harm = (10 − 20) − (60 − 50) = −20; Var = 100 + 400/4 + 200 + 400/4 = 500
    c = {"treated": {"before": 4, "after": 1, "harm": {"before": 40, "after": 10},
                     "harm_sq": {"before": 400, "after": 100}},
         "control": {"before": 10, "after": 6, "harm": {"before": 100, "after": 60},
                     "harm_sq": {"before": 400, "after": 200}},
         "buffer": None}
    r = impact_measures(c, before_days=730, after_days=365)
    assert r["harm"]["wdd"] == pytest.approx(-20) and r["harm"]["wdd_se"] == pytest.approx(math.sqrt(500))


def test_harm_without_squares_gives_the_estimate_only():
    c = {"treated": {"before": 4, "after": 1, "harm": {"before": 40, "after": 10}},
         "control": {"before": 10, "after": 6, "harm": {"before": 100, "after": 60}}}
    r = impact_measures(c, before_days=1, after_days=1, population={"treated": 100, "control": 100})
    h = r["harm"]
    # WDD_harm = (10 − 40) − (60 − 100) = 10; DiD = 1000·((10 − 40)/100 − (60 − 100)/100) = 100
    assert h["wdd"] == 10 and h["wdd_se"] is None and h["wdd_ci"] is None
    assert h["status"]["wdd"].startswith("cannot compute: standard error, z, p and interval")
    assert h["did"] == pytest.approx(100) and h["did_ci"] is None
    assert h["status"]["did"].startswith("cannot compute: interval")
    _finite_everywhere(r)
    with pytest.raises(UsmGeoError, match="no harm sums while others do"):
        impact_measures({"treated": c["treated"], "control": {"before": 1, "after": 1}}, before_days=1, after_days=1)


# =============================================================================== coverage


def test_wdd_and_did_interval_coverage_by_simulation():
    # Poisson counts with known means; the true WDD is the difference of the means. Coverage of the
    # 95 % interval over 4,000 seeded draws should be 95 % ± 1.5 points (MC se ≈ 0.35 points).
    rng = np.random.default_rng(20240601)
    mean = {"treated": (200.0, 150.0), "buffer": (120.0, 130.0), "control": (900.0, 880.0)}
    truth = (150 - 200) - (880 - 900) + (130 - 120)
    pop = {"treated": 20_000, "control": 90_000}
    truth_did = 1000 * ((150 - 200) / 20_000 - (880 - 900) / 90_000)
    draws = {a: rng.poisson(m, size=(4000, 2)) for a, m in mean.items()}
    hit = hit_did = 0
    for i in range(4000):
        c = {a: {"before": int(d[i, 0]), "after": int(d[i, 1])} for a, d in draws.items()}
        r = impact_measures(c, before_days=365, after_days=365, population=pop)
        hit += r["wdd_ci"][0] <= truth <= r["wdd_ci"][1]
        hit_did += r["did_ci"][0] <= truth_did <= r["did_ci"][1]
    assert abs(hit / 4000 - 0.95) < 0.015
    assert abs(hit_did / 4000 - 0.95) < 0.015


# =============================================================================== Demo City


@pytest.fixture(scope="module")
def demo_city(tmp_path_factory):
    """Demo City inputs (generated, seeded), its clean incidents in metres and its city outline."""
    from pyproj import Transformer

    from usm_geo.demo.city import build_boundaries
    from usm_geo.demo.inputs import generate_demo_inputs

    folder = tmp_path_factory.mktemp("impact_demo") / "inputs"
    generate_demo_inputs(folder)
    truths = json.loads((folder / "planted_truths.json").read_text(encoding="utf-8"))
    incidents = pd.read_csv(folder / "incidents.csv", dtype=str, keep_default_na=False)
    keep = np.ones(len(incidents), dtype=bool)
    keep[[r["row"] - 1 for r in truths["bad_records"]["incidents"]["rows"] if r["kind"] != "duplicate"]] = False
    clean = incidents[keep]
    x, y = Transformer.from_crs(4326, 32633, always_xy=True).transform(
        clean["longitude"].astype(float).to_numpy(), clean["latitude"].astype(float).to_numpy())
    t = pd.to_datetime(clean["occurred_at"], format="%Y-%m-%d %H:%M")
    treated = gpd.read_file(folder / "intervention.gpkg", layer="treated", engine="pyogrio")
    nbhd, _ = build_boundaries()
    return {"truths": truths, "x": x, "y": y, "t": t, "category": clean["category"].to_numpy(),
            "treated": treated, "city": shapely.union_all(nbhd.geometry.values)}


def test_demo_rest_of_city_shares_the_ring_boundary_exactly(demo_city):
    # Regression: with floating-point overlay, city − (treated ∪ ring) overlapped the ring by 8.3 m²
    # of 2.5 mm wide slivers (GEOS 3.14, the treated polygon as read from the GeoPackage).
    a = impact_areas(demo_city["treated"], buffer_width=400, study_area=demo_city["city"])
    for p, q in [(a.treated, a.buffer), (a.treated, a.control), (a.buffer, a.control)]:
        assert shapely.area(shapely.intersection(p, q, grid_size=1e-3)) == 0
    total = a.report["treated_area_m2"] + a.report["buffer_area_m2"] + a.report["control_area_m2"]
    assert total == pytest.approx(demo_city["city"].area, abs=1.0)
    assert a.report["control_is_rest_of_city"]


def test_demo_planted_intervention_is_recovered(demo_city):
    truths = demo_city["truths"]["intervention"]
    a = impact_areas(demo_city["treated"], buffer_width=truths["buffer_m"], study_area=demo_city["city"])
    before, after = ("2019-01-01", "2021-12-31"), ("2022-01-01", "2023-12-31")
    harm = np.where(demo_city["category"] == "homicide", 100.0, 1.0)
    c = count_in_areas(demo_city["x"], demo_city["y"], demo_city["t"], a, before, after, weights=harm)
    observed = truths["observed_counts_by_year"]
    for area in ("treated", "buffer"):
        assert c[area]["before"] == sum(observed[area][y] for y in ("2019", "2020", "2021"))
        assert c[area]["after"] == sum(observed[area][y] for y in ("2022", "2023"))
    r = impact_measures(c, before_days=window_days(before), after_days=window_days(after))
    assert r["weights"]["before"] == pytest.approx(1096 / 730)
    # Planted: 40 % of treated incidents removed from 2022, a quarter of those moved into the ring.
    assert r["gross_effect"]["relative"] == pytest.approx(-truths["reduction_fraction"], abs=0.03)
    net = -truths["n_removed"] + truths["n_displaced"]  # the intervention's net change in incidents
    assert r["wdd_ci"][0] <= net <= r["wdd_ci"][1] and r["wdd_p"] < 0.001
    assert r["tne"] == pytest.approx(-net, abs=2 * r["wdd_se"])
    assert -1 < r["wdq"] < 0  # displacement, smaller than the direct effect
    assert "displacement into the buffer" in r["reading"]
    assert r["harm"]["status"]["wdd"] == "ok" and r["harm"]["wdd"] < 0
    _finite_everywhere(r)
