"""Property tests (hypothesis) over whole small studies: random incidents — inside, outside, on the
shared edge of the two neighbourhoods, with bad coordinates and dates — go through intake, units and
measures. Whatever they hold:

* the ledger invariant: read = used + dropped, every dropped row listed once;
* assignment is a function: every used incident is in exactly one unit of every level;
* rollups add up: city = Σ neighbourhoods = Σ H3 cells = used incidents, per period;
* determinism: the same inputs give the same measures, ledger and map, byte for byte.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from usm_geo.errors import InputFileError
from usm_geo.maps import MapInputs, build_map
from usm_geo.pipeline import run_measures, run_units

from .helpers import CRS, SIDE, X0, Y0, incidents_csv, neighbourhoods, run, study_file

PROPS = settings(max_examples=int(os.environ.get("USM_GEO_FUZZ_EXAMPLES", "25")), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

# x, y in metres relative to the square's corner: inside, on the shared edge (x = SIDE/2), outside
OFFSET = st.one_of(st.floats(0, SIDE), st.just(SIDE / 2), st.floats(-3000, SIDE + 3000))
DATE = st.sampled_from(["2021-01-15", "2021-07-01", "2022-03-09", "2022-12-31", "2023-02-30", "", "15/13/2021"])
BAD = st.sampled_from(["", "nan", "abc", "inf", "0"])


@st.composite
def rows(draw):
    out = []
    for i in range(1, draw(st.integers(1, 40)) + 1):
        dx, dy = draw(OFFSET), draw(OFFSET)
        lon, lat = TO_LONLAT.transform(X0 + dx, Y0 + dy)
        lon_s, lat_s = f"{lon:.7f}", f"{lat:.7f}"
        if draw(st.integers(0, 9)) == 0:  # one in ten: a broken coordinate
            lon_s = draw(BAD)
        out.append(f"{i},{lon_s},{lat_s},{draw(DATE)},{draw(st.sampled_from(['theft', 'assault']))}")
    return out


def run_all(folder, lines):
    incidents_csv(folder, *lines)
    study = study_file(folder, extra='[units]\nh3_resolution = [8]\n\n[periods]\nfrequency = "year"\n'
                                     'start = 2021-01-01\nend = 2022-12-31')
    intake = run(study)  # checks read = used + dropped with the dropped rows counted in the ledger
    located = run_units(intake)
    return intake, located, run_measures(intake, located)


@PROPS
@given(lines=rows())
def test_every_incident_is_counted_once_or_ledgered(tmp_path_factory, lines):
    folder = tmp_path_factory.mktemp("prop")
    try:
        intake, located, measures = run_all(folder, lines)
    except InputFileError as exc:  # nothing usable: a clear error that says why, no half result
        assert "no usable records" in exc.what and exc.fix
        return
    totals = intake.ledger.totals()["incidents"]
    assert totals["read"] == len(lines)
    dropped = intake.ledger.dropped_rows("incidents")
    assert len(dropped) == len(set(dropped)) == totals["dropped"]  # each dropped row listed once
    used = totals["used"]
    frame = located.incidents
    # a function: one unit per level for every used incident, never none, never two
    assert len(frame) == used
    for level in ("neighbourhood", "city"):
        assert frame[level].notna().all() and frame[level].isin(set(located.units.levels[level]["unit_id"])).all()
    # the shared edge x = SIDE/2 belongs to exactly one neighbourhood; rollups add up, per year
    counts = measures[(measures["measure"] == "count") & (measures["category"] == "all")]
    by = counts.groupby(["level", "period"])["value"].sum().unstack("level").fillna(0)
    if used:
        for level in ("neighbourhood", "h3_8"):
            assert (by[level] == by["city"]).all(), level
        assert by["city"].sum() == used
    else:
        assert counts["value"].sum() == 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=rows().filter(lambda ls: any(",2021-01-15," in line or ",2022-03-09," in line for line in ls)), values=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=2))
def test_same_inputs_same_bytes(tmp_path_factory, lines, values):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    try:
        ia, _, ma = run_all(a, lines)
    except InputFileError:
        return  # nothing usable (tested above)
    ib, _, mb = run_all(b, lines)
    pd.testing.assert_frame_equal(ma, mb)
    pd.testing.assert_frame_equal(ia.ledger.to_frame(), ib.ledger.to_frame())
    # a map of the same tables twice: the same bytes (ids, numbers and geometry are deterministic)
    layer = neighbourhoods().rename(columns={"nbhd_id": "unit_id", "nbhd_name": "name"})[["unit_id", "name", "geometry"]]
    table = pd.DataFrame({"level": "neighbourhood", "unit_id": ["N1", "N2"], "period": "2021", "rate": values,
                          "rate_lower": np.array(values) * 0.9, "rate_upper": np.array(values) * 1.1,
                          "rate_n": [3, 4], "rate_flags": ["", "small_count"]})
    maps = [build_map(MapInputs(units={"neighbourhood": layer}, table=table), indicator="rate") for _ in range(2)]
    assert maps[0] == maps[1]
