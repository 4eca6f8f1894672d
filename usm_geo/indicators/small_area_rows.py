"""Fay–Herriot estimates of the run's survey shares: measures rows ``<id>_fh``, ``small_area.csv``
and the run.json ``small_area`` section (``[indicators] small_area = true``; docs/study.md).

For every survey share indicator × period × boundary level that has area covariates
(``[[inputs.covariates]]``), the direct shares of that level's units and their design variances
(:func:`usm_geo.indicators.compute.share_rows` with ``with_variance``: the survey module's
Taylor-linearised variance, proportion²) go into :func:`usm_geo.indicators.small_area.fit_fay_herriot`
with the level's factors (an intercept added), and every unit with factor values gets the EBLUP, its
Prasad–Rao MSE and the shrinkage factor γ (:func:`~usm_geo.indicators.small_area.predict_fay_herriot`).

Which units enter the fit: those with a direct share, a design variance > 0 and every factor value.
A unit without respondents — or whose design variance is 0 or not known (every respondent gave the
same answer: the model would take that share as exact) — gets the synthetic estimate x'β̂ with its
MSE, flagged ``synthetic`` (and ``no_design_variance`` when it had respondents). A unit without a
factor value gets no estimate (``no_covariates``).

Measures rows (``measure = <id>_fh``, never mixed into ``<id>``): ``value`` = the EBLUP clipped to
[0, 1] (flag ``clipped`` where the linear model left that range), ``lower``/``upper`` = EBLUP ±
z_{0.975}·√MSE clipped to [0, 1] (a normal interval, as the Prasad–Rao MSE is meant for), ``n`` = the
unit's respondents, ``numerator``/``denominator`` empty (a model-based estimate is not a ratio of
weighted counts), ``flags`` ``model_based`` plus the above. Shares are proportions (0–1); covariates are
in their own units; nothing here depends on a CRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.small_area import fit_fay_herriot, predict_fay_herriot
from usm_geo.measures import COLUMNS

SUFFIX = "_fh"
LABEL = "model-based (Fay–Herriot)"
METHOD = "Fay–Herriot area-level EBLUP; σ²_u by REML (Fisher scoring); MSE by Prasad–Rao; intercept added"
LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)  # 1.959963984540054
TABLE_COLUMNS = ["level", "unit_id", "period", "indicator", "n", "direct", "direct_var", "eblup", "mse", "gamma",
                 "synthetic", "g1", "g2", "g3", "sigma2_u", "flags"]
#: columns of small_area.csv that give a unit's direct share back (γ and g1, g3 reveal its variance, and
#: with it, x'β̂ and the EBLUP, the share): blank in the public profile where the direct share is suppressed
DIRECT_COLUMNS = ["n", "direct", "direct_var", "gamma", "g1", "g3"]


@dataclass
class SmallArea:
    """``rows``: measures rows ``<id>_fh``; ``table``: ``small_area.csv``; ``summary``: run.json
    ``small_area``; ``skipped``: ``<id>_fh`` → why no level has it."""

    rows: pd.DataFrame
    table: pd.DataFrame
    summary: dict
    skipped: dict[str, str] = field(default_factory=dict)


def small_area_in_profile(table: pd.DataFrame, public_measures: pd.DataFrame) -> pd.DataFrame:
    """``small_area.csv`` as the public profile may show it: :data:`DIRECT_COLUMNS` blank wherever the
    public measures (``usm_geo.disclosure.apply_profile`` with the run's crosswalk) withhold the unit's
    direct share — by its own small n or by complementary suppression — so the table reveals no
    direct share the published files hide. The EBLUP and its MSE stay (they are published)."""
    out = table.copy()
    if not len(out):
        return out
    share = public_measures[public_measures["category"].astype(str) == "all"]
    withheld = share.loc[share["value"].isna(), ["level", "unit_id", "period", "measure"]].astype(str)
    gone = pd.MultiIndex.from_frame(withheld)
    keys = pd.MultiIndex.from_arrays([out["level"].astype(str), out["unit_id"].astype(str), out["period"].astype(str),
                                      out["indicator"].astype(str).str.removesuffix(SUFFIX)])
    hide = keys.isin(gone)
    out[DIRECT_COLUMNS] = out[DIRECT_COLUMNS].astype(float)
    out.loc[hide, DIRECT_COLUMNS] = np.nan
    return out


def _one_model(sub: pd.DataFrame, ids: np.ndarray, x: np.ndarray, factors: list[str]):
    """The FH model of one level × indicator × period: (measures rows, small_area.csv rows, summary)."""
    sub = sub.set_index("unit_id").reindex(ids)
    y = sub["value"].to_numpy(float)
    d = sub["design_variance"].to_numpy(float)
    n = sub["n"].fillna(0).to_numpy(float)
    has_x = np.isfinite(x).all(axis=1)
    usable = np.isfinite(y) & np.isfinite(d) & (d > 0) & has_x
    no_var = np.isfinite(y) & ~(np.isfinite(d) & (d > 0))
    info = {"covariates": factors, "n_units": int(len(ids)), "n_areas": int(usable.sum()),
            "n_synthetic": int((has_x & ~usable).sum()), "n_no_covariates": int((~has_x).sum())}
    notes = []
    if no_var.any():
        notes.append(f"{int((no_var & has_x).sum())} unit(s) with respondents but a design variance of 0 (every "
                     "respondent gave the same answer) get the synthetic estimate")
    if (~has_x).any():
        notes.append(f"{int((~has_x).sum())} unit(s) without a value of every factor get no estimate")
    try:
        fit = fit_fay_herriot(y[usable], d[usable], x[usable])
    except UsmGeoError as exc:
        return None, None, {**info, "status": "not_fitted", "notes": [*notes, exc.message]}
    yy = np.where(usable, y, np.nan)
    pred = predict_fay_herriot(fit, yy[has_x], d[has_x], x[has_x], fitted_variance=d[usable],
                               fitted_covariates=x[usable])
    eblup = np.full(len(ids), np.nan)
    out = {c: np.full(len(ids), np.nan) for c in ("mse", "gamma", "synthetic", "g1", "g2", "g3")}
    eblup[has_x] = pred["eblup"].to_numpy()
    for c in out:
        out[c][has_x] = pred[c].to_numpy()
    half = Z * np.sqrt(out["mse"])
    value = np.clip(eblup, 0.0, 1.0)
    clipped = np.isfinite(eblup) & (value != eblup)
    flags = pd.Series(np.where(has_x, "model_based", "model_based;no_covariates"), dtype=object)
    flags = flags.where(~(has_x & ~usable), flags + ";synthetic")
    flags = flags.where(~(has_x & no_var), flags + ";no_design_variance")
    flags = flags.where(~clipped, flags + ";clipped")
    rows = pd.DataFrame({"unit_id": ids, "value": value, "lower": np.clip(eblup - half, 0.0, 1.0),
                         "upper": np.clip(eblup + half, 0.0, 1.0), "n": n.astype(np.int64),
                         "flags": flags.to_numpy(dtype=object)})
    table = pd.DataFrame({"unit_id": ids, "n": n.astype(np.int64), "direct": y, "direct_var": d, "eblup": eblup,
                          **out, "sigma2_u": fit.sigma2_u, "flags": rows["flags"].to_numpy(dtype=object)})
    terms = ["intercept", *factors]
    for term, b in zip(terms, fit.beta):
        table[f"beta_{term}"] = float(b)
    if fit.sigma2_truncated:
        notes.append("σ²_u estimated at 0: given the factors, the units differ no more than sampling error explains, "
                     "so every unit gets its synthetic estimate (γ = 0)")
    if not fit.converged:
        notes.append(f"REML did not converge in {fit.iterations} iterations")
    summary = {**info, "status": "fitted", "sigma2_u": fit.sigma2_u, "sigma2_truncated": fit.sigma2_truncated,
               "converged": fit.converged, "iterations": fit.iterations, "notes": notes}
    # β̂ stays in small_area.csv, out of run.json (which an export copies): with β̂, the covariates and γ
    # a suppressed direct share could be solved for (docs/methods.md "Publishing")
    return rows, table, summary


def small_area_rows(direct: pd.DataFrame, covariates: dict[str, pd.DataFrame], unit_ids: dict[str, np.ndarray], *,
                    use: tuple[str, ...] = ()) -> SmallArea:
    """Fay–Herriot rows for every share indicator × period at every level of ``covariates``.

    ``direct``: share rows (measures columns + ``design_variance``, see the module docstring);
    ``covariates``: level → ``unit_id`` + one float column per factor; ``unit_ids``: level → its
    units' ids (every unit is listed); ``use``: the factors to use (default every factor of a level).
    The table is internal; :func:`small_area_in_profile` gives its public form.
    """
    row_frames, table_frames, models = [], [], []
    for level in sorted(covariates):
        cov = covariates[level]
        factors = [c for c in cov.columns if c != "unit_id" and (not use or c in use)]
        at = direct[direct["level"] == level]
        if at.empty:
            continue
        if not factors:
            models.append({"level": level, "status": "not_fitted",
                           "notes": ["none of indicators.small_area_covariates is a factor of this level"]})
            continue
        ids = np.asarray(unit_ids[level], dtype=object)
        x = cov.set_index("unit_id").reindex(ids)[factors].to_numpy(float)
        for (ind, period), sub in at.groupby(["measure", "period"], sort=True):
            rows, table, summary = _one_model(sub, ids, x, factors)
            head = {"level": level, "indicator": ind, "measure": ind + SUFFIX, "period": period}
            models.append({**head, **summary})
            if rows is None:
                continue
            row_frames.append(rows.assign(level=level, period=period, category="all", measure=ind + SUFFIX,
                                          numerator=np.nan, denominator=np.nan)[COLUMNS])
            table = table.assign(level=level, period=period, indicator=ind + SUFFIX)
            table_frames.append(table)
    rows = pd.concat(row_frames, ignore_index=True) if row_frames else pd.DataFrame(columns=COLUMNS)
    table = pd.concat(table_frames, ignore_index=True) if table_frames else pd.DataFrame(columns=TABLE_COLUMNS)
    if len(table):
        betas = sorted(c for c in table.columns if c.startswith("beta_"))
        betas = (["beta_intercept"] if "beta_intercept" in betas else []) + [c for c in betas if c != "beta_intercept"]
        table = table[TABLE_COLUMNS + betas]
    fitted = {m["measure"] for m in models if m.get("status") == "fitted"}
    skipped = {}
    for ind in sorted(pd.unique(direct["measure"])) if len(direct) else []:
        if ind + SUFFIX not in fitted:
            why = sorted({n for m in models if m.get("indicator") == ind for n in m.get("notes", [])[-1:]})
            skipped[ind + SUFFIX] = ("no Fay–Herriot model could be fitted: " + "; ".join(why) if why else
                                     "no level with [[inputs.covariates]] has survey respondents")
    summary = {"method": METHOD, "confidence": LEVEL, "z": Z, "interval": "EBLUP ± z·√MSE, clipped to [0, 1]",
               "covariates": {lv: [c for c in covariates[lv].columns if c != "unit_id" and (not use or c in use)]
                              for lv in sorted(covariates)},
               "models": models,
               "notes": ["model-based estimates (flag model_based) are in their own measures <id>_fh, never mixed "
                         "with the direct survey shares",
                         "in the public profile the <id>_fh estimates are published for every unit, also where the "
                         "direct share is suppressed (docs/methods.md)"]}
    return SmallArea(rows=rows, table=table, summary=summary, skipped=skipped)


def small_area_definitions(definitions: dict[str, dict], ids) -> dict[str, dict]:
    """run.json ``indicator_definitions`` entries of the ``<id>_fh`` measures in ``ids``: the direct
    share's definition, named "…, model-based (Fay–Herriot)" (the name maps, field dictionaries and
    the report show), with ``derived_from`` and ``estimate``."""
    out = {}
    for fh in ids:
        base = fh[: -len(SUFFIX)]
        if not fh.endswith(SUFFIX) or base not in definitions:
            continue
        d = dict(definitions[base])
        d.update({"id": fh, "name": f"{d.get('name') or base}, {LABEL}", "derived_from": base, "estimate": LABEL,
                  "method": METHOD})
        out[fh] = d
    return out
