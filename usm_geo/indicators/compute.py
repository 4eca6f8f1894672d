"""From the measures table (and survey responses) to indicator rows at every level.

Indicator rows use the measures-table columns; ``measure`` is the indicator id:

* rates: ``numerator`` = incidents of the indicator's ICCS sections (or of each local category and
  ``all`` for ``categories = ["*"]``), ``denominator`` = population, ``value`` per ``per`` residents
  with the exact Poisson (Garwood) interval. Every level is computed from its own sums, so a
  district's rate is Σcounts / Σpopulation, never an average of neighbourhood rates.
  ``<id>_eb`` and ``<id>_seb``: global and spatial empirical Bayes smoothed rates beside the raw
  ones (polygon levels; flag ``smoothed``).
* shares: weighted survey proportions with design-based intervals (see ``survey.py``).
* perception scores from an area table: ``value`` as given, flag ``no_sample_size``, no interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.indicators import rates, smoothing
from usm_geo.indicators.registry import Indicator, IndicatorSettings
from usm_geo.measures import COLUMNS

KEY = ["level", "unit_id", "period"]


def _flags(*parts):
    """Join ';'-separated flag columns element-wise, dropping empty parts (vectorised; returns a
    pandas string array, which avoids a slow per-element conversion to Python objects)."""
    joined = None
    for p in parts:
        col = pd.Series(p).reset_index(drop=True).fillna("").astype(str)
        joined = col if joined is None else joined + ";" + col
    return joined.str.replace(r";{2,}", ";", regex=True).str.strip(";").array


def _rate_frame(counts: pd.DataFrame, population: pd.DataFrame, ind: Indicator, category: str,
                settings: IndicatorSettings) -> pd.DataFrame:
    """counts: KEY + numerator (n); population: KEY + population value and flags."""
    m = counts.merge(population, on=KEY, how="left")
    r = rates.rate(m["numerator"].to_numpy(float), m["population"].to_numpy(float), per=ind.per,
                   small_count=settings.small_count)
    # area-coded counts: a unit the count files do not report keeps saying so in its rate
    carried = (m["flags"].fillna("").astype(str).str.findall(r"(?:^|;)(not_in_source|partial)(?=;|$)").str.join(";")
               if "flags" in m else "")
    return pd.DataFrame({
        "level": m["level"], "unit_id": m["unit_id"], "period": m["period"], "category": category,
        "measure": ind.id, "numerator": m["numerator"].to_numpy(float), "denominator": m["population"].to_numpy(float),
        "value": r["value"].to_numpy(), "lower": r["lower"].to_numpy(), "upper": r["upper"].to_numpy(),
        "n": np.nan_to_num(m["numerator"].to_numpy(float)).astype(np.int64),
        "flags": _flags(r["flags"], m["pop_flags"].fillna(""), carried),
    })


def _sum_categories(counts: pd.DataFrame) -> pd.DataFrame:
    """KEY + numerator + flags: the counts of several categories added per unit and period. A unit no
    count file reports (area-coded counts) stays NaN, never 0, flagged ``not_in_source`` when no
    category is reported and ``partial`` when some are not (vectorised: no per-group Python)."""
    flags = counts["flags"].fillna("").astype(str)
    part = counts[KEY].assign(numerator=counts["numerator"].to_numpy(float),
                              nis=flags.str.contains(r"(?:^|;)not_in_source(?:;|$)", regex=True).to_numpy(),
                              par=flags.str.contains(r"(?:^|;)partial(?:;|$)", regex=True).to_numpy())
    g = part.groupby(KEY, sort=False)
    out = g["numerator"].sum(min_count=1).reset_index()
    nis_all, nis_any, par_any = g["nis"].all().to_numpy(), g["nis"].any().to_numpy(), g["par"].any().to_numpy()
    out["flags"] = np.where(nis_all, "not_in_source", np.where(nis_any | par_any, "partial", ""))
    return out


def rate_rows(measures: pd.DataFrame, settings: IndicatorSettings, iccs: dict[str, str], source: str = "police"
              ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rate indicators at every level and period. Returns (rows, {indicator: why not computed})."""
    counts = measures[measures["measure"] == "count"]
    pop = measures[(measures["measure"] == "population")][KEY + ["value", "flags"]].rename(
        columns={"value": "population", "flags": "pop_flags"})
    reported = measures[measures["measure"] == "population_reported"]
    if len(reported) and len(pop):  # area-coded counts: a partial unit's rate divides by the people of its reported units
        r = reported.set_index(KEY)["value"]
        pop = pop.set_index(KEY)
        both = r.index.intersection(pop.index)
        pop.loc[both, "population"] = r.loc[both].to_numpy(float)
        pop = pop.reset_index()
    skipped: dict[str, str] = {}
    if pop.empty:
        return pd.DataFrame(columns=COLUMNS), {i: "no population denominators in the study" for i, d in
                                               settings.indicators.items() if d.kind == "rate"}
    frames = []
    for ind in settings.indicators.values():
        if ind.kind != "rate":
            continue
        if ind.source != source:
            skipped[ind.id] = f"needs {ind.source} records; the incidents are {source} records"
            continue
        if ind.categories == ("*",):
            for category, sub in counts.groupby("category", sort=True):
                frames.append(_rate_frame(sub[KEY + ["numerator", "flags"]], pop, ind, category, settings))
            continue
        labels = sorted(c for c, code in iccs.items() if code in ind.categories)
        if not labels:
            skipped[ind.id] = f"no incident category maps to ICCS {', '.join(ind.categories)}"
            continue
        # min_count=1: a unit no count file reports stays NaN, never 0; its flags say why
        sub = _sum_categories(counts[counts["category"].isin(labels)])
        frames.append(_rate_frame(sub, pop, ind, "all", settings))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return rows, skipped


