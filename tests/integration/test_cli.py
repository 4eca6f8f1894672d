"""The usm-geo command: help, errors without tracebacks, exit codes."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from usm_geo.cli import main

COMMANDS = ["demo", "run", "validate"]


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help_on_every_command(command):
    result = CliRunner().invoke(main, command + ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_user_error_exits_2_without_traceback(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "usm-geo: error:" in result.output and "the study file does not exist" in result.output
    assert "fix:" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path):
    # a real subprocess: what a user sees in a terminal
    proc = subprocess.run([sys.executable, "-m", "usm_geo.cli", "--debug", "validate", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "StudyError" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "usm_geo.cli", "validate", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
