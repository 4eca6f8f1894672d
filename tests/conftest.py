"""Shared fixtures. Real data lives in ../shared/data (never copied into the repository):
tests that need it skip when it is absent, and fail instead when CI=true."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared_data import IN_CI, REPO, SHARED_DATA, need_shared  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def write_study(tmp_path):
    """Write a study.toml (dedented) into tmp_path and return its path."""

    def _write(text: str, name: str = "study.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """One Demo City run shared by the integration, notebook, browser, fault and PostGIS tests
    (~40 s): (output folder, CLI output) of `usm-geo demo --out DIR --quiet`."""
    from usm_geo.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo-out"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output
