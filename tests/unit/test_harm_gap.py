"""Harm weights from a table and the objective–subjective gap, by hand."""

import textwrap

import numpy as np
import pandas as pd

from usm_geo.indicators.tables import gap_table
from usm_geo.pipeline import run_intake, run_measures, run_units
from usm_geo.study import load_study


def test_harm_weighted_counts_from_a_table(tmp_path):
    (tmp_path / "inc.csv").write_text("lon,lat,date,category\n"
                                      "13.40,52.50,2021-01-01,homicide\n13.41,52.51,2021-02-01,theft\n"
                                      "13.42,52.52,2021-03-01,theft\n13.43,52.53,2021-04-01,arson\n")
    (tmp_path / "harm.csv").write_text("label,harm_days\nhomicide,5475\ntheft,2\n")
    (tmp_path / "study.toml").write_text(textwrap.dedent("""
        [study]
        working_crs = "EPSG:32633"
        [inputs.incidents]
        path = "inc.csv"
        [indicators]
        harm = "harm.csv"
    """))
    intake = run_intake(load_study(tmp_path / "study.toml"))
    m = run_measures(intake, run_units(intake))
    harm = m[(m.measure == "harm") & (m.level == "city")].set_index("category")["value"]
    # by hand: 1 × 5475 + 2 × 2 + arson (no weight in the table) × 0
    assert harm["all"] == 5475 + 2 * 2 and harm["theft"] == 4 and harm["arson"] == 0
    notes = intake.ledger.to_frame().query("reason == 'no_harm_weight'")
    assert notes["detail"].str.contains("arson").all() and len(notes) == 1


def test_gap_by_hand():
    # three units: rates 10, 20, 30; share feeling safe 0.8, 0.5, 0.5
    m = pd.DataFrame({
        "level": "n", "unit_id": ["a", "b", "c"] * 2, "period": "2021", "category": "all",
        "measure": ["incident_rate"] * 3 + ["safe"] * 3, "value": [10.0, 20.0, 30.0, 0.8, 0.5, 0.5],
    })
    g = gap_table(m, "incident_rate", "safe", perception_lower_is_better=False).set_index("unit_id")
    z_rate = (np.array([10, 20, 30]) - 20) / np.std([10, 20, 30])
    unsafe = -np.array([0.8, 0.5, 0.5])  # signed so that higher = less safe
    z_perc = (unsafe - unsafe.mean()) / unsafe.std()
    np.testing.assert_allclose(g["gap"], z_perc - z_rate, atol=1e-12)
    assert g.loc["c", "rate_rank"] == 1 and g.loc["a", "perception_rank"] == 3
    # c: the highest rate, yet no less safe-feeling than b → residents feel safer than its rate suggests
    assert g.loc["c", "gap"] < 0 < g.loc["b", "gap"]


def test_intervention_by_unit_ids(tmp_path):
    import geopandas as gpd
    import shapely

    from usm_geo.pipeline import run_impact

    x0, y0 = 400_000.0, 5_800_000.0
    gpd.GeoDataFrame({"id": ["A", "B", "C"]}, geometry=[shapely.box(x0 + i * 2000, y0, x0 + (i + 1) * 2000, y0 + 2000) for i in range(3)],
                     crs=32633).to_file(tmp_path / "n.gpkg")
    # equal 365-day windows (2021 | 2022), so no period weighting. A: 4 before, 1 after; B (the 400 m ring reaches into it): 1 + 1; C: 2 + 2
    rows = [(x0 + 500, "2021-03-01")] * 4 + [(x0 + 500, "2022-03-01"), (x0 + 2200, "2021-05-01"), (x0 + 2200, "2022-05-01")] \
        + [(x0 + 5000, "2021-06-01")] * 2 + [(x0 + 5000, "2022-06-01")] * 2
    (tmp_path / "inc.csv").write_text("x,y,date\n" + "\n".join(f"{x},{y0 + 1000},{d}" for x, d in rows) + "\n")
    (tmp_path / "study.toml").write_text(textwrap.dedent("""
        [study]
        working_crs = "EPSG:32633"
        [inputs.incidents]
        path = "inc.csv"
        x = "x"
        y = "y"
        crs = "EPSG:32633"
        [[inputs.boundaries]]
        level = "n"
        path = "n.gpkg"
        id = "id"
        [periods]
        start = 2021-01-01
        end = 2022-12-31
        [intervention]
        name = "pilot"
        units = ["A"]
        level = "n"
        start = 2022-01-01
        buffer = 400
    """))
    result, layer = run_impact(run_intake(load_study(tmp_path / "study.toml")))
    assert result["counts"]["treated"] == {"before": 4, "after": 1}
    assert result["counts"]["buffer"] == {"before": 1, "after": 1}
    assert result["counts"]["control"] == {"before": 2, "after": 2}
    # WDD by hand: (1 − 4) − (2 − 2) + (1 − 1) = −3, variance 4 + 1 + 2 + 2 + 1 + 1 = 11
    assert result["wdd"] == -3 and abs(result["wdd_se"] - 11 ** 0.5) < 1e-12
    assert result["areas_report"]["control_is_rest_of_city"] is True
    assert list(layer["area"]) == ["treated", "buffer", "control"]
