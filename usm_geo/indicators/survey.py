"""Weighted survey shares with design-based uncertainty.

Shares of residents such as SDG 16.1.4 ("feel safe walking alone in their area after dark"),
SDG 11.7.2 (victims of harassment) and SDG 16.1.3 (victims of violence) come from sample surveys:
each respondent carries a design weight, and respondents may be sampled in clusters (PSUs) within
strata. This module estimates such a share per domain (unit) and its uncertainty the way R's
``survey`` package does, and is tested against it (R 4.2.2, survey 4.1-1).

Estimator
---------
For the respondents in a domain ``d`` who are *eligible* (answered the question), with weights
``w`` and 0/1 answers ``y``, the Hájek (ratio) estimate is ::

    p̂_d = Σ w·y / Σ w

Its variance is the with-replacement Taylor-linearisation (ultimate cluster) estimator of
``svymean`` on ``svydesign(ids = ~psu, strata = ~strata, weights = ~w, nest = TRUE)`` (or
``ids = ~1`` when no PSU is given: every respondent is their own PSU; one stratum when no strata
are given)::

    z_i      = w_i (y_i − p̂_d) / Σ_d w        for eligible respondents of domain d, else 0
    t_hc     = Σ_{i in PSU c of stratum h} z_i
    var(p̂_d) = Σ_h  n_h/(n_h − 1) · Σ_c (t_hc − t̄_h)²

``n_h`` is the number of PSUs of stratum ``h`` in the *whole* sample (every row passed in,
whatever its domain, eligibility or weight) and ``t̄_h`` is the mean over those ``n_h`` PSUs.
Domains are therefore estimated as R's ``svyby(~y, ~domain, subset(design, eligible), svymean)``
does: PSUs of the stratum without a respondent of the domain count as zeros, the sample is not
cut down to the domain. No finite-population correction is applied. PSU labels are taken as
nested in strata (R's ``nest = TRUE``): PSU 1 of stratum A and PSU 1 of stratum B are different.

Degrees of freedom
------------------
R's ``svyciprop`` uses ``df = degf(design)`` of the design it is given, and ``svyby`` gives it the
domain subset, so for domain ``d``::

    df_d = (PSUs holding a respondent of d with weight > 0) − (strata holding one)

(e.g. ``n − 1`` for a weights-only design). With ``df_d ≤ 0`` R returns no interval; neither do
we (NaN bounds, flag ``no_df``).

Intervals (α = 1 − level, t_q(ν) = q-quantile of Student's t with ν degrees of freedom)
------------------------------------------------------------------------------------------
``method="logit"`` — R's ``svyciprop(method = "logit")``, a Wald interval on the logit scale::

    se_logit = se(p̂) / (p̂(1 − p̂))
    lower, upper = expit(logit(p̂) ∓ t_{1−α/2}(df_d) · se_logit)

(R fits ``svyglm(y ~ 1, family = quasibinomial)``, whose intercept is logit(p̂) and whose sandwich
variance is exactly ``se_logit²``. R turns the t quantile into a normal "tlevel" first,
``1 − 2·Φ(t_{α/2}(df))``; for df = 1 at 95 % (t = 12.7) that rounds to 1 in double
precision and R returns the bounds 0 and NaN. We use the t quantile directly, i.e. the interval R
intends.)

``method="korn-graubard"`` — R's ``svyciprop(method = "beta")``, Korn & Graubard (1998)::

    n* = p̂(1 − p̂) / var(p̂) · ( t_{α/2}(n_d − 1) / t_{α/2}(df_d) )²
    lower = Beta⁻¹(α/2;     n*·p̂,     n*(1 − p̂) + 1)
    upper = Beta⁻¹(1 − α/2; n*·p̂ + 1, n*(1 − p̂))

where ``n_d`` is the number of eligible rows of the domain (R's ``nrow`` of the subset). ``n*`` is
not capped at ``n_d`` (R does not cap it).

When every respondent of a domain gives the same answer (p̂ = 0 or 1) the variance is 0 and both
R methods fail (NaN, or for logit a spurious interval such as [0.9999999997, 0.99999999999]).
Here both methods then use the Korn–Graubard interval with ``n*`` = the number of respondents with
positive weight (times the same t ratio), i.e. a Clopper–Pearson interval ``[(α/2)^(1/n*), 1]`` for
p̂ = 1 and ``[0, 1 − (α/2)^(1/n*)]`` for p̂ = 0, flagged ``all_same_answer`` — an honest interval
for "all 8 respondents feel safe" instead of none or a zero-width one. This is the convention of the
NCHS data presentation standards for proportions (Parker et al. 2017) and is *not* what R returns.

Other columns
-------------
``eff_n`` is Kish's effective sample size ``(Σw)² / Σw²`` of the domain's eligible respondents;
``deff`` is ``var(p̂) / (p̂(1 − p̂)/(n₊ − 1))`` with ``n₊`` respondents of positive weight, R's
``svymean(..., deff = "replace")``.

Flags (``;``-joined): ``no_respondents`` (no eligible respondent in the domain),
``zero_weight`` (respondents, but all with weight 0: value NaN), ``small_n`` (``n < min_n``),
``small_eff_n`` (``eff_n < min_eff_n``), ``no_df`` (``df_d ≤ 0``: no interval),
``all_same_answer`` (p̂ = 0 or 1, see above), ``zero_variance`` (0 < p̂ < 1 but variance 0, e.g.
all of the domain in strata dropped by ``lonely_psu="remove"``: no interval). Flagged values are
**not** suppressed here; deciding what may be published is the disclosure module's job.

Lonely PSUs (a stratum with one PSU)
------------------------------------
``lonely_psu`` follows R's ``options(survey.lonely.psu = ...)``: ``"fail"`` (R's default) raises
a :class:`~usm_geo.errors.UsmGeoError` naming the strata; ``"adjust"`` lets the single PSU
contribute ``t_hc²`` (its total centred at the overall, not the stratum, mean); ``"remove"``
lets it contribute nothing (the stratum is dropped from the variance, and the variance is not
rescaled). In survey 4.1-1 these are exactly R's results (also for domains). The check looks at
the whole design, not at each domain. One exception: a weights-only sample (no strata, no PSU) of a
single respondent gives se 0 and no interval (df 0) rather than an error (R refuses it).

Sources: Lumley, T. (2010) Complex Surveys: A Guide to Analysis Using R, ch. 2–3; R package
``survey`` 4.1-1 (``svymean``, ``svyby``, ``svyciprop``, ``degf``); Korn, E.L. & Graubard, B.I.
(1998) Confidence intervals for proportions with small expected number of positive counts
estimated from survey data. Survey Methodology 24, 193–201; Kish, L. (1965) Survey Sampling;
Parker, J.D. et al. (2017) National Center for Health Statistics Data Presentation Standards for
Proportions, Vital Health Stat 2(175).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import special, stats

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.rates import join_flags

__all__ = [
    "COLUMNS",
    "EXCLUDE_LABELS",
    "NEVER_GO_OUT_LABELS",
    "SAFE_LABELS",
    "answer_share",
    "safe_after_dark_share",
    "weighted_share",
]

COLUMNS = ["domain", "value", "se", "lower", "upper", "n", "eff_n", "deff", "df", "numerator", "denominator", "flags"]
METHODS = ("logit", "korn-graubard")
LONELY_PSU = ("fail", "adjust", "remove")

#: Default answers counted as "feels safe" for SDG 16.1.4 (standard wording: very safe / fairly
#: safe / a bit unsafe / very unsafe / I never walk alone after dark).
SAFE_LABELS = ("very safe", "fairly safe", "safe")
#: Default answers meaning "never goes out (walks) alone after dark".
NEVER_GO_OUT_LABELS = ("never go out alone after dark", "i never go out alone after dark",
                       "never walk alone after dark", "i never walk alone after dark", "never go out alone",
                       "never go out")
#: Default answers that are not answers (respondent not eligible).
EXCLUDE_LABELS = ("don't know", "refused")


# --------------------------------------------------------------------------------------------
# helpers


def _alpha(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise UsmGeoError(f"confidence level {level!r} is not between 0 and 1",
                          fix="use e.g. level=0.95 for a 95 % interval")
    return 1.0 - float(level)


def _codes(values, name: str, n: int, *, allow_missing: bool):
    """Labels → (int64 codes, category labels). Categoricals keep all their categories (so a
    domain with no respondent is listed); missing labels get code −1."""
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pd.Categorical):
        codes = np.asarray(values.codes, dtype=np.int64)
        cats = np.asarray(values.categories, dtype=object)
    else:
        arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
        codes, cats = pd.factorize(arr.reshape(-1), sort=True, use_na_sentinel=True)
        codes = np.asarray(codes, dtype=np.int64)
        cats = np.asarray(cats, dtype=object)
    if codes.shape != (n,):
        raise UsmGeoError(f"{name} has {codes.size} values but there are {n} respondents",
                          fix=f"pass one {name} value per respondent, in the same order as the answers")
    if not allow_missing and np.any(codes < 0):
        first = int(np.flatnonzero(codes < 0)[0])
        raise UsmGeoError(f"{name} is missing for {int(np.sum(codes < 0))} respondent(s) (first at position {first})",
                          fix=f"every respondent needs a {name}; fill it in from the sample design or leave {name} out")
    return codes, cats


def _pair_counts(a: np.ndarray, b: np.ndarray, nb: int, size: int) -> np.ndarray:
    """Number of distinct ``b`` values per ``a`` value (a in 0..size-1)."""
    if a.size == 0:
        return np.zeros(size, dtype=np.int64)
    keys = np.unique(a * np.int64(nb) + b)
    return np.bincount(keys // nb, minlength=size)


def _beta_ppf(q: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta quantile with R's conventions at the edges: shape a = 0 → 0, shape b = 0 → 1."""
    out = np.full(a.shape, np.nan)
    ok = np.isfinite(a) & np.isfinite(b) & (a >= 0) & (b >= 0)
    zero_a = ok & (a == 0)
    zero_b = ok & (b == 0) & ~zero_a
    inner = ok & (a > 0) & (b > 0)
    out[zero_a] = 0.0
    out[zero_b] = 1.0
    if np.any(inner):
        out[inner] = special.betaincinv(a[inner], b[inner], q)
    return out