def rate_scale(rate_rows_: pd.DataFrame) -> dict[str, float]:
    """The ``per`` of every rate indicator, read back from its rows (``value / (numerator / denominator)``,
    the median over the rows with events and people; 1.0 for an indicator with no event anywhere, where
    every rate is 0 whatever the scale). Used when the indicator definitions are not at hand."""
    m = rate_rows_[(rate_rows_["numerator"] > 0) & (rate_rows_["denominator"] > 0) & np.isfinite(rate_rows_["value"])]
    ratio = m["value"] / (m["numerator"] / m["denominator"])
    found = ratio.groupby(m["measure"]).median().to_dict()
    return {ind: float(found.get(ind, 1.0)) for ind in pd.unique(rate_rows_["measure"])}


def smoothed_rows(rate_rows_: pd.DataFrame, units, weights: dict[str, object], per: dict[str, float] | None = None
                  ) -> pd.DataFrame:
    """Global (``<id>_eb``) and spatial (``<id>_seb``) EB smoothed rates per polygon level, period,
    indicator and category; intervals are not given for smoothed values.

    ``per``: indicator id → rate multiplier (the definitions' ``per``); read back from the rows with
    :func:`rate_scale` when not given. One scale per indicator for every level, category and period
    (a group without events must not decide it: issue #19, point 1)."""
    frames = []
    per_of = rate_scale(rate_rows_) if len(rate_rows_) else {}
    per_of.update(per or {})
    for (level, ind_id, category, period), sub in rate_rows_.groupby(["level", "measure", "category", "period"], sort=True):
        if units.kinds.get(level) != "polygon" or len(sub) < 3:
            continue
        sub = sub.set_index("unit_id").reindex(units.levels[level]["unit_id"]).reset_index()
        count, pop = sub["numerator"].to_numpy(float), sub["denominator"].to_numpy(float)
        scale = per_of.get(ind_id, 1.0)
        # units without a count (not reported by area-coded count files) borrow nothing and get nothing
        has = ~np.isnan(count)
        if has.sum() < 3:
            continue
        variants = [("_eb", _on_subset(smoothing.eb_global(count[has], pop[has], per=scale), has))]
        if level in weights:
            w = weights[level] if has.all() else weights[level][has][:, has]
            variants.append(("_seb", _on_subset(smoothing.eb_spatial(count[has], pop[has], w, per=scale), has)))
        for suffix, sm in variants:
            frames.append(pd.DataFrame({
                "level": level, "unit_id": sub["unit_id"], "period": period, "category": category,
                "measure": ind_id + suffix, "numerator": count, "denominator": pop, "value": sm["value"].to_numpy(),
                "lower": np.nan, "upper": np.nan, "n": np.nan_to_num(count).astype(np.int64),
                "flags": _flags(np.full(len(sub), "smoothed", dtype=object), sm["flags"]),
            }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _on_subset(sm: pd.DataFrame, has: np.ndarray) -> pd.DataFrame:
    """Smoothed values of the units in ``has`` back on every unit: NaN and ``not_in_source`` elsewhere."""
    if has.all():
        return sm.reset_index(drop=True)
    out = pd.DataFrame({"value": np.full(len(has), np.nan), "flags": np.full(len(has), "not_in_source", dtype=object)})
    out.loc[has, "value"] = sm["value"].to_numpy()
    out.loc[has, "flags"] = sm["flags"].to_numpy(dtype=object)
    return out


def contiguity(units) -> dict[str, object]:
    """Queen contiguity (scipy CSR, binary) of every polygon level with at least 3 units."""
    from usm_geo.units.weights import queen

    return {level: queen(layer).sparse for level, layer in units.levels.items()
            if units.kinds[level] == "polygon" and len(layer) >= 3}


def perception_rows(table: pd.DataFrame, level: str, scores) -> pd.DataFrame:
    """Area-table perception scores as measures rows: value as given, no interval, ``no_sample_size``."""
    frames = []
    for name in scores:
        frames.append(pd.DataFrame({
            "level": level, "unit_id": table["unit_id"], "period": table["period"], "category": "all",
            "measure": name, "numerator": np.nan, "denominator": np.nan, "value": table[name].to_numpy(float),
            "lower": np.nan, "upper": np.nan, "n": 0,
            "flags": np.where(np.isnan(table[name].to_numpy(float)), "no_sample_size;missing", "no_sample_size"),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def share_rows(survey: pd.DataFrame, located: pd.DataFrame, units, settings: IndicatorSettings, frequency: str,
               questions: set[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Survey share indicators per level × unit × period (domain estimation on the full design).

    Periods are the study's periods holding at least one interview (survey waves); every unit of a
    polygon level is listed for each of them, with ``no_respondents`` where nobody answered.
    """
    from usm_geo.indicators.survey import answer_share
    from usm_geo.periods import labels as period_labels

    skipped: dict[str, str] = {}
    if "occurred_at" in survey:
        period = period_labels(survey["occurred_at"].to_numpy(), frequency)
    else:
        period = np.full(len(survey), "all", dtype=object)
    strata = survey["stratum"].to_numpy(dtype=object) if "stratum" in survey else None
    psu = survey["psu"].to_numpy(dtype=object) if "psu" in survey else None
    weight = survey["weight"].to_numpy(float)
    waves = sorted(set(period))
    frames = []
    for ind in settings.indicators.values():
        if ind.kind != "share":
            continue
        if ind.question not in questions:
            skipped[ind.id] = f"the survey has no question '{ind.question}'"
            continue
        exclude = set(ind.exclude)
        if ind.never_go_out and ind.never_go_out_rule == "exclude":
            exclude.add(ind.never_go_out)
        answers = survey[ind.question].to_numpy(dtype=object)
        for level in units.names:
            unit = located[level].to_numpy(dtype=object)
            if pd.isna(unit).all():
                continue
            domain = np.where(pd.isna(unit), None, pd.Series(unit, dtype=object).astype(str) + "\x1f" + period)
            est = answer_share(answers, weight, set(ind.yes), exclude_labels=exclude, domain=domain, strata=strata,
                               psu=psu, min_n=settings.min_n, min_eff_n=settings.min_eff_n, lonely_psu="adjust")
            est = est[est["domain"].notna()]
            parts = est["domain"].astype(str).str.split("\x1f", n=1, expand=True)
            est = est.assign(unit_id=parts[0].to_numpy(), period=parts[1].to_numpy())
            full = pd.MultiIndex.from_product([units.levels[level]["unit_id"], waves], names=["unit_id", "period"])
            est = est.set_index(["unit_id", "period"]).reindex(full).reset_index()
            empty = est["n"].isna().to_numpy()
            flags = np.where(empty, "no_respondents", est["flags"].fillna("").to_numpy(dtype=object))
            frames.append(pd.DataFrame({
                "level": level, "unit_id": est["unit_id"], "period": est["period"], "category": "all",
                "measure": ind.id, "numerator": est["numerator"].to_numpy(float), "denominator": est["denominator"].to_numpy(float),
                "value": est["value"].to_numpy(float), "lower": est["lower"].to_numpy(float), "upper": est["upper"].to_numpy(float),
                "n": est["n"].fillna(0).to_numpy().astype(np.int64), "flags": flags,
            }))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return rows, skipped
