"""`usm-geo run` on a study holding police and health records (issue 21 item 2).

The Demo City's assaults and homicides of 2021–2023 are the police records; the health records are
made here from them: a seeded 40 % of them, a quarter of those admitted the day after (so same-day
linking misses them), plus 300 seeded robberies as cases only the hospital saw. Boundaries: the Demo
City's neighbourhoods and districts. Counts are checked against geopandas sjoin of the raw points and
pandas; the run's indicators against a run of the police records alone; the table against
`usm-geo reconcile POLICE HEALTH` (the same code, the same bytes).
"""

from __future__ import annotations

import json
import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.demo import generate_demo_inputs
from usm_geo.disclosure import apply_profile

K = 5

POLICE = '''
[[inputs.incidents]]
path = "police.csv"
lon = "longitude"
lat = "latitude"
datetime = "occurred_at"
category = "category"
id = "incident_id"
'''
HEALTH = '''
[[inputs.incidents]]
path = "health.csv"
lon = "lon"
lat = "lat"
datetime = "admitted"
category_value = "assault"
id = "case"
records = "health"
'''
REST = '''
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

[inputs.population]
path = "population.csv"
level = "neighbourhood"
id = "nbhd_id"
column = "population"

[periods]
frequency = "quarter"
start = "2021-01-01"
end = "2023-12-31"
baseline = "2021-Q1"
current = "2023-Q4"

[intervention]
name = "Safer Streets pilot"
path = "intervention.gpkg"
layer = "treated"
start = "2022-01-01"
buffer = 400
'''


def _study(folder, name, incidents, *, reconcile="", profile="internal"):
    top = '[study]\nname = "Demo City"\ntimezone = "Europe/Berlin"\nworking_crs = "EPSG:32633"\n'
    text = top + incidents + REST + reconcile + f'\n[outputs]\nprofile = "{profile}"\nsuppression_threshold = {K}\n'
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder / name


