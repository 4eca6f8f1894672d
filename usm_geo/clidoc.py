"""The CLI reference (docs/cli.md), generated from the click commands themselves.

``python -m usm_geo.clidoc > docs/cli.md`` rewrites it; a test fails when the file and the commands
disagree, so a new command or option only needs this one command to be documented.
"""

from __future__ import annotations

import inspect
import sys

import click

HEADER = """# Command-line reference

Generated from the click commands by `python -m usm_geo.clidoc > docs/cli.md`; do not edit by hand
(a test fails when this file and the commands disagree). Input or setting errors print one line,
`usm-geo: error: …` with the fix, and exit with status 2 (`--debug` shows the traceback).

Long steps (reading, assigning points, building a grid, permutations, writing) draw a progress bar
on stderr when it is a terminal and the step takes more than two seconds; nothing is drawn into a
pipe, a log file or a notebook, and `--quiet` turns bars and stage messages off. The ledger summary
(what was read, used and dropped, and why) is printed on stdout either way.
"""


def _text(text: str | None) -> str:
    """A click help text as Markdown: dedented, click's ``\\b`` no-rewrap markers removed."""
    lines = [line for line in inspect.cleandoc(text or "").splitlines() if line.strip() != "\b"]
    return "\n".join(lines).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _options(command: click.Command, ctx: click.Context, with_help: bool = False) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):  # arguments are in the usage line
            continue
        if not with_help and param.name == "help":  # every command has it; listed once, for usm-geo
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        rows.append(f"| `{_cell(names)}` | {_cell(help_text)} |")
    if not rows:
        return []
    return ["| option | meaning |", "|---|---|", *rows]


def _command(name: str, command: click.Command, parent: click.Context) -> list[str]:
    ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"## `usm-geo {name}`", "", "```", f"usm-geo {name} {usage}".rstrip(), "```", "", _text(command.help), ""]
    options = _options(command, ctx)
    return lines + (options + [""] if options else [])


def render(group: click.Group | None = None) -> str:
    """docs/cli.md's text for the ``usm-geo`` group (its commands in alphabetical order)."""
    if group is None:
        from usm_geo.cli import main as group
    ctx = click.Context(group, info_name="usm-geo", **group.context_settings)
    lines = [HEADER, "```", f"usm-geo {' '.join(group.collect_usage_pieces(ctx))}", "```", "", _text(group.help), ""]
    lines += ["Options of `usm-geo` itself (before the command; every command also takes `-h, --help`):", "", *_options(group, ctx, with_help=True), ""]
    names = group.list_commands(ctx)
    lines += ["Commands: " + ", ".join(f"[`{n}`](#usm-geo-{n})" for n in names) + ".", ""]
    for name in names:
        lines += _command(name, group.get_command(ctx, name), ctx)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":  # pragma: no cover
    main()
