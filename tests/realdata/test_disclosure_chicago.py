"""The public profile on Chicago's aggravated assaults (2017–2019, 13 location categories, 77
community areas and ~870 H3 cells of resolution 8): every count of 1–4 is hidden and the attacker
of tests/unit/test_disclosure.py learns none of them."""

from __future__ import annotations


import pandas as pd
import pytest
from shared_data import chicago_rate_run
from unit.test_disclosure import check_attack

from usm_geo.disclosure import apply_profile

pytestmark = pytest.mark.realdata
K = 5


@pytest.fixture(scope="module")
def chicago_run(tmp_path_factory):
    return chicago_rate_run(tmp_path_factory.mktemp("chicago-disclosure"), 2017, category=True, h3_resolution=8)


def _read(path):
    return pd.read_csv(path, dtype={"unit_id": str, "period": str, "category": str}, keep_default_na=False,
                       na_values=[""], low_memory=False)


def test_chicago_public_profile_resists_the_attacker(chicago_run):
    measures = _read(chicago_run / "measures.csv")
    crosswalk = _read(chicago_run / "crosswalk.csv")
    public, report = apply_profile(measures, crosswalk, profile="public", k=K)
    assert set(measures.level) == {"h3_8", "community_area", "city"}
    small = measures.measure.isin(["count"]) & measures["n"].between(1, K - 1)
    assert small.sum() > 5_000 and public.loc[small, "value"].isna().all()
    rate_small = measures.measure.str.contains("rate") & measures["numerator"].between(1, K - 1)
    assert public.loc[rate_small, ["value", "lower", "upper", "numerator"]].isna().all().all()
    stats = check_attack(measures, public, crosswalk, k=K)
    assert stats["hidden_small"] > 5_000
    assert report["suppressed_cells"]["community_area"]["primary"] > 500
    assert report["suppressed_cells"]["city"]["primary"] == 0
    # the city's count of every location category is published
    city = (public.level == "city") & (public.measure == "count")
    assert public.loc[city, "value"].notna().all()
    assert report["audit"]["exposed_per_pass"][-1] == 0 and report["unresolved_relations"] == 0


def test_chicago_public_export_in_one_command(chicago_run, tmp_path):
    import geopandas as gpd
    from click.testing import CliRunner

    from usm_geo.cli import main

    out = tmp_path / "public"
    r = CliRunner().invoke(main, ["export", str(chicago_run), "--profile", "public", "--format", "gpkg",
                                  "--format", "shp", "--out", str(out)])
    assert r.exit_code == 0, r.output
    areas = gpd.read_file(out / "areas.gpkg", layer="community_area")
    assert len(areas) == 77 * 3
    n = pd.to_numeric(areas["incident_rate_n"], errors="coerce")
    assert not n.between(1, K - 1).any()  # no small count survives into the public file
    assert not {"lon", "lat", "x", "y", "longitude", "latitude"} & set(map(str.lower, areas.columns))
    assert (out / "shapefiles.zip").is_file() and (out / "report_card.json").is_file()