def _t_quantile(q: float, df: np.ndarray) -> np.ndarray:
    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, np.nan)
    ok = df > 0
    if np.any(ok):
        out[ok] = stats.t.ppf(q, df[ok])
    return out


# --------------------------------------------------------------------------------------------
# main estimator


def weighted_share(yes, weight, *, eligible=None, domain=None, strata=None, psu=None,
                   level: float = 0.95, method: str = "logit", min_n: int = 30, min_eff_n: float = 30,
                   lonely_psu: str = "fail") -> pd.DataFrame:
    """Weighted share of "yes" per domain with a design-based standard error and interval.

    Parameters
    ----------
    yes : array_like of bool (or 0/1)
        The answer, one per respondent (row of the survey). Values of ineligible respondents are
        ignored (may be NaN).
    weight : array_like of float
        Design weights, finite and ≥ 0 for every row.
    eligible : array_like of bool, optional
        Respondents in the denominator (e.g. those who answered). Ineligible rows stay in the
        design (they define strata and PSUs) but are outside every domain, as with R's
        ``subset(design, eligible)``. Default: everyone.
    domain : array_like, optional
        Domain label per respondent (e.g. the ``unit_id`` they live in). One output row per
        label, sorted (a ``pd.Categorical`` gives one row per category, in category order, so
        units without respondents are listed too). Missing labels: in no domain. Default: one
        domain ``"all"``.
    strata, psu : array_like, optional
        Stratum and primary sampling unit (cluster) of every respondent. Without ``psu`` each
        respondent is their own PSU; without ``strata`` there is one stratum. PSUs are nested in
        strata.
    level : float
        Confidence level of the interval (0.95).
    method : {"logit", "korn-graubard"}
        Interval: R ``svyciprop(method="logit")`` or ``svyciprop(method="beta")``; see the
        module docstring for the formulas.
    min_n, min_eff_n : number
        Flag ``small_n`` when fewer than ``min_n`` eligible respondents, ``small_eff_n`` when the
        Kish effective sample size is below ``min_eff_n``.
    lonely_psu : {"fail", "adjust", "remove"}
        What to do with a stratum that has a single PSU (R's ``survey.lonely.psu``).

    Returns
    -------
    DataFrame with one row per domain and columns ``domain`` (label), ``value`` (Hájek share
    Σw·y/Σw), ``se``, ``lower``, ``upper``, ``n`` (eligible respondents, unweighted), ``eff_n``
    (Kish), ``deff``, ``df`` (degrees of freedom of the interval), ``numerator`` (Σw·y),
    ``denominator`` (Σw), ``flags``. Flagged values are not suppressed here: suppression is the
    disclosure module's job.

    Notes
    -----
    Equal to R 4.2.2 / survey 4.1-1 ``svymean``, ``svyby(..., svymean)`` (value, se, deff to
    ~1e-14) and ``svyby(..., svyciprop, method = "beta" | "logit")`` (bounds to ~1e-14 and ~1e-8:
    R's logit comes from an IRLS fit that stops ~1e-9 away from logit(p̂); see
    ``tests/unit/test_survey_estimates.py``), except where R returns no interval (p̂ = 0 or 1;
    logit with df = 1 at 95 %), described in the module docstring.
    """
    alpha = _alpha(level)
    if method not in METHODS:
        raise UsmGeoError(f"unknown interval method {method!r}",
                          fix='use method="logit" (R svyciprop "logit") or "korn-graubard" (R svyciprop "beta")')
    if lonely_psu not in LONELY_PSU:
        raise UsmGeoError(f"unknown lonely_psu rule {lonely_psu!r}", fix='use "fail", "adjust" or "remove" (as R survey)')

    w = np.asarray(weight, dtype=float).reshape(-1)
    n_rows = w.size
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
        raise UsmGeoError(f"{bad.size} survey weight(s) are missing, infinite or negative (first at position "
                          f"{int(bad[0])}: {w[bad[0]]!r})",
                          fix="design weights must be finite and ≥ 0; give a respondent who should not count weight 0")

    if eligible is None:
        elig = np.ones(n_rows, dtype=bool)
    else:
        elig = np.asarray(eligible, dtype=bool).reshape(-1)
        if elig.size != n_rows:
            raise UsmGeoError(f"eligible has {elig.size} values but there are {n_rows} weights",
                              fix="pass one eligible flag per respondent")

    y_raw = np.asarray(yes).reshape(-1)
    if y_raw.size != n_rows:
        raise UsmGeoError(f"yes has {y_raw.size} values but there are {n_rows} weights",
                          fix="pass one answer per respondent, in the same order as the weights")
    if y_raw.dtype == bool:
        y = y_raw.astype(float)
    else:
        try:
            y = y_raw.astype(float)
        except (TypeError, ValueError):
            y = pd.to_numeric(pd.Series(y_raw, dtype=object), errors="coerce").to_numpy(dtype=float)
        bad = elig & ~np.isin(y, (0.0, 1.0))
        if np.any(bad):
            first = int(np.flatnonzero(bad)[0])
            raise UsmGeoError(f"yes must be True/False (or 1/0) for every eligible respondent; position {first} "
                              f"holds {y_raw[first]!r}",
                              fix="mark respondents without a usable answer as not eligible, or use answer_share()")

    if domain is None:
        d, labels = np.zeros(n_rows, dtype=np.int64), np.array(["all"], dtype=object)
    else:
        d, labels = _codes(domain, "domain", n_rows, allow_missing=True)
    if strata is None:
        h, H = np.zeros(n_rows, dtype=np.int64), 1
    else:
        h, s_labels = _codes(strata, "strata", n_rows, allow_missing=False)
        H = max(len(s_labels), 1)
    if psu is None:
        c = np.arange(n_rows, dtype=np.int64)
    else:
        p_codes, _ = _codes(psu, "psu", n_rows, allow_missing=False)
        c = pd.factorize(h * np.int64(max(int(p_codes.max(initial=0)) + 1, 1)) + p_codes, sort=True)[0].astype(np.int64)
    C = int(c.max(initial=-1)) + 1
    D = len(labels)

    # design structure from every row: stratum of each PSU and PSUs per stratum (n_h)
    psu_stratum = np.zeros(C, dtype=np.int64)
    psu_stratum[c] = h
    n_h = np.bincount(psu_stratum, minlength=H).astype(float)
    # A weights-only sample of one respondent is one PSU in one stratum; R refuses it, we let it
    # add no variance (its z is 0 anyway): se 0 and, with df 0, no interval.
    lonely = (n_h == 1) & (strata is not None or psu is not None)
    if lonely_psu == "fail" and np.any(lonely):
        names = [str(s_labels[i]) for i in np.flatnonzero(lonely)[:5]] if strata is not None else ["(the only stratum)"]
        more = f" and {int(lonely.sum()) - 5} more" if lonely.sum() > 5 else ""
        raise UsmGeoError(f"{int(lonely.sum())} stratum/strata have a single PSU, so their variance cannot be "
                          f"estimated: {', '.join(names)}{more}",
                          fix='merge each such stratum with a similar one (the usual survey practice), or pass '
                              'lonely_psu="adjust" (centre it at the overall mean; R survey.lonely.psu="adjust") '
                              'or lonely_psu="remove" (it adds no variance; R "remove")')

    # domain totals (rows outside every domain or not eligible get code −1)
    inside = elig & (d >= 0)
    di = d[inside]
    wi, yi = w[inside], y[inside]
    yi = np.where(np.isfinite(yi), yi, 0.0)
    n = np.bincount(di, minlength=D)
    n_pos = np.bincount(di[wi > 0], minlength=D)
    W = np.bincount(di, weights=wi, minlength=D)
    Y = np.bincount(di, weights=wi * yi, minlength=D)
    W2 = np.bincount(di, weights=wi * wi, minlength=D)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(W > 0, Y / W, np.nan)
        eff_n = np.where(W > 0, W * W / W2, 0.0)
        z = np.where(W[di] > 0, wi * (yi - p[di]) / W[di], 0.0)

    # PSU totals per domain, then per domain × stratum: Σ_c (t − t̄)² over all n_h PSUs,
    # the PSUs without a respondent of the domain counting as t = 0.
    ci = c[inside]
    key, inv = np.unique(di * np.int64(C) + ci, return_inverse=True)
    t = np.bincount(inv.reshape(-1), weights=z, minlength=key.size)
    pair_d, pair_h = key // C, psu_stratum[key % C]
    key2, inv2 = np.unique(pair_d * np.int64(H) + pair_h, return_inverse=True)
    inv2 = inv2.reshape(-1)
    s1 = np.bincount(inv2, weights=t, minlength=key2.size)
    k = np.bincount(inv2, minlength=key2.size)
    dh_d, dh_h = key2 // H, key2 % H
    nh = n_h[dh_h]
    mean = s1 / nh
    ss = np.bincount(inv2, weights=(t - mean[inv2]) ** 2, minlength=key2.size) + (nh - k) * mean ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        contrib = np.where(nh > 1, nh / (nh - 1) * ss, 0.0)
    if lonely_psu == "adjust":
        contrib = np.where(nh == 1, s1 ** 2, contrib)  # single PSU, not centred
    var = np.bincount(dh_d, weights=contrib, minlength=D)
    var[~(W > 0)] = np.nan
    se = np.sqrt(var)

    # degrees of freedom: PSUs − strata among the domain's respondents with positive weight
    pos = wi > 0
    df = (_pair_counts(di[pos], ci[pos], C, D) - _pair_counts(di[pos], h[inside][pos], H, D)).astype(float)

    with np.errstate(divide="ignore", invalid="ignore"):
        pq = p * (1.0 - p)
        deff = np.where(n_pos > 1, var / (pq / (n_pos - 1)), np.nan)
        deff[~np.isfinite(deff)] = np.nan
    has_value = W > 0
    boundary = has_value & ((p == 0.0) | (p == 1.0))
    zero_var = has_value & ~boundary & (var <= 0)
    interior = has_value & ~boundary & (var > 0)
    no_df = has_value & (df <= 0)

    lower = np.full(D, np.nan)
    upper = np.full(D, np.nan)
    ok = interior & ~no_df
    t_hi = _t_quantile(1.0 - alpha / 2.0, df)
    if method == "logit":
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = special.logit(p)
            half = t_hi * se / pq
        lower[ok] = special.expit(lg[ok] - half[ok])
        upper[ok] = special.expit(lg[ok] + half[ok])
    # Korn–Graubard n* (used by "korn-graubard", and by both methods at p̂ = 0 or 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (_t_quantile(alpha / 2.0, n.astype(float) - 1.0) / _t_quantile(alpha / 2.0, df)) ** 2
        n_star = np.where(boundary, n_pos.astype(float), pq / var) * ratio
    kg = (ok if method == "korn-graubard" else np.zeros(D, dtype=bool)) | (boundary & ~no_df)
    if np.any(kg):
        ns, pk = n_star[kg], p[kg]
        lower[kg] = _beta_ppf(alpha / 2.0, ns * pk, ns * (1.0 - pk) + 1.0)
        upper[kg] = _beta_ppf(1.0 - alpha / 2.0, ns * pk + 1.0, ns * (1.0 - pk))

    flags = join_flags(
        ("no_respondents", n == 0),
        ("zero_weight", (n > 0) & ~has_value),
        ("small_n", n < min_n),
        ("small_eff_n", eff_n < min_eff_n),
        ("no_df", no_df),
        ("all_same_answer", boundary),
        ("zero_variance", zero_var),
    )
    return pd.DataFrame({
        "domain": labels,
        "value": p,
        "se": se,
        "lower": lower,
        "upper": upper,
        "n": n.astype(np.int64),
        "eff_n": eff_n,
        "deff": deff,
        "df": np.where(has_value, df, np.nan),
        "numerator": Y,
        "denominator": W,
        "flags": flags,
    }, columns=COLUMNS)


