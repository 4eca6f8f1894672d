"""`usm-geo model` and [[inputs.covariates]] (issue 21 point 4) on the Demo City.

Covariates are written by the test from the Demo City's own boundaries and population table:
population density (thousand residents per km²) and distance to the city's centroid (km), plus one
row for a unit that does not exist and one value that is not a number. The reference fit is
statsmodels' NB2 maximum likelihood on the run's own counts (measures.csv), done here.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main


@pytest.fixture(scope="module")
def model_run(demo, tmp_path_factory):
    out, _ = demo
    import shutil

    base = tmp_path_factory.mktemp("model")
    inputs = base / "inputs"
    shutil.copytree(out / "inputs", inputs)
    nb = gpd.read_file(inputs / "demo_city.gpkg", layer="neighbourhoods").sort_values("nbhd_id").reset_index(drop=True)
    pop = pd.read_csv(inputs / "population.csv", dtype={"nbhd_id": str})
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    people = pop.set_index("nbhd_id")["population"].reindex(nb["nbhd_id"]).to_numpy(float)
    area = nb.geometry.area.to_numpy() / 1e6
    centre = nb.geometry.union_all().centroid
    table = pd.DataFrame({"code": nb["nbhd_id"], "density": people / area / 1000,
                          "centre_km": nb.geometry.centroid.distance(centre).to_numpy() / 1000})
    table["density"] = table["density"].map(lambda v: f"{v:,.6f}")
    table["centre_km"] = table["centre_km"].map(lambda v: f"{v:.6f}")
    table.loc[len(table)] = {"code": "N99", "density": "1.0", "centre_km": "1.0"}  # no such neighbourhood
    table.loc[3, "centre_km"] = "far"  # not a number
    table.to_csv(inputs / "factors.csv", index=False)
    study = (inputs / "study.toml").read_text(encoding="utf-8")
    study += ('\n[[inputs.covariates]]\npath = "factors.csv"\nunit = "code"\nunit_level = "neighbourhood"\n'
              'columns = ["density", "centre_km"]\n')
    (inputs / "study.toml").write_text(study, encoding="utf-8")
    result = CliRunner().invoke(main, ["model", str(inputs / "study.toml"), "--out", str(base / "out")])
    return base, result, table, run


def test_model_cli_equals_statsmodels_on_the_runs_counts(model_run, demo):
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    base, result, table, run = model_run
    assert result.exit_code == 0, result.output
    out, _ = demo
    m = pd.read_csv(out / "measures.csv", dtype={"unit_id": str, "period": str}, low_memory=False)
    sel = m[(m["level"] == "neighbourhood") & (m["period"] == "2023") & (m["category"] == "all")]
    y = sel[sel["measure"] == "count"].set_index("unit_id")["value"].sort_index()
    pop = sel[sel["measure"] == "population"].set_index("unit_id")["value"].reindex(y.index)
    x = table.iloc[:-1].set_index("code").reindex(y.index)
    x["density"] = x["density"].str.replace(",", "").astype(float)
    x["centre_km"] = pd.to_numeric(x["centre_km"], errors="coerce")  # "far" → NaN, as the run treats it
    ok = x.notna().all(axis=1).to_numpy()
    X = sm.add_constant(x[ok].to_numpy(float))
    ref = NegativeBinomial(y.to_numpy(float)[ok], X, offset=np.log(pop.to_numpy(float)[ok]), loglike_method="nb2").fit(
        disp=False, maxiter=1000, method="bfgs")
    model = json.loads((base / "out" / "model.json").read_text(encoding="utf-8"))["neighbourhood"]
    assert model["status"] == "fitted" and model["period"] == "2023" and model["exposure"] == "population"
    assert model["n_units"] == int(ok.sum()) == 59  # 60 neighbourhoods, one without a distance
    coef = {c["term"]: c for c in model["coefficients"]}
    assert coef["density"]["coef"] == pytest.approx(ref.params[1], rel=1e-4)
    assert coef["centre_km"]["coef"] == pytest.approx(ref.params[2], rel=1e-4)
    assert model["theta"] == pytest.approx(1 / ref.params[-1], rel=1e-3)
    assert "associations, not causes" in model["caveat"]
    assert "1 of 60 units left out" in model["notes"][0]
    assert "rate ratio" in result.output and "associations, not causes" in result.output
    units = pd.read_csv(base / "out" / "model_units.csv", dtype={"unit_id": str})
    assert len(units) == 59 and (units["observed"].to_numpy() == y.to_numpy()[ok]).all()


def test_model_ledger_accounts_for_every_covariate_row(model_run):
    base, result, table, _ = model_run
    ledger = pd.read_csv(base / "out" / "ledger.csv", dtype=str)
    cov = ledger[ledger["source"] == "covariates"]
    assert cov[cov["reason"] == "unknown_unit"]["row"].tolist() == [str(len(table))]  # the N99 row
    bad = cov[cov["reason"] == "invalid_covariate"]
    assert bad["row"].tolist() == ["4"] and bad["status"].tolist() == ["changed"] and "far" in bad["detail"].iloc[0]


def test_study_without_covariates_is_refused(demo, tmp_path):
    out, _ = demo
    result = CliRunner().invoke(main, ["model", str(out / "inputs" / "study.toml"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "no [[inputs.covariates]]" in result.output
