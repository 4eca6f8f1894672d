"""The 148,636 Chicago aggravated assaults give the same intake with the fast paths and with the
general ones (dates read by pandas, duplicates by the former grouping, the CSV decoded and
re-encoded), and the study area computed on first use is the union intake used to compute."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import shapely

from shared_data import chicago_study_text
from usm_geo.intake import dates, files, records
from usm_geo.pipeline import run_intake
from usm_geo.study import load_study

NOW = dt.datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("chicago_fast") / "study.toml"
    path.write_text(chicago_study_text(), encoding="utf-8")
    return load_study(path)


def _intake(study, fast: bool, monkeypatch):
    monkeypatch.setattr(dates, "FAST", fast)
    monkeypatch.setattr(files, "FAST", fast)
    monkeypatch.setattr(records, "record_groups", _fast_groups if fast else records._record_groups_general)
    return run_intake(study, now=NOW)


_fast_groups = records.record_groups


def test_chicago_intake_same_with_and_without_fast_paths(study, monkeypatch):
    fast = _intake(study, True, monkeypatch)
    slow = _intake(study, False, monkeypatch)
    pd.testing.assert_frame_equal(fast.incidents, slow.incidents)
    pd.testing.assert_frame_equal(fast.ledger.to_frame(), slow.ledger.to_frame())
    assert fast.ledger.totals() == slow.ledger.totals()
    # the duplicates found are real: the ledger's "same as row N" rows are equal in every column
    raw = pd.read_csv(study.incidents.path, dtype=str, keep_default_na=False)
    led = fast.ledger.to_frame()
    dup = led[led["reason"] == "duplicate"]
    assert len(dup) > 50
    twin = dup["detail"].str.removeprefix("same as row ").astype(int).to_numpy()
    assert (raw.iloc[dup["row"].to_numpy() - 1].to_numpy() == raw.iloc[twin - 1].to_numpy()).all()
    # pandas' own duplicated() over the used rows finds the same ones
    used = np.setdiff1d(np.arange(1, len(raw) + 1), led.loc[led["status"] == "dropped", "row"].to_numpy())
    expected = used[raw.iloc[used - 1].duplicated().to_numpy()]
    np.testing.assert_array_equal(np.sort(dup["row"].to_numpy()), expected)


def test_chicago_study_area_on_first_use_is_the_union_of_the_areas(study):
    intake = run_intake(study, now=NOW)
    assert callable(intake.area_or_maker)  # not computed by intake itself
    area = intake.study_area
    expected = shapely.union_all(intake.levels["community_area"].geometry.to_numpy())
    assert shapely.to_wkb(area) == shapely.to_wkb(expected)
    assert intake.study_area is area  # computed once
