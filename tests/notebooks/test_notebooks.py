"""Every notebook in notebooks/ runs top to bottom on the Demo City (nbclient, the venv's ipykernel),
and the key figures it prints are checked against the run's files, the planted truths and hand
calculations written out here — not only that it ran.

The notebooks read the shared Demo City run (the ``demo`` fixture) through ``USM_GEO_DEMO_RUN``; the
quickstart makes its own run in a temporary folder (``TMPDIR`` points into pytest's tmp_path).
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from scipy.stats import chi2, false_discovery_control

from shared_data import REPO

NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_quickstart", "02_hotspot_analysis", "03_neighbourhood_review", "04_exporting", "05_global_level"]
KEY_TAG = "key-figures"
VIOLENT = ["assault", "homicide", "robbery", "sexual offence"]  # the demo's ICCS 01–04 categories


@functools.lru_cache(maxsize=4)
def _read(path: Path) -> pd.DataFrame:
    """A run's CSV file (cached: measures.csv is read by several tests; do not modify the frame)."""
    return pd.read_csv(path, dtype={"unit_id": str, "period": str}, low_memory=False)


def _garwood(k: float, population: float, per: float) -> tuple[float, float]:
    """Hand calculation: exact Poisson limits χ²(0.025; 2k)/2 and χ²(0.975; 2k+2)/2, as a rate."""
    lower = chi2.ppf(0.025, 2 * k) / 2 if k > 0 else 0.0
    return lower / population * per, chi2.ppf(0.975, 2 * k + 2) / 2 / population * per


