"""A run with ``profile = "public"`` publishes exactly what ``usm-geo export RUN --profile public``
publishes from the same run folder: both protect Σ neighbourhoods = district (the Demo City's
neighbourhoods nest in its districts), so no suppressed neighbourhood count can be recovered by
subtracting its published siblings from the published district.

Regression: the run used to make its own public files from the crosswalk without its ``nested``
column, so those files protected only the relations to the city (found by the reconciliation work).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

K = 5


@pytest.fixture(scope="module")
def public_run(demo, tmp_path_factory):
    out, _ = demo
    text = (out / "inputs" / "study.toml").read_text(encoding="utf-8")
    assert 'profile = "internal"' in text and "suppression_threshold = 5" in text  # the demo's own run is internal
    study = out / "inputs" / "public_study.toml"
    study.write_text(text.replace('profile = "internal"', 'profile = "public"'), encoding="utf-8")
    folder = tmp_path_factory.mktemp("public") / "run"
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(folder), "--quiet"])
    assert result.exit_code == 0, result.output
    exported = folder.parent / "export"
    result = CliRunner().invoke(main, ["export", str(folder), "--profile", "public", "--format", "gpkg",
                                       "--out", str(exported)])
    assert result.exit_code == 0, result.output
    return folder, exported


def _layer(path, level):
    return pyogrio.read_dataframe(path, layer=level, read_geometry=False)


def test_the_runs_public_areas_equal_the_public_export(public_run):
    folder, exported = public_run
    for level in ("neighbourhood", "district", "city"):
        mine, theirs = _layer(folder / "areas.gpkg", level), _layer(exported / "areas.gpkg", level)
        pd.testing.assert_frame_equal(mine, theirs)


def test_no_suppressed_neighbourhood_count_is_recoverable_from_its_district(public_run):
    folder, _ = public_run
    crosswalk = pd.read_csv(folder / "crosswalk.csv", dtype=str)
    pair = crosswalk[(crosswalk["level"] == "neighbourhood") & (crosswalk["to_level"] == "district")]
    assert pair["nested"].str.lower().eq("true").all() and len(pair) == 60
    parent = dict(zip(pair["unit_id"], pair["to_unit_id"]))
    nb, district = _layer(folder / "areas.gpkg", "neighbourhood"), _layer(folder / "areas.gpkg", "district")
    # a rate's _n is its event count (the numerator), the number the public profile protects
    counts = ["homicide_rate_n", "incident_rate_n", "violent_crime_rate_n"]
    nb = nb.assign(district=nb["unit_id"].map(parent))
    checked = suppressed_children = 0
    for col in counts:
        for (d, period), group in nb.groupby(["district", "period"]):
            top = district.loc[(district["unit_id"] == d) & (district["period"] == period), col]
            hidden = group[col].isna()
            suppressed_children += int(hidden.sum())
            if len(top) and np.isfinite(top.iloc[0]):
                checked += 1
                # one hidden child under a published parent is the published parent minus the others
                assert hidden.sum() != 1, (col, d, period)
                if hidden.sum() == 0:
                    assert group[col].sum() == pytest.approx(top.iloc[0])
    assert checked > 50 and suppressed_children > 0
    # and no count from 1 to k-1 is published anywhere
    for col in counts:
        v = nb[col].dropna()
        assert not ((v >= 1) & (v < K)).any(), col
