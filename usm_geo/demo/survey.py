"""Demo City perception survey: two waves (2019, 2023) of a district-stratified sample.

Each wave interviews the same number of adults in every district, spread over the district's
neighbourhoods in proportion to population, so design weights differ between districts:
weight = district adult population / district sample size in the wave. Every wave's weights add
up to the adult population.

Planted answers: the probability of feeling "very safe" or "safe" after dark falls with the
neighbourhood's planted incident rate (logistic in the standardised log rate) and rises in the
treated neighbourhoods in the 2023 wave; harassment has one planted city-wide prevalence. Sex and
age group are drawn independently of the answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd

from usm_geo.demo.city import component_rng
from usm_geo.demo.incidents import fixed_text

WAVES = (2019, 2023)
FIELDWORK = ("04-01", "10-31")  # interviews run from April to October in each wave year
PER_DISTRICT_PER_WAVE = 417  # 6 districts × 417 × 2 waves = 5,004 respondents
ADULT_SHARE = 0.84  # adults (16+) per resident, the same everywhere

SAFE_ANSWERS = ("very safe", "safe", "unsafe", "very unsafe", "never go out alone after dark", "don't know")
SAFE_BASE = 0.60  # share feeling safe in a neighbourhood with a typical (geometric mean) rate
SAFE_SLOPE = 0.6  # logit change per standard deviation of the log incident rate
TREATED_EFFECT = 0.6  # logit improvement in treated neighbourhoods in the wave after the intervention
NBHD_EFFECT_SD = 0.25  # logit sd of a neighbourhood effect: places with equal rates still differ a little
DONT_KNOW = 0.03
VERY_SAFE_OF_SAFE = 0.35  # "very safe" share of those feeling safe
UNSAFE_SPLIT = (0.55, 0.25, 0.20)  # unsafe, very unsafe, never go out alone, among those not safe

HARASSMENT_ANSWERS = ("yes", "no", "refused")
HARASSMENT_PROBS = (0.12, 0.86, 0.02)
SEXES = ("female", "male", "diverse")
SEX_PROBS = (0.51, 0.485, 0.005)
AGE_GROUPS = ("16-24", "25-34", "35-44", "45-64", "65+")
AGE_PROBS = (0.13, 0.18, 0.16, 0.31, 0.22)
COLUMNS = ("respondent_id", "interview_date", "district_id", "nbhd_id", "design_weight",
           "q_safe_after_dark", "q_harassment_12m", "sex", "age_group")


@dataclass
class SurveyResult:
    """The survey rows as written (``table``, strings, bad rows included) and the planted ``truths``."""

    table: pd.DataFrame
    truths: dict = field(default_factory=dict)


def _expit(z):
    return 1.0 / (1.0 + np.exp(-z))


def safe_probabilities(rates: np.ndarray, treated: np.ndarray, effect: np.ndarray) -> dict[int, np.ndarray]:
    """Return per wave the planted probability of "very safe" + "safe" for each neighbourhood.

    ``rates`` are the planted incidents a year per 1,000 residents, ``treated`` a boolean mask of
    the treated neighbourhoods (the improvement applies in the wave after the intervention, 2023),
    ``effect`` a logit shift per neighbourhood, the same in both waves.
    """
    z = np.log(rates)
    z = (z - z.mean()) / z.std()
    base = np.log(SAFE_BASE / (1 - SAFE_BASE)) - SAFE_SLOPE * z + effect
    return {w: _expit(base + TREATED_EFFECT * treated * (w >= 2022)) for w in WAVES}


def answer_probabilities(p_safe: np.ndarray) -> np.ndarray:
    """Return an (n, 6) array of answer probabilities in the order of ``SAFE_ANSWERS``."""
    unsafe = 1.0 - p_safe - DONT_KNOW
    return np.column_stack([
        VERY_SAFE_OF_SAFE * p_safe, (1 - VERY_SAFE_OF_SAFE) * p_safe,
        UNSAFE_SPLIT[0] * unsafe, UNSAFE_SPLIT[1] * unsafe, UNSAFE_SPLIT[2] * unsafe,
        np.full_like(p_safe, DONT_KNOW),
    ])


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category index per row of ``probs`` (rows sum to 1), vectorised by inverse CDF."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > cdf).sum(axis=1), probs.shape[1] - 1)


def _sample_units(rng: np.random.Generator, nbhd: gpd.GeoDataFrame,
                  population: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (wave, neighbourhood index) per respondent: equal numbers per district and wave,
    neighbourhoods drawn in proportion to population within the district."""
    districts = nbhd["district_id"].to_numpy()
    waves, units = [], []
    for w in WAVES:  # two waves × six districts, vectorised within each
        for d in np.unique(districts):
            members = np.flatnonzero(districts == d)
            p = population[members] / population[members].sum()
            units.append(rng.choice(members, size=PER_DISTRICT_PER_WAVE, p=p))
            waves.append(np.full(PER_DISTRICT_PER_WAVE, w))
    return np.concatenate(waves), np.concatenate(units)


