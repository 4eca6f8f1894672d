"""Indicators on the Demo City: the planted truths are recovered, and every rate is a ratio of sums."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.stats import chi2


def _read(out, name):
    return pd.read_csv(out / name, dtype={"unit_id": str, "period": str}, keep_default_na=True, low_memory=False)


def test_planted_share_feeling_safe_is_inside_its_interval(demo):
    out, _ = demo
    truths = json.loads((out / "inputs" / "planted_truths.json").read_text())["survey"]
    dont_know = truths["safe_model"]["dont_know"]
    wide = _read(out, "indicators.csv").set_index(["level", "unit_id", "period"])
    for wave in ("2019", "2023"):
        planted = truths["by_wave"][wave]["safe_share_population"]  # over all respondents, "don't know" included
        planted_sdg = planted / (1 - dont_know)  # SDG 16.1.4 leaves "don't know" out of the denominator
        row = wide.loc[("city", "city", wave)]
        assert row["safe_after_dark_share_lower"] <= planted_sdg <= row["safe_after_dark_share_upper"], (wave, row)
        assert row["safe_after_dark_share_n"] > 2000
    harass = wide.loc[("city", "city", "2019")]
    assert harass["harassment_share_lower"] <= truths["harassment_prevalence"] / (1 - truths["harassment_refused"]) <= harass["harassment_share_upper"]


def test_planted_high_rate_neighbourhoods_rank_highest(demo):
    out, _ = demo
    truths = json.loads((out / "inputs" / "planted_truths.json").read_text())
    top5 = [n["nbhd_id"] for n in truths["incidents"]["top5_planted_rate"]]
    m = _read(out, "measures.csv")
    rate = m[(m.level == "neighbourhood") & (m.measure == "incident_rate") & (m.category == "all")]
    pooled = rate.groupby("unit_id")[["numerator", "denominator"]].sum()
    ranked = (pooled.numerator / pooled.denominator).sort_values(ascending=False)
    assert list(ranked.index[:5]) == top5


def test_rates_are_ratios_of_sums_with_garwood_intervals(demo):
    out, _ = demo
    m = _read(out, "measures.csv")
    counts = m[(m.measure == "count") & (m.period == "2021")]
    pop = m[(m.measure == "population") & (m.period == "2021")].set_index(["level", "unit_id"])["value"]
    hom = m[(m.measure == "homicide_rate") & (m.period == "2021")].set_index(["level", "unit_id"])
    k = counts[(counts.level == "city") & (counts.category == "homicide")]["value"].iloc[0]
    p = pop[("city", "city")]
    row = hom.loc[("city", "city")]
    # hand calculation: rate per 100,000 and Garwood (1936) exact limits χ²(0.025; 2k)/2, χ²(0.975; 2k+2)/2
    assert np.isclose(row["value"], k / p * 1e5, rtol=1e-12)
    assert np.isclose(row["lower"], chi2.ppf(0.025, 2 * k) / 2 / p * 1e5, rtol=1e-9)
    assert np.isclose(row["upper"], chi2.ppf(0.975, 2 * k + 2) / 2 / p * 1e5, rtol=1e-9)
    # a district's rate is Σ counts / Σ population of its neighbourhoods, not the mean of their rates
    inc = m[(m.measure == "incident_rate") & (m.period == "2021") & (m.category == "all")].set_index(["level", "unit_id"])
    nb = inc.loc["neighbourhood"]
    parents = pd.read_csv(out / "inputs" / "survey.csv", dtype=str)[["nbhd_id", "district_id"]].drop_duplicates()
    in_d1 = parents.loc[parents.district_id == "D1", "nbhd_id"]
    d1 = nb.loc[nb.index.isin(in_d1)]
    assert np.isclose(inc.loc[("district", "D1"), "value"], d1.numerator.sum() / d1.denominator.sum() * 1000, rtol=1e-12)
    assert not np.isclose(inc.loc[("district", "D1"), "value"], d1["value"].mean(), rtol=1e-3)


def test_smoothed_rates_sit_beside_raw_rates(demo):
    out, _ = demo
    m = _read(out, "measures.csv")
    eb = m[(m.level == "neighbourhood") & (m.measure == "homicide_rate_eb")]
    raw = m[(m.level == "neighbourhood") & (m.measure == "homicide_rate")]
    assert len(eb) == len(raw) == 60 * 5
    assert eb["flags"].str.contains("smoothed").all()
    # shrinkage pulls the spread in towards the city rate
    assert eb.groupby("period")["value"].std().lt(raw.groupby("period")["value"].std()).all()
    info = json.loads((out / "run.json").read_text())
    assert "homicide_rate_health" in info["indicators"]["not_computed"]  # police and health kept apart
