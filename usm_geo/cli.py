"""The ``usm-geo`` command: thin click wrappers over the Python API (in the spirit of rio/fio).

Errors caused by input or settings print one clear message (no traceback) and exit with 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from usm_geo import __version__
from usm_geo.errors import UsmGeoError
from usm_geo.io import showing, silence

EXIT_USER_ERROR = 2


def _echo_err(text: str) -> None:
    click.echo(text, err=True)


class _Group(click.Group):
    """Turns UsmGeoError (and Ctrl-C) into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            with showing(True):  # progress bars on a terminal's stderr; --quiet turns them off
                return super().invoke(ctx)
        except UsmGeoError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _echo_err(f"usm-geo: error: {exc.message}")
            _echo_failed_ledger(exc)
            ctx.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            _echo_err("usm-geo: interrupted; no output was changed")
            ctx.exit(130)


def _echo_failed_ledger(exc: UsmGeoError) -> None:
    """Under an error of `run` or `validate`: the ledger's reasons so far and where it was written."""
    lines = getattr(exc, "ledger_lines", None)
    if lines:
        _echo_err("ledger of the failed attempt (reason: rows):")
        for line in lines:
            _echo_err(f"  {line}")
    path = getattr(exc, "ledger_path", None)
    if path:
        _echo_err(f"ledger written to {path}")


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        silence()
    return value


#: ``--quiet``: no progress messages or bars; the ledger summary (why records were dropped) still prints
quiet_option = click.option("--quiet", is_flag=True, callback=_quiet,
                            help="No progress messages or bars (the ledger summary is still printed).")


def _stages(quiet: bool):
    from usm_geo.pipeline import Stages

    return Stages(None if quiet else (lambda msg: _echo_err(f"· {msg}")))


def check_out(path: Path, kind: str, example: str = "out", option: str = "--out") -> Path:
    """Refuse an output path that cannot be written before any work is done (so nothing is half-written).

    ``kind`` is ``"folder"`` (OUT is a folder that is created or replaced) or ``"file"``; ``example``
    is the name suggested in the fix. Raises OutputError when a parent of ``path`` is a file
    (``--out incidents.csv/sub``), when a folder is asked for and ``path`` is a file, or when a file
    is asked for and ``path`` is a folder."""
    from usm_geo.errors import OutputError

    path = Path(path)
    for parent in path.parents:  # the nearest existing parent must be a folder (".", the cwd, is one)
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"cannot write under '{parent}': it is a file, not a folder", where=f"{option} {path}",
                                  fix=f"name a path outside it, e.g. {option} {parent.parent / path.name}")
            break
    if kind == "folder" and path.exists() and not path.is_dir():
        raise OutputError(f"is a file; {option} names a folder here (created or replaced)", where=f"{option} {path}",
                          fix=f"name a folder, e.g. {option} {path.parent / (path.stem + '_' + example if path.suffix else path.name + '_' + example)}")
    if kind == "file" and path.is_dir():
        raise OutputError(f"is a folder; {option} names a file here", where=f"{option} {path}",
                          fix=f"name the file, e.g. {option} {path / example}")
    return path