def _dates(rng: np.random.Generator, waves: np.ndarray) -> np.ndarray:
    """Return a uniform fieldwork date (datetime64[D]) in each respondent's wave year."""
    start = np.array([np.datetime64(f"{w}-{FIELDWORK[0]}") for w in WAVES])
    end = np.array([np.datetime64(f"{w}-{FIELDWORK[1]}") for w in WAVES])
    k = np.searchsorted(WAVES, waves)
    span = (end - start).astype(int) + 1
    return start[k] + (rng.random(waves.size) * span[k]).astype(int)


def plant_bad_rows(rng: np.random.Generator, table: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Insert two bad respondents: one with design weight ``-1`` and one answering ``maybe``.

    They copy the fields of the row before them, get new ids after the clean ones, and are reported
    with their 1-based data row number (header not counted).
    """
    n = len(table)
    after = np.sort(rng.choice(np.arange(50, n - 50), size=2, replace=False))
    kinds = ("negative_weight", "unknown_answer")
    bad = table.iloc[after].copy()
    bad["respondent_id"] = [f"R{n + i + 1:05d}" for i in range(2)]
    bad.iloc[0, bad.columns.get_loc("design_weight")] = "-1"
    bad.iloc[1, bad.columns.get_loc("q_safe_after_dark")] = "maybe"
    bad["_after"], bad["_bad"] = after, 1
    both = pd.concat([table.assign(_after=np.arange(n), _bad=0), bad], ignore_index=True)
    both = both.sort_values(["_after", "_bad"], kind="stable").reset_index(drop=True)
    rows = np.flatnonzero(both["_bad"].to_numpy() == 1) + 1
    records = [{"row": int(r), "kind": k, **{c: both[c].iat[r - 1] for c in COLUMNS}}
               for r, k in zip(rows, kinds)]
    return both[list(COLUMNS)], records


def generate_survey(nbhd: gpd.GeoDataFrame, population: np.ndarray, rates: np.ndarray,
                    treated: np.ndarray, seed: int) -> SurveyResult:
    """Generate the Demo City survey.

    ``population``: residents per neighbourhood (same order as ``nbhd``); ``rates``: planted
    incidents a year per 1,000 residents; ``treated``: boolean mask of treated neighbourhoods.
    """
    rng = component_rng(seed, "survey")
    waves, unit = _sample_units(rng, nbhd, population)
    n = waves.size
    districts = nbhd["district_id"].to_numpy()
    d_ids, d_index = np.unique(districts, return_inverse=True)
    adults = np.rint(ADULT_SHARE * np.bincount(d_index, weights=population)).astype(np.int64)
    weight = adults[d_index[unit]] / PER_DISTRICT_PER_WAVE

    effect = component_rng(seed, "survey.nbhd_effect").normal(0.0, NBHD_EFFECT_SD, len(nbhd))
    p_safe = safe_probabilities(rates, treated, effect)
    p_resp = np.where(waves == WAVES[0], p_safe[WAVES[0]][unit], p_safe[WAVES[1]][unit])
    safe = _categorical(rng, answer_probabilities(p_resp))
    harass = _categorical(rng, np.tile(HARASSMENT_PROBS, (n, 1)))
    sex = _categorical(rng, np.tile(SEX_PROBS, (n, 1)))
    age = _categorical(rng, np.tile(AGE_PROBS, (n, 1)))
    dates = _dates(rng, waves)

    # Rows in interview order (date, district, neighbourhood, then at random); ids follow that order.
    order = np.lexsort((rng.permutation(n), unit, d_index[unit], dates))
    ids = np.strings.add("R", np.strings.zfill(np.arange(1, n + 1).astype(np.dtypes.StringDType()), 5))
    table = pd.DataFrame({
        "respondent_id": ids.astype(object),
        "interview_date": np.datetime_as_string(dates[order], unit="D").astype(object),
        "district_id": districts[unit[order]].astype(object),
        "nbhd_id": nbhd["nbhd_id"].to_numpy()[unit[order]].astype(object),
        "design_weight": fixed_text(weight[order], 4).astype(object),
        "q_safe_after_dark": np.array(SAFE_ANSWERS, dtype=object)[safe[order]],
        "q_harassment_12m": np.array(HARASSMENT_ANSWERS, dtype=object)[harass[order]],
        "sex": np.array(SEXES, dtype=object)[sex[order]],
        "age_group": np.array(AGE_GROUPS, dtype=object)[age[order]],
    })
    table_out, bad = plant_bad_rows(component_rng(seed, "survey.bad_rows"), table)
    truths = _truths(nbhd, population, adults, d_ids, p_safe, treated, waves[order], unit[order],
                     np.round(weight[order], 4), safe[order], harass[order], bad)
    return SurveyResult(table_out, truths)


def _weighted_share(mask: np.ndarray, w: np.ndarray) -> float:
    return round(float(np.sum(w * mask) / np.sum(w)), 6)


def _truths(nbhd, population, adults, d_ids, p_safe, treated, waves, unit, weight, safe, harass, bad) -> dict:
    adult_nbhd = ADULT_SHARE * population
    per_wave = {}
    for w in WAVES:
        m = waves == w
        per_wave[str(w)] = {
            "n_respondents": int(m.sum()),
            "safe_share_population": round(float(np.sum(adult_nbhd * p_safe[w]) / adult_nbhd.sum()), 6),
            "safe_share_expected_given_sample": _weighted_share(p_safe[w][unit[m]], weight[m]),
            "safe_share_observed_weighted": _weighted_share(safe[m] <= 1, weight[m]),
            "safe_share_observed_unweighted": round(float(np.mean(safe[m] <= 1)), 6),
            "harassment_yes_observed_weighted": _weighted_share(harass[m] == 0, weight[m]),
        }
    ids = nbhd["nbhd_id"].to_numpy()
    return {
        "n_clean": int(len(waves)),
        "waves": list(WAVES),
        "per_district_per_wave": PER_DISTRICT_PER_WAVE,
        "adult_share": ADULT_SHARE,
        "district_adult_population": {d: int(a) for d, a in zip(d_ids, adults)},
        "district_design_weight": {
            d: round(float(a) / PER_DISTRICT_PER_WAVE, 4) for d, a in zip(d_ids, adults)},
        "safe_answers": list(SAFE_ANSWERS),
        "safe_model": {
            "base_share": SAFE_BASE, "slope_per_sd_log_rate": SAFE_SLOPE,
            "treated_logit_effect_2023": TREATED_EFFECT, "dont_know": DONT_KNOW,
            "nbhd_effect_sd": NBHD_EFFECT_SD,
            "very_safe_of_safe": VERY_SAFE_OF_SAFE, "unsafe_split": list(UNSAFE_SPLIT),
            "note": "logit P(very safe or safe) = logit(base_share) - slope * z(log planted rate) "
                    "+ nbhd effect + treated effect in 2023; z standardises over neighbourhoods "
                    "(population sd); shares are over all respondents, don't know included",
        },
        "safe_probability_by_nbhd": {
            str(w): {i: round(float(p), 6) for i, p in zip(ids, p_safe[w])} for w in WAVES},
        "treated_nbhd_ids": [str(i) for i in ids[treated]],
        "by_wave": per_wave,
        "harassment_answers": list(HARASSMENT_ANSWERS),
        "harassment_prevalence": HARASSMENT_PROBS[0],
        "harassment_refused": HARASSMENT_PROBS[2],
        "bad_records_survey": {"rows": bad, "rows_by_kind": {b["kind"]: [b["row"]] for b in bad}},
    }
