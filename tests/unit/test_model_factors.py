"""covariates.csv and resilience.csv tables (usm_geo.models.factors) on hand-made tables; every
expected value is written or computed with pandas here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usm_geo.models.factors import covariate_table, resilience_table


def _units(ids):
    return pd.DataFrame({"unit_id": ids, "name": [f"Unit {i}" for i in ids]})


def test_covariate_table_lists_every_unit_with_missing_values_blank():
    cov = {"neighbourhood": pd.DataFrame({"unit_id": ["N2", "N1"], "bars_count": [3, 0], "density": [1.5, np.nan]}),
           "district": pd.DataFrame({"unit_id": ["D1"], "lighting": [0.8]})}
    units = {"neighbourhood": _units(["N1", "N2", "N3"]), "district": _units(["D1", "D2"])}
    t = covariate_table(cov, units)
    assert list(t.columns) == ["level", "unit_id", "name", "lighting", "bars_count", "density"]
    assert list(zip(t["level"], t["unit_id"])) == [("district", "D1"), ("district", "D2"), ("neighbourhood", "N1"),
                                                   ("neighbourhood", "N2"), ("neighbourhood", "N3")]
    nb = t[t["level"] == "neighbourhood"].set_index("unit_id")
    assert nb.loc["N2", "bars_count"] == 3 and nb.loc["N1", "bars_count"] == 0 and np.isnan(nb.loc["N3", "bars_count"])
    assert nb.loc["N2", "name"] == "Unit N2" and np.isnan(nb.loc["N1", "density"])
    assert t.set_index(["level", "unit_id"]).loc[("district", "D1"), "lighting"] == 0.8


def _m(unit, period, measure, value, lower=np.nan, upper=np.nan, n=np.nan):
    return {"level": "nb", "unit_id": unit, "period": period, "category": "all", "measure": measure,
            "value": value, "lower": lower, "upper": upper, "n": n, "flags": ""}


def test_resilience_table_takes_shares_and_counts_from_the_measures():
    rows = [_m("A", "2023", "count", 12), _m("B", "2023", "count", np.nan),  # B suppressed in public
            _m("A", "2022", "trust_share", 0.6, 0.5, 0.7, 80), _m("B", "2022", "trust_share", 0.4, 0.3, 0.5, 60),
            _m("A", "2023", "safe_share", 0.7, 0.6, 0.8, 90), _m("B", "2023", "safe_share", 0.5, 0.4, 0.6, 70),
            _m("A", "2023", "incident_rate", 3.0)]
    model_units = pd.DataFrame({"unit_id": ["A", "B"], "observed": [12, 3], "expected": [10.5, 4.2]})
    t, notes = resilience_table(pd.DataFrame(rows), model_units, _units(["A", "B"]), level="nb", period="2023", public=True)
    t = t.set_index("unit_id")
    assert notes == {"safe_share": "2023", "trust_share": "2022"}  # the survey wave before the model's period
    assert t.loc["A", "observed"] == 12 and t.loc["A", "expected"] == pytest.approx(10.5)
    assert pd.isna(t.loc["B", "observed"]) and np.isnan(t.loc["B", "expected"])  # withheld beside a suppressed count
    assert t.loc["B", "trust_share"] == 0.4 and t.loc["B", "trust_share_n"] == 60 and t.loc["B", "trust_share_period"] == "2022"
    assert t.loc["A", "safe_share_lower"] == 0.6 and "incident_rate" not in t.columns
    t2, _ = resilience_table(pd.DataFrame(rows), model_units, _units(["A", "B"]), level="nb", period="2023", public=False)
    assert t2.set_index("unit_id").loc["B", "expected"] == pytest.approx(4.2)
