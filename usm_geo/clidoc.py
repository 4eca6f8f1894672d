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


#: the messages a new user meets most (#22 item 4), with their fixes; tests/robustness/test_new_user_messages.py
#: asserts the same texts from the real commands
COMMON_ERRORS = """## Common errors

Each is printed as `usm-geo: error: …` with a `fix:` line, before anything is written, and exits with 2.

| you gave | the message (paths shortened) |
|---|---|
| a layer the file does not hold (`layer = "neighbourhood"` in the study, `--layer` on `hotspots` or `aggregate`) | `layer 'neighbourhood' is not in city.gpkg; its layers are: neighbourhoods, districts` — fix: `did you mean 'neighbourhoods'? set layer = "neighbourhoods" in the study, or --layer neighbourhoods on the command line` (a zipped shapefile: `the archive has no layer 'east'; its layers are: north, south`) |
| a GeoPackage with several layers and no layer (`aggregate --units city.gpkg:id`) | `city.gpkg: the file holds 2 layers` — fix: `name one with layer = "..." in the study or --layer NAME: neighbourhoods, districts` |
| `--out` (or `validate --ledger`) under a file, e.g. `--out incidents.csv/sub` | `--out incidents.csv/sub: cannot write under 'incidents.csv': it is a file, not a folder` — fix: `name a path outside it, e.g. --out sub` |
| an existing file where a folder goes (`run`, `demo`, `export`, `compare`, `model`, `reconcile`) | `--out incidents.csv: is a file; --out names a folder here (created or replaced)` — fix: `name a folder, e.g. --out incidents_run` |
| a folder where a file goes (`aggregate`, `hotspots`, `impact`, `map`, `report`, `init`) | `--out results: is a folder; --out names a file here` — fix: `name the file, e.g. --out results/counts.csv` |
| a data file as the study (`usm-geo validate city.gpkg`) | `…/city.gpkg is a GeoPackage, not a study.toml` — fix: ``run `usm-geo init city.gpkg …` (with the other input files) to draft one`` |
| a folder as the study | with a study.toml in it: `…/inputs is a folder, not a study file` — fix: `name the study file in it: …/inputs/study.toml`; without: `…/study.toml not found` |
| a column name with a typo (`lon = "longitud"`, `--lon LONGITUD`) | `incidents.csv: the study names column 'longitud' (incidents.lon) but the file has no such column (row 1 header)` — fix: `did you mean 'Longitude'? set lon = "Longitude" in the study; columns in the file: …` (on the command line: `--lon names column 'LONGITUD' …`, fix `use --lon Longitude`) |
| longitude and latitude the wrong way round, with boundaries | `incidents.csv: 3 of 3 points are in the study area only with longitude and latitude swapped` — fix: `the columns are the other way round: name them lon = "lat" and lat = "lon" in the study` (`use --lon lat --lat lon` on the command line) |
| the same without boundaries, where latitude leaves every UTM zone (Chicago swapped) | `chi.csv: cannot choose a working CRS: longitude and latitude look swapped (the centre of the points, longitude 41.865, latitude -87.635, is beyond every UTM zone; swapped it is not)` — fix as above |

`--quiet` (on `demo`, `run`, `validate`, `aggregate`, `hotspots`, `model`, `reconcile`) drops the stage
lines and progress bars only: the ledger summary (rows read, used and dropped, by reason) and every
error are still printed.
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
    lines += [COMMON_ERRORS]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":  # pragma: no cover
    main()
