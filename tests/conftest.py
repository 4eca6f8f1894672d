"""Shared fixtures. Real data lives in ../shared/data (never copied into the repository):
tests that need it skip when it is absent, and fail instead when CI=true."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_shared(*parts: str) -> Path:
    """Path under ../shared/data; skip the test if missing (fail under CI=true)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"real data not found: {path}"
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run must provide ../shared)")
        pytest.skip(message)
    return path


@pytest.fixture
def write_study(tmp_path):
    """Write a study.toml (dedented) into tmp_path and return its path."""

    def _write(text: str, name: str = "study.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write
