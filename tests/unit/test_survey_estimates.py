"""Weighted survey shares (usm_geo.indicators.survey) against R's survey package.

Reference: R 4.2.2 Patched (2022-11-10 r83330), survey 4.1-1 (Debian r-cran-survey), run once by
hand on the 55 respondents in ``ROWS`` below (written to data.csv with columns
``stratum,psu,w,answer,dom``; a missing answer as an empty field). The numbers are pasted as
literals; CI never runs R. Tolerances: 1e-8 relative for value, se and deff; 1e-6 relative for
interval bounds. Measured: value/se/deff ≤ 4e-15 relative; Korn–Graubard bounds ≤ 3e-14; logit
bounds ≤ 1e-8 (R's svyglm intercept stops its IRLS iterations ~3e-9 away from logit(p̂), e.g.
domain C: -0.44290790247 vs qlogis(p̂) = -0.44290790559; we use the closed form).

R script::

    library(survey)
    d <- read.csv("data.csv", stringsAsFactors = FALSE)
    d$y <- as.numeric(d$answer %in% c("very safe", "safe"))
    d$eligible <- !(d$answer %in% c("", "don't know"))
    f <- function(x) paste(sprintf("%.15g", x), collapse = ", ")
    designs <- list(
      a = svydesign(ids = ~1, weights = ~w, data = d),
      b = svydesign(ids = ~psu, strata = ~stratum, weights = ~w, data = d, nest = TRUE))
    for (nm in names(designs)) {
      de <- subset(designs[[nm]], eligible)
      m <- svymean(~y, de, deff = "replace")
      cat(nm, "all: value, se, deff =", f(c(coef(m), SE(m), deff(m))), "\\n")
      cat(nm, "all: logit =", f(attr(svyciprop(~y, de, method = "logit"), "ci")),
          " beta =", f(attr(svyciprop(~y, de, method = "beta"), "ci")), "\\n")
      b <- svyby(~y, ~dom, de, svymean, deff = "replace")
      bl <- svyby(~y, ~dom, de, svyciprop, vartype = "ci", method = "logit")
      bb <- svyby(~y, ~dom, de, svyciprop, vartype = "ci", method = "beta")
      for (i in seq_len(nrow(b))) {
        g <- b$dom[i]
        s <- subset(de, dom == g)
        # the logit interval R intends: expit(logit(p) -/+ qt(0.975, degf) * SE(logit));
        # svyciprop itself returns (0, NaN) when 1 - 2 * pnorm(qt(0.025, df)) rounds to 1 (df = 1)
        fit <- svyglm(y ~ 1, s, family = quasibinomial)
        manual <- plogis(coef(fit) + c(-1, 1) * qt(0.975, degf(s)) * SE(fit))
        cat(nm, g, ": value, se, deff =", f(c(b$y[i], b$se[i], b$DEff.y[i])), "| degf", degf(s),
            "nrow", nrow(s), "| logit", f(c(bl$ci_l[i], bl$ci_u[i])), "| logit-t", f(manual),
            "| beta", f(c(bb$ci_l[i], bb$ci_u[i])), "\\n")
      }
    }
    d2 <- d; d2$psu[d2$stratum == "S4"] <- 1          # stratum S4 now has a single PSU
    for (lp in c("adjust", "remove")) {
      options(survey.lonely.psu = lp)
      de <- subset(svydesign(ids = ~psu, strata = ~stratum, weights = ~w, data = d2, nest = TRUE), eligible)
      cat("lonely", lp, ": se all", f(SE(svymean(~y, de))), "| se by dom", f(svyby(~y, ~dom, de, svymean)$se), "\\n")
    }
    # with the default options(survey.lonely.psu = "fail"):
    #   Error in onestrat(...): Stratum (S4) has only one PSU at stage 1
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from usm_geo.errors import UsmGeoError
from usm_geo.indicators.survey import (
    answer_share,
    safe_after_dark_share,
    weighted_share,
)

# stratum, psu, weight, answer, domain. Domain D: everyone who answered feels safe (p = 1);
# domain E: one respondent; one respondent of A has weight 0; PSU labels repeat across strata.
ROWS = [
    ("S1", 1, 2.55, "never go out alone", "C"),
    ("S1", 1, 0.89, "very unsafe", "A"),
    ("S1", 1, 3.78, "unsafe", "B"),
    ("S1", 1, 2.28, "unsafe", "A"),
    ("S1", 1, 1.50, "very unsafe", "B"),
    ("S1", 2, 3.46, "unsafe", "A"),
    ("S1", 2, 3.77, "unsafe", "A"),
    ("S1", 2, 3.73, "don't know", "A"),
    ("S1", 2, 3.60, "safe", "A"),
    ("S1", 2, 0.91, "safe", "D"),
    ("S1", 3, 1.63, "safe", "A"),
    ("S1", 3, 1.02, "safe", "C"),
    ("S1", 3, 3.97, "unsafe", "B"),
    ("S1", 3, 2.26, "safe", "A"),
    ("S1", 3, 2.01, "unsafe", "A"),
    ("S1", 3, 1.60, "very unsafe", "A"),
    ("S2", 1, 2.92, "never go out alone", "B"),
    ("S2", 1, 2.20, "safe", "B"),
    ("S2", 1, 0.62, "very safe", "A"),
    ("S2", 1, 2.82, "safe", "B"),
    ("S2", 1, 3.82, None, "B"),
    ("S2", 1, 3.15, "very safe", "A"),
    ("S2", 1, 1.37, "very safe", "D"),
    ("S2", 2, 1.83, "very unsafe", "B"),
    ("S2", 2, 3.29, "never go out alone", "B"),
    ("S2", 2, 3.01, "safe", "A"),
    ("S2", 2, 1.63, "safe", "B"),
    ("S2", 2, 1.99, None, "B"),
    ("S2", 2, 2.40, "don't know", "D"),
    ("S3", 1, 1.73, "very safe", "A"),
    ("S3", 1, 2.41, "unsafe", "A"),
    ("S3", 1, 1.54, "very safe", "A"),
    ("S3", 1, 2.47, "safe", "A"),
    ("S3", 1, 3.34, "unsafe", "A"),
    ("S3", 1, 2.94, "unsafe", "A"),
    ("S3", 2, 2.30, "safe", "C"),
    ("S3", 2, 1.88, "unsafe", "B"),
    ("S3", 2, 1.90, "unsafe", "A"),
    ("S3", 2, 0.98, "unsafe", "B"),
    ("S3", 2, 0.00, "safe", "A"),
    ("S3", 3, 3.49, "safe", "B"),
    ("S3", 3, 1.24, None, "A"),
    ("S3", 3, 3.39, "never go out alone", "A"),
    ("S3", 3, 2.60, "unsafe", "A"),
    ("S3", 3, 1.46, "very safe", "D"),
    ("S4", 1, 2.22, "unsafe", "B"),
    ("S4", 1, 2.73, "safe", "B"),
    ("S4", 1, 2.92, "safe", "A"),
    ("S4", 1, 1.51, "safe", "B"),
    ("S4", 1, 1.88, "unsafe", "E"),
    ("S4", 2, 1.19, "safe", "B"),
    ("S4", 2, 2.30, "safe", "A"),
    ("S4", 2, 2.62, "never go out alone", "C"),
    ("S4", 2, 2.54, "don't know", "C"),
    ("S4", 2, 2.05, "safe", "D"),
]
STRATUM, PSU, WEIGHT, ANSWER, DOMAIN = (list(col) for col in zip(*ROWS))
NEVER = {"never go out alone"}
NAN = math.nan

# --- R output (see the module docstring) -----------------------------------------------------
# value, se, deff (svymean / svyby(svymean, deff = "replace")), degf and nrow of the subset,
# svyciprop logit and beta bounds (for design b, domain C, "logit" holds R's manual t-based
# logit interval: svyciprop itself returns (0, NaN) there).
R = {
    "a": {
        "all": {"value": 0.45405749636099, "se": 0.0769105797697343, "deff": 1.12153355341556, "df": 47, "n": 49,
            "logit": (0.308219590354267, 0.608229586210404), "beta": (0.299715423324304, 0.615141771994792)},
        "A": {"value": 0.451988534575421, "se": 0.110349094441755, "deff": 1.08154144089758, "df": 22, "n": 24,
            "logit": (0.246650230146901, 0.675086002605888), "beta": (0.233396293888253, 0.685101571589933)},
        "B": {"value": 0.410384818133896, "se": 0.131209656398977, "deff": 1.06724200948103, "df": 15, "n": 16,
            "logit": (0.179731146067692, 0.688565300944534), "beta": (0.164072793701303, 0.695293793144627)},
        "C": {"value": 0.391048292108363, "se": 0.249105517582764, "deff": 0.781762263200546, "df": 3, "n": 4,
            "logit": (0.0224877258181219, 0.947161293650168), "beta": (0.0297931996464831, 0.891795944482669)},
        # R: logit (0.999999999712864, 0.99999999998854) — a spurious interval from a glm that has
        # not converged at p = 1; beta (NaN, NaN). We differ on purpose (see test_all_yes_domain_*).
        "D": {"value": 1.0, "se": 0.0, "deff": NAN, "df": 3, "n": 4},
        # R: logit (NaN, NaN), beta (NaN, NaN): one respondent, degf 0.
        "E": {"value": 0.0, "se": 0.0, "deff": NAN, "df": 0, "n": 1},
    },
    "b": {
        "all": {"value": 0.45405749636099, "se": 0.0534622636240919, "deff": 0.541919510391444, "df": 6, "n": 49,
            "logit": (0.329153724174197, 0.585024795654798), "beta": (0.323400639719137, 0.589519144596882)},
        "A": {"value": 0.451988534575421, "se": 0.0485437552893847, "deff": 0.209301507932148, "df": 6, "n": 24,
            "logit": (0.338006590249906, 0.571239829074138), "beta": (0.336779375851026, 0.571099279947512)},
        "B": {"value": 0.410384818133896, "se": 0.12093766840909, "deff": 0.906680965520289, "df": 4, "n": 16,
            "logit": (0.148039719338727, 0.736005576533084), "beta": (0.125152651802337, 0.749855424094017)},
        # R svyciprop logit: (0, NaN) — 1 - 2*pnorm(qt(0.025, 1)) rounds to 1; "logit" here is the
        # interval R intends, expit(logit(p) -/+ qt(0.975, 1) * SE(logit)), computed in R.
        "C": {"value": 0.391048292108363, "se": 0.263663008214502, "deff": 0.875802970664068, "df": 1, "n": 4,
            "logit": (4.9856178719061e-07, 0.99999879100753),
            "beta": (7.14165222162748e-20, 0.999999999999493)},
        "D": {"value": 1.0, "se": 0.0, "deff": NAN, "df": 0, "n": 4},  # R: NaN intervals (degf 0)
        "E": {"value": 0.0, "se": 0.0, "deff": NAN, "df": 0, "n": 1},  # R: NaN intervals
    },
}
R_LONELY = {  # stratum S4 with a single PSU
    "adjust": {"all": 0.0640458550601536,
               "dom": [0.0703258432802529, 0.133131210935804, 0.263663008214502, 0.0, 0.0]},
    "remove": {"all": 0.0534273247289856,
               "dom": [0.0481606335287246, 0.118654986439791, 0.234425420588877, 0.0, 0.0]},
}
REL_EST, REL_CI = 1e-8, 1e-6
DESIGNS = {"a": {}, "b": {"strata": STRATUM, "psu": PSU}}


def _share(design: str, *, by_domain: bool, method: str = "logit", **kwargs) -> pd.DataFrame:
    frame = safe_after_dark_share(ANSWER, WEIGHT, never_labels=NEVER, method=method,
                                  domain=DOMAIN if by_domain else None, **DESIGNS[design], **kwargs)
    return frame.set_index("domain")


def _close(actual, expected, rel):
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, rel=rel, abs=0 if expected else 1e-15)


@pytest.mark.parametrize("design", ["a", "b"])
@pytest.mark.parametrize("by_domain", [False, True])
def test_value_se_deff_df_match_r(design, by_domain):
    frame = _share(design, by_domain=by_domain)
    keys = ["A", "B", "C", "D", "E"] if by_domain else ["all"]
    assert list(frame.index) == keys
    for key in keys:
        ref, row = R[design][key], frame.loc[key]
        for col in ("value", "se", "deff"):
            assert _close(row[col], ref[col], REL_EST), (design, key, col, row[col], ref[col])
        assert row["df"] == ref["df"] and row["n"] == ref["n"], (design, key)


@pytest.mark.parametrize("design", ["a", "b"])
@pytest.mark.parametrize("method,ref_key", [("logit", "logit"), ("korn-graubard", "beta")])
def test_intervals_match_r(design, method, ref_key):
    for by_domain in (False, True):
        frame = _share(design, by_domain=by_domain, method=method)
        for key in frame.index:
            ref = R[design][key]
            if ref_key not in ref:
                continue
            row = frame.loc[key]
            assert _close(row["lower"], ref[ref_key][0], REL_CI), (design, method, key, row["lower"])
            assert _close(row["upper"], ref[ref_key][1], REL_CI), (design, method, key, row["upper"])


def test_domain_variance_uses_full_design_not_subset():
    """Subsetting to domain B (which misses PSU 2 of S1 and PSU 1 of S3) before estimating
    (wrong: n_h shrinks) gives another se than R's svyby."""
    full = _share("b", by_domain=True).loc["B", "se"]
    keep = np.array(DOMAIN) == "B"
    sub = safe_after_dark_share(np.array(ANSWER, dtype=object)[keep], np.array(WEIGHT)[keep], never_labels=NEVER,
                                strata=np.array(STRATUM)[keep], psu=np.array(PSU)[keep])
    assert full == pytest.approx(R["b"]["B"]["se"], rel=REL_EST)
    assert abs(sub["se"].iloc[0] - full) > 1e-3


