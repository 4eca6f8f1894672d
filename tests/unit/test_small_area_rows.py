"""Fay–Herriot rows of a run (usm_geo.indicators.small_area_rows) and the study option that asks for them.

References: the samplics 0.6.1 EblupAreaModel numbers of tests/unit/test_small_area.py (milk data,
Arora & Lahiri 1997) and the module's own ``fay_herriot`` (equal to samplics there) on inputs built
here by hand; the interval EBLUP ± Φ⁻¹(0.975)·√MSE is written out in the tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from unit.test_small_area import MILK, SAMPLICS_BETA, SAMPLICS_EST, SAMPLICS_MSE, SAMPLICS_SIGMA2

from usm_geo.disclosure import apply_profile
from usm_geo.errors import StudyError
from usm_geo.indicators.small_area import fay_herriot
from usm_geo.indicators.small_area_rows import small_area_in_profile, small_area_definitions, small_area_rows
from usm_geo.study import load_study

Z = 1.959963984540054  # qnorm(0.975) in R 4.2.2


def _direct(level, ids, period, value, variance, n, measure="safe_after_dark_share", flags=None):
    k = len(ids)
    return pd.DataFrame({"level": level, "unit_id": ids, "period": period, "category": "all", "measure": measure,
                         "numerator": np.nan, "denominator": np.nan, "value": value, "lower": np.nan, "upper": np.nan,
                         "n": n, "flags": flags if flags is not None else [""] * k, "design_variance": variance})


def test_milk_through_the_run_rows_equals_samplics():
    # the milk data as if it were one level's direct estimates: the table keeps the unclipped EBLUP
    m = pd.read_csv(MILK)
    ids = [f"A{i:02d}" for i in m.small_area]
    dummies = pd.get_dummies(m.major_area, prefix="major", drop_first=True).astype(float)
    cov = pd.concat([pd.DataFrame({"unit_id": ids}), dummies], axis=1)
    direct = _direct("area", ids, "2020", m.direct_est.to_numpy(), m.std_error.to_numpy() ** 2, m.samp_size.to_numpy())
    out = small_area_rows(direct, {"area": cov}, {"area": np.array(ids, dtype=object)})
    t = out.table.set_index("unit_id").loc[ids]
    np.testing.assert_allclose(t["eblup"], SAMPLICS_EST, atol=1e-9)
    np.testing.assert_allclose(t["mse"], SAMPLICS_MSE, atol=1e-11)
    assert t["sigma2_u"].iloc[0] == pytest.approx(SAMPLICS_SIGMA2, rel=1e-9)
    np.testing.assert_allclose(t[["beta_intercept", "beta_major_2", "beta_major_3", "beta_major_4"]].iloc[0],
                               SAMPLICS_BETA, rtol=1e-9)
    model = out.summary["models"][0]
    assert model["status"] == "fitted" and model["n_areas"] == 43 and model["covariates"] == ["major_2", "major_3", "major_4"]
    # the measures rows: value clipped to [0, 1] (milk is not a share: several EBLUPs exceed 1)
    rows = out.rows.set_index("unit_id").loc[ids]
    est = np.asarray(SAMPLICS_EST)
    np.testing.assert_allclose(rows["value"], np.clip(est, 0, 1), atol=1e-9)
    np.testing.assert_allclose(rows["upper"], np.clip(est + Z * np.sqrt(SAMPLICS_MSE), 0, 1), atol=1e-9)
    assert (rows["flags"].str.contains("clipped") == (est > 1)).all()
    assert set(rows["measure"]) == {"safe_after_dark_share_fh"}


def test_rows_equal_fay_herriot_with_synthetic_and_missing_units():
    rng = np.random.default_rng(7)
    k = 25
    ids = np.array([f"U{i:02d}" for i in range(k)], dtype=object)
    x = np.column_stack([rng.normal(size=k), rng.uniform(0, 1, size=k)])
    n = rng.integers(5, 60, size=k)
    truth = np.clip(0.5 + 0.08 * x[:, 0] - 0.1 * x[:, 1] + rng.normal(0, 0.05, k), 0.05, 0.95)
    y = np.clip(truth + rng.normal(0, np.sqrt(truth * (1 - truth) / n)), 0, 1)
    d = y * (1 - y) / n * 1.3
    y[3], d[3], n[3] = np.nan, np.nan, 0  # no respondents
    y[5], d[5] = 1.0, 0.0  # every respondent feels safe: variance 0
    x[8, 1] = np.nan  # no covariate value
    cov = pd.DataFrame({"unit_id": ids, "a": x[:, 0], "b": x[:, 1]})
    direct = _direct("neighbourhood", ids, "2023", y, d, n)
    out = small_area_rows(direct, {"neighbourhood": cov}, {"neighbourhood": ids})
    # reference: the model on the units with a direct estimate, variance > 0 and covariates; the
    # others predicted from it (synthetic), unit 8 not at all
    keep = np.ones(k, bool)
    keep[8] = False
    yy, dd = y.copy(), d.copy()
    yy[5] = np.nan
    ref, fit = fay_herriot(yy[keep], np.where(np.isfinite(dd[keep]) & (dd[keep] > 0), dd[keep], np.nan), x[keep])
    rows = out.rows.set_index("unit_id")
    t = out.table.set_index("unit_id")
    np.testing.assert_allclose(t.loc[ids[keep], "eblup"], ref["eblup"], atol=1e-12)
    np.testing.assert_allclose(t.loc[ids[keep], "mse"], ref["mse"], atol=1e-14)
    np.testing.assert_allclose(t.loc[ids[keep], "gamma"], ref["gamma"], atol=1e-12)
    np.testing.assert_allclose(rows.loc[ids[keep], "lower"], np.clip(ref["eblup"] - Z * np.sqrt(ref["mse"]), 0, 1), atol=1e-12)
    assert t.loc["U00", "sigma2_u"] == pytest.approx(fit.sigma2_u, rel=1e-12)
    xx = np.column_stack([np.ones(k), x])
    assert rows.loc["U03", "value"] == pytest.approx(xx[3] @ fit.beta, rel=1e-12)
    assert rows.loc["U03", "flags"] == "model_based;synthetic" and rows.loc["U03", "n"] == 0
    assert rows.loc["U05", "flags"] == "model_based;synthetic;no_design_variance"
    assert np.isnan(rows.loc["U08", "value"]) and rows.loc["U08", "flags"] == "model_based;no_covariates"
    assert rows.loc["U00", "flags"] == "model_based" and rows.loc["U00", "n"] == n[0]
    assert rows[["numerator", "denominator"]].isna().all().all()
    model = out.summary["models"][0]
    assert (model["n_areas"], model["n_synthetic"], model["n_no_covariates"]) == (22, 2, 1)
    assert out.skipped == {}


def test_public_profile_blanks_the_direct_share_where_it_is_suppressed():
    ids = np.array([f"U{i}" for i in range(8)], dtype=object)
    y = np.array([0.5, 0.6, 0.4, 0.7, 0.55, 0.45, 0.65, 0.35])
    n = np.array([40, 12, 35, 50, 31, 33, 45, 60])
    flags = ["", "small_n", "", "", "small_eff_n", "", "", ""]
    direct = _direct("nb", ids, "2023", y, y * (1 - y) / n, n, flags=flags)
    cov = pd.DataFrame({"unit_id": ids, "a": np.arange(8.0) ** 1.5})
    fit = small_area_rows(direct, {"nb": cov}, {"nb": ids})
    internal = fit.table.set_index("unit_id")
    # the public measures withhold U1 (small_n) and U4 (small_eff_n); small_area.csv follows them
    published, _ = apply_profile(pd.concat([direct.drop(columns="design_variance"), fit.rows]), None,
                                 profile="public", k=5, min_n=30)
    public = small_area_in_profile(fit.table, published).set_index("unit_id")
    hidden = ["U1", "U4"]
    assert public.loc[hidden, ["n", "direct", "direct_var", "gamma", "g1", "g3"]].isna().all().all()
    shown = [u for u in ids if u not in hidden]
    pd.testing.assert_frame_equal(public.loc[shown, ["direct", "gamma"]], internal.loc[shown, ["direct", "gamma"]])
    np.testing.assert_array_equal(public["eblup"], internal["eblup"])  # the estimate itself is published
    # the disclosure profile of the measures rows: the _fh rows stay, their n goes, flags survive
    rows = pd.concat([direct.drop(columns="design_variance"), small_area_rows(direct, {"nb": cov}, {"nb": ids}).rows])
    out, _ = apply_profile(rows, None, profile="public", k=5, min_n=30)
    fh = out[out["measure"] == "safe_after_dark_share_fh"].set_index("unit_id")
    assert fh["value"].notna().all() and fh["n"].isna().all() and (fh["flags"] == "model_based").all()
    direct_out = out[out["measure"] == "safe_after_dark_share"].set_index("unit_id")
    assert direct_out.loc[hidden, "value"].isna().all() and direct_out.loc[shown, "value"].notna().all()


def test_a_model_that_cannot_be_fitted_is_reported_not_raised():
    ids = np.array(["A", "B", "C"], dtype=object)
    direct = _direct("nb", ids, "2023", [0.2, 0.3, 0.4], [0.01, 0.01, 0.01], [10, 10, 10])
    out = small_area_rows(direct, {"nb": pd.DataFrame({"unit_id": ids, "a": [1.0, 2.0, 4.0]})}, {"nb": ids})
    assert out.rows.empty and out.table.empty
    assert out.summary["models"][0]["status"] == "not_fitted"
    assert "more areas than covariates" in out.skipped["safe_after_dark_share_fh"]


def test_definitions_name_the_model():
    d = small_area_definitions({"safe_after_dark_share": {"id": "safe_after_dark_share", "name": "Feel safe", "kind": "share"}},
                               ["safe_after_dark_share", "safe_after_dark_share_fh"])
    assert d == {"safe_after_dark_share_fh": {"id": "safe_after_dark_share_fh", "name": "Feel safe, model-based (Fay–Herriot)",
                                              "kind": "share", "derived_from": "safe_after_dark_share",
                                              "estimate": "model-based (Fay–Herriot)", "method": d["safe_after_dark_share_fh"]["method"]}}


# ------------------------------------------------------------------------------ the study option

STUDY = """
[study]
name = "FH"

