"""The 148,636 Chicago assaults: H3 cells of the fast exact path equal h3-py's for every record, and
the counts per cell equal a pandas groupby of the h3-py cells."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from shared_data import CHICAGO_ASSAULTS, need_shared
from usm_geo.units.h3cells import cells_to_str, points_to_cells


@pytest.fixture(scope="module")
def assaults():
    raw = pd.read_csv(need_shared(*CHICAGO_ASSAULTS), usecols=["longitude", "latitude"])
    ok = np.isfinite(raw.longitude) & np.isfinite(raw.latitude)
    return raw.longitude.to_numpy()[ok], raw.latitude.to_numpy()[ok]


@pytest.mark.parametrize("res", [7, 9, 11])
def test_chicago_cells_and_counts_equal_h3(assaults, res):
    lon, lat = assaults
    assert lon.shape[0] > 140_000
    got = points_to_cells(lon, lat, res)
    ids = [h3.latlng_to_cell(b, a, res) for a, b in zip(lon.tolist(), lat.tolist())]
    np.testing.assert_array_equal(cells_to_str(got), np.array(ids, dtype=object))
    want = pd.DataFrame({"cell": ids}).groupby("cell").size()
    counts = pd.Series(cells_to_str(got)).value_counts().sort_index()
    pd.testing.assert_series_equal(counts, want, check_names=False)
