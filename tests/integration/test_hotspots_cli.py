"""`usm-geo hotspots` on a polygon layer and on points; the run's hotspots.gpkg and kde.tif."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from click.testing import CliRunner

from usm_geo.cli import main

X0, Y0 = 400_000.0, 5_800_000.0


def _grid(tmp_path):
    """A 6×6 grid of 1 km squares; value 10 in a 2×2 block at the top right, 1 elsewhere."""
    cells, values = [], []
    for r in range(6):
        for c in range(6):
            cells.append(shapely.box(X0 + c * 1000, Y0 + r * 1000, X0 + (c + 1) * 1000, Y0 + (r + 1) * 1000))
            values.append(10.0 if r >= 4 and c >= 4 else 1.0)
    gdf = gpd.GeoDataFrame({"code": [f"c{i:02d}" for i in range(36)], "crimes": values}, geometry=cells, crs=32633)
    gdf.to_file(tmp_path / "grid.gpkg")
    return tmp_path / "grid.gpkg", gdf


def test_hotspots_on_a_polygon_layer(tmp_path):
    path, gdf = _grid(tmp_path)
    out = tmp_path / "hot.gpkg"
    r = CliRunner().invoke(main, ["hotspots", str(path), "--value", "crimes", "--id", "code", "--permutations", "99",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = gpd.read_file(out)
    for col in ("gistar_z", "gistar_p", "gistar_p_fdr", "gistar_bin", "lisa_i", "lisa_z", "lisa_p_sim", "lisa_quadrant", "n_neighbours"):
        assert col in res
    assert list(res["code"]) == list(gdf["code"]) and res.crs.to_epsg() == 32633
    # corner cell (queen: 3 neighbours) and the planted block are the hottest
    hot = set(res.loc[res.gistar_bin > 0, "code"])
    assert hot and hot <= {"c28", "c29", "c34", "c35", "c22", "c23", "c27", "c33", "c21"}
    assert res.loc[res.code == "c35", "n_neighbours"].iloc[0] == 3
    # Gi* z of the corner cell by hand: binary weights with self, n = 36, x̄ = 1.75, s² = Σx²/n − x̄²
    x = gdf["crimes"].to_numpy()
    n, xbar = len(x), x.mean()
    s = np.sqrt((x ** 2).mean() - xbar ** 2)
    wsum = 4  # itself + c29, c34, c28: all 10
    z = (40 - xbar * wsum) / (s * np.sqrt((n * wsum - wsum ** 2) / (n - 1)))
    assert np.isclose(res.loc[res.code == "c35", "gistar_z"].iloc[0], z, rtol=1e-12)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["global"]["moran"]["I"] > 0.3 and sidecar["report"]["weights"] == "queen"


def test_hotspots_on_points_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    x = np.r_[rng.uniform(X0, X0 + 5000, 300), rng.normal(X0 + 4000, 150, 300)]
    y = np.r_[rng.uniform(Y0, Y0 + 5000, 300), rng.normal(Y0 + 4000, 150, 300)]
    (tmp_path / "pts.csv").write_text("x,y\n" + "\n".join(f"{a:.2f},{b:.2f}" for a, b in zip(x, y)))
    out = tmp_path / "sq.gpkg"
    r = CliRunner().invoke(main, ["hotspots", "--points", str(tmp_path / "pts.csv"), "--x", "x", "--y", "y",
                                  "--crs", "EPSG:32633", "--grid", "square:500", "--permutations", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = gpd.read_file(out)
    assert res["count"].sum() == 600
    hottest = res.loc[res.gistar_z.idxmax()].geometry
    assert hottest.distance(shapely.Point(X0 + 4000, Y0 + 4000)) < 500
    bad = CliRunner().invoke(main, ["hotspots", str(tmp_path / "pts.csv"), "--out", str(out)])
    assert bad.exit_code == 2 and "--value" in bad.output
    bad = CliRunner().invoke(main, ["hotspots", "--points", str(tmp_path / "pts.csv"), "--x", "x", "--y", "y", "--crs",
                                    "EPSG:32633", "--grid", "hex:9", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown grid" in bad.output and "Traceback" not in bad.output


def test_run_writes_hotspots_and_kde(demo):
    out, _ = demo
    assert [name for name, _ in pyogrio.list_layers(out / "hotspots.gpkg")] == ["h3_9", "neighbourhood", "district"]
    hex9 = gpd.read_file(out / "hotspots.gpkg", layer="h3_9")
    truths = json.loads((out / "inputs" / "planted_truths.json").read_text())
    strongest = max(truths["incidents"]["hotspots"], key=lambda h: h["expected_share"])
    centre = shapely.Point(strongest["x"], strongest["y"])
    hot = hex9[hex9.gistar_bin == 3]
    assert hot.geometry.distance(centre).min() == 0  # the strongest planted hotspot is a 99 % hot spot
    with rasterio.open(out / "kde.tif") as src:
        assert src.crs.to_epsg() == 32633
        band = src.read(1)
        r, c = src.index(strongest["x"], strongest["y"])
        assert band[r, c] > np.nanpercentile(band, 99)


def test_demo_hotspots_follow_the_significance_rule_and_eb_stays_in_range(demo):
    """Issue #19 on the Demo City: every _eb value between its group's smallest and largest raw rate;
    no finite |z| above 1e6; significant LISA units = units with BH-adjusted p_sim < 0.05 (scipy);
    the 6 districts are refused (too_few_units)."""
    import pandas as pd
    from scipy import stats

    out, _ = demo
    for level in ("h3_9", "neighbourhood", "district"):
        layer = gpd.read_file(out / "hotspots.gpkg", layer=level)
        z = layer[["gistar_z", "lisa_z"]].to_numpy(float)
        assert not (np.abs(z[np.isfinite(z)]) > 1e6).any()
        p = layer["lisa_p_sim"].to_numpy(float)
        q = np.full(p.shape, np.nan)
        if np.isfinite(p).any():
            q[np.isfinite(p)] = stats.false_discovery_control(p[np.isfinite(p)], method="bh")
        assert int(layer["lisa_quadrant"].isin(["HH", "LL", "HL", "LH"]).sum()) == int((q < 0.05).sum())
        assert (layer["significance"] == "BH FDR q < 0.05").all()
    district = gpd.read_file(out / "hotspots.gpkg", layer="district")
    assert (district["flags"] == "too_few_units").all() and district["gistar_z"].isna().all()
    m = pd.read_csv(out / "measures.csv")
    eb = m[m["measure"].str.endswith("_eb")]
    raw = m[m["measure"].isin(eb["measure"].str[:-3].unique())].assign(measure=lambda d: d["measure"] + "_eb")
    key = ["level", "period", "category", "measure"]
    j = eb.join(raw.groupby(key)["value"].agg(["min", "max"]), on=key)
    assert len(j) and ((j["value"] >= j["min"] - 1e-9) & (j["value"] <= j["max"] + 1e-9)).all()
