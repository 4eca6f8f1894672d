"""Progress bars (issue 20 item 7) and the hot spot grid budget (`usm-geo hotspots --max-cells`).

Bars go to stderr only when a command turned them on, stderr is a terminal and the step outlasts
usm_geo.io.DELAY_S; `--quiet` turns them off and never hides the ledger summary.
The terminal is a real pseudo-terminal (os.openpty), the command a real `usm-geo` process.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from click.testing import CliRunner

from usm_geo import io as progressbar
from usm_geo.cli import main
from usm_geo.hotspots.grids import h3_cells_estimate

ROOT = Path(__file__).resolve().parents[2]
POINTS = ROOT / "tests" / "data" / "city-of-london" / "2019-01-city-of-london-street.csv"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _work(stream, monkeypatch):
    monkeypatch.setattr(progressbar, "DELAY_S", 0.0)
    with progressbar.bar(10, "counting things", stream=stream) as b:
        for _ in range(10):
            b.update(1)


def test_bar_draws_only_when_shown_and_on_a_terminal(monkeypatch):
    shown_tty, shown_pipe, hidden_tty = _Terminal(), io.StringIO(), _Terminal()
    with progressbar.showing(True):
        _work(shown_tty, monkeypatch)
        _work(shown_pipe, monkeypatch)
    _work(hidden_tty, monkeypatch)  # no command turned bars on (library use, notebooks)
    assert "counting things" in shown_tty.getvalue() and "/10" in shown_tty.getvalue()
    assert shown_pipe.getvalue() == "" and hidden_tty.getvalue() == ""


def test_silence_lasts_to_the_end_of_the_showing_block(monkeypatch):
    inner, after = _Terminal(), _Terminal()
    with progressbar.showing(True):
        with progressbar.showing(True):
            progressbar.silence()
            _work(inner, monkeypatch)
        _work(after, monkeypatch)  # the outer block is untouched by the inner --quiet
    assert inner.getvalue() == ""
    assert "counting things" in after.getvalue()


def test_reading_a_file_shows_its_phases(monkeypatch, tmp_path):
    from usm_geo.intake.crs import working_crs
    from usm_geo.intake.ledger import Ledger
    from usm_geo.intake.records import Context, read_point_records
    from usm_geo.study import RecordSource

    terminal = _Terminal()
    monkeypatch.setattr(progressbar, "DELAY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", terminal)
    src = RecordSource(name="incidents", path=POINTS, lon="Longitude", lat="Latitude", date="Month", category="Crime type")
    with progressbar.showing(True):
        rec = read_point_records(src, Ledger(), Context(working_crs=working_crs("EPSG:32630")))
    assert "reading incidents" in terminal.getvalue() and "/5" in terminal.getvalue()
    assert len(rec) == 586  # 617 rows, 31 without coordinates (test above counts them with pandas)


def _run_in_terminal(args: list[str], tmp_path: Path) -> tuple[int, str, str]:
    """Run `usm-geo ARGS` with stderr on a pseudo-terminal (bars appear at once: DELAY_S = 0);
    return (exit code, stdout, what the terminal received)."""
    code = ("import sys, usm_geo.io as p; p.DELAY_S = 0.0; from usm_geo.cli import main; "
            "main(sys.argv[1:], prog_name='usm-geo')")
    primary, secondary = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=secondary,
                            cwd=tmp_path, env=env)
    os.close(secondary)
    received = bytearray()
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the pty closes when the process ends (EIO on Linux)
            break
        if not chunk:
            break
        received += chunk
    out, _ = proc.communicate(timeout=300)
    os.close(primary)
    return proc.returncode, out.decode(), received.decode(errors="replace")


HOTSPOT_ARGS = ["hotspots", "--points", str(POINTS), "--lon", "Longitude", "--lat", "Latitude",
                "--grid", "h3:11", "--permutations", "99"]


def test_usm_geo_hotspots_shows_permutation_bar_on_a_terminal_and_not_with_quiet(tmp_path):
    code, out, terminal = _run_in_terminal([*HOTSPOT_ARGS, "--out", "a.gpkg"], tmp_path)
    assert code == 0, terminal
    assert "permutations" in terminal and "draws" in terminal  # tqdm's line: "permutations: … draws"
    code, out_quiet, terminal_quiet = _run_in_terminal([*HOTSPOT_ARGS, "--quiet", "--out", "b.gpkg"], tmp_path)
    assert code == 0, terminal_quiet
    assert "permutations" not in terminal_quiet and "draws" not in terminal_quiet
    # --quiet never hides why records were dropped: the ledger summary is on stdout either way
    frame = pd.read_csv(POINTS)
    missing = int(frame[["Longitude", "Latitude"]].isna().any(axis=1).sum())  # 31 in this file
    expected = [f"points: read {len(frame)}, used {len(frame) - missing}, dropped {missing}",
                f"{missing}  points: missing_coordinates (dropped)"]
    for text in (out, out_quiet):
        lines = [line.strip() for line in text.splitlines()]
        assert all(e in lines for e in expected), text


def test_usm_geo_hotspots_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    code = ("import sys, usm_geo.io as p; p.DELAY_S = 0.0; from usm_geo.cli import main; "
            "main(sys.argv[1:], prog_name='usm-geo')")
    proc = subprocess.run([sys.executable, "-c", code, *HOTSPOT_ARGS, "--out", "c.gpkg"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "draws" not in proc.stderr and "\r" not in proc.stderr


def _hull_area_m2() -> float:
    """The points' convex hull in the local UTM zone (what `usm-geo hotspots` measures), in m²."""
    frame = pd.read_csv(POINTS)
    lon, lat = frame["Longitude"].to_numpy(float), frame["Latitude"].to_numpy(float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    zone = int((np.median(lon[ok]) + 180) // 6) + 1
    to_utm = pyproj.Transformer.from_crs(4326, 32600 + zone, always_xy=True)
    x, y = to_utm.transform(lon[ok], lat[ok])
    return shapely.convex_hull(shapely.multipoints(np.column_stack([x, y]))).buffer(1.0).area


def test_h3_budget_refused_with_the_option_to_raise_it(tmp_path):
    # by hand: area / average hexagon area at resolution 15 (0.895 m²) — millions of cells for a
    # hull of about 2.9 km², far above the default budget of 250,000
    area = _hull_area_m2()
    expected = math.ceil(area / h3.average_hexagon_area(15, unit="m^2"))
    assert h3_cells_estimate(area, 15) == expected
    assert expected > 250_000
    args = ["hotspots", "--points", str(POINTS), "--lon", "Longitude", "--lat", "Latitude", "--grid", "h3:15",
            "--out", str(tmp_path / "x.gpkg")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--max-cells" in result.output and "250,000" in result.output
    # the printed estimate is the hand calculation, within the UTM-vs-working-CRS area difference
    printed = int(result.output.split("about ")[1].split(" cells")[0].replace(",", ""))
    assert abs(printed - expected) / expected < 0.01


def test_square_budget_option_coarsens_the_automatic_cell_and_refuses_a_given_one(tmp_path):
    base = ["hotspots", "--points", str(POINTS), "--lon", "Longitude", "--lat", "Latitude", "--permutations", "9"]
    result = CliRunner().invoke(main, [*base, "--grid", "square:5", "--max-cells", "1000", "--out", str(tmp_path / "a.gpkg")])
    assert result.exit_code == 2
    assert "--max-cells" in result.output
    result = CliRunner().invoke(main, [*base, "--grid", "square", "--max-cells", "300", "--out", str(tmp_path / "b.gpkg")])
    assert result.exit_code == 0, result.output
    import geopandas as gpd

    cells = gpd.read_file(tmp_path / "b.gpkg", layer="hotspots")
    assert 0 < len(cells) <= 300
    assert "cell_size_coarsened" in result.output
    result = CliRunner().invoke(main, ["hotspots", str(POINTS), "--value", "x", "--max-cells", "5", "--out", str(tmp_path / "c.gpkg")])
    assert result.exit_code == 2 and "--max-cells" in result.output
