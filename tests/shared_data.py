"""Where the real data lives (../shared/data, never copied into the repository) and how tests
ask for it: skipped when absent, a failure under CI=true."""

from __future__ import annotations

import os
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
