"""Chicago: assault rates per 1,000 residents by community area with exact intervals, and the
perceived-safety scores (an area table without sample sizes) beside them."""

from __future__ import annotations


import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, chicago_rate_run, need_shared


@pytest.fixture(scope="module")
def chicago_run(tmp_path_factory):
    csv, cca = need_shared(*CHICAGO_ASSAULTS), need_shared(*CHICAGO_AREAS)
    sentiment = need_shared("chicago-police-sentiment-by-community-area", "ChicagoPolice_Sentiment.csv")
    out = chicago_rate_run(tmp_path_factory.mktemp("chicago"), 2010, extra_inputs=f"""

        [inputs.perception]
        path = "{sentiment}"
        unit = "Community"
        unit_level = "community_area"
        match = "name"
        period = "Year"
        scores = ["safety"]
    """)
    return out, csv, cca


def test_assault_rates_with_intervals_by_community_area(chicago_run):
    out, csv, cca = chicago_run
    wide = pd.read_csv(out / "indicators.csv", dtype={"unit_id": str, "period": str})
    ca = wide[wide.level == "community_area"]
    assert len(ca) == 77 * 10
    assert (ca.incident_rate_lower <= ca.incident_rate).all() and (ca.incident_rate <= ca.incident_rate_upper).all()

    # one area and year by hand, from an independent sjoin and the shapefile's TOT_POP
    raw = pd.read_csv(csv, parse_dates=["date"])
    areas = gpd.read_file(f"zip://{cca}!Chicago_2020.shp")
    pts = gpd.GeoDataFrame(raw, geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs=4326).to_crs(areas.crs)
    joined = gpd.sjoin(pts, areas[["area_num_1", "TOT_POP", "geometry"]], predicate="within")
    austin = joined[(joined.area_num_1.astype(float) == 25) & (joined.date.dt.year == 2019)]
    k, pop = len(austin), float(areas.loc[areas.area_num_1.astype(float) == 25, "TOT_POP"].iloc[0])
    row = ca[(ca.unit_id == "25") & (ca.period == "2019")].iloc[0]
    assert row["name"] == "AUSTIN" and row["incident_rate_n"] == k
    assert np.isclose(row.incident_rate, k / pop * 1000, rtol=1e-12)
    assert np.isclose(row.incident_rate_lower, chi2.ppf(0.025, 2 * k) / 2 / pop * 1000, rtol=1e-9)
    assert np.isclose(row.incident_rate_upper, chi2.ppf(0.975, 2 * k + 2) / 2 / pop * 1000, rtol=1e-9)


def test_perceived_safety_beside_the_rates(chicago_run):
    out, _, _ = chicago_run
    wide = pd.read_csv(out / "indicators.csv", dtype={"unit_id": str, "period": str})
    ca = wide[wide.level == "community_area"].set_index(["unit_id", "period"])
    sentiment = pd.read_csv(need_shared("chicago-police-sentiment-by-community-area", "ChicagoPolice_Sentiment.csv"))
    rogers_park_2017 = sentiment[(sentiment.Community == "Rogers Park") & (sentiment.Year == 2017)]["safety"].iloc[0]
    assert ca.loc[("1", "2017"), "safety"] == rogers_park_2017  # shown as it is
    assert ca.loc[("1", "2017"), "safety_flags"] == "no_sample_size"
    assert np.isnan(ca.loc[("1", "2017"), "safety_lower"])  # no interval without respondents
    assert ca.loc[(slice(None), ["2017", "2018", "2019"]), "safety"].notna().sum() == 77 * 3
    gap = pd.read_csv(out / "gap.csv", dtype={"unit_id": str, "period": str})
    assert set(gap.period) == {"2017", "2018", "2019"} and (gap.level == "community_area").sum() == 77 * 3
    # across areas, a higher assault rate goes with lower perceived safety
    g = gap[(gap.level == "community_area") & (gap.period == "2019")]
    assert np.corrcoef(g.value_rate, g.value_perception)[0, 1] < -0.3
    progress = pd.read_csv(out / "progress.csv", dtype={"unit_id": str})
    city = progress[(progress.level == "city")].iloc[0]
    assert city.baseline == 2010 and city.current == 2019 and city.change_lower <= city.change <= city.change_upper
