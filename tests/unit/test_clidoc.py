"""docs/cli.md is generated from the click commands (`python -m usm_geo.clidoc > docs/cli.md`) and
must not drift from them."""

import subprocess
import sys

import click

from shared_data import REPO
from usm_geo import clidoc
from usm_geo.cli import main


def test_cli_reference_is_up_to_date():
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == clidoc.render(), "docs/cli.md is out of date: run `python -m usm_geo.clidoc > docs/cli.md`"


def test_every_command_and_option_is_documented():
    text = clidoc.render()
    ctx = click.Context(main, info_name="usm-geo")
    for name in main.list_commands(ctx):
        assert f"## `usm-geo {name}`" in text
        for param in main.get_command(ctx, name).params:
            if isinstance(param, click.Option):
                assert f"`{param.opts[0]}" in text or f", {param.opts[0]}" in text, (name, param.opts)


def test_module_writes_the_same_text():
    out = subprocess.run([sys.executable, "-m", "usm_geo.clidoc"], capture_output=True, text=True, check=True).stdout
    assert out == clidoc.render()
