"""The public profile on the Demo City: every count of 1–4 is hidden, and an attacker holding only
the public table, the crosswalk and the indicator registry learns none of them (differencing over
categories, composites, nested levels and every level → city; rate × population; bounds; linear
algebra). The attacker lives in tests/unit/test_disclosure.py."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from unit.test_disclosure import check_attack, registry_definitions

from usm_geo.disclosure import apply_profile

K = 5


def _read(path):
    return pd.read_csv(path, dtype={"unit_id": str, "period": str, "category": str}, keep_default_na=False,
                       na_values=[""], low_memory=False)


@pytest.fixture(scope="module")
def demo_public(demo):
    out, _ = demo
    measures = _read(out / "measures.csv")
    crosswalk = _read(out / "crosswalk.csv")
    start = time.perf_counter()
    public, report = apply_profile(measures, crosswalk, profile="public", k=K, min_n=30)
    return measures, crosswalk, public, report, time.perf_counter() - start


def test_the_attacker_learns_no_suppressed_count(demo_public):
    measures, crosswalk, public, report, seconds = demo_public
    cats = sorted(set(measures.loc[measures.measure == "count", "category"]) - {"all"})
    definitions = registry_definitions(cats)
    assert definitions["violent_crime_rate"] == ["assault", "homicide", "robbery", "sexual offence"]
    stats = check_attack(measures, public, crosswalk, k=K, definitions=definitions)
    assert stats["hidden_small"] > 50_000  # the hexagons hold most of the small counts
    # the profile linked every rate to its count, as the attacker did from the registry
    assert report["linked"]["homicide_rate|all"] == "count|homicide"
    assert report["linked"]["violent_crime_rate|all"] == "comp|assault+homicide+robbery+sexual offence"
    assert report["unresolved_relations"] == 0 and report["audit"]["exposed_per_pass"][-1] == 0
    assert seconds < 60  # ~7 s on a laptop


def test_every_small_count_and_what_is_derived_from_it_is_hidden(demo_public):
    measures, _, public, report, _ = demo_public
    count_based = measures.measure.isin(["count", "harm"]) | measures.measure.str.contains("rate")
    small = count_based & measures["numerator"].between(1, K - 1)
    assert small.sum() > 0 and public.loc[small, "value"].isna().all()
    assert public.loc[small, ["numerator", "lower", "upper", "n"]].isna().all().all()
    assert public.loc[small, "flags"].str.contains("suppressed").all()
    zero = (measures.measure == "count") & (measures["value"] == 0)
    assert (public.loc[zero, "value"] == 0).all()  # zeros are published
    # a published row is the internal row, nothing else changed
    shown = public["value"].notna()
    np.testing.assert_array_equal(public.loc[shown, "value"].to_numpy(float), measures.loc[shown, "value"].to_numpy(float))
    # population is not sensitive; every city count is published
    assert public.loc[measures.measure == "population", "value"].notna().all()
    city = (public.level == "city") & (public.measure == "count")
    assert public.loc[city, "value"].notna().all()
    # per level: hexagons hold most primary suppressions; complements stay a fraction of them
    cells = report["suppressed_cells"]
    assert cells["h3_9"]["primary"] > cells["neighbourhood"]["primary"] > cells["district"]["primary"] > 0
    assert cells["city"] == {"cells": cells["city"]["cells"], "primary": 0, "complementary": 0}
    assert cells["h3_9"]["complementary"] < 0.1 * cells["h3_9"]["primary"]
    assert cells["neighbourhood"]["complementary"] < cells["neighbourhood"]["primary"]


def test_survey_shares_below_the_minimum_are_hidden(demo_public):
    measures, _, public, report, _ = demo_public
    share = measures.measure.str.contains("share")
    small = share & ((measures["n"] < 30) | measures["flags"].fillna("").str.contains("small_n|small_eff_n")) & (measures["n"] > 0)
    assert small.sum() > 0
    assert public.loc[small, ["value", "lower", "upper", "numerator", "denominator", "n"]].isna().all().all()
    # the district and city shares stay
    assert public.loc[share & measures.level.isin(["district", "city"]), "value"].notna().all()
    assert report["suppressed_rows"]["neighbourhood"]["safe_after_dark_share"]["primary"] == int(
        (small & (measures.measure == "safe_after_dark_share")).sum())
