"""One Demo City run shared by the integration tests (it takes ~20 s)."""

import pytest
from click.testing import CliRunner

from usm_geo.cli import main


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """(output folder, CLI output) of `usm-geo demo --out DIR --quiet`."""
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output