def run_notebook(name: str, tmp_path: Path, monkeypatch, run_dir: Path) -> tuple[dict, nbformat.NotebookNode]:
    """Execute notebooks/<name>.ipynb in tmp_path; return its key figures and the executed notebook."""
    monkeypatch.setenv("USM_GEO_DEMO_RUN", str(run_dir))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [c for c in nb.cells if KEY_TAG in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{name}: one cell tagged {KEY_TAG!r} expected"
    text = "".join(o.get("text", "") for o in cells[0].outputs if o.output_type == "stream" and o.name == "stdout")
    return json.loads(text.strip().splitlines()[-1]), nb


def test_committed_notebooks_are_stripped():
    """Outputs are not committed (small diffs): no outputs, no execution counts, one key-figures cell."""
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == NAMES
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: stored output in {cell.id}"
        assert sum(KEY_TAG in c.get("metadata", {}).get("tags", []) for c in nb.cells) == 1, name


@pytest.mark.slow
def test_quickstart(demo, tmp_path, monkeypatch):
    out, _ = demo
    key, _ = run_notebook("01_quickstart", tmp_path, monkeypatch, out)
    # the quickstart's own run has the Demo City's seed: its figures are those of the shared run's files
    sources = json.loads((out / "run.json").read_text(encoding="utf-8"))["sources"]["incidents"]
    assert (key["incidents_read"], key["incidents_used"], key["incidents_dropped"]) == (
        sources["read"], sources["used"], sources["dropped"])
    assert key["incidents_read"] == key["incidents_used"] + key["incidents_dropped"]
    m = _read(out / "measures.csv")
    city = m[(m["level"] == "city") & (m["period"] == "2023") & (m["category"] == "all")].set_index("measure")["value"]
    k, pop = city["count"], city["population"]
    assert key["city_incidents_2023"] == k
    assert key["city_incident_rate_2023"] == pytest.approx(k / pop * 1000, rel=1e-12)
    lower, upper = _garwood(k, pop, 1000)
    assert key["city_incident_rate_2023_lower"] == pytest.approx(lower, rel=1e-9)
    assert key["city_incident_rate_2023_upper"] == pytest.approx(upper, rel=1e-9)
    assert key["map_bytes"] > 100_000
    assert {"areas.gpkg", "shapefiles.zip", "indicators.csv", "report_card.csv", "metadata.json"} <= set(key["public_files"])


@pytest.mark.slow
def test_hotspot_analysis(demo, tmp_path, monkeypatch):
    import geopandas as gpd

    out, _ = demo
    key, _ = run_notebook("02_hotspot_analysis", tmp_path, monkeypatch, out)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert key["kde_bandwidth_run_m"] == run["hotspots"]["kde"]["bandwidth"]
    assert key["kde_bandwidth_recomputed_m"] == pytest.approx(run["hotspots"]["kde"]["bandwidth"], rel=1e-12)
    cells = gpd.read_file(out / "hotspots.gpkg", layer="h3_9")
    z, p = cells["gistar_z"].to_numpy(), cells["gistar_p"].to_numpy()
    # reference: raw bins from the p-values, FDR bins from scipy's Benjamini–Hochberg (90 % = Gi_Bin ≥ 1)
    assert key["hot_cells_raw"] == int(((p < 0.10) & (z > 0)).sum())
    assert key["cold_cells_raw"] == int(((p < 0.10) & (z < 0)).sum())
    assert key["hot_cells_fdr"] == int(((false_discovery_control(p, method="bh") < 0.10) & (z > 0)).sum())
    assert key["hot_cells_fdr"] < key["hot_cells_raw"]
    assert key["h3_cells"] == run["units"]["h3_9"] == sum(key["emerging_patterns"].values())
    nbhd = gpd.read_file(out / "hotspots.gpkg", layer="neighbourhood")
    # reference: HH in the Moran scatterplot and significant under BH FDR (scipy) of p_sim at alpha 0.05
    lisa_fdr = false_discovery_control(nbhd["lisa_p_sim"].to_numpy(), method="bh")
    assert key["lisa_hh_neighbourhoods"] == int(((lisa_fdr < 0.05) & (nbhd["lisa_scatter_quadrant"] == "HH")).sum())
    # planted truths: the treated hot spot lost 40 % from 2022, so its cells are diminishing; no near repeats planted
    assert key["diminishing_cells_in_treated_area"] >= 3
    m = _read(out / "measures.csv")
    burglaries = m[(m["level"] == "city") & (m["period"] == run["hotspots"]["period"]) & (m["measure"] == "count")
                   & (m["category"] == "burglary")]["value"].iloc[0]
    assert key["knox_points"] == burglaries
    assert 0.9 < key["knox_max_ratio"] < 1.3


@pytest.mark.slow
def test_neighbourhood_review(demo, tmp_path, monkeypatch):
    out, _ = demo
    key, _ = run_notebook("03_neighbourhood_review", tmp_path, monkeypatch, out)
    m = _read(out / "measures.csv")
    now = m[(m["period"] == "2023") & (m["measure"] == "count")]
    city_counts = now[now["level"] == "city"].set_index("category")["value"]
    pop = m[(m["level"] == "city") & (m["period"] == "2023") & (m["measure"] == "population")]["value"].iloc[0]
    k = city_counts[VIOLENT].sum()
    assert key["city_violent_crimes_current"] == k
    assert key["city_violent_crime_rate_current"] == pytest.approx(k / pop * 1000, rel=1e-12)
    lower, upper = _garwood(k, pop, 1000)
    assert key["city_violent_crime_rate_current_lower"] == pytest.approx(lower, rel=1e-9)
    assert key["city_violent_crime_rate_current_upper"] == pytest.approx(upper, rel=1e-9)
    # rollup: D1 = Σ its neighbourhoods, rate of the sums ≠ mean of the rates
    d1 = now[(now["level"] == "district") & (now["unit_id"] == "D1") & (now["category"] == "all")]["value"].iloc[0]
    assert key["d1_incidents_sum_of_neighbourhoods"] == d1
    d1_pop = m[(m["level"] == "district") & (m["unit_id"] == "D1") & (m["period"] == "2023")
               & (m["measure"] == "population")]["value"].iloc[0]
    assert key["d1_rate_from_sums"] == pytest.approx(d1 / d1_pop * 1000, rel=1e-9)
    assert abs(key["d1_mean_of_rates"] - key["d1_rate_from_sums"]) > 1
    # Gini by hand from the neighbourhood counts: Σ (2i − n − 1) x_(i) / (n N)
    x = np.sort(now[(now["level"] == "neighbourhood") & (now["category"] == "all")]["value"].to_numpy(float))
    n = len(x)
    assert key["gini_neighbourhood"] == pytest.approx(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum()), rel=1e-9)
    # impact: the notebook's numbers are impact.json's, and recover the planted truth
    impact = json.loads((out / "impact.json").read_text(encoding="utf-8"))
    truth = json.loads((out / "inputs" / "planted_truths.json").read_text(encoding="utf-8"))["intervention"]
    assert key["gross_effect_relative"] == impact["gross_effect"]["relative"]
    assert key["wdq"] == impact["wdq"] and key["tne"] == impact["tne"]
    assert key["prevented"] == pytest.approx(-impact["net_effect"]["absolute"], rel=1e-9)
    assert key["tne"] == pytest.approx(key["prevented"] - key["displaced"], rel=1e-9)
    assert key["gross_effect_relative"] == pytest.approx(-truth["reduction_fraction"], abs=0.03)
    assert key["prevented"] == pytest.approx(truth["n_removed"], rel=0.05)
    assert key["displaced"] == pytest.approx(truth["n_displaced"], rel=0.15)
    assert key["displaced"] / key["prevented"] == pytest.approx(truth["displacement_fraction"], abs=0.05)
    assert key["treated_observed_by_year"] == truth["observed_counts_by_year"]["treated"]
    progress = _read(out / "progress.csv")
    status = progress[(progress["level"] == "city") & (progress["indicator"] == "violent_crime_rate")]["status"].iloc[0]
    assert key["city_violent_target_status"] == status


