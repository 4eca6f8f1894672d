"""`usm-geo run` with `[indicators] small_area = true` on the Demo City's survey and boundaries, with an
area covariate table made here (the log of each neighbourhood's planted incident rate, from the demo's
planted_truths.json, and a seeded noise column).

Reference: the direct shares and design variances computed here from survey.csv with the survey
module's estimator (``weighted_share``: Hájek share, Taylor variance, equal to R survey 4.1-1), the
bad rows dropped by this test's own reading of the file; then ``fay_herriot`` (equal to samplics
EblupAreaModel to 1e-9, tests/unit/test_small_area.py) on those and the covariate table. The run's
``<id>_fh`` columns must equal it to 1e-6.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.demo.inputs import generate_demo_inputs
from usm_geo.demo.survey import SAFE_ANSWERS
from usm_geo.disclosure import apply_profile
from usm_geo.indicators.small_area import fay_herriot
from usm_geo.indicators.survey import weighted_share

Z = 1.959963984540054  # qnorm(0.975)


@pytest.fixture(scope="module")
def fh_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fh")
    inputs = base / "inputs"
    generate_demo_inputs(inputs)
    truths = json.loads((inputs / "planted_truths.json").read_text(encoding="utf-8"))
    rates = truths["incidents"]["planted_rate_per_1000_per_year"]
    ids = sorted(rates)
    noise = np.random.default_rng(21).normal(size=len(ids))
    cov = pd.DataFrame({"nbhd": ids, "log_rate": np.round(np.log([rates[i] for i in ids]), 6),
                        "noise": np.round(noise, 6)})
    cov.to_csv(inputs / "covariates.csv", index=False)
    study = inputs / "fh_study.toml"
    answers = ", ".join(f'"{a}"' for a in SAFE_ANSWERS)
    study.write_text(textwrap.dedent(f"""\
        [study]
        name = "Demo City FH"
        timezone = "Europe/Berlin"
        working_crs = "EPSG:32633"

        [inputs.survey]
        path = "survey.csv"
        unit = "nbhd_id"
        unit_level = "neighbourhood"
        weight = "design_weight"
        date = "interview_date"
        id = "respondent_id"
        strata = "district_id"

        [inputs.survey.questions.safe_after_dark]
        column = "q_safe_after_dark"
        answers = [{answers}]

        [[inputs.boundaries]]
        level = "neighbourhood"
        path = "demo_city.gpkg"
        layer = "neighbourhoods"
        id = "nbhd_id"
        name = "name"
        parent = "district_id"

        [[inputs.boundaries]]
        level = "district"
        path = "demo_city.gpkg"
        layer = "districts"
        id = "district_id"
        name = "name"

        [[inputs.covariates]]
        path = "covariates.csv"
        unit = "nbhd"
        unit_level = "neighbourhood"
        columns = ["log_rate", "noise"]

        [periods]
        frequency = "year"
        start = "2019-01-01"
        end = "2023-12-31"

        [indicators]
        use = ["safe_after_dark_share"]
        small_area = true
        small_area_covariates = ["log_rate"]
        """), encoding="utf-8")
    out = base / "out"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, inputs, cov, truths


def _reference(inputs, cov):
    """Direct shares, design variances and the FH fit per wave, computed here from survey.csv."""
    s = pd.read_csv(inputs / "survey.csv", dtype=str, keep_default_na=False)
    w = pd.to_numeric(s["design_weight"])
    s = s[w >= 0]  # the one bad weight (-1) is dropped from the design
    answer = s["q_safe_after_dark"].str.strip().str.casefold()
    listed = answer.isin(SAFE_ANSWERS)  # 'maybe' is no listed answer: treated as missing
    eligible = listed & ~answer.isin(["don't know", "refused"])  # never-go-out stays in (SDG 16.1.4)
    yes = answer.isin(["very safe", "safe"])
    wave = s["interview_date"].str[:4]
    est = weighted_share(yes.to_numpy(), s["design_weight"].astype(float).to_numpy(), eligible=eligible.to_numpy(),
                         domain=(s["nbhd_id"] + "|" + wave).to_numpy(dtype=object),
                         strata=s["district_id"].to_numpy(dtype=object))
    est[["unit_id", "period"]] = est["domain"].str.split("|", expand=True)
    out = {}
    for period, sub in est.groupby("period"):
        sub = sub.set_index("unit_id").reindex(cov["nbhd"])
        y, d = sub["value"].to_numpy(float), sub["se"].to_numpy(float) ** 2
        y = np.where(d > 0, y, np.nan)  # a unit whose design variance is 0 is not fitted (module docstring)
        table, fit = fay_herriot(y, d, cov["log_rate"].to_numpy(float))
        out[period] = (sub, table.set_index(cov["nbhd"]), fit)
    return out


def _read(path):
    return pd.read_csv(path, dtype={"unit_id": str, "period": str}, keep_default_na=False, na_values=[""])


def test_fh_columns_equal_the_reference_fit(fh_run):
    out, inputs, cov, _ = fh_run
    wide = _read(out / "indicators.csv")
    nb = wide[wide["level"] == "neighbourhood"]
    small = _read(out / "small_area.csv")
    ref = _reference(inputs, cov)
    assert sorted(ref) == ["2019", "2023"]
    for period, (direct, table, fit) in ref.items():
        got = nb[nb["period"] == period].set_index("unit_id").reindex(cov["nbhd"])
        np.testing.assert_allclose(got["safe_after_dark_share_fh"], np.clip(table["eblup"], 0, 1), atol=1e-6)
        half = Z * np.sqrt(table["mse"].to_numpy())
        np.testing.assert_allclose(got["safe_after_dark_share_fh_lower"], np.clip(table["eblup"] - half, 0, 1), atol=1e-6)
        np.testing.assert_allclose(got["safe_after_dark_share_fh_upper"], np.clip(table["eblup"] + half, 0, 1), atol=1e-6)
        # the direct share is untouched, in its own column
        np.testing.assert_allclose(got["safe_after_dark_share"], direct["value"], atol=1e-12)
        assert got["safe_after_dark_share_fh_flags"].str.startswith("model_based").all()
        sa = small[small["period"] == period].set_index("unit_id").reindex(cov["nbhd"])
        np.testing.assert_allclose(sa["direct_var"], direct["se"] ** 2, rtol=1e-9)
        np.testing.assert_allclose(sa["eblup"], table["eblup"], atol=1e-6)
        np.testing.assert_allclose(sa["mse"], table["mse"], atol=1e-9)
        np.testing.assert_allclose(sa["gamma"], table["gamma"], atol=1e-6)
        assert sa["sigma2_u"].iloc[0] == pytest.approx(fit.sigma2_u, rel=1e-6)
        np.testing.assert_allclose(sa[["beta_intercept", "beta_log_rate"]].iloc[0], fit.beta, rtol=1e-6)
        assert "beta_noise" not in sa.columns  # small_area_covariates chose log_rate only
    # no FH estimate at the district level (it has no covariates); the direct shares are there
    district = wide[wide["level"] == "district"]
    assert district["safe_after_dark_share_fh"].isna().all() and district["safe_after_dark_share"].notna().all()


def test_fh_estimates_are_closer_to_the_planted_truth(fh_run):
    # the demo plants P(safe) per neighbourhood as a function of its log rate: the model-based estimates
    # must beat the direct ones (~40 respondents per neighbourhood). Planted shares are over every
    # answer, "don't know" (3 %) included; the indicator leaves it out of the denominator.
    out, _, _, truths = fh_run
    wide = _read(out / "indicators.csv")
    nb = wide[wide["level"] == "neighbourhood"]
    for period in ("2019", "2023"):
        sub = nb[nb["period"] == period]
        truth = sub["unit_id"].map(truths["survey"]["safe_probability_by_nbhd"][period]) / 0.97
        direct = float(((sub["safe_after_dark_share"] - truth) ** 2).mean())
        fh = float(((sub["safe_after_dark_share_fh"] - truth) ** 2).mean())
        assert fh < 0.5 * direct, (period, fh, direct)


def test_run_json_and_the_profile(fh_run):
    out, _, _, _ = fh_run
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    sa = info["small_area"]
    assert sa["covariates"] == {"neighbourhood": ["log_rate"]}
    assert [(m["indicator"], m["period"], m["status"], m["n_units"]) for m in sa["models"]] == [
        ("safe_after_dark_share", "2019", "fitted", 60), ("safe_after_dark_share", "2023", "fitted", 60)]
    assert all(m["sigma2_u"] > 0 and m["converged"] for m in sa["models"])
    assert "safe_after_dark_share_fh" in info["indicators"]["computed"]
    assert "small_area.csv" in info["outputs"]["files"]
    d = info["indicator_definitions"]["safe_after_dark_share_fh"]
    assert d["name"].endswith("model-based (Fay–Herriot)") and d["derived_from"] == "safe_after_dark_share"
    # public profile: direct shares under min_n are suppressed, their FH estimates are published (n blank)
    measures = _read(out / "measures.csv")
    public, _ = apply_profile(measures, _read(out / "crosswalk.csv"), profile="public", k=5, min_n=50)
    direct = measures["measure"] == "safe_after_dark_share"
    small = direct & (measures["n"] < 50) & (measures["n"] > 0) & (measures["level"] == "neighbourhood")
    assert small.sum() > 10
    assert public.loc[small, "value"].isna().all()
    fh = public[public["measure"] == "safe_after_dark_share_fh"]
    assert len(fh) == 120 and fh["value"].notna().all() and fh["n"].isna().all()
    assert fh["flags"].str.contains("model_based").all()


def test_the_map_shows_the_model_based_indicator(fh_run):
    from usm_geo.maps import build_map

    out, _, _, _ = fh_run
    html = build_map(out, indicator="safe_after_dark_share_fh")
    assert "model-based (Fay–Herriot)" in html
    assert "model-based estimate (Fay–Herriot), not a direct survey share" in html  # the flag in words
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>Model-based estimates</b> (“model-based (Fay–Herriot)”, flag model_based)" in report


def test_a_public_run_publishes_fh_and_hides_suppressed_direct_shares(fh_run, tmp_path):
    import geopandas as gpd

    out, inputs, _, _ = fh_run
    text = (inputs / "fh_study.toml").read_text(encoding="utf-8")
    study = inputs / "fh_public.toml"
    study.write_text(text.replace("[indicators]", '[outputs]\nprofile = "public"\n\n[indicators]'), encoding="utf-8")
    pub = tmp_path / "public"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(pub), "--quiet"])
    assert result.exit_code == 0, result.output
    internal = _read(out / "small_area.csv")
    public = _read(pub / "small_area.csv")
    measures = _read(out / "measures.csv")
    direct = measures[(measures["measure"] == "safe_after_dark_share") & (measures["level"] == "neighbourhood")]
    hidden = (direct["n"] >= 1) & ((direct["n"] < 30) | direct["flags"].fillna("").str.contains("small_n|small_eff_n"))
    keys = set(zip(direct.loc[hidden, "unit_id"], direct.loc[hidden, "period"]))
    blank = public["direct"].isna()
    blank_keys = set(zip(public.loc[blank, "unit_id"], public.loc[blank, "period"]))
    # every direct share below min_n is blank, and exactly the shares the public areas.gpkg withholds
    # (its own small n, or complementary suppression across the nested levels)
    layer = gpd.read_file(pub / "areas.gpkg", layer="neighbourhood")
    withheld = set(zip(layer.loc[layer["safe_after_dark_share"].isna(), "unit_id"],
                       layer.loc[layer["safe_after_dark_share"].isna(), "period"].astype(str)))
    assert len(keys) > 10 and keys <= blank_keys and blank_keys == withheld
    assert public.loc[blank, ["n", "direct_var", "gamma", "g1", "g3"]].isna().all().all()
    np.testing.assert_array_equal(public["eblup"], internal["eblup"])
    assert layer["safe_after_dark_share_fh"].notna().all() and layer["safe_after_dark_share_fh_n"].isna().all()