[inputs.survey]
path = "survey.csv"
unit = "nb"
unit_level = "nb"
weight = "w"

[inputs.survey.questions.safe_after_dark]
column = "q"
answers = ["safe", "unsafe"]

[[inputs.boundaries]]
level = "nb"
path = "nb.geojson"
id = "id"
{covariates}
[indicators]
{option}
"""

COVARIATES = """
[[inputs.covariates]]
path = "cov.csv"
unit = "id"
unit_level = "nb"
columns = ["deprivation"]
"""


def _files(folder):
    # load_study checks that the inputs exist (it does not read them)
    (folder / "survey.csv").write_text("nb,w,q\nA,1,safe\n", encoding="utf-8")
    (folder / "cov.csv").write_text("id,deprivation\nA,1\n", encoding="utf-8")
    (folder / "nb.geojson").write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")


def test_small_area_without_covariates_is_refused(write_study):
    path = write_study(STUDY.format(covariates="", option="small_area = true"))
    _files(path.parent)
    with pytest.raises(StudyError) as err:
        load_study(path)
    msg = str(err.value)
    assert "small_area" in msg and "[[inputs.covariates]]" in msg and "study.toml" in msg
    assert "columns" in err.value.fix  # the fix shows what to add
    from usm_geo.cli import main

    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "small_area" in result.output


def test_small_area_covariates_must_be_factors(write_study):
    path = write_study(STUDY.format(covariates=COVARIATES, option='small_area = true\nsmall_area_covariates = ["density"]'))
    _files(path.parent)
    with pytest.raises(StudyError, match="'density', which is no factor") as err:
        load_study(path)
    assert "deprivation" in err.value.fix
    ok = write_study(STUDY.format(covariates=COVARIATES, option='small_area = true\nsmall_area_covariates = ["deprivation"]'))
    assert load_study(ok).indicators["small_area"] is True


def test_small_area_option_types(tmp_path):
    from usm_geo.indicators.registry import load_settings

    with pytest.raises(StudyError, match="true or false"):
        load_settings({"small_area": "yes"}, tmp_path / "study.toml")
    with pytest.raises(StudyError, match="small_area is not"):
        load_settings({"small_area_covariates": ["a"]}, tmp_path / "study.toml")
    s = load_settings({"small_area": True, "small_area_covariates": ["a"]}, tmp_path / "study.toml")
    assert s.small_area and s.small_area_covariates == ("a",)
