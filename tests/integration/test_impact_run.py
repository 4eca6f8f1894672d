"""Impact of the Demo City's planted intervention, from `run` and from `usm-geo impact`."""

from __future__ import annotations

import json

import geopandas as gpd
import pyogrio
import pytest
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


def test_matched_control_on_the_demo_city(demo, tmp_path):
    """control = "matched" with treated units N04 and N27: the five chosen neighbourhoods are the
    five untreated ones outside the 400 m ring nearest the treated units' mean (rate, population) by a
    Mahalanobis distance recomputed here with numpy from measures.csv-style counts (pandas groupby of
    the intake) and the population table; impact.json lists them and its control counts are theirs."""
    import shutil

    import numpy as np
    import pandas as pd
    import shapely

    from usm_geo.pipeline import run_impact, run_intake, run_population, run_units
    from usm_geo.study import load_study

    out, _ = demo
    inputs = tmp_path / "inputs"
    shutil.copytree(out / "inputs", inputs)
    study_file = inputs / "study.toml"
    text = study_file.read_text(encoding="utf-8")
    text = text.replace('path = "intervention.gpkg"\nlayer = "treated"\n',
                        'units = ["N04", "N27"]\nlevel = "neighbourhood"\ncontrol = "matched"\n')
    study_file.write_text(text, encoding="utf-8")
    intake = run_intake(load_study(study_file))
    located = run_units(intake)
    pop = run_population(intake, located)
    result, layer = run_impact(intake, None, located, pop)
    match = result["control_match"]
    assert match["k"] == 5 and match["treated_units"] == ["N04", "N27"] and len(match["chosen"]) == 5

    nb = gpd.read_file(inputs / "demo_city.gpkg", layer="neighbourhoods").to_crs(intake.working_crs)
    nb = nb.rename(columns={"nbhd_id": "unit_id"}).set_index("unit_id").sort_index()
    inc = intake.incidents
    pts = gpd.GeoDataFrame({"t": inc["occurred_at"].to_numpy()}, geometry=gpd.points_from_xy(inc["x"], inc["y"]),
                           crs=intake.working_crs)
    hit = gpd.sjoin(pts, nb[["geometry"]].reset_index(), predicate="within")  # an independent point-in-polygon
    before = hit[hit.t < pd.Timestamp("2022-01-01")].groupby("unit_id").size().reindex(nb.index).fillna(0)
    after = hit[hit.t >= pd.Timestamp("2022-01-01")].groupby("unit_id").size().reindex(nb.index).fillna(0)
    people = pd.read_csv(inputs / "population.csv", dtype={"nbhd_id": str}).set_index("nbhd_id")["population"]
    people = people.reindex(nb.index).astype(float)
    x = np.c_[before / people * 1000, people]
    inv = np.linalg.inv(np.cov(x, rowvar=False))
    treated = nb.index.isin(["N04", "N27"])
    target = x[treated].mean(axis=0)
    d = np.sqrt(np.einsum("ij,jk,ik->i", x - target, inv, x - target))
    union = shapely.union_all(nb.geometry[treated].to_numpy())
    ring = union.buffer(400).difference(union)
    in_ring = np.array([g.intersection(ring).area > 1.0 for g in nb.geometry])  # 60 polygons
    pool = ~treated & ~in_ring
    assert match["excluded_in_buffer"] == int((in_ring & ~treated).sum()) and match["candidates"] == int(pool.sum())
    want = pd.Series(d[pool], index=nb.index[pool]).sort_values().index[:5].tolist()
    assert [r["unit_id"] for r in match["chosen"]] == want
    for r in match["chosen"]:
        assert r["distance"] == pytest.approx(d[nb.index.get_loc(r["unit_id"])], rel=1e-9)
        assert r["baseline_count"] == before[r["unit_id"]]
    assert result["counts"]["control"] == {"before": int(before[want].sum()), "after": int(after[want].sum())}
    assert layer.set_index("area").loc["control", "before"] == int(before[want].sum())
    assert result["areas_report"]["control_is_rest_of_city"] is False