@pytest.mark.slow
def test_exporting(demo, tmp_path, monkeypatch):
    out, _ = demo
    key, _ = run_notebook("04_exporting", tmp_path, monkeypatch, out)
    public_dir = Path(key["public_dir"])
    assert tmp_path in public_dir.parents
    public, internal = _read(public_dir / "indicators.csv"), _read(out / "indicators.csv")
    k = key["k"]
    assert k == json.loads((out / "run.json").read_text(encoding="utf-8"))["outputs"]["suppression_threshold"]
    for indicator in ("incident_rate", "violent_crime_rate", "homicide_rate"):
        n = public[f"{indicator}_n"].dropna()
        assert not n.between(1, k - 1).any(), indicator  # the rule, checked on the published file
        assert key["counts_published"][indicator]["published"] == len(n)
        assert key["counts_published"][indicator]["between 1 and k-1"] == 0
    # every small homicide count of the internal run is withheld in the public file (primary suppression)
    merged = internal.merge(public, on=["level", "unit_id", "period"], suffixes=("_int", "_pub"))
    nb = merged[merged["level"] == "neighbourhood"]
    withheld = nb["homicide_rate_flags_pub"].fillna("").str.contains("suppressed")
    assert withheld[nb["homicide_rate_n_int"].between(1, k - 1)].all()
    assert key["homicide_suppressed_neighbourhood_rows"] == int(withheld.sum())
    example = nb.set_index(["unit_id", "period"]).loc[tuple(key["complementary_example"])]
    assert example["homicide_rate_n_int"] >= k and np.isnan(example["homicide_rate_pub"])
    metadata = json.loads((public_dir / "metadata.json").read_text(encoding="utf-8"))
    assert key["rows_suppressed"] == metadata["suppression"]["report"]["rows_suppressed"]
    with zipfile.ZipFile(public_dir / "shapefiles.zip") as z:
        assert sorted(z.namelist()) == key["shapefile_members"]
    levels = {"city", "district", "neighbourhood", "h3_9"}
    members = set(key["shapefile_members"])
    stems = {m.rsplit(".", 1)[0] for m in members if m != "fields.csv"}
    assert "fields.csv" in members  # long layout: a shapefile per level and period, hot spot and impact layers
    assert all({f"{s}.{ext}" for ext in ("shp", "shx", "dbf", "prj", "cpg")} <= members for s in stems)
    assert all(any(s.startswith(f"{lv}_") for s in stems) for lv in levels)
    card = pd.read_csv(public_dir / "report_card.csv")
    assert key["report_card_indicators"] == sorted(card["indicator"])