# --------------------------------------------------------------------------------------------
# categorical answers


def _norm(values: Iterable) -> set[str]:
    return {_norm_text(v) for v in values}


def _norm_text(value) -> str:
    return str(value).replace("\u2019", "'").replace("\u2018", "'").strip().casefold()


def answer_share(answers, weight, yes_labels, *, exclude_labels=frozenset(), no_labels=None,
                 missing: str = "exclude", **kwargs) -> pd.DataFrame:
    """Weighted share of respondents whose answer is one of ``yes_labels``.

    Labels are compared as text, ignoring case, surrounding spaces and curly apostrophes
    (``"Don’t know "`` matches ``"don't know"``).

    Parameters
    ----------
    answers : array_like
        One answer per respondent; ``None``/NaN is a missing answer.
    weight : array_like of float
        Design weights.
    yes_labels : set of str
        Answers counted in the numerator (e.g. ``{"very safe", "safe"}``; ``{"yes"}``).
    exclude_labels : set of str
        Answers that are not answers (e.g. ``{"don't know", "refused"}``): those respondents are
        not eligible (in neither numerator nor denominator).
    no_labels : set of str, optional
        If given, the answers counted as "no"; any other answer raises a
        :class:`~usm_geo.errors.UsmGeoError` listing it (a guard against typos and unexpected
        codes being counted as "no"). Default: every other answer counts as "no".
    missing : {"exclude", "no", "raise"}
        Missing answers: not eligible (default), counted as "no", or an error.
    **kwargs
        Passed to :func:`weighted_share` (``domain``, ``strata``, ``psu``, ``eligible`` — combined
        with the rules above by AND —, ``level``, ``method``, ``min_n``, ``min_eff_n``,
        ``lonely_psu``).
    """
    if missing not in ("exclude", "no", "raise"):
        raise UsmGeoError(f"unknown missing-answer rule {missing!r}", fix='use missing="exclude", "no" or "raise"')
    if isinstance(answers, pd.Series):
        answers = answers.to_numpy(dtype=object)
    a = np.asarray(answers, dtype=object).reshape(-1)
    is_missing = pd.isna(pd.Series(a, dtype=object)).to_numpy()
    text = pd.Series(a, dtype=object).astype(str).str.replace("\u2019", "'").str.replace("\u2018", "'") \
        .str.strip().str.casefold().to_numpy(dtype=object)
    yes_set, excl_set = _norm(yes_labels), _norm(exclude_labels)
    if not yes_set:
        raise UsmGeoError("no yes answers given", fix="pass yes_labels, e.g. {'very safe', 'safe'}")
    clash = yes_set & excl_set
    if clash:
        raise UsmGeoError(f"answer(s) {sorted(clash)} are both yes and excluded", fix="list each answer once")
    if missing == "raise" and np.any(is_missing):
        first = int(np.flatnonzero(is_missing)[0])
        raise UsmGeoError(f"{int(is_missing.sum())} respondent(s) have no answer (first at position {first})",
                          fix='pass missing="exclude" to leave them out of the denominator, or missing="no"')
    is_yes = ~is_missing & np.isin(text, list(yes_set))
    is_excl = ~is_missing & np.isin(text, list(excl_set))
    if no_labels is not None:
        known = yes_set | excl_set | _norm(no_labels)
        unknown = ~is_missing & ~np.isin(text, list(known))
        if np.any(unknown):
            odd = sorted(set(a[unknown].astype(str)))
            raise UsmGeoError(f"{int(unknown.sum())} answer(s) are neither yes, no nor excluded: "
                              f"{', '.join(repr(x) for x in odd[:10])}{' …' if len(odd) > 10 else ''}",
                              fix="add these answers to the yes, no or exclude labels")
    eligible = ~is_excl & ~(is_missing if missing == "exclude" else np.zeros(a.size, dtype=bool))
    extra = kwargs.pop("eligible", None)
    if extra is not None:
        extra = np.asarray(extra, dtype=bool).reshape(-1)
        if extra.size != a.size:
            raise UsmGeoError(f"eligible has {extra.size} values but there are {a.size} answers",
                              fix="pass one eligible flag per respondent")
        eligible &= extra
    return weighted_share(is_yes, weight, eligible=eligible, **kwargs)


