"""Risk and resilience factors per unit as tables: the covariates read for the models, and the
resilience summary (survey shares beside the count model's observed and expected counts).

Tables in, tables out (floor 4): nothing here reads or writes files. The run writes them as
``covariates.csv`` and ``resilience.csv`` (docs/outputs.md).

- :func:`covariate_table`: every unit of every level with ``[[inputs.covariates]]``, one column per
  factor — an area table's columns as given, a point layer's ``<name>_count`` (features in the
  unit), ``<name>_density`` (features per km² of the unit's area in the working CRS) and
  ``<name>_distance`` (metres from the unit's centroid to the nearest feature). A unit the table
  gives no value for is listed with the value missing, so the rows are the level's units.
- :func:`resilience_table`: per unit of a modelled level, the survey share indicators (e.g. feeling
  safe after dark; trust in police or collective efficacy when the study defines them) of the model's
  period next to the recorded count and the count the model expects from the risk factors. These
  are associations between areas, not causes, and a share from few respondents has a wide interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RESILIENCE_CAVEAT = (
    "associations, not causes: this table puts survey shares (how residents answered) next to recorded and "
    "model-expected incident counts for the same areas; an area where residents feel safer and fewer incidents "
    "were recorded than expected does not show that one causes the other. Shares from few respondents have wide "
    "intervals (see _lower/_upper and _n), and recorded incidents depend on reporting and policing.")


def covariate_table(covariates: dict[str, pd.DataFrame], units: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``level, unit_id, name, <factor>…`` for every unit of every level in ``covariates`` (level →
    ``unit_id`` + factor columns, as read by usm_geo.intake.covariates), sorted by level and
    ``unit_id``. ``units``: level → the level's units (``unit_id``, ``name``). Factor columns are
    ordered as the levels list them; a factor of another level is missing on this level's rows."""
    frames, columns = [], []
    for level in sorted(covariates):
        table = covariates[level]
        layer = units[level]
        ids = pd.Series(layer["unit_id"].astype(str).to_numpy(), dtype=object)
        names = dict(zip(ids, layer["name"] if "name" in layer.columns else ids))
        factors = [c for c in table.columns if c != "unit_id"]
        columns += [c for c in factors if c not in columns]
        values = table.assign(unit_id=table["unit_id"].astype(str)).set_index("unit_id")[factors]
        out = values.reindex(sorted(ids)).reset_index(names="unit_id")
        out.insert(0, "level", level)
        out.insert(2, "name", out["unit_id"].map(names))
        frames.append(out)
    if not frames:
        return pd.DataFrame(columns=["level", "unit_id", "name"])
    table = pd.concat(frames, ignore_index=True)
    return table[["level", "unit_id", "name", *columns]]


def share_ids(measures: pd.DataFrame) -> list[str]:
    """The survey share indicators in ``measures`` (ids containing ``share``, smoothing aside)."""
    ids = pd.unique(measures["measure"].astype(str))
    return sorted(i for i in ids if "share" in i and not i.endswith(("_eb", "_seb")))


def resilience_table(measures: pd.DataFrame, model_units: pd.DataFrame | None, units: pd.DataFrame, *,
                     level: str, period: str, public: bool = False) -> tuple[pd.DataFrame, dict]:
    """One row per unit of ``level``: ``level, unit_id, name, period, observed, expected,
    <share>, <share>_lower, <share>_upper, <share>_n, <share>_period`` for every survey share of
    :func:`share_ids`.

    ``measures``: the long measures table *after the output profile* (usm_geo.disclosure), so a
    suppressed count or share is blank here too; ``model_units``: the count model's per-unit table
    (``unit_id, observed, expected``) or None when the level was not fitted; ``period``: the model's
    period. ``observed`` is the published count (category ``all``) of ``period``; ``expected`` the
    model's expected count (incidents, same period), left blank in ``public`` where the observed
    count is not published. A share without a value in ``period`` at this level is taken from its
    latest earlier period (a survey wave in another year), named in ``<share>_period``.
    Returns ``(table, notes)``; ``notes`` maps each share to the period used or why it is absent.
    """
    m = measures[(measures["level"] == level) & (measures["category"] == "all")]
    ids = sorted(units["unit_id"].astype(str))
    names = dict(zip(units["unit_id"].astype(str), units["name"] if "name" in units.columns else units["unit_id"]))
    out = pd.DataFrame({"level": level, "unit_id": ids})
    out["name"] = out["unit_id"].map(names)
    out["period"] = period
    counts = m[(m["measure"] == "count") & (m["period"] == period)].set_index("unit_id")
    observed = counts["value"].reindex(ids) if len(counts) else pd.Series(np.nan, index=ids)
    out["observed"] = pd.array(observed.to_numpy(), dtype="Float64").round(0).astype("Int64")
    expected = pd.Series(np.nan, index=ids)
    if model_units is not None and len(model_units):
        expected = model_units.assign(unit_id=model_units["unit_id"].astype(str)).set_index("unit_id")["expected"].reindex(ids)
    if public:  # a suppressed count's expected value would point at it: shown only beside a published count
        expected = expected.where(observed.notna().to_numpy())
    out["expected"] = expected.to_numpy(float)
    notes: dict[str, str] = {}
    for sid in share_ids(m):
        rows = m[m["measure"] == sid]
        have = sorted(set(rows["period"].astype(str)))
        earlier = [p for p in have if p <= period]
        if not earlier:
            notes[sid] = f"no survey wave up to {period} at this level"
            continue
        used = period if period in have else earlier[-1]
        notes[sid] = used
        sel = rows[rows["period"] == used].set_index("unit_id").reindex(ids)
        out[sid] = sel["value"].to_numpy(float)
        out[f"{sid}_lower"] = sel["lower"].to_numpy(float)
        out[f"{sid}_upper"] = sel["upper"].to_numpy(float)
        out[f"{sid}_n"] = pd.array(sel["n"].to_numpy(), dtype="Float64").round(0).astype("Int64")
        out[f"{sid}_period"] = used
    return out, notes
