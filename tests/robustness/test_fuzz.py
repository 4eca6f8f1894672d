"""Fuzzing (hypothesis): whatever bytes a CSV or a study file holds, the reader either works —
with every row used or in the ledger — or raises a UsmGeoError; never another exception.
Run briefly in CI (120 examples each); USM_GEO_FUZZ_EXAMPLES=5000 fuzzes longer."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from usm_geo.errors import UsmGeoError
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import Context, read_point_records
from usm_geo.study import RecordSource, load_study

FUZZ = settings(max_examples=int(os.environ.get("USM_GEO_FUZZ_EXAMPLES", "120")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CELL = st.one_of(
    st.sampled_from(["", "0", "13.4", "52.5", "-87.6", "41.8", "nan", "inf", "n/a", "2021-03-04", "03/04/2021",
                     "2021-02-30 25:61", "theft", "Köln", '"', '""', "1,5", ";", "\t", "x\ny", "9" * 40]),
    st.text(max_size=12),
)


@st.composite
def csv_bytes(draw):
    n_cols = draw(st.integers(1, 6))
    header = draw(st.sampled_from([["lon", "lat", "date", "category"], ["x", "y", "when"], ["a"], ["lon", "lat"],
                                   ["longitude", "latitude", "date", "type", "lon"]]))
    header = (header + [f"c{i}" for i in range(n_cols)])[: max(n_cols, 1)]
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=n_cols + 2), max_size=15))
    text = delim.join(header) + "\n" + "\n".join(delim.join(r) for r in rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))
    return data


@FUZZ
@given(data=csv_bytes())
def test_csv_reader_never_crashes(tmp_path_factory, data):
    path: Path = tmp_path_factory.mktemp("fuzz") / "inc.csv"
    path.write_bytes(data)
    ledger = Ledger()
    ctx = Context(working_crs=CRS.from_epsg(32633), now=dt.datetime(2026, 1, 1))
    try:
        out = read_point_records(RecordSource(name="incidents", path=path), ledger, ctx)
    except UsmGeoError as exc:
        assert str(path) in str(exc) or "study" in str(exc) or exc.where is None or exc.fix
        return
    t = ledger.totals()["incidents"]
    assert t["read"] == t["used"] + t["dropped"] == t["used"] + len(ledger.dropped_rows("incidents"))
    assert len(out) == t["used"] and np.isfinite(out[["x", "y"]].to_numpy()).all()


TOML_PIECES = st.sampled_from([
    "[study]", "[inputs.incidents]", 'path = "inc.csv"', 'lon = "lon"', 'lat = "lat"', "seed = 3", 'seed = "x"',
    "[[inputs.boundaries]]", 'level = "n"', 'id = "id"', "[periods]", "start = 2020-01-01", 'end = "2019-01-01"',
    'frequency = "week"', "[outputs]", "suppression_threshold = 0", 'working_crs = "EPSG:4326"', "[units]",
    "h3_resolution = [99]", "h3_resolution = 9", "[indicators]", 'use = ["nope"]', "x = ", "= 1", "[[", '"', "unknown = 1",
    'timezone = "Mars/Base"', '[inputs.survey]', 'weight = "w"', "[intervention]", "buffer = -5", 'path = "/etc/passwd/x"',
])


@FUZZ
@given(lines=st.lists(TOML_PIECES, max_size=14), junk=st.text(max_size=10))
def test_study_parser_never_crashes(tmp_path_factory, lines, junk):
    folder = tmp_path_factory.mktemp("study")
    (folder / "inc.csv").write_text("lon,lat\n13.4,52.5\n")
    path = folder / "study.toml"
    path.write_text("\n".join(lines) + "\n" + junk, encoding="utf-8")
    try:
        load_study(path)
    except UsmGeoError as exc:
        assert exc.fix, exc  # every study error says how to fix it
