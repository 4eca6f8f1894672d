"""Impact of the Demo City's planted intervention, from `run` and from `usm-geo impact`."""

from __future__ import annotations

import json

import geopandas as gpd
import pyogrio
from click.testing import CliRunner

from usm_geo.cli import main

KEYS = {"counts", "gross_effect", "net_effect", "wdq", "tne", "wdd", "wdd_se", "wdd_z", "wdd_p", "wdd_ci", "did",
        "did_ci", "reading", "status"}


def test_planted_intervention_is_recovered(demo):
    out, _ = demo
    result = json.loads((out / "impact.json").read_text())
    truths = json.loads((out / "inputs" / "planted_truths.json").read_text())["intervention"]
    assert KEYS <= set(result)
    assert all(v == "ok" for v in result["status"].values())
    obs = truths["observed_counts_by_year"]
    assert result["counts"]["treated"] == {"before": sum(obs["treated"][y] for y in ("2019", "2020", "2021")),
                                           "after": obs["treated"]["2022"] + obs["treated"]["2023"]}
    # the planted effect on the WDD scale: incidents removed from the treated area, less those displaced
    planted_wdd = -(truths["n_removed"] - truths["n_displaced"])
    lo, hi = result["wdd_ci"]
    assert lo <= planted_wdd <= hi and hi < 0  # the reduction's sign and size inside its interval
    assert abs(result["gross_effect"]["relative"] - (-truths["reduction_fraction"])) < 0.03
    assert result["wdq"] < 0 and "displacement" in result["reading"]  # displacement into the buffer detected
    layer = gpd.read_file(out / "impact_areas.gpkg")
    assert list(layer["area"]) == ["treated", "buffer", "control"]
    assert [name for name, _ in pyogrio.list_layers(out / "impact_areas.gpkg")] == ["impact_areas"]


def test_impact_command(demo, tmp_path):
    out, _ = demo
    inputs = out / "inputs"
    districts = gpd.read_file(inputs / "demo_city.gpkg", layer="districts")
    treated = gpd.read_file(inputs / "intervention.gpkg")
    ring = treated.buffer(400).union_all()
    control = districts[~districts.intersects(ring)].iloc[[0]]
    control.to_file(tmp_path / "control.gpkg")
    target = tmp_path / "impact.json"
    r = CliRunner().invoke(main, ["impact", str(inputs / "incidents.csv"), "--treated", str(inputs / "intervention.gpkg"),
                                  "--control", str(tmp_path / "control.gpkg"), "--buffer", "400",
                                  "--before", "2019-01-01:2021-12-31", "--after", "2022-01-01:2023-12-31",
                                  "--out", str(target)])
    assert r.exit_code == 0, r.output
    result = json.loads(target.read_text())
    assert KEYS <= set(result)
    run_counts = json.loads((out / "impact.json").read_text())["counts"]
    assert result["counts"]["treated"] == run_counts["treated"] and result["counts"]["buffer"] == run_counts["buffer"]
    assert result["wdd"] < 0
    bad = CliRunner().invoke(main, ["impact", str(inputs / "incidents.csv"), "--treated", str(inputs / "intervention.gpkg"),
                                    "--control", str(inputs / "intervention.gpkg"), "--buffer", "400",
                                    "--before", "2019-01-01:2021-12-31", "--after", "2022-01-01:2023-12-31",
                                    "--out", str(target)])
    assert bad.exit_code == 2 and "overlap" in bad.output and "Traceback" not in bad.output