def out_option(kind: str, example: str, *names: str, **kwargs):
    """``--out`` (or ``names``) checked by :func:`check_out` while the command line is parsed, before any work."""
    names = names or ("--out", "out")

    def callback(ctx, param, value):
        return None if value is None else check_out(value, kind, example, option=names[0])

    return click.option(*names, type=click.Path(path_type=Path), callback=callback, **kwargs)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="usm-geo")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Area-based urban safety analysis: incidents and perception by neighbourhood and H3 hexagon."""
    ctx.ensure_object(dict)["debug"] = debug


def _finish(info: dict, out: Path) -> None:
    intake = info["_intake"]
    click.echo(intake.ledger.summary())
    skipped = (info.get("indicators") or {}).get("not_computed") or {}
    if skipped:
        click.echo(f"indicators not computed ({len(skipped)}; listed in run.json):")
        for ind, reason in sorted(skipped.items()):
            click.echo(f"  {ind}: {reason}")
    if not (info.get("indicators") or {}).get("computed") and "map.html" in (info.get("outputs") or {}).get("files", []):
        click.echo("no indicator could be computed: the tables and map.html show incident counts")
    for note in (info.get("counts") or {}).get("notes", []):  # levels and units area-coded counts do not reach
        click.echo(f"counts {note}")
    for note in info.get("hotspots", {}).get("notes", []):  # value analysed, significance rule, too_few_units
        click.echo(f"hot spots {note}")
    recon = info.get("reconciliation")
    if recon:  # police and health records in one study: which ones the indicators count
        click.echo(f"reconciliation: {recon['rule']}")
        for level, n in recon["units_differing"].items():
            click.echo(f"reconciliation: {level}: {n} unit-periods where the sources differ beyond chance")
    for note in (info.get("hierarchy") or {}).get("notes", []):  # coded parents the geometry disagrees with
        click.echo(f"hierarchy: {note}")
    for level, cmp in (info.get("population_notes") or {}).items():  # two tables that disagree
        if cmp["units_differing"]:
            click.echo(f"population: the {level} table differs from the sum of the {cmp['level']} table in "
                       f"{cmp['units_differing']} of {cmp['units']} units (up to {cmp['max_abs_relative_difference']:.1%}); "
                       f"{level} uses its own table (run.json population_notes)")
    click.echo(f"outputs in {out}")


@main.command()
@out_option("folder", "demo", required=True, help="Output folder (created or replaced).")
@click.option("--seed", type=int, default=None, help="Seed of the generator (default: the Demo City's own).")
@quiet_option
def demo(out: Path, seed: int | None, quiet: bool) -> None:
    """Generate the Demo City and run the whole study on it.

    OUT/inputs/ holds the generated inputs, study.toml and planted_truths.json, so the study can
    be rerun with `usm-geo run OUT/inputs/study.toml --out OTHER`.
    """
    from usm_geo.pipeline import run_demo

    out = out.resolve()
    info = run_demo(out, seed=seed, stages=_stages(quiet))
    _finish(info, out)


_SCHEDULER_HELP = ("Count the points on Dask: local (a LocalCluster, the default for a folder of Parquet files), "
                   "local:N (N workers), threads, tcp://HOST:PORT (a running scheduler), or none (in memory).")


def _scheduler(option: str | None, points):
    """The --scheduler option: local by default for a partitioned dataset (a folder), else none
    (a database source is read in memory)."""
    if option is None:
        return "local" if isinstance(points, (str, Path)) and Path(points).is_dir() else None
    return None if option.strip().lower() == "none" else option


@main.command()
@click.argument("study", type=click.Path(path_type=Path))
@out_option("folder", "run", required=True, help="Output folder (created or replaced).")
@click.option("--scheduler", default=None, metavar="local|local:N|threads|tcp://HOST:PORT|none", help=_SCHEDULER_HELP)
@quiet_option
def run(study: Path, out: Path, scheduler: str | None, quiet: bool) -> None:
    """Run STUDY (a study.toml) and write every output into OUT."""
    from usm_geo.pipeline import run as run_study
    from usm_geo.study import load_study

    spec = load_study(study)
    dask = _scheduler(scheduler, spec.incidents.path) if spec.incidents is not None else None
    info = run_study(spec, out, _stages(quiet), scheduler=dask)
    _finish(info, out.resolve())


@main.command()
@click.argument("study", type=click.Path(path_type=Path))
@out_option("file", "ledger.csv", "--ledger", "ledger_path", default=None, help="Also write the ledger to this CSV file.")
@quiet_option
def validate(study: Path, ledger_path: Path | None, quiet: bool) -> None:
    """Read and check every input of STUDY as `run` does — boundaries, incidents, survey, perception,
    population, the periods and the intervention — and print the ledger summary and the file notes;
    write nothing unless --ledger (written even when a check fails)."""
    from usm_geo.io import write_csv
    from usm_geo.intake.ledger import Ledger
    from usm_geo.pipeline import keep_failed_ledger, note_lines
    from usm_geo.pipeline import validate as validate_study
    from usm_geo.study import load_study

    spec = load_study(study)
    ledger = Ledger()
    try:
        checked = validate_study(spec, _stages(quiet), ledger=ledger)
    except UsmGeoError as exc:
        keep_failed_ledger(exc, ledger, ledger_path)
        raise
    click.echo(ledger.summary())
    notes = note_lines(ledger)
    if notes:
        click.echo("file notes:")
        for line in notes:
            click.echo(f"  {line}")
    click.echo("checked:")
    for line in checked.checks:
        click.echo(f"  {line}")
    if ledger_path is not None:
        write_csv(ledger_path, ledger.to_frame())
        click.echo(f"ledger written to {ledger_path}")
    click.echo(f"{study}: valid")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("file", "study.toml", default="study.toml", show_default=True,
              help="The study file to write (paths in it are relative to its folder).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def init(files: tuple[Path, ...], out: Path, force: bool) -> None:
    """Write a commented study.toml from FILES (incidents, boundaries, population tables…).

    Each file is classified by its content; columns (coordinates, date or date parts, category,
    ids, unit codes, population) and the CRS of bare projected x/y (the candidate that puts most
    points inside the boundaries) are detected. Every guessed key is marked `# guessed: …, check`;
    check them, then run `usm-geo validate`."""
    from usm_geo.intake.draft import write_study

    path, guesses = write_study(list(files), out, force=force)
    for g in guesses:
        click.echo(f"{g.path.name}: {g.kind}" + "".join(f"\n  {k} = {v}  ({g.why[k]})" for k, v in g.keys.items()
                                                     if not k.startswith("_") and k in g.why))
    click.echo(f"study → {path}; check every `# guessed` line, then: usm-geo validate {path}")


@main.command()
@click.argument("points", type=click.Path(path_type=Path))
@click.option("--units", "units", required=True, metavar="h3:RES|AREAS[:ID_COLUMN]",
              help="H3 resolution (h3:9) or a polygon file with its id column (wards.gpkg:ward_code).")
@click.option("--lon", default=None, help="Longitude column (degrees).")
@click.option("--lat", default=None, help="Latitude column (degrees).")
@click.option("--x", "x", default=None, help="x column (with --crs).")
@click.option("--y", "y", default=None, help="y column (with --crs).")
@click.option("--crs", default=None, help="CRS of --x/--y, e.g. EPSG:27700.")
@click.option("--time", "time", default=None, help="Date/time column (needed for --period).")
@click.option("--period", type=click.Choice(["month", "quarter", "year"]), default=None, help="Count per period.")
@click.option("--category", default=None, help="Count per value of this column.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of the times.")
@click.option("--layer", default=None, help="Layer of the --units AREAS file (a GeoPackage with several layers).")
@out_option("file", "counts.csv", required=True, help="FILE.csv, FILE.gpkg or FILE.parquet.")
@click.option("--scheduler", default=None, metavar="local|local:N|threads|tcp://HOST:PORT|none", help=_SCHEDULER_HELP)
@quiet_option
def aggregate(points, units, lon, lat, x, y, crs, time, period, category, timezone, layer, out, scheduler, quiet) -> None:
    """Count POINTS (any format intake reads) per H3 cell or per polygon.

    Writes unit_id, [period], [category], count: one row per unit (zeros included for polygons)
    × period × category. Points not assigned are listed in the printed ledger summary.
    """
    from usm_geo.pipeline import aggregate_points, write_aggregation

    if (lon is None) != (lat is None) or (x is None) != (y is None):
        raise click.UsageError("give --lon with --lat, and --x with --y")
    if x is not None and crs is None:
        raise click.UsageError("--x/--y need --crs")
    agg = aggregate_points(points, units, lon=lon, lat=lat, x=x, y=y, crs=crs, time=time, period=period,
                           category=category, timezone=timezone, scheduler=_scheduler(scheduler, points), layer=layer)
    write_aggregation(agg, out)
    click.echo(agg.ledger.summary())
    click.echo(f"{int(agg.table['count'].sum()):,} points in {len(agg.units):,} units ({agg.level}) → {out}")


@main.command()
@click.argument("areas", required=False, type=click.Path(path_type=Path))
@click.option("--value", default=None, help="Numeric column of AREAS to analyse.")
@click.option("--id", "id_column", default=None, help="Id column of AREAS (default: the feature number).")
@click.option("--layer", default=None, help="Layer of AREAS (GeoPackage).")
@click.option("--points", type=click.Path(path_type=Path), default=None, help="Count these points on --grid instead of AREAS.")
@click.option("--grid", default=None, metavar="h3:RES|square:METRES", help="Grid for --points (e.g. h3:9, square:250).")
@click.option("--lon", default=None, help="Longitude column of --points.")
@click.option("--lat", default=None, help="Latitude column of --points.")
@click.option("--x", "x", default=None, help="x column of --points (with --crs).")
@click.option("--y", "y", default=None, help="y column of --points (with --crs).")
@click.option("--crs", default=None, help="CRS of --x/--y.")
@click.option("--weights", default=None, metavar="queen|rook|knn:K|distance[:METRES]|h3",
              help="Spatial weights (default: queen; h3 rings on an H3 grid).")
@click.option("--transform", type=click.Choice(["B", "R"]), default="B", show_default=True,
              help="Binary or row-standardised weights for Gi* (its z is the same either way).")
@click.option("--permutations", type=int, default=999, show_default=True, help="Permutations for local Moran's p_sim.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the permutations.")
@click.option("--max-cells", "max_cells", type=click.IntRange(min=1), default=None,
              help="Cell budget of the --grid (default 250,000); a grid with more cells is refused, an automatic square cell size is coarsened to fit.")
@out_option("file", "hotspots.gpkg", required=True, help="FILE.gpkg (a FILE.json sidecar holds the global statistics).")
@quiet_option
def hotspots(areas, value, id_column, layer, points, grid, lon, lat, x, y, crs, weights, transform, permutations, seed,
             max_cells, out, quiet) -> None:
    """Gi* hot and cold spots (FDR-controlled bins) and local Moran's I of AREAS' --value column,
    or of counts of --points on a --grid. Global Moran's I and Getis-Ord G are printed and written
    to OUT's .json sidecar with every value chosen automatically."""
    import json

    from usm_geo.io import write_json, write_layers
    from usm_geo.pipeline import hotspots_from_areas, hotspots_from_points

    if (areas is None) == (points is None):
        raise click.UsageError("give either AREAS with --value, or --points with --grid")
    if Path(out).suffix.lower() != ".gpkg":
        raise click.UsageError("--out must end with .gpkg")
    if max_cells is not None and points is None:
        raise click.UsageError("--max-cells is the budget of a --grid (with --points)")
    if areas is not None:
        if not value:
            raise click.UsageError("AREAS needs --value COLUMN")
        layer_out, globals_, report = hotspots_from_areas(areas, value, id_column=id_column, layer=layer,
                                                          weights=weights or "queen", transform=transform,
                                                          permutations=permutations, seed=seed)
    else:
        if not grid:
            raise click.UsageError("--points needs --grid h3:RES or square:METRES")
        layer_out, globals_, report, ledger = hotspots_from_points(points, grid, lon=lon, lat=lat, x=x, y=y, crs=crs,
                                                                   weights=weights, transform=transform,
                                                                   permutations=permutations, seed=seed,
                                                                   max_cells=max_cells)
        click.echo(ledger.summary())
    write_layers(Path(out), {"hotspots": layer_out})
    write_json(Path(out).with_suffix(".json"), {"global": globals_, "report": report})
    click.echo(json.dumps({"global": globals_}, indent=2))
    for key, val in report.items():
        click.echo(f"  {key}: {val}")
    hot = int((layer_out["gistar_bin"] > 0).sum())
    cold = int((layer_out["gistar_bin"] < 0).sum())
    click.echo(f"{len(layer_out):,} units: {hot} hot, {cold} cold (FDR-controlled) → {out}")


