"""Fixtures for the robustness tests."""

import pytest

from usm_geo.demo import generate_demo_inputs


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory):
    """The Demo City's inputs (study.toml and its files), generated once per session."""
    folder = tmp_path_factory.mktemp("demo-inputs")
    generate_demo_inputs(folder)
    return folder
