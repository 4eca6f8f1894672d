"""The public export re-applies the significance rule (Benjamini–Hochberg, α ≤ 0.05) to hot spot
layers, so a run made before the rule, or with ``[hotspots] fdr = false``, never publishes a Gi* bin
or a LISA quadrant that is not significant after BH."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner
from scipy import stats

from usm_geo.cli import main
from usm_geo.hotspots.fdr import public_rule

RUN_FILES = ("run.json", "units.gpkg", "measures.csv", "crosswalk.csv")


def _bins(z, q):
    """ArcGIS's classes written out: ±3 at q < 0.01, ±2 at q < 0.05, ±1 at q < 0.10, sign of z."""
    level = np.select([q < 0.01, q < 0.05, q < 0.10], [3, 2, 1], 0)
    return (np.sign(z) * level).astype(int)


def _old_layer(layer: pd.DataFrame, alpha_label: str | None) -> pd.DataFrame:
    """The neighbourhood layer as a run before the rule wrote it: raw-p classes, no adjusted-p,
    scatter-quadrant, value or rule columns. p-values are set so that raw p and BH disagree:
    5 units at 0.001, 20 at 0.03, the rest 0.5 (BH over 60: only the five stay below 0.05)."""
    old = layer.drop(columns=["lisa_p_fdr", "lisa_scatter_quadrant", "significance", "hotspot_value",
                              "gistar_p_fdr"]).copy()
    n = len(old)
    p = np.r_[np.full(5, 0.001), np.full(20, 0.03), np.full(n - 25, 0.5)]
    z = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * stats.norm.isf(p / 2)
    old["gistar_z"], old["gistar_p"] = z, p
    old["gistar_bin"] = _bins(z, p)  # raw p, as before the rule
    old["lisa_p_sim"] = p
    scatter = np.array(["HH", "LL", "HL", "LH"], dtype=object)[np.arange(n) % 4]
    old["lisa_quadrant"] = np.where(p < 0.05, scatter, "not_significant")
    if alpha_label is not None:
        old["significance"] = alpha_label
    return old, scatter


@pytest.mark.parametrize("rule", [None, "raw p < 0.1"])
def test_public_export_applies_bh_to_an_old_run(demo, tmp_path, rule):
    out, _ = demo
    run = tmp_path / "run"
    run.mkdir()
    for name in RUN_FILES:
        shutil.copyfile(out / name, run / name)
    layer = pyogrio.read_dataframe(out / "hotspots.gpkg", layer="neighbourhood")
    old, scatter = _old_layer(layer, rule)
    pyogrio.write_dataframe(old, run / "hotspots.gpkg", layer="neighbourhood")
    assert (old["lisa_quadrant"] != "not_significant").sum() == 25 and (old["gistar_bin"] != 0).sum() == 25
    target = tmp_path / "public"
    result = CliRunner().invoke(main, ["export", str(run), "--profile", "public", "--levels", "neighbourhood",
                                       "--format", "gpkg", "--out", str(target)])
    assert result.exit_code == 0, result.output
    pub = pyogrio.read_dataframe(target / "areas.gpkg", layer="hotspots_neighbourhood").set_index("unit_id")
    ref = old.set_index("unit_id")
    q = pd.Series(stats.false_discovery_control(ref["gistar_p"].to_numpy(), method="bh"), index=ref.index)
    # Gi*: classes of the BH-adjusted p (scipy), not of the raw p
    assert (pub["gistar_bin"] == pd.Series(_bins(ref["gistar_z"].to_numpy(), q.to_numpy()), index=ref.index)
            .reindex(pub.index)).all()
    # LISA: a quadrant only where BH q < 0.05 (the five units), and that unit's own quadrant
    q_lisa = pd.Series(stats.false_discovery_control(ref["lisa_p_sim"].to_numpy(), method="bh"), index=ref.index)
    shown = pub["lisa_quadrant"] != "not_significant"
    assert shown.sum() == (q_lisa < 0.05).sum() == 5
    assert set(pub.index[shown]) == set(q_lisa.index[q_lisa < 0.05])
    assert (pub.loc[shown, "lisa_quadrant"] == pd.Series(scatter, index=ref.index).reindex(pub.index[shown])).all()
    assert set(pub["significance"]) == {"BH FDR q < 0.05"}


def test_public_rule_leaves_a_current_run_as_it_is(demo):
    """A run made with the rule (BH, α = 0.05): the public classes are the run's own, at every level."""
    out, _ = demo
    for lv in ("neighbourhood", "h3_9", "district"):
        layer = pyogrio.read_dataframe(out / "hotspots.gpkg", layer=lv, read_geometry=False)
        again = public_rule(layer)
        assert (again["gistar_bin"].to_numpy() == layer["gistar_bin"].to_numpy()).all(), lv
        assert (again["lisa_quadrant"].to_numpy() == layer["lisa_quadrant"].to_numpy()).all(), lv
        # the count of significant LISA units is the count of BH-adjusted p < 0.05
        sig = (layer["lisa_quadrant"].isin(["HH", "LL", "HL", "LH"])).sum()
        assert sig == (pd.to_numeric(layer["lisa_p_fdr"]) < 0.05).sum(), lv


def test_a_quadrant_without_p_values_is_not_published():
    frame = pd.DataFrame({"unit_id": ["a", "b", "c"], "lisa_quadrant": ["HH", "island", "not_significant"],
                          "gistar_bin": [3, 0, -2]})
    out = public_rule(frame)
    assert out["lisa_quadrant"].tolist() == ["not_significant", "island", "not_significant"]
    assert out["gistar_bin"].tolist() == [0, 0, 0]  # no z, no p: nothing to publish