def _run(*args):
    result = CliRunner().invoke(main, [*map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("police-health")
    generate_demo_inputs(folder)
    demo = pd.read_csv(folder / "incidents.csv", dtype=str)
    t = pd.to_datetime(demo["occurred_at"], errors="coerce")
    in_years = (t >= "2021-01-01") & (t < "2024-01-01")
    police = demo[demo["category"].isin(["assault", "homicide"]) & in_years].reset_index(drop=True)
    police.to_csv(folder / "police.csv", index=False)
    rng = np.random.default_rng(21)
    seen = police.iloc[np.sort(rng.choice(len(police), size=int(0.4 * len(police)), replace=False))]
    robbery = demo[(demo["category"] == "robbery") & in_years]
    only = robbery.iloc[np.sort(rng.choice(len(robbery), size=300, replace=False))]
    both = pd.concat([seen, only], ignore_index=True)
    when = pd.to_datetime(both["occurred_at"]) + pd.to_timedelta(rng.choice([0, 0, 0, 1], size=len(both)), unit="D")
    health = pd.DataFrame({"case": [f"ED{i:06d}" for i in range(len(both))], "admitted": when.dt.strftime("%Y-%m-%d %H:%M"),
                           "lon": both["longitude"], "lat": both["latitude"]})
    health.to_csv(folder / "health.csv", index=False)
    link = '\n[reconcile]\nlink = ["date", "unit"]\n'
    mixed = _study(folder, "mixed.toml", POLICE + HEALTH, reconcile=link)
    out = {"folder": folder, "police": police, "health": health}
    out["mixed_stdout"] = _run("run", mixed, "--out", folder / "mixed", "--quiet")
    _run("run", _study(folder, "police.toml", POLICE), "--out", folder / "police-only", "--quiet")
    _run("run", _study(folder, "public.toml", POLICE + HEALTH, reconcile=link, profile="public"), "--out",
         folder / "public", "--quiet")
    health_study = _study(folder, "health.toml", HEALTH.replace("[[inputs.incidents]]", "[inputs.incidents]"))
    _run("reconcile", folder / "police.toml", health_study, "--link", "date,unit", "--out", folder / "two", "--quiet")
    return out


def _table(folder):
    return pd.read_csv(folder / "reconciliation.csv", dtype={"unit_id": str, "period": str}, keep_default_na=False,
                       na_values=[""])


def _sjoin_counts(points: pd.DataFrame, lon: str, lat: str, when: str, layer: gpd.GeoDataFrame, id_col: str) -> pd.Series:
    t = pd.to_datetime(points[when], errors="coerce")
    pts = points[t.notna() & points[lon].notna()].copy()
    pts["quarter"] = pd.PeriodIndex(pd.to_datetime(pts[when]), freq="Q").strftime("%Y-Q%q")
    g = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(pts[lon].astype(float), pts[lat].astype(float)), crs=4326)
    j = gpd.sjoin(g.to_crs(layer.crs), layer[[id_col, "geometry"]], predicate="within", how="inner")
    j = j[(j["quarter"] >= "2021-Q1") & (j["quarter"] <= "2023-Q4")]
    return j.groupby([id_col, "quarter"]).size()


def test_indicators_hotspots_and_impact_count_the_police_records_alone(runs):
    mixed, alone = runs["folder"] / "mixed", runs["folder"] / "police-only"
    for name in ("measures.csv", "indicators.csv", "impact.json", "progress.csv", "concentration.csv"):
        assert (mixed / name).read_bytes() == (alone / name).read_bytes(), name
    hot_m, hot_a = (gpd.read_file(f / "hotspots.gpkg", layer="neighbourhood") for f in (mixed, alone))
    pd.testing.assert_frame_equal(hot_m, hot_a)


def test_counts_equal_an_independent_join(runs):
    folder = runs["folder"]
    table = _table(folder / "mixed")
    for level, layer_name, id_col in (("neighbourhood", "neighbourhoods", "nbhd_id"), ("district", "districts", "district_id")):
        layer = gpd.read_file(folder / "demo_city.gpkg", layer=layer_name)
        rows = table[table["level"] == level].set_index(["unit_id", "period"])
        for col, frame, lon, lat, when in (("a", runs["police"], "longitude", "latitude", "occurred_at"),
                                           ("b", runs["health"], "lon", "lat", "admitted")):
            ref = _sjoin_counts(frame, lon, lat, when, layer, id_col).reindex(rows.index, fill_value=0)
            np.testing.assert_array_equal(rows[col].to_numpy(), ref.to_numpy(), err_msg=f"{level} {col}")
    city = table[table["level"] == "city"].set_index("period")
    nb = table[table["level"] == "neighbourhood"].groupby("period")[["a", "b", "m"]].sum()
    pd.testing.assert_frame_equal(city[["a", "b", "m"]], nb, check_names=False)  # every point lies in a neighbourhood
    assert (table["difference"] == table["a"] - table["b"]).all()


def test_same_day_links_and_chapman(runs):
    folder = runs["folder"]
    layer = gpd.read_file(folder / "demo_city.gpkg", layer="neighbourhoods")

    def per_day(frame, lon, lat, when):
        t = pd.to_datetime(frame[when], errors="coerce")
        pts = frame[t.notna()]
        g = gpd.GeoDataFrame({"day": pd.to_datetime(pts[when]).dt.strftime("%Y-%m-%d")},
                             geometry=gpd.points_from_xy(pts[lon].astype(float), pts[lat].astype(float)), crs=4326)
        j = gpd.sjoin(g.to_crs(layer.crs), layer[["nbhd_id", "geometry"]], predicate="within", how="inner")
        return j[(j["day"] >= "2021-01-01") & (j["day"] <= "2023-12-31")].groupby(["nbhd_id", "day"]).size()

    p = per_day(runs["police"], "longitude", "latitude", "occurred_at")
    h = per_day(runs["health"], "lon", "lat", "admitted")
    both = pd.concat([p.rename("p"), h.rename("h")], axis=1).fillna(0)
    both["m"] = np.minimum(both["p"], both["h"])  # one to one within a day and unit
    both = both.reset_index()
    both["period"] = pd.PeriodIndex(pd.to_datetime(both["day"]), freq="Q").strftime("%Y-Q%q")
    ref = both.groupby(["nbhd_id", "period"])["m"].sum()
    table = _table(folder / "mixed")
    rows = table[table["level"] == "neighbourhood"].set_index(["unit_id", "period"])
    np.testing.assert_array_equal(rows["m"].to_numpy(), ref.reindex(rows.index, fill_value=0).to_numpy())
    assert rows["m"].sum() > 0.25 * len(runs["police"]) * 0.4  # most of the 40 % are found (3 in 4 on the same day)
    a, b, m = (table[c].to_numpy(float) for c in ("a", "b", "m"))
    ok = m <= np.minimum(a, b)
    np.testing.assert_allclose(table["total_estimate"].to_numpy(float)[ok], ((a + 1) * (b + 1) / (m + 1) - 1)[ok], rtol=1e-12)
    var = (a + 1) * (b + 1) * (a - m) * (b - m) / ((m + 1) ** 2 * (m + 2))
    np.testing.assert_allclose(table["total_se"].to_numpy(float)[ok], np.sqrt(var)[ok], rtol=1e-12)


def test_the_same_table_as_reconciling_two_studies(runs):
    folder = runs["folder"]
    assert (folder / "mixed" / "reconciliation.csv").read_bytes() == (folder / "two" / "reconciliation.csv").read_bytes()


def test_run_json_ledger_and_screen_say_which_records_were_counted(runs):
    folder = runs["folder"] / "mixed"
    info = json.loads((folder / "run.json").read_text())
    recon = info["reconciliation"]
    assert recon["primary"] == "police" and recon["a"]["sources"] == ["incidents/police.csv"]
    assert recon["b"]["sources"] == ["incidents/health.csv"] and recon["link"] == ["date", "unit"]
    assert recon["a"]["used"] == info["sources"]["incidents/police.csv"]["used"]
    assert recon["b"]["used"] == info["sources"]["incidents/health.csv"]["used"]
    assert {"reconciliation.csv", "reconciliation.html"} <= set(info["outputs"]["files"])
    assert "indicators, hot spots and impact count the police records only" in runs["mixed_stdout"]
    assert "the health records (incidents/health.csv" in runs["mixed_stdout"]
    for level, n in recon["units_differing"].items():
        assert f"reconciliation: {level}: {n} unit-periods where the sources differ beyond chance" in runs["mixed_stdout"]
    ledger = pd.read_csv(folder / "ledger.csv")
    assert {"incidents/police.csv", "incidents/health.csv"} <= set(ledger["source"])
    html = (folder / "reconciliation.html").read_text(encoding="utf-8")
    assert "police minus health records" in html and "<script src=\"http" not in html


def test_public_profile_shows_no_count_below_the_threshold(runs):
    folder = runs["folder"]
    public, internal = _table(folder / "public"), _table(folder / "mixed")
    assert len(public) == len(internal)
    for col in ("a", "b", "m"):
        shown = public[col].dropna()
        assert not ((shown >= 1) & (shown < K)).any(), col
        assert (public[col].isna() | (public[col] == internal[col])).all()
    assert ((internal["b"] >= 1) & (internal["b"] < K)).any()  # there was something to withhold
    assert (public["b"] == 0).any()  # zeros are published
    hidden = public["a"].isna() | public["b"].isna()
    assert public.loc[hidden, "difference"].isna().all() and public.loc[hidden, "ratio"].isna().all()
    assert (public.loc[hidden, "flags"] == "suppressed").all()  # not "sources_differ": it would bound them
    assert (public.loc[~hidden, "flags"].fillna("") == internal.loc[~hidden, "flags"].fillna("")).all()
    assert public.loc[public["m"].isna(), "total_estimate"].isna().all()
    # the police counts are withheld wherever the public measures withhold the count of all incidents: as
    # `usm-geo export` publishes them (crosswalk.csv with its nested pairs) and as the run's own public files
    # do (the crosswalk without the nested column)
    measures = pd.read_csv(folder / "public" / "measures.csv", dtype={"unit_id": str, "period": str})
    crosswalk = pd.read_csv(folder / "public" / "crosswalk.csv", dtype={"unit_id": str, "to_unit_id": str})
    shown_a = public[public["a"].notna()]
    shown_a = set(zip(shown_a["level"], shown_a["unit_id"], shown_a["period"]))
    keyed = set(zip(public["level"], public["unit_id"], public["period"]))
    for xw in (crosswalk, crosswalk.drop(columns="nested")):
        pub, _ = apply_profile(measures, xw, profile="public", k=K)
        gone = pub[(pub["measure"] == "count") & (pub["category"] == "all") & pub["value"].isna()]
        gone = set(zip(gone["level"], gone["unit_id"], gone["period"]))
        assert gone & keyed
        assert not (shown_a & gone)