@main.command()
@click.argument("points", type=click.Path(path_type=Path))
@click.option("--treated", required=True, type=click.Path(path_type=Path), help="Polygon file of the treated area.")
@click.option("--control", type=click.Path(path_type=Path), default=None, help="Polygon file of the control area.")
@click.option("--buffer", "buffer", type=float, default=None, help="Width in metres of the displacement ring around the treated area.")
@click.option("--buffer-area", type=click.Path(path_type=Path), default=None, help="Polygon file of the displacement buffer instead.")
@click.option("--before", required=True, metavar="START:END", help="Before window, ISO dates, both included.")
@click.option("--after", required=True, metavar="START:END", help="After window, ISO dates, both included.")
@click.option("--time", "time", default=None, help="Date/time column (default: detected).")
@click.option("--category", default=None, help="Only incidents of this category.")
@click.option("--harm", type=click.Path(path_type=Path), default=None, help="CSV label,harm_days: harm-weighted measures too.")
@click.option("--lon", default=None)
@click.option("--lat", default=None)
@click.option("--x", "x", default=None)
@click.option("--y", "y", default=None)
@click.option("--crs", default=None)
@out_option("file", "impact.json", required=True, help="impact.json")
def impact(points, treated, control, buffer, buffer_area, before, after, time, category, harm, lon, lat, x, y, crs, out) -> None:
    """Area-based impact of an intervention: gross and net effect, WDQ and total net effect
    (Bowers & Johnson 2003), WDD with its interval (Wheeler & Ratcliffe 2018), and difference in
    differences — with a plain-language reading. A measure that cannot be computed says why."""
    from usm_geo.io import write_json
    from usm_geo.pipeline import impact_from_files

    if control is None:
        raise click.UsageError("--control is required: a comparison area of the same kind as the treated one")
    if buffer is not None and buffer_area is not None:
        raise click.UsageError("give --buffer or --buffer-area, not both")
    result, ledger = impact_from_files(points, treated=treated, control=control, buffer=buffer, buffer_area=buffer_area,
                                       before=before, after=after, time=time, category=category, harm=harm,
                                       lon=lon, lat=lat, x=x, y=y, crs=crs)
    write_json(Path(out), result)
    click.echo(ledger.summary())
    click.echo(result["reading"])
    click.echo(f"→ {out}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--indicators", default=None, help="Comma-separated indicator ids (default: all).")
