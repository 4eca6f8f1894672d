"""`usm-geo reconcile` (issue 21 point 2) on real records: the City of London Police's street-level
crimes for January–March 2019 (tests/data/city-of-london) as source A, and as source B a second
"system" made here from them — a seeded 40 % of A's crimes that have an id (the same ids, as a second
system recording the same incidents would) plus every anti-social-behaviour report of March (no id:
never linkable). Boundaries: the LSOAs of tests/data/london. Counts are checked against geopandas
sjoin of the raw points and pandas; linked counts against pandas on the ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = [DATA / "city-of-london" / f"2019-0{m}-city-of-london-street.csv" for m in (1, 2, 3)]
LSOA = DATA / "london" / "lsoa2011.shp"


def _study(name: str, path: Path) -> str:
    return f"""
[study]
name = "{name}"
timezone = "Europe/London"
working_crs = "EPSG:27700"

[inputs.incidents]
path = "{path.as_posix()}"
lon = "Longitude"
lat = "Latitude"
datetime = "Month"
category = "Crime type"
id = "Crime ID"

[[inputs.boundaries]]
level = "lsoa"
path = "{LSOA.as_posix()}"
id = "LSOA11CD"
name = "LSOA11NM"

[periods]
frequency = "month"
start = 2019-01-01
end = 2019-03-31
"""


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reconcile")
    a = pd.concat([pd.read_csv(f, dtype=str) for f in FILES], ignore_index=True)
    with_id = a[a["Crime ID"].notna()]
    rng = np.random.default_rng(2019)
    b = pd.concat([with_id.iloc[np.sort(rng.choice(len(with_id), size=int(0.4 * len(with_id)), replace=False))],
                   a[(a["Crime type"] == "Anti-social behaviour") & (a["Month"] == "2019-03")]], ignore_index=True)
    a.to_csv(folder / "a.csv", index=False)
    b.to_csv(folder / "b.csv", index=False)
    for name, label in (("a", "Police records"), ("b", "Second system")):
        (folder / f"{name}.toml").write_text(_study(label, folder / f"{name}.csv"), encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["reconcile", str(folder / "a.toml"), str(folder / "b.toml"), "--link", "id",
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return a, b, out, result.output


def _per_lsoa_month(frame: pd.DataFrame, lsoa: gpd.GeoDataFrame) -> pd.Series:
    pts = frame.dropna(subset=["Longitude", "Latitude"])
    g = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(pts["Longitude"].astype(float), pts["Latitude"].astype(float)),
                         crs=4326).to_crs(27700)
    j = gpd.sjoin(g, lsoa[["LSOA11CD", "geometry"]], predicate="within", how="inner")
    return j.groupby(["LSOA11CD", "Month"]).size()


def test_counts_equal_an_independent_join(sources):
    a, b, out, _ = sources
    lsoa = gpd.read_file(LSOA)
    table = pd.read_csv(out / "reconciliation.csv", dtype={"unit_id": str, "period": str})
    t = table[table["level"] == "lsoa"].set_index(["unit_id", "period"])
    for side, frame in (("a", a), ("b", b)):
        want = _per_lsoa_month(frame, lsoa)
        got = t[side]
        assert got[got > 0].sort_index().to_dict() == want.sort_index().to_dict()
    assert (t["difference"] == t["a"] - t["b"]).all()
    city = table[table["level"] == "city"].set_index("period")
    # the study area is the union of the LSOAs: points of the force outside the four boroughs are
    # outside it (ledger: outside_study_area), so the city holds exactly the joined points
    assert city["a"].to_dict() == _per_lsoa_month(a, lsoa).groupby(level="Month").sum().to_dict()


def test_linked_records_and_chapman(sources):
    a, b, out, text = sources
    table = pd.read_csv(out / "reconciliation.csv", dtype={"unit_id": str, "period": str})
    city = table[table["level"] == "city"].set_index("period")
    # by hand: a crime in both systems is one whose id is in both (and has coordinates in both)
    lsoa = gpd.read_file(LSOA)

    def inside(frame):  # records with coordinates inside the study area (the LSOAs)
        pts = frame.dropna(subset=["Longitude", "Latitude"])
        g = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(pts["Longitude"].astype(float), pts["Latitude"].astype(float)),
                             crs=4326).to_crs(27700)
        return gpd.sjoin(g, lsoa[["geometry"]], predicate="within", how="inner").drop(columns="index_right")

    ok_a, ok_b = inside(a), inside(b)
    ok_a, ok_b = ok_a[ok_a["Crime ID"].notna()], ok_b[ok_b["Crime ID"].notna()]
    # one to one: an id twice in A (police.uk repeats a crime whose outcome changed) and once in B
    # is one linked incident; it is placed in the month of its first record in A
    per_id = pd.concat([ok_a.groupby("Crime ID").size().rename("a"), ok_b.groupby("Crime ID").size().rename("b")],
                       axis=1).fillna(0)
    linked = np.minimum(per_id["a"], per_id["b"])
    month = ok_a.drop_duplicates("Crime ID").set_index("Crime ID")["Month"]
    want_m = linked[linked > 0].groupby(month.reindex(linked[linked > 0].index)).sum().astype(int)
    assert city["m"].to_dict() == want_m.to_dict()
    for month, row in city.iterrows():
        n1, n2, m = row["a"], row["b"], row["m"]
        assert row["total_estimate"] == pytest.approx((n1 + 1) * (n2 + 1) / (m + 1) - 1, rel=1e-12)
        assert row["total_lower"] >= n1 + n2 - m
    summary = json.loads((out / "reconciliation.json").read_text(encoding="utf-8"))
    assert summary["link"] == ["id"] and "independently" in summary["notes"][-1]
    # March: B added every ASB report, so the two systems differ beyond chance somewhere in March
    march = table[(table["period"] == "2019-03") & (table["level"] == "lsoa")]
    assert (march["flags"] == "sources_differ").any()
    assert "unit-periods where the sources differ" in text


def test_map_of_where_sources_disagree(sources):
    _, _, out, _ = sources
    html = (out / "reconciliation.html").read_text(encoding="utf-8")
    assert "<script src=" not in html and "<link rel=\"stylesheet\" href=\"http" not in html  # self-contained
    assert "Police records (police) minus Second system (police): recorded incidents" in html
    assert "recorded incidents · 2019-03" in html  # the legend: what is drawn and for which period