def test_kish_effective_n_by_hand():
    # Domain C, eligible: weights 2.55 (never goes out → not safe), 1.02 (safe), 2.30 (safe),
    # 2.62 (never goes out → not safe); 2.54 said "don't know" and is not eligible.
    # Σw = 8.49, Σw² = 6.5025 + 1.0404 + 5.29 + 6.8644 = 19.6973, eff_n = 8.49² / 19.6973.
    row = _share("a", by_domain=True).loc["C"]
    assert row["eff_n"] == pytest.approx(72.0801 / 19.6973, rel=1e-12)  # 3.65939...
    assert row["value"] == pytest.approx(3.32 / 8.49, rel=1e-12)
    assert row["numerator"] == pytest.approx(3.32) and row["denominator"] == pytest.approx(8.49)
    assert row["n"] == 4
    # equal weights: eff_n = n
    out = weighted_share(np.array([1, 0, 1, 1, 0], bool), np.full(5, 2.5))
    assert out["eff_n"].iloc[0] == pytest.approx(5.0)


def test_all_yes_domain_gets_clopper_pearson_not_r_nan():
    """p = 1: R gives NaN (beta) or a spurious logit interval; we give [(α/2)^(1/n), 1], flagged."""
    for method in ("logit", "korn-graubard"):
        row = _share("a", by_domain=True, method=method).loc["D"]
        assert row["value"] == 1.0 and row["se"] == 0.0
        # 4 respondents of positive weight, df 3, nrow 4: t ratio = 1, n* = 4
        assert row["lower"] == pytest.approx(0.025 ** (1 / 4), rel=1e-12)
        assert row["upper"] == 1.0
        assert "all_same_answer" in row["flags"].split(";")
    # p = 0 mirrors it
    out = weighted_share(np.zeros(6, bool), np.arange(1.0, 7.0))
    assert out["lower"].iloc[0] == 0.0
    assert out["upper"].iloc[0] == pytest.approx(1 - 0.025 ** (1 / 6), rel=1e-12)
    # design b: D has degf 0 → no interval, as in R
    row = _share("b", by_domain=True).loc["D"]
    assert math.isnan(row["lower"]) and math.isnan(row["upper"])
    assert set(row["flags"].split(";")) >= {"no_df", "all_same_answer"}


