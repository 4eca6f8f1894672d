"""Shared fixtures. Real data lives in ../shared/data (never copied into the repository):
tests that need it skip when it is absent, and fail instead when CI=true."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared_data import IN_CI, REPO, SHARED_DATA, need_shared  # noqa: F401  (re-exported for fixtures)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Work units for pytest-xdist (``--dist loadgroup``, pyproject's addopts): each test module
    runs whole on one worker, in file order, so its module fixtures (a Chicago run, a browser
    page) are built once; every test in tests/postgis shares one worker because they share the
    test database's schemas (``demo_in``), which two workers would drop under each other.

    ``tryfirst``: xdist's worker turns the ``xdist_group`` marks into node-id suffixes in its own
    ``pytest_collection_modifyitems``; marks added after it are ignored and every test is then
    scheduled on its own (tests/postgis split across workers — the CI failure of stop 27)."""
    for item in items:
        path = Path(str(item.fspath))
        group = "postgis" if path.parent.name == "postgis" else path.relative_to(REPO).as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


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
