"""Summary tables built from the measures table: progress (change, trend, target), concentration
and the objective–subjective gap. Progress, not ranking: every comparison is a unit against its own
past, except the gap, which places a unit's incident rate beside its residents' perception.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.indicators import concentration, progress
from usm_geo.indicators.registry import IndicatorSettings
from usm_geo.periods import period_bounds

KEY = ["level", "unit_id"]


def _period_time(labels) -> np.ndarray:
    """Mid-point of each period in decimal years (2019 → 2019.5): :func:`progress.period_midpoints`."""
    return progress.period_midpoints(labels)


def period_days(labels) -> np.ndarray:
    """Length of each period in days (2019 → 365, 2020 → 366, 2019-Q1 → 90): the exposure of a count."""
    out = []
    for lab in labels:  # one per period, not per record
        w = period_bounds(str(lab))
        out.append((w.end - w.start).days + 1)
    return np.asarray(out, dtype=float)


def progress_table(measures: pd.DataFrame, settings: IndicatorSettings, baseline: str | None, current: str | None
                   ) -> pd.DataFrame:
    """Per rate indicator (category ``all``), level and unit — and for the incident count itself
    (indicator ``count``, exposure = the period's length in days, :func:`period_days`): the change
    from the baseline to the current period (exact rate-ratio interval) with the Poisson E-test
    p-value of no change (``etest_p``, :func:`usm_geo.indicators.etest.poisson_etest`; exposures =
    residents for rates, days for counts), the trend over every period (Poisson regression with a
    population or days offset, quasi-Poisson intervals) and, for indicators with a target, the
    required vs achieved annual rate of change and a status (on track / off track / insufficient data).
    Rates and counts are the only indicators here: survey waves are too few for a trend.
    """
    rows = []
    counts = measures[(measures["measure"] == "count") & (measures["category"] == "all")]
    if len(counts):
        days = dict(zip(sorted(counts["period"].unique()), period_days(sorted(counts["period"].unique()))))
        counts = counts.assign(numerator=counts["value"], denominator=counts["period"].map(days))
        rows.append(_progress_rows(counts, "count", 1.0, baseline, current, target=None, lower_is_better=True))
    for ind in settings.indicators.values():
        if ind.kind != "rate":
            continue
        sub = measures[(measures["measure"] == ind.id) & (measures["category"] == "all")]
        if sub.empty:
            continue
        rows.append(_progress_rows(sub, ind.id, ind.per, baseline, current, target=settings.targets.get(ind.id),
                                   lower_is_better=ind.lower_is_better))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=KEY + ["indicator"])


def _progress_rows(sub: pd.DataFrame, ind_id: str, per: float, baseline, current, *, target, lower_is_better
                   ) -> pd.DataFrame:
    """progress.csv rows of one indicator from its measures rows (numerator = events, denominator =
    exposure); ``baseline_value``/``current_value`` are ``numerator / denominator · per``."""
    from usm_geo.indicators.etest import poisson_etest

    periods = sorted(sub["period"].unique())
    num = sub.pivot_table(index=KEY, columns="period", values="numerator", aggfunc="first", sort=True)
    den = sub.pivot_table(index=KEY, columns="period", values="denominator", aggfunc="first", sort=True)
    num, den = num.reindex(columns=periods), den.reindex(index=num.index, columns=periods)
    table = pd.DataFrame(index=num.index).reset_index()
    table.insert(2, "indicator", ind_id)
    tr = progress.trend(_period_time(periods), num.to_numpy(float), den.to_numpy(float), dispersion="quasi")
    table["trend_per_year"], table["trend_lower"], table["trend_upper"] = tr["value"].to_numpy(), tr["lower"].to_numpy(), tr["upper"].to_numpy()
    table["trend_flags"] = tr["flags"].to_numpy()
    if baseline in periods and current in periods:
        c0, d0 = num[baseline].to_numpy(float), den[baseline].to_numpy(float)
        c1, d1 = num[current].to_numpy(float), den[current].to_numpy(float)
        ch = progress.change(c0, d0, c1, d1)
        with np.errstate(divide="ignore", invalid="ignore"):  # no population: no rate (NaN), not a warning
            b_val, c_val = c0 / d0 * per, c1 / d1 * per
        table["baseline"], table["current"] = baseline, current
        table["baseline_value"], table["current_value"] = b_val, c_val
        table["change"], table["change_lower"], table["change_upper"] = ch["value"].to_numpy(), ch["lower"].to_numpy(), ch["upper"].to_numpy()
        table["change_flags"] = ch["flags"].to_numpy()
        table["etest_p"] = poisson_etest(c1, d1, c0, d0)
        if target is not None:
            by = _period_time([baseline])[0] // 1
            cy = _period_time([current])[0] // 1
            t_val = b_val * (1 + target.change) if target.change is not None else np.full(len(b_val), float(target.value))
            cur = sub[sub["period"] == current].set_index(KEY).reindex(num.index)
            st = progress.progress_to_target(b_val, by, t_val, target.year, c_val, cy, cur["lower"].to_numpy(float),
                                             cur["upper"].to_numpy(float), lower_is_better=lower_is_better)
            table["target_year"], table["target_value"] = target.year, t_val
            table["required_per_year"], table["achieved_per_year"] = st["required"].to_numpy(), st["achieved"].to_numpy()
            table["status"], table["status_reason"] = st["status"].to_numpy(), st["reason"].to_numpy()
    return table


def concentration_table(measures: pd.DataFrame, units) -> pd.DataFrame:
    """Per level (polygon and H3), period and category: Gini, generalised Gini (Bernasco &
    Steenbeek 2017, for when incidents are fewer than places) and the share of incidents in the
    top 5 % and 10 % of units."""
    counts = measures[(measures["measure"] == "count") & measures["level"].map(lambda lv: units.kinds.get(lv) in ("polygon", "h3"))]
    out = []
    for (level, period, category), sub in counts.groupby(["level", "period", "category"], sort=True):
        x = sub["value"].to_numpy(float)
        x = x[~np.isnan(x)]  # units area-coded count files do not report are not zeros: left out
        if len(x) == 0:
            continue
        top = concentration.top_share(x, (0.05, 0.10))
        out.append({"level": level, "period": period, "category": category, "units": len(x), "incidents": int(x.sum()),
                    "gini": concentration.gini(x), "generalised_gini": concentration.generalised_gini(x),
                    "top5pct_share": float(top[0]), "top10pct_share": float(top[1])})
    return pd.DataFrame(out)


def gap_table(measures: pd.DataFrame, rate_id: str, perception_id: str, perception_lower_is_better: bool) -> pd.DataFrame:
    """Objective–subjective gap per unit and period, the way Rotterdam's safety index sets its
    objective and subjective parts side by side: the incident rate and the perception indicator,
    their ranks within the level (1 = least safe) and standardised scores (z across units, signed
    so that higher = less safe); ``gap = z_perception − z_rate``: positive where residents feel less
    safe than the recorded incidents suggest."""
    a = measures[(measures["measure"] == rate_id) & (measures["category"] == "all")][KEY + ["period", "value"]]
    b = measures[(measures["measure"] == perception_id) & (measures["category"] == "all")][KEY + ["period", "value"]]
    m = a.merge(b, on=KEY + ["period"], suffixes=("_rate", "_perception")).dropna(subset=["value_rate", "value_perception"])
    if m.empty:
        return pd.DataFrame(columns=KEY + ["period"])
    sign = 1.0 if perception_lower_is_better else -1.0  # e.g. "feel safe": a high share is safer

    def z(s):
        sd = s.std(ddof=0)
        return (s - s.mean()) / sd if sd > 0 else s * 0.0

    g = m.groupby(["level", "period"], sort=True)
    m["rate_rank"] = g["value_rate"].rank(ascending=False, method="min").astype(int)
    m["perception_rank"] = (m["value_perception"] * sign).groupby([m["level"], m["period"]]).rank(ascending=False, method="min").astype(int)
    m["z_rate"] = g["value_rate"].transform(z)
    m["z_perception"] = (m["value_perception"] * sign).groupby([m["level"], m["period"]]).transform(z)
    m["gap"] = m["z_perception"] - m["z_rate"]
    m.insert(3, "rate_indicator", rate_id)
    m.insert(4, "perception_indicator", perception_id)
    return m.sort_values(["level", "period", "unit_id"], kind="stable").reset_index(drop=True)
