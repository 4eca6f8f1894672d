"""Shared helpers for the bad-input corpus.

Every case builds its inputs in ``tmp_path`` (never a committed data file), runs them through
the real pipeline (:func:`usm_geo.pipeline.run_intake`) and checks the precise outcome: an error
that names the file and says how to fix it, or ledger entries with the invariant
``read == used + dropped``.

The standard geography is a 10 km square in EPSG:32633 (UTM 33N, near 15°E 52.4°N) split into
two neighbourhoods ``N1`` (west) and ``N2`` (east) of one district ``D1``.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.errors import UsmGeoError
from usm_geo.pipeline import Intake, run_intake
from usm_geo.study import load_study

CRS = "EPSG:32633"
X0, Y0, SIDE = 500_000.0, 5_800_000.0, 10_000.0
NOW = dt.datetime(2024, 6, 30, 12, 0)  # a fixed "now" so future-date checks are deterministic

# (lon, lat) points inside the standard square, and one well outside it (Berlin)
INSIDE = [(15.03, 52.38), (15.10, 52.41), (15.07, 52.40), (15.12, 52.43), (15.02, 52.36)]
OUTSIDE = (13.40, 52.52)


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(x0, y0, x1, y1)


def neighbourhoods(**columns) -> gpd.GeoDataFrame:
    """The two standard neighbourhoods; keyword arguments replace or add columns."""
    data = {
        "nbhd_id": ["N1", "N2"],
        "nbhd_name": ["Nord-West", "Süd-Ost"],
        "district": ["D1", "D1"],
        "geometry": [box(X0, Y0, X0 + SIDE / 2, Y0 + SIDE), box(X0 + SIDE / 2, Y0, X0 + SIDE, Y0 + SIDE)],
    }
    data.update(columns)
    return gpd.GeoDataFrame(data, crs=CRS)


def districts() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"dist_id": ["D1"], "geometry": [box(X0, Y0, X0 + SIDE, Y0 + SIDE)]}, crs=CRS)


def write_layer(frame: gpd.GeoDataFrame, path: Path, **kwargs) -> Path:
    """Write a GeoDataFrame with pyogrio; the driver follows the extension."""
    frame.to_file(path, engine="pyogrio", **kwargs)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` (dedented, stripped of the leading newline) exactly, with ``\\n`` line ends."""
    path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
    return path


def incidents_csv(folder: Path, *rows: str, header: str = "id,lon,lat,date,category", name: str = "incidents.csv",
                  encoding: str = "utf-8") -> Path:
    """A small incidents CSV: ``header`` and one line per row, ``\\n`` line ends."""
    text = "\n".join((header, *rows)) + "\n"
    return write_bytes(folder / name, text.encode(encoding))


def good_rows(n: int = 3, date: str = "2021-05-0{i}", category: str = "theft") -> list[str]:
    """``n`` valid rows (ids 1..n) inside the square, for the standard header."""
    out = []
    for i in range(1, n + 1):
        lon, lat = INSIDE[(i - 1) % len(INSIDE)]
        out.append(f"{i},{lon},{lat},{date.format(i=i)},{category}")
    return out


STUDY_TOP = f'[study]\nworking_crs = "{CRS}"'  # a fixed working CRS: "auto" costs a pyproj database query


def study_file(folder: Path, *, incidents: str | None = 'path = "incidents.csv"', boundaries: bool = True,
               extra: str = "", top: str = STUDY_TOP, name: str = "study.toml") -> Path:
    """A study.toml in ``folder``: ``top`` (by default [study] with the working CRS), [inputs.incidents]
    with the given body, the standard neighbourhood layer (written as nbhd.gpkg) unless
    ``boundaries=False``, then ``extra`` (more tables)."""
    parts = [textwrap.dedent(top).strip(), "[inputs]"]
    if incidents is not None:
        parts += ["[inputs.incidents]", textwrap.dedent(incidents).strip()]
    if boundaries:
        if not (folder / "nbhd.gpkg").exists():
            write_layer(neighbourhoods(), folder / "nbhd.gpkg")
        parts += ["[[inputs.boundaries]]", 'level = "neighbourhood"', 'path = "nbhd.gpkg"', 'id = "nbhd_id"',
                  'name = "nbhd_name"']
    parts.append(textwrap.dedent(extra).strip())
    path = folder / name
    path.write_text("\n".join(p for p in parts if p) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- running and checking


def run(study_path: Path, now: dt.datetime | None = NOW) -> Intake:
    """Load and intake the study; check the ledger invariant for every source."""
    intake = run_intake(load_study(study_path), now=now)
    assert_invariant(intake)
    return intake


def assert_invariant(intake: Intake) -> None:
    """``read == used + dropped`` for every source, with ``dropped`` counted in the ledger itself."""
    frame = intake.ledger.to_frame()
    totals = intake.ledger.totals()
    assert totals, "no source was closed"
    tables = {"incidents": intake.incidents, "survey": intake.survey}
    for source, t in totals.items():
        in_ledger = frame[(frame["source"] == source) & (frame["status"] == "dropped")]["row"].nunique()
        assert t["read"] == t["used"] + in_ledger, (source, t, in_ledger)
        assert t["dropped"] == in_ledger, (source, t, in_ledger)
        if tables.get(source) is not None:
            assert len(tables[source]) == t["used"]
    # every entry names a real row (or 0 for a file note), and a dropped row is listed once
    assert (frame["row"] >= 0).all()
    dropped = frame[frame["status"] == "dropped"]
    assert not dropped.duplicated(["source", "row"]).any()


def ledger_rows(intake: Intake, reason: str, source: str = "incidents") -> pd.DataFrame:
    """Ledger entries of ``source`` with ``reason``, as a frame (sorted by row)."""
    frame = intake.ledger.to_frame()
    return frame[(frame["source"] == source) & (frame["reason"] == reason)].reset_index(drop=True)


def entries(intake: Intake, source: str = "incidents") -> list[tuple[int, str, str]]:
    """``(row, status, reason)`` of every ledger entry of ``source``, sorted."""
    frame = intake.ledger.to_frame()
    frame = frame[frame["source"] == source]
    return sorted(zip(frame["row"].tolist(), frame["status"].tolist(), frame["reason"].tolist()))


def assert_message(message: str, *fragments: str) -> None:
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message:\n{message}"
    assert "\n  fix: " in message, f"no fix line in:\n{message}"


def assert_error(error: type[UsmGeoError], study_path: Path, *fragments: str, now: dt.datetime | None = NOW) -> str:
    """Intake (and the CLI's ``validate``) fail with ``error`` whose message holds every fragment."""
    with pytest.raises(error) as info:
        run_intake(load_study(study_path), now=now)
    assert type(info.value) is error, f"{type(info.value).__name__} raised, {error.__name__} expected"
    message = info.value.message
    assert_message(message, *fragments)
    assert_cli_error(study_path, *fragments)
    return message


def assert_cli_error(study_path: Path, *fragments: str) -> str:
    """``usm-geo validate STUDY`` exits 2 with the message and no traceback."""
    result = CliRunner().invoke(main, ["validate", "--quiet", str(study_path)])
    output = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}:\n{output}\n{result.exception!r}"
    assert "Traceback" not in output
    assert "usm-geo: error:" in output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in CLI output:\n{output}"
    assert "fix:" in output
    return output