def test_one_respondent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = weighted_share([True], [3.0])
    row = out.iloc[0]
    assert row["domain"] == "all" and row["value"] == 1.0 and row["se"] == 0.0 and row["n"] == 1
    assert math.isnan(row["lower"]) and math.isnan(row["upper"])  # as R: degf 0
    assert set(row["flags"].split(";")) == {"small_n", "small_eff_n", "no_df", "all_same_answer"}
    row = _share("b", by_domain=True).loc["E"]
    assert row["value"] == 0.0 and row["n"] == 1 and math.isnan(row["lower"])


def test_zero_weight_domain_and_unused_categories_without_warnings():
    dom = pd.Categorical(["x", "x", "y", "y", "y", "z"], categories=["w", "x", "y", "z"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = weighted_share(np.array([1, 0, 1, 1, 0, 1], bool), np.array([0.0, 0.0, 1.0, 2.0, 1.5, 1.0]),
                             domain=dom, method="korn-graubard").set_index("domain")
    assert list(out.index) == ["w", "x", "y", "z"]
    for key, flag in (("w", "no_respondents"), ("x", "zero_weight")):
        row = out.loc[key]
        assert math.isnan(row["value"]) and math.isnan(row["se"]) and math.isnan(row["lower"])
        assert flag in row["flags"].split(";") and "small_n" in row["flags"]
        assert row["eff_n"] == 0.0
    assert out.loc["w", "n"] == 0 and out.loc["x", "n"] == 2
    assert out.loc["y", "value"] == pytest.approx(3.0 / 4.5)
    assert out.loc["y", "flags"] == "small_n;small_eff_n"


def test_small_values_are_flagged_not_suppressed():
    out = _share("a", by_domain=True, min_n=20, min_eff_n=10)
    row = out.loc["A"]  # n 24, eff_n ~ 21
    assert "small_n" not in row["flags"] and "small_eff_n" not in row["flags"]
    row = out.loc["B"]  # n 16
    assert "small_n" in row["flags"] and not math.isnan(row["value"]) and not math.isnan(row["lower"])


def test_lonely_psu_matches_r_or_raises():
    psu = [1 if s == "S4" else p for s, p in zip(STRATUM, PSU)]
    for rule, ref in R_LONELY.items():
        overall = safe_after_dark_share(ANSWER, WEIGHT, never_labels=NEVER, strata=STRATUM, psu=psu, lonely_psu=rule)
        by = safe_after_dark_share(ANSWER, WEIGHT, never_labels=NEVER, strata=STRATUM, psu=psu, lonely_psu=rule,
                                   domain=DOMAIN)
        assert overall["se"].iloc[0] == pytest.approx(ref["all"], rel=REL_EST)
        np.testing.assert_allclose(by["se"].to_numpy(), ref["dom"], rtol=REL_EST, atol=1e-15)
    with pytest.raises(UsmGeoError, match="S4") as info:
        safe_after_dark_share(ANSWER, WEIGHT, never_labels=NEVER, strata=STRATUM, psu=psu)
    assert "lonely_psu" in str(info.value)


def test_never_go_out_rule():
    unsafe = safe_after_dark_share(ANSWER, WEIGHT, never_labels=NEVER).iloc[0]
    excluded = safe_after_dark_share(ANSWER, WEIGHT, never_labels=NEVER, never_go_out="exclude").iloc[0]
    answers = np.array(ANSWER, dtype=object)
    w = np.array(WEIGHT)
    yes = np.isin(answers, ["very safe", "safe"])
    answered = (answers != None) & (answers != "don't know")
    never = answers == "never go out alone"
    assert unsafe["value"] == pytest.approx(w[yes].sum() / w[answered].sum(), rel=1e-12)
    assert excluded["value"] == pytest.approx(w[yes].sum() / w[answered & ~never].sum(), rel=1e-12)
    assert excluded["n"] == unsafe["n"] - never.sum()
    direct = weighted_share(yes, w, eligible=answered & ~never).iloc[0]
    assert excluded["se"] == pytest.approx(direct["se"], rel=1e-12)
    with pytest.raises(UsmGeoError):
        safe_after_dark_share(ANSWER, WEIGHT, never_go_out="drop")


def test_answer_share_labels_and_missing():
    answers = ["Yes", " yes ", "No", "Don\u2019t know", None, float("nan"), "no"]
    w = np.ones(len(answers))
    out = answer_share(answers, w, {"yes"}, exclude_labels={"don't know"}).iloc[0]
    assert out["n"] == 4 and out["value"] == pytest.approx(0.5)
    out = answer_share(answers, w, {"yes"}, exclude_labels={"don't know"}, missing="no").iloc[0]
    assert out["n"] == 6 and out["value"] == pytest.approx(2 / 6)
    with pytest.raises(UsmGeoError, match="no answer"):
        answer_share(answers, w, {"yes"}, missing="raise")
    with pytest.raises(UsmGeoError, match="'Nope'"):
        answer_share(["yes", "Nope", "no"], np.ones(3), {"yes"}, no_labels={"no"})
    out = answer_share(answers, w, {"yes"}, exclude_labels={"don't know"}, eligible=[True] * 6 + [False]).iloc[0]
    assert out["n"] == 3


def test_input_errors():
    with pytest.raises(UsmGeoError, match="negative"):
        weighted_share([True, False], [1.0, -1.0])
    with pytest.raises(UsmGeoError, match="missing"):
        weighted_share([True, False], [1.0, float("nan")])
    with pytest.raises(UsmGeoError, match="method"):
        weighted_share([True, False], [1.0, 1.0], method="wilson")
    with pytest.raises(UsmGeoError, match="True/False"):
        weighted_share([1.0, 0.5], [1.0, 1.0])
    with pytest.raises(UsmGeoError, match="domain has 2 values"):
        weighted_share([True, False, True], [1.0, 1.0, 1.0], domain=["a", "b"])
    with pytest.raises(UsmGeoError, match="yes has 2 values"):
        weighted_share([True, False], [1.0, 1.0, 1.0])
    with pytest.raises(UsmGeoError, match="strata is missing"):
        weighted_share([True, False], [1.0, 1.0], strata=["s", None])
    with pytest.raises(UsmGeoError, match="between 0 and 1"):
        weighted_share([True, False], [1.0, 1.0], level=95)
    # yes of an ineligible respondent is ignored, even if NaN
    out = weighted_share([1.0, float("nan"), 0.0], [1.0, 1.0, 1.0], eligible=[True, False, True])
    assert out["value"].iloc[0] == 0.5 and out["n"].iloc[0] == 2


def _loop_reference(y, w, dom, strata, psu):
    """Plain per-domain / per-stratum loops of the documented formula (zeros outside the domain)."""
    out = {}
    for g in sorted(set(dom)):
        inside = dom == g
        p = (w * y)[inside].sum() / w[inside].sum()
        z = np.where(inside, w * (y - p) / w[inside].sum(), 0.0)
        var = 0.0
        for s in sorted(set(strata)):
            totals = [z[(strata == s) & (psu == c)].sum() for c in sorted(set(psu[strata == s]))]
            nh = len(totals)
            var += nh / (nh - 1) * sum((t - np.mean(totals)) ** 2 for t in totals)
        out[g] = (p, math.sqrt(var))
    return out


def test_random_design_matches_loop_reference():
    rng = np.random.default_rng(7)
    n = 400
    strata = rng.integers(0, 5, n)
    psu = rng.integers(0, 4, n)  # nested: (stratum, psu) pairs, 20 PSUs
    w = rng.gamma(2.0, 1.5, n)
    y = rng.random(n) < 0.35
    dom = rng.choice(np.array(["n1", "n2", "n3", "n4", "n5", "n6"]), n)
    ref = _loop_reference(y.astype(float), w, dom, strata, psu)
    out = weighted_share(y, w, domain=dom, strata=strata, psu=psu).set_index("domain")
    for g, (p, se) in ref.items():
        assert out.loc[g, "value"] == pytest.approx(p, rel=1e-12)
        assert out.loc[g, "se"] == pytest.approx(se, rel=1e-10)


def test_large_input_is_fast():
    rng = np.random.default_rng(1)
    n = 300_000
    strata = rng.integers(0, 60, n)
    psu = rng.integers(0, 8, n)
    dom = rng.integers(0, 5_000, n)
    started = time.perf_counter()
    out = weighted_share(rng.random(n) < 0.6, rng.gamma(2.0, 1.0, n), domain=dom, strata=strata, psu=psu,
                         method="korn-graubard")
    elapsed = time.perf_counter() - started
    assert len(out) == 5_000 and out["value"].notna().all() and out["lower"].notna().all()
    assert elapsed < 5.0, f"{elapsed:.2f} s"