def safe_after_dark_share(answers, weight, *, never_go_out: str = "unsafe", safe_labels=SAFE_LABELS,
                          never_labels=NEVER_GO_OUT_LABELS, exclude_labels=EXCLUDE_LABELS, unsafe_labels=None,
                          **kwargs) -> pd.DataFrame:
    """SDG 16.1.4: weighted share of residents who feel safe walking alone in their area after dark.

    Numerator: "very safe" + "fairly safe"/"safe" (``safe_labels``). Denominator: everyone who
    answered, *including* those who answer that they never go out (walk) alone after dark
    (``never_labels``), who are counted as not feeling safe — ``never_go_out="unsafe"``, the
    default, which is our reading of the UNODC metadata for indicator 16.1.4 (not checked against
    its current text here; check it if it matters for your report). ``never_go_out="exclude"``
    drops them from the denominator instead (as some national surveys do), which raises the share.
    ``exclude_labels`` ("don't know", "refused") and missing answers are never in the
    denominator.

    ``unsafe_labels``, if given, are the answers counted as not safe; any answer outside all
    listed labels then raises an error instead of silently counting as "not safe".
    Other keyword arguments go to :func:`answer_share` / :func:`weighted_share`.
    """
    if never_go_out not in ("unsafe", "exclude"):
        raise UsmGeoError(f"unknown never_go_out rule {never_go_out!r}",
                          fix='use never_go_out="unsafe" (SDG 16.1.4: in the denominator) or "exclude"')
    safe, never = _norm(safe_labels), _norm(never_labels)
    excl = _norm(exclude_labels)
    if safe & never:
        raise UsmGeoError(f"answer(s) {sorted(safe & never)} are both safe and never-go-out", fix="list each answer once")
    if never_go_out == "exclude":
        excl = excl | never
        no = None if unsafe_labels is None else _norm(unsafe_labels)
    else:
        excl = excl - never
        no = None if unsafe_labels is None else _norm(unsafe_labels) | never
    return answer_share(answers, weight, safe, exclude_labels=excl, no_labels=no, **kwargs)