@click.option("--levels", default=None, help="Comma-separated levels (default: all).")
@click.option("--periods", default=None, help="Comma-separated period labels (default: all).")
@click.option("--format", "formats", multiple=True, type=click.Choice(["gpkg", "shp", "geojson", "parquet", "csv", "tif", "html"],
              case_sensitive=False), default=("gpkg",), show_default=True,
              help="Repeat for several formats; any case (SHP, Gpkg).")
@click.option("--shape", type=click.Choice(["long", "wide"], case_sensitive=False), default="long", show_default=True,
              help="Shapefiles: long = one layer per level and period; wide = one layer per level with a column "
                   "per period (letters a, b, … listed in fields.csv).")
@click.option("--crs", default=None, help="Reproject to this CRS (GeoJSON is always EPSG:4326).")
@click.option("--profile", type=click.Choice(["public", "internal"]), default="public", show_default=True,
              help="public: small counts and what would reveal them suppressed; no incident points.")
@out_option("folder", "export", help="Output folder.")
@click.option("--to", "to", default=None, metavar="postgresql://USER@HOST:PORT/DB",
              help="Write tables into this PostgreSQL/PostGIS database instead of files (password from PGPASSWORD or ~/.pgpass).")
@click.option("--schema", default=None, help="Schema of the tables written with --to (created if missing).")
@click.option("--tiles", default=None, help="With --format html: a basemap for map.html (osm, carto-light, an xyzservices "
              "name or a tile URL; default none: the map makes no network request).")