@pytest.mark.slow
def test_global_level(demo, tmp_path, monkeypatch):
    import geopandas as gpd
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    out, _ = demo
    key, _ = run_notebook("05_global_level", tmp_path, monkeypatch, out)
    # peer review: the Demo City's value is its own card's (public rounding allowed)
    card = {r["indicator"]: r for r in json.loads((out / "report_card.json").read_text(encoding="utf-8"))}
    assert key["peer_cities"] == ["Demo City", "Seven Hills"]
    assert key["peer_incident_rate"]["Demo City"] == pytest.approx(card["incident_rate"]["value"], rel=1e-3)
    assert key["peer_not_comparable_rows"] == 0 and key["peer_comparable_rows"] == 2 * len(card)

    m = _read(out / "measures.csv")
    nb = m[(m["level"] == "neighbourhood") & (m["period"] == "2023") & (m["category"] == "all")]
    units = gpd.read_file(out / "units.gpkg", layer="neighbourhood").sort_values("unit_id").reset_index(drop=True)
    counts = nb[nb["measure"] == "count"].set_index("unit_id")["value"].reindex(units["unit_id"]).fillna(0).to_numpy()
    pop = nb[nb["measure"] == "population"].set_index("unit_id")["value"].reindex(units["unit_id"]).to_numpy()

    # Fay-Herriot, by hand for N01: the direct share is the weighted share of "very safe"/"safe" among
    # those who answered (never-go-out counted as not safe), and the EBLUP is gamma·direct + (1-gamma)·x'beta
    survey = pd.read_csv(out / "inputs" / "survey.csv", dtype=str)
    w = pd.to_numeric(survey["design_weight"], errors="coerce")
    n01 = survey[(survey["nbhd_id"] == "N01") & survey["interview_date"].str.startswith("2023") & w.ge(0)]
    answer = n01["q_safe_after_dark"].str.lower()
    counted = answer.isin(["very safe", "safe", "unsafe", "very unsafe", "never go out alone after dark"])
    wn = w.loc[n01.index][counted]
    direct = float((wn * answer[counted].isin(["very safe", "safe"])).sum() / wn.sum())
    assert key["fh_direct_N01"] == pytest.approx(direct, rel=1e-12)
    i = int(np.flatnonzero(units["unit_id"] == "N01")[0])
    x = np.log((counts[i] + 0.5) / pop[i] * 1000)
    gamma = key["fh_sigma2_u"] / (key["fh_sigma2_u"] + key["fh_direct_variance_N01"])
    synthetic = key["fh_beta"][0] + key["fh_beta"][1] * x
    assert key["fh_eblup_N01"] == pytest.approx(gamma * direct + (1 - gamma) * synthetic, rel=1e-12)
    assert key["fh_units"] == len(units) and 0 < key["fh_mean_gamma"] < 1

    # negative binomial: refitted here with statsmodels' own NB2 maximum likelihood
    area = units.geometry.area.to_numpy() / 1e6
    centre = units.geometry.union_all().centroid
    X = sm.add_constant(np.column_stack([pop / area / 1000, units.geometry.centroid.distance(centre).to_numpy() / 1000]))
    ref = NegativeBinomial(counts, X, offset=np.log(pop), loglike_method="nb2").fit(disp=False, maxiter=500, method="bfgs")
    assert key["nb_units"] == len(units)
    assert key["nb_rate_ratio_density"] == pytest.approx(np.exp(ref.params[1]), rel=1e-4)
    assert key["nb_rate_ratio_distance"] == pytest.approx(np.exp(ref.params[2]), rel=1e-4)
    assert key["nb_theta"] == pytest.approx(1 / ref.params[-1], rel=1e-3)

    # risk terrain: cells of 250 m whose centre is in the city, 2023 incidents counted by hand per cell
    import shapely

    city = shapely.union_all(units.geometry.to_numpy())
    minx, miny, maxx, maxy = city.bounds
    x0, y0 = np.floor(minx / 250) * 250, np.floor(miny / 250) * 250
    x1, y1 = np.ceil(maxx / 250) * 250, np.ceil(maxy / 250) * 250
    cx, cy = np.meshgrid(np.arange(x0 + 125, x1, 250), np.arange(y0 + 125, y1, 250))
    inside = shapely.contains_xy(city, cx, cy)
    assert key["rtm_cells"] == int(inside.sum()) and key["rtm_bars"] == 40
    inc = pd.read_csv(out / "inputs" / "incidents.csv", dtype=str)
    inc = inc[inc["occurred_at"].str.startswith("2023", na=False)]
    lon, lat = pd.to_numeric(inc["longitude"], errors="coerce"), pd.to_numeric(inc["latitude"], errors="coerce")
    ok = (lon.notna() & lat.notna()).to_numpy()
    xy = gpd.GeoSeries(gpd.points_from_xy(lon[ok], lat[ok]), crs="EPSG:4326").to_crs(units.crs)
    h, _, _ = np.histogram2d(xy.y, xy.x, bins=[np.arange(y0, y1 + 1, 250), np.arange(x0, x1 + 1, 250)])
    assert key["rtm_incidents_in_cells"] == int(h[inside].sum())
    assert key["rtm_rr_mean"] == pytest.approx(1.0, rel=1e-9)
    for r in key["rtm_rate_ratios"].values():
        assert r["rr_lower"] < r["rate_ratio"] < r["rr_upper"]
