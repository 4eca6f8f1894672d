"""Chicago from PostGIS: the 148,636 aggravated assaults (COPY of the CSV) and the 77 community
areas (ogr2ogr of the zipped shapefile) read from the database give the same counts per area and
the same ledger as the files (../shared/data; skipped when absent, a failure under CI=true)."""

from __future__ import annotations

import datetime as dt
import textwrap

import pandas as pd
import pytest

from pg_helpers import load_csv, load_layer
from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, chicago_study_text, need_shared
from usm_geo.pipeline import run_intake, run_units
from usm_geo.study import load_study

NOW = dt.datetime(2024, 6, 1)


def _counts(study_text: str, folder) -> tuple[pd.Series, pd.DataFrame, dict]:
    path = folder / "study.toml"
    path.write_text(textwrap.dedent(study_text), encoding="utf-8")
    intake = run_intake(load_study(path), now=NOW)
    located = run_units(intake)
    counts = located.incidents["community_area"].value_counts(dropna=False).sort_index()
    return counts, intake.ledger.to_frame(), intake.ledger.totals()


@pytest.mark.realdata
def test_chicago_from_the_database_counts_like_the_files(pg_url, pg, tmp_path):
    csv, cca = need_shared(*CHICAGO_ASSAULTS), need_shared(*CHICAGO_AREAS)
    pg.execute("DROP SCHEMA IF EXISTS chi CASCADE")
    load_csv(pg, csv, "chi", "assaults")
    load_layer(pg_url, f"/vsizip/{cca}/Chicago_2020.shp", None, "chi", "community_areas",
               "-a_srs", "EPSG:4326", "-nlt", "PROMOTE_TO_MULTI", "-lco", "PRECISION=NO")
    files = chicago_study_text()
    database = chicago_study_text(inputs=textwrap.dedent(f"""
        [inputs.incidents]
        source = "{pg_url}"
        query = "SELECT date, loc_cat, longitude, latitude, district FROM chi.assaults ORDER BY seq"
        category = "loc_cat"

        [[inputs.boundaries]]
        level = "community_area"
        source = "{pg_url}"
        table = "chi.community_areas"
        id = "area_num_1"
        name = "community"
    """))
    (tmp_path / "f").mkdir()
    (tmp_path / "d").mkdir()
    want, want_ledger, want_totals = _counts(files, tmp_path / "f")
    got, got_ledger, got_totals = _counts(database, tmp_path / "d")
    assert want_totals["incidents"]["read"] == 148636
    assert got_totals == want_totals
    pd.testing.assert_series_equal(got, want)
    outside = (want_ledger["source"] == "incidents") & (want_ledger["reason"] == "outside_units")
    assert len(want) == 77 and want.sum() + outside.sum() == want_totals["incidents"]["used"]
    pd.testing.assert_frame_equal(got_ledger, want_ledger)