@click.pass_context
def export(ctx, run_dir, indicators, levels, periods, formats, crs, profile, out, to, schema, tiles, shape) -> None:
    """Export a run's areas for others: GeoPackage, zipped shapefiles with a field dictionary,
    GeoJSON, GeoParquet, CSV, the KDE GeoTIFF, the map (html), the city report card and metadata.json —
    or, with
    --to and --schema, one PostGIS table per level plus hot spots and impact areas, replaced in one
    transaction (docs/postgis.md)."""
    split = (lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None)
    if (out is None) == (to is None):
        raise click.UsageError("give either --out FOLDER or --to postgresql://… with --schema")
    if to is not None:
        from click.core import ParameterSource

        from usm_geo.export.postgis import export_run_to_database

        if schema is None:
            raise click.UsageError("--to needs --schema NAME")
        if ctx.get_parameter_source("formats") is not ParameterSource.DEFAULT:
            raise click.UsageError("--format applies to files (--out), not to --to")
        result = export_run_to_database(run_dir, to, schema, indicators=split(indicators), levels=split(levels),
                                        periods=split(periods), crs=crs, profile=profile)
        click.echo(f"{profile} export → {to.split('@')[-1]} schema {schema} ({result['seconds']} s)")
        for name, rows in result["tables"].items():
            click.echo(f"  {name}: {rows:,} rows")
        return
    if schema is not None:
        raise click.UsageError("--schema goes with --to")
    from usm_geo.export import export_run

    result = export_run(run_dir, out, formats=tuple(formats), indicators=split(indicators), levels=split(levels),
                        periods=split(periods), crs=crs, profile=profile, tiles=tiles, shape=shape.lower())
    click.echo(f"{profile} export → {out}")
    for key, val in (result or {}).items():
        if isinstance(val, (str, int, float)) or (isinstance(val, (list, tuple)) and len(val) < 20):
            click.echo(f"  {key}: {val}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@out_option("file", "report.html", required=True, help="FILE.html (written atomically).")
@click.option("--profile", type=click.Choice(["public", "internal"]), default="public", show_default=True,
              help="public: suppressed as `export` does; internal: exact values, not for publication.")
@click.option("--k", "k", type=int, default=None, help="Suppression threshold (default: the run's own, else 5).")
@click.option("--pdf", "pdf", is_flag=True, help="Also print it to FILE.pdf through headless Chromium.")
@click.option("--paper", type=click.Choice(["a4", "letter"]), default="a4", show_default=True, help="Page size when printed.")
def report(run_dir: Path, out: Path, profile: str, k: int | None, pdf: bool, paper: str) -> None:
    """A printable, self-contained HTML report of a run for a planners' meeting: the city report card,
    a map per level, hot spots, the intervention's impact, time patterns, data quality and methods
    (docs/outputs.md). Reads the run folder's outputs only; makes no network request when opened."""
    from usm_geo.report import write_report

    result = write_report(run_dir, out, profile=profile, k=k, pdf=pdf, paper=paper)
    click.echo(f"{profile} report → {result['html']}")
    if result["pdf"] is not None:
        click.echo(f"  pdf: {result['pdf']}")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("folder", "comparison", required=True, help="Folder for comparison.csv and comparison.html.")
@click.option("--profile", type=click.Choice(["public", "internal"]), default="public", show_default=True,
              help="public: only report cards made in the public profile (usm-geo export); internal: cards for a city's own staff too.")
@click.option("--rank", is_flag=True, help="Also rank the comparable cities on each indicator (the output says why ranking misleads).")
def compare(inputs: tuple[Path, ...], out: Path, profile: str, rank: bool) -> None:
    """Peer review: line up the report cards of several cities (run or export folders, or
    report_card.json files) indicator by indicator. Each indicator is checked for comparability
    (source, kind, unit, period, ICCS categories, survey question, definition,
    population base year of rates), each city's own change
    since its baseline is shown, and overlapping intervals are said to overlap; cities are listed by
    name, never by value, unless --rank."""
    from usm_geo.compare import compare as run_compare

    summary = run_compare(list(inputs), out, profile=profile, rank=rank)
    click.echo(f"{len(summary['cities'])} cities ({', '.join(summary['cities'])}), {summary['indicators']} indicators: "
               f"{summary['comparable_rows']} comparable values, {summary['not_comparable_rows']} not comparable "
               f"(reasons in comparison.csv) → {out}")


@main.command()
@click.argument("study", type=click.Path(path_type=Path))
@out_option("folder", "model", required=True, help="Folder for model.json, model_units.csv, covariates.csv, resilience.csv, ledger.csv and, with [model] risk_terrain, risk_terrain.tif/.csv/.json/_map.html (created or replaced).")
@quiet_option
def model(study: Path, out: Path, quiet: bool) -> None:
    """Fit the count model of STUDY's [[inputs.covariates]]: incidents per unit of the current period
    against each factor, population as exposure (negative binomial). Prints each factor's rate ratio
    with its 95 % interval and the residual Moran's I; with [model] risk_terrain = true also the risk
    terrain model on grid cells (relative-risk GeoTIFF, rate ratio per risk feature). Associations, not causes."""
    from usm_geo.pipeline import model_study
    from usm_geo.study import load_study

    info = model_study(load_study(study), out, _stages(quiet))
    click.echo(info["ledger_summary"])
    for level, m in info["models"].items():
        if m["status"] != "fitted":
            click.echo(f"{level}: not fitted: {'; '.join(m['notes'])}")
            continue
        click.echo(f"{level}, {m['period']}: {m['n_units']} units, exposure {m['exposure']}, theta = {m['theta']:.3g}")
        for c in m["coefficients"][1:]:
            click.echo(f"  {c['term']}: rate ratio {c['rate_ratio']:.3g} ({c['rr_lower']:.3g} to {c['rr_upper']:.3g}), p = {c['p']:.2g}")
        if m["residual_moran"]:
            r = m["residual_moran"]
            click.echo(f"  residual Moran's I = {r['I']:.3f} (z = {r['z_norm']:.2f}): "
                       + ("space is left unexplained" if r["p_norm"] < 0.05 else "no clear spatial pattern left"))
        for note in m["notes"]:
            click.echo(f"  note: {note}")
    rtm = info.get("risk_terrain")
    if rtm and rtm.get("not_published"):
        click.echo(f"risk terrain, {rtm['period']}: not written: {rtm['not_published']}")
    elif rtm:
        click.echo(f"risk terrain, {rtm['period']}: {rtm['cells']:,} grid cells (risk_terrain.tif, risk_terrain.csv)")
        for r in rtm["rate_ratios"]:
            click.echo(f"  {r['term']}: rate ratio {r['rate_ratio']:.3g} ({r['rr_lower']:.3g} to {r['rr_upper']:.3g}) {r['units']}")
    click.echo(f"({info['caveat']}) → {out}")


@main.command()
@click.argument("study_a", type=click.Path(path_type=Path))
@click.argument("study_b", type=click.Path(path_type=Path))
@out_option("folder", "reconciliation", required=True, help="Folder for reconciliation.csv/.json (created or replaced).")
@click.option("--link", default=None, metavar="date,unit|id",
              help="Link records found in both sources: the same day in the same finest unit, or the same id; adds Chapman's estimate of the total.")
@quiet_option
def reconcile(study_a: Path, study_b: Path, out: Path, link: str | None, quiet: bool) -> None:
    """Compare two sources of the same incidents (e.g. police and health records) over the same
    boundaries: per unit and period the two counts, their difference and ratio with an exact
    interval, and a flag where they differ beyond chance (BH FDR); with --link, capture–recapture
    (Chapman) estimates of the total."""
    from usm_geo.pipeline import reconcile_studies
    from usm_geo.study import load_study

    parts = tuple(p.strip() for p in link.split(",")) if link else ()
    summary = reconcile_studies(load_study(study_a), load_study(study_b), out, link=parts, stages=_stages(quiet))
    click.echo(f"{summary['a']['study']} ({summary['a']['records']}, {summary['a']['used']:,} records) and "
               f"{summary['b']['study']} ({summary['b']['records']}, {summary['b']['used']:,} records), "
               f"{len(summary['periods'])} periods")
    for level, n in summary["units_differing"].items():
        click.echo(f"  {level}: {n} unit-periods where the sources differ beyond chance")
    for note in summary["notes"]:
        click.echo(f"  note: {note}")
    click.echo(f"→ {out}")


@main.command("map")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option("--table", type=click.Path(path_type=Path), default=None,
              help="Instead of RUN_DIR: a measures.csv or indicators.csv (with --units).")
@click.option("--units", "units", type=click.Path(path_type=Path), default=None,
              help="With --table: the units (a GeoPackage with one layer per level, finest first, or one layer).")
@click.option("--indicator", default=None, help="Indicator id (default: incident_rate, else the first rate).")
@click.option("--period", default=None, help="Period shown (default: the run's current period).")
@click.option("--before-after", "before_after", is_flag=True, help="Two maps side by side, kept in step.")
@click.option("--before", default=None, help="With --before-after: the left period (default: the baseline).")
@click.option("--after", default=None, help="With --before-after: the right period (default: the current period).")
@click.option("--scheme", type=click.Choice(["quantiles", "fisher_jenks", "user"]), default="quantiles",
              show_default=True, help="Classes (breaks pooled over every period).")
@click.option("--k", "k", type=int, default=5, show_default=True, help="Number of classes (2-9).")
@click.option("--breaks", default=None, help="With --scheme user: comma-separated upper bounds, in the units shown.")
@click.option("--classes", type=click.Choice(["level", "shared"]), default="level", show_default=True,
              help="Breaks per level, or one set for every level.")
@click.option("--palette", default=None, help="ColorBrewer name (default YlOrRd, or YlGnBu when higher is better).")
@click.option("--levels", default=None, help="Comma-separated levels to draw (default: all).")
@click.option("--show-level", default=None, help="Level shown on opening (default: the finest non-H3 level).")
@click.option("--tiles", default=None, help="Basemap: osm, carto-light, carto-dark, an xyzservices name or a tile URL "
              "(default: none; the map is self-contained and makes no network request).")
@click.option("--title", default=None, help="Page title (default: the study's name).")
@click.option("--profile", type=click.Choice(["public", "internal"]), default=None,
              help="With RUN_DIR: suppress as `export` does (default: the run's own profile).")
@out_option("file", "map.html", required=True, help="FILE.html")
def map_(run_dir, table, units, indicator, period, before_after, before, after, scheme, k, breaks, classes, palette,
         levels, show_level, tiles, title, profile, out) -> None:
    """A map of one indicator at every level (with Gi*, KDE and intervention layers), from a run's
    output folder or from any measures/indicators table with its units."""
    from usm_geo.maps import MapInputs, build_before_after, build_map, load_run

    if (run_dir is None) == (table is None):
        raise click.UsageError("give RUN_DIR, or --table with --units")
    if table is not None and units is None:
        raise click.UsageError("--table needs --units")
    if run_dir is None and profile == "public":
        raise click.UsageError("--profile applies to RUN_DIR; a --table is mapped as given")
    if not before_after and (before or after):
        raise click.UsageError("--before/--after need --before-after")
    if before_after and period:
        raise click.UsageError("--period is for one map; use --before/--after with --before-after")
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise UsmGeoError("--out names the map's HTML file", where=out, fix=f"e.g. --out {Path(out).with_suffix('.html')}")
    if scheme == "user" and not breaks:
        raise click.UsageError("--scheme user needs --breaks")
    try:
        cuts = [float(b) for b in _split(breaks)] if breaks else None
    except ValueError:
        raise UsmGeoError(f"--breaks {breaks!r} is not a list of numbers", where="--breaks", fix="e.g. --breaks 5,10,20") from None
    inputs = load_run(run_dir, profile=profile) if run_dir is not None else MapInputs.from_files(table, units)
    common = dict(indicator=indicator, scheme=scheme, k=k, breaks=cuts, classes=classes, palette=palette,
                  levels=_split(levels), show_level=show_level, tiles=tiles, title=title)
    if before_after:
        path = build_before_after(inputs, out, before=before, after=after, **common)
    else:
        path = build_map(inputs, out, period=period, **common)
    click.echo(f"map → {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
