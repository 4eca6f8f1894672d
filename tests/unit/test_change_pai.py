"""Hot-spot change classes and the Predictive Accuracy / Efficiency Index, checked by hand.

References: the change rules in ``classify_change``'s docstring applied by hand to each series
below (exact); PAI (Chainey, Tompson & Uhlig 2008) and PEI (Hunt 2016) worked out by hand in the
comments (tolerance 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

from usm_geo.errors import UsmGeoError
from usm_geo.hotspots.change import CHANGE_CLASSES, PERSISTENCE_CLASSES, classify_change, classify_persistence, pai


def _series(*codes: str) -> np.ndarray:
    """(T, U) boolean array from one "0/1" string per unit (first period first)."""
    return np.array([[ch == "1" for ch in code] for code in codes]).T


def test_two_periods_all_four_combinations():
    before = np.array([True, False, True, False])
    after = np.array([True, True, False, False])
    assert list(classify_change(before, after)) == ["persistent", "emerging", "former", "none"]


@pytest.mark.parametrize("code, expected", [
    ("00000", "none"),
    ("11111", "persistent"),
    ("11110", "persistent"),      # 4 of 5 ≥ ceil(0.8 · 5) = 4
    ("01111", "persistent"),
    ("10111", "persistent"),
    ("00111", "emerging"),
    ("00001", "emerging"),
    ("11100", "former"),
    ("10000", "former"),
    ("10101", "intermittent"),
    ("01100", "intermittent"),    # hot only in the middle
    ("00110", "intermittent"),
    ("11011", "persistent"),
    ("11001", "intermittent"),
])
def test_five_periods_by_hand(code, expected):
    assert classify_change(_series(code))[0] == expected


def test_vectorised_and_three_periods():
    codes = ["011", "110", "111", "101", "010", "000", "001", "100"]
    out = classify_change(_series(*codes))
    # T = 3: persistent needs ceil(2.4) = 3 hot periods
    assert list(out) == ["emerging", "former", "persistent", "intermittent", "intermittent",
                         "none", "emerging", "former"]
    assert set(out) <= set(CHANGE_CLASSES)


def test_persistent_share_changes_the_threshold():
    s = _series("11110", "01111", "11111")
    assert list(classify_change(s, persistent_share=1.0)) == ["former", "emerging", "persistent"]
    # share 0.5 of 5 periods = 3 hot periods (at least 2 always)
    s = _series("11100", "01010", "10000")
    assert list(classify_change(s, persistent_share=0.5)) == ["persistent", "intermittent", "former"]


def test_change_accepts_0_1_and_rejects_other_input():
    assert list(classify_change(np.array([1, 0]), np.array([1, 1]))) == ["persistent", "emerging"]
    with pytest.raises(UsmGeoError, match="boolean"):
        classify_change(np.array([[2, 0], [1, 1]]))
    with pytest.raises(UsmGeoError, match="at least 2"):
        classify_change(np.array([[True, False]]))
    with pytest.raises(UsmGeoError, match="same length"):
        classify_change(np.array([True]), np.array([True, False]))
    with pytest.raises(UsmGeoError, match="persistent_share"):
        classify_change(_series("01"), persistent_share=0)


# --------------------------------------------------------------------------- persistence (sfhotspot)

@pytest.mark.parametrize("code, expected", [
    # T = 10: R = floor(0.2 · 10) = 2 recent periods (the last two), 8 older; shares vs 0.1 and 0.8
    ("1111111100", "persistent hotspot"),    # 8/10 = 0.8 ≥ 0.8
    ("0000000001", "emerging hotspot"),      # older 0/8 < 0.1, recent 1/2 ≥ 0.1
    ("0000000011", "emerging hotspot"),
    ("1000000000", "former hotspot"),        # older 1/8 = 0.125 ≥ 0.1, recent 0/2 < 0.1
    ("1111111000", "former hotspot"),        # 7/10 < 0.8; recent 0
    ("1000000001", "intermittent hotspot"),  # older 0.125 and recent 0.5: neither emerging nor former; 2/10 ≥ 0.1
    ("0100100110", "intermittent hotspot"),
    ("0000000000", "no pattern"),
])
def test_persistence_ten_periods_by_hand(code, expected):
    assert classify_persistence(_series(code))[0] == expected


def test_persistence_cold_mixed_and_short_series():
    hot = _series("0000000001", "0000000000", "1000000000")
    cold = _series("0000000000", "1111111111", "0000000001")
    assert list(classify_persistence(hot, cold)) == ["emerging hotspot", "persistent coldspot", "mixed hot/coldspot"]
    # T = 5: R = max(1, floor(1.0)) = 1 recent period; 4 older
    out = classify_persistence(_series("11110", "00001", "10000", "01010"))
    assert list(out) == ["persistent hotspot", "emerging hotspot", "former hotspot", "former hotspot"]
    # "01010": older 1/4 = 0.25 ≥ 0.1 and recent 0/1 < 0.1: former (the rules look at shares, not order)
    assert set(out) <= set(PERSISTENCE_CLASSES)
    # T = 2: one recent, one older period
    assert list(classify_persistence(_series("01", "10", "11"))) == ["emerging hotspot", "former hotspot",
                                                                      "persistent hotspot"]
    with pytest.raises(UsmGeoError, match="at least 2 periods"):
        classify_persistence(np.array([[True, False]]))
    with pytest.raises(UsmGeoError, match="same shape"):
        classify_persistence(_series("01"), _series("01", "10"))
    with pytest.raises(UsmGeoError, match="recent_prop"):
        classify_persistence(_series("01"), recent_prop=1.0)


# --------------------------------------------------------------------------- PAI / PEI

def test_pai_equal_cells_by_hand():
    counts = [10, 5, 0, 5]            # N = 20, four cells of 1 km²
    areas = [1.0, 1.0, 1.0, 1.0]
    r = pai(counts, areas, [True, False, False, False])
    # hit rate 10/20 = 0.5, area share 1/4 → PAI = 2; best single cell holds 10 → PAI* = 2, PEI = 1
    assert r.pai == pytest.approx(2.0, abs=1e-12)
    assert (r.hit_rate, r.area_share) == (0.5, 0.25)
    assert r.pei == pytest.approx(1.0, abs=1e-12) and r.pai_max == pytest.approx(2.0)
    assert r.flags == ()
    r = pai(counts, areas, [1])
    # 5/20 = 0.25 of incidents in 1/4 of the area → PAI 1; PEI = 1 / 2
    assert r.pai == pytest.approx(1.0) and r.pei == pytest.approx(0.5)
    r = pai(counts, areas, np.array([0, 3]))
    # (15/20) / (2/4) = 1.5; best two cells 10 + 5 = 15 → PEI 1
    assert r.pai == pytest.approx(1.5) and r.pei == pytest.approx(1.0)
    assert (r.n_selected, r.n_total, r.area_selected, r.area_total) == (15, 20, 2, 4)


def test_pai_unequal_areas_has_no_pei():
    # 40 of 100 incidents in 3 of 10 km²: PAI = 0.4 / 0.3 = 1.3333…
    r = pai([30, 10, 60], [2.0, 1.0, 7.0], [True, True, False])
    assert r.pai == pytest.approx(4 / 3, abs=1e-12)
    assert np.isnan(r.pei) and "pei_unequal_areas" in r.flags


def test_pai_zero_division_gives_nan_and_flags():
    r = pai([0, 0, 0], [1.0, 1.0, 1.0], [True, False, False])
    assert np.isnan(r.pai) and np.isnan(r.hit_rate) and r.flags == ("no_incidents",)
    r = pai([3, 1, 0], [1.0, 1.0, 1.0], [False, False, False])
    assert np.isnan(r.pai) and r.hit_rate == 0 and "no_area_selected" in r.flags
    r = pai([3, 1], [0.0, 0.0], [True, False])
    assert np.isnan(r.pai) and "zero_total_area" in r.flags


def test_pai_rejects_bad_input():
    with pytest.raises(UsmGeoError, match="one value per unit"):
        pai([1, 2], [1.0], [True, False])
    with pytest.raises(UsmGeoError, match="≥ 0"):
        pai([1, -2], [1.0, 1.0], [True, False])
    with pytest.raises(UsmGeoError, match="flags"):
        pai([1, 2], [1.0, 1.0], [True])
    with pytest.raises(UsmGeoError, match="positions"):
        pai([1, 2], [1.0, 1.0], [5])
