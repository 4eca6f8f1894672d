"""Fault tests: a run killed with SIGKILL midway leaves the previous outputs intact, and the next
run cleans up what the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
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


# ----------------------------------------------------------------------- real small and read-only disks

@pytest.fixture(scope="module")
def demo_run(demo):
    return demo[0]  # the session's Demo City run (tests/conftest.py); only read here


@pytest.fixture
def disk(tmp_path):
    """``disk(kb)`` mounts a tmpfs of that size in tmp_path (a real small disk: writes fail with
    ENOSPC, and after ``remount_ro`` with EROFS, even for root). Needs root, as in CI; skipped
    elsewhere (the same errors are also injected in tests/unit/test_export.py)."""
    mounted = []

    def make(kb: int):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k,mode=0755", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_ro(where) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_disk_during_a_run_is_a_clear_error_and_leaves_nothing(demo_inputs, disk):
    where = disk(8 * 1024)  # 8 MB: measures.csv alone is ~65 MB
    out = where / "out"
    out.mkdir()
    (out / "run.json").write_text("{}")  # a previous run's folder
    (out / "measures.csv").write_text("previous")
    before = snapshot(where)
    result = CliRunner().invoke(main, ["run", str(demo_inputs / "study.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "the disk is full" in result.output and "Traceback" not in result.output
    assert str(out) in result.output and "free some space" in result.output
    assert snapshot(where) == before  # previous outputs intact, no staging folder left behind


def test_full_disk_during_an_export_is_a_clear_error_and_leaves_nothing(demo_run, disk):
    where = disk(3 * 1024)  # areas.gpkg is larger than this
    result = CliRunner().invoke(main, ["export", str(demo_run), "--format", "gpkg", "--format", "shp",
                                       "--out", str(where / "public")])
    assert result.exit_code == 2, result.output
    assert "the disk is full" in result.output and "Traceback" not in result.output
    assert list(where.iterdir()) == []


def test_read_only_output_folder_is_a_clear_error(demo_inputs, demo_run, disk):
    where = disk(64 * 1024)
    first = CliRunner().invoke(main, ["export", str(demo_run), "--format", "csv", "--out", str(where / "public")])
    assert first.exit_code == 0, first.output
    before = snapshot(where)
    remount_ro(where)
    for args in (["export", str(demo_run), "--format", "csv", "--out", str(where / "public")],
                 ["export", str(demo_run), "--format", "csv", "--out", str(where / "new")],
                 ["map", str(demo_run), "--out", str(where / "map.html")],
                 ["run", str(demo_inputs / "study.toml"), "--out", str(where / "run")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "permission denied: cannot write here" in result.output and "Traceback" not in result.output
    assert snapshot(where) == before


def test_kill_9_during_an_export_leaves_the_previous_export_intact(demo_run, tmp_path):
    out = tmp_path / "public"
    args = ["export", str(demo_run), "--format", "gpkg", "--format", "shp", "--format", "html", "--out", str(out)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    (out / "previous-export-marker.txt").write_text("still here")
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "usm_geo.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".public.tmp-*/*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)  # wait until the export has begun writing into its staging folder
    assert proc.poll() is None, "the export ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snapshot(out) == before
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert not list(tmp_path.glob(".public.*")) and not (out / "previous-export-marker.txt").exists()
