"""Fault tests: a run killed with SIGKILL midway leaves the previous outputs intact, and the next
run cleans up what the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from usm_geo.cli import main


def test_kill_9_during_a_run_leaves_previous_outputs_intact(demo_inputs, tmp_path):
    study = demo_inputs / "study.toml"
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    (out / "previous-run-marker.txt").write_text("still here")  # a successful run would replace the folder
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "usm_geo.cli", "run", str(study), "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)  # wait until the run is writing into its staging folder
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # byte for byte
    assert list(tmp_path.glob(".out.tmp-*"))  # the killed run's staging folder is left behind …
    again = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    assert not list(tmp_path.glob(".out.*"))  # … and removed by the next run
    assert not (out / "previous-run-marker.txt").exists()
