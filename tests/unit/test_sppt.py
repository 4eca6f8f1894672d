"""Andresen's spatial point pattern test: S-index by hand, the interval rule, determinism."""

import numpy as np
import pandas as pd
import pytest

from usm_geo.errors import UsmGeoError
from usm_geo.hotspots.sppt import sppt, sppt_summary, sppt_table

# six units: three with the same counts in both periods, one empty in both, one emptied, one new
BASE = [50, 50, 100, 0, 30, 0]
TEST = [50, 50, 100, 0, 0, 30]


def test_s_index_by_hand_on_six_units():
    """Both periods hold 230 incidents. Units 1–3 have the same share (50/230, 50/230, 100/230) in both
    periods, so their baseline share is the centre of their interval: similar. Unit 4 is empty in both:
    interval [0, 0] holds its share 0: similar, but left out of the robust index. Unit 5 lost all its
    30 incidents: its current interval is [0, 0] and its baseline share 30/230 = 13.04 % lies above:
    local_s = −1. Unit 6 is new: each 85 % sample (round(0.85·230) = 196 incidents) holds between
    about 17 and 34 of its 30, so its interval lies well above its baseline share 0: local_s = +1.

    S = 4/6, robust S = 3/5 (units 1, 2, 3 of the five with an incident), generalised robust S =
    3 / min(230, 230, 5) = 3/5."""
    t = sppt(BASE, TEST, seed=1)
    assert t["local_s"].tolist() == [0, 0, 0, 0, -1, 1]
    assert t["similar"].tolist() == [1, 1, 1, 1, 0, 0]
    assert t["robust"].tolist() == [True, True, True, False, True, True]
    np.testing.assert_allclose(t["base_pct"], np.array(BASE) / 230 * 100, rtol=1e-15)
    assert t.loc[4, ["lower_pct", "upper_pct"]].tolist() == [0.0, 0.0]
    assert t.loc[3, ["lower_pct", "upper_pct"]].tolist() == [0.0, 0.0]
    assert t.attrs["sample_size"] == 196
    s = sppt_summary(t)
    assert s["s_index"] == pytest.approx(4 / 6, abs=1e-15)
    assert s["robust_s_index"] == pytest.approx(3 / 5, abs=1e-15)
    assert s["generalized_robust_s_index"] == pytest.approx(3 / 5, abs=1e-15)
    assert (s["units"], s["robust_units"], s["higher_share_units"], s["lower_share_units"]) == (6, 5, 1, 1)


def test_interval_is_the_6th_and_195th_of_200_sorted_shares():
    """The R package's columns floor(0.025·200)+1 = 6 and ceil(0.975·200) = 195; every draw takes
    exactly round(0.85·n) incidents, never more of a unit than it has."""
    rng = np.random.default_rng(5)
    test = rng.poisson(8, 40)
    base = rng.poisson(8, 40)
    t, shares = sppt(base, test, seed=3, return_draws=True)
    m = int(np.round(0.85 * test.sum()))
    assert shares.shape == (200, 40)
    counts = np.rint(shares * m / 100).astype(int)
    np.testing.assert_allclose(counts * 100 / m, shares, rtol=1e-12)
    assert np.all(counts.sum(axis=1) == m) and np.all(counts <= test)
    ordered = np.sort(shares, axis=0)
    np.testing.assert_array_equal(t["lower_pct"], ordered[5])
    np.testing.assert_array_equal(t["upper_pct"], ordered[194])
    # local_s by hand from the interval
    bp = base / base.sum() * 100
    want = np.where(bp < ordered[5], 1, np.where(bp > ordered[194], -1, 0))
    np.testing.assert_array_equal(t["local_s"], want)
    # the draws are samples without replacement: their mean share is the current share
    # (hypergeometric mean), to within 4 standard errors of the mean of 200 draws
    sd = shares.std(axis=0, ddof=1)
    assert np.all(np.abs(shares.mean(axis=0) - test / test.sum() * 100) <= 4 * sd / np.sqrt(200) + 1e-12)


def test_full_sample_collapses_the_interval_to_the_current_share():
    """With 100 % samples every draw is the whole current period: lower = upper = current share."""
    t = sppt([10, 20, 30], [20, 20, 20], sample=1.0, seed=0)
    np.testing.assert_allclose(t["lower_pct"], [100 / 3] * 3, rtol=1e-15)
    np.testing.assert_allclose(t["upper_pct"], [100 / 3] * 3, rtol=1e-15)
    assert t["local_s"].tolist() == [1, 0, -1]  # 16.7 % < 33.3 %, 33.3 % = 33.3 %, 50 % > 33.3 %


def test_same_seed_same_result_and_table_per_level_and_category():
    counts = pd.DataFrame({
        "level": "nb", "unit_id": [str(i) for i in range(6)] * 4,
        "period": ["2019"] * 12 + ["2023"] * 12,
        "category": (["all"] * 6 + ["theft"] * 6) * 2,
        "value": BASE + [25, 25, 50, 0, 15, 0] + TEST + [25, 25, 50, 0, 0, 15],
    })
    ids = {"nb": np.array([str(i) for i in range(6)], dtype=object)}
    a, sa = sppt_table(counts, ids, "2019", "2023", seed=7)
    b, sb = sppt_table(counts, ids, "2019", "2023", seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert sa == sb
    assert sa["nb"]["all"]["s_index"] == pytest.approx(4 / 6)
    assert sa["nb"]["theft"]["robust_s_index"] == pytest.approx(3 / 5)
    assert len(a) == 12 and list(a["category"].unique()) == ["all", "theft"]
    c, _ = sppt_table(counts, ids, "2019", "2023", seed=8)
    assert not np.array_equal(a["lower_pct"], c["lower_pct"])  # another seed, other draws
    # a category with no incidents in one period is skipped and says why
    counts.loc[(counts["category"] == "theft") & (counts["period"] == "2023"), "value"] = 0
    _, s = sppt_table(counts, ids, "2019", "2023", seed=7)
    assert "skipped" in s["nb"]["theft"]


def test_bad_input_is_refused():
    with pytest.raises(UsmGeoError, match="no incidents"):
        sppt([0, 0], [1, 2])
    with pytest.raises(UsmGeoError, match="whole numbers"):
        sppt([1.5, 2], [1, 2])
    with pytest.raises(UsmGeoError, match="baseline counts"):
        sppt([1, 2, 3], [1, 2])
