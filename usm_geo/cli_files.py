"""Pipelines behind the one-file commands ``usm-geo aggregate``, ``hotspots`` and ``impact``: the
same stages as :mod:`usm_geo.pipeline` (intake → units → measures → analyses), run on files named on
the command line instead of a study."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from usm_geo.errors import CRSError, UsmGeoError
from usm_geo.io import write_csv, write_layers
from usm_geo.intake.crs import same_crs, working_crs
from usm_geo.intake.files import detect_format, read_spatial
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import Context, normalise_ids, read_point_records
from usm_geo.measures import dense, tally
from usm_geo.periods import all_periods
from usm_geo.periods import labels as period_labels
from usm_geo.intake.boundaries import polygons_in, utm_of_layer
from usm_geo.pipeline import impact_result
from usm_geo.units.assign import PolygonIndex
from usm_geo.units.hierarchy import UnitSet, build_units, h3_level, polygon_units
from usm_geo.units.locate import locate_points, point_cells


@dataclass


class Aggregation:
    """Counts of points per unit (× period × category when asked), with the ledger of the points."""

    table: pd.DataFrame  # unit_id, [period], [category], count
    units: gpd.GeoDataFrame  # unit_id, name, geometry
    ledger: Ledger
    level: str


def parse_units_option(text: str) -> tuple[int | None, Path | None, str | None]:
    """``h3:9`` → (9, None, None); ``areas.gpkg`` or ``areas.gpkg:ID_COLUMN`` → (None, path, column)."""
    if text.lower().startswith("h3:"):
        try:
            res = int(text[3:])
        except ValueError:
            res = -1
        if not 0 <= res <= 15:
            raise UsmGeoError(f"'{text}' is not an H3 resolution", where="--units", fix="use h3:0 … h3:15, e.g. h3:9")
        return res, None, None
    path = Path(text)
    if path.exists() or ":" not in text:
        return None, path, None
    head, column = text.rsplit(":", 1)
    return None, Path(head), column or None


def _guess_id_column(columns, path: Path) -> str:
    for name in columns:
        if str(name).lower() in ("unit_id", "id", "code", "fid") or str(name).lower().endswith(("_id", "_code")):
            return name
    raise UsmGeoError("no id column named for the areas", where=path,
                      fix=f"append it to --units as AREAS:ID_COLUMN; columns: {', '.join(map(str, columns))}")


def aggregate_points(points: Path, units: str, *, lon: str | None = None, lat: str | None = None,
                     x: str | None = None, y: str | None = None, crs: str | None = None, time: str | None = None,
                     period: str | None = None, category: str | None = None, timezone: str = "UTC",
                     now: dt.datetime | None = None, scheduler=None, layer: str | None = None) -> Aggregation:
    """Count points per H3 cell (``units="h3:R"``) or per polygon of a layer (``"AREAS[:ID]"``).

    Polygon layers list every unit, zeros included; H3 lists only the cells that hold a point (there
    is no study area). Points outside every polygon are in the ledger as ``outside_study_area``; bad
    coordinates (and dates, with ``time``) as in any intake. ``points`` may be a partitioned Parquet
    dataset (a folder); with ``scheduler`` (``local``, ``local:N``, ``threads``, ``tcp://HOST:PORT``
    or a ``distributed.Client``) its parts are counted on Dask (:mod:`usm_geo.scale`), with the same result.
    ``layer``: the layer of the areas file (a GeoPackage with several layers).
    """
    from usm_geo.errors import InputFileError
    from usm_geo.intake.boundaries import read_boundary_level
    from usm_geo.study import BoundaryLevel, RecordSource

    if period and not time:
        raise UsmGeoError("--period needs --time", fix="name the date column with --time COLUMN")
    res, area_path, id_col = parse_units_option(units)
    ledger = Ledger()
    levels: dict[str, gpd.GeoDataFrame] = {}
    area = None
    work = working_crs(crs) if crs and CRS.from_user_input(crs).is_projected else None
    if area_path is not None:
        if not area_path.exists():
            raise InputFileError("file not found", where=area_path, fix="check the path given to --units")
        if id_col is None:
            from usm_geo.intake.files import read_records as _read

            id_col = _guess_id_column([c for c in _read(area_path, "areas", Ledger(), layer=layer).frame.columns if c != "geometry"], area_path)
        layer = read_boundary_level(BoundaryLevel(level="area", path=area_path.resolve(), id=id_col, layer=layer), ledger, None)
        if work is None:
            work = layer.crs if layer.crs.is_projected else utm_of_layer(layer)
        levels["area"] = layer.to_crs(work) if not same_crs(layer.crs, work) else layer
        area = shapely.union_all(levels["area"].geometry.to_numpy())
        shapely.prepare(area)
    src = RecordSource(name="points", path=Path(points).resolve(), lon=lon, lat=lat, x=x, y=y, crs=crs,
                       datetime=time, category=category)
    index = PolygonIndex.build(levels["area"].geometry.to_numpy()) if levels else None
    ctx = Context(working_crs=work, timezone=timezone, study_area=area, study_index=index, now=now)
    resolutions = [res] if res is not None else []
    keys: dict[str, np.ndarray] = {}
    if scheduler is not None:
        from usm_geo import scale

        job = scale.Job(source=src, ctx=ctx, units=polygon_units(levels, area, ctx.working_crs, index),
                        h3_resolutions=tuple(resolutions), frequency=period, by_category=bool(category), detect=False)
        with scale.connect(scheduler) as client:
            counted = scale.count_dataset(job, src.path, client)
        scale.ledger_of(counted, "points", src.path, ledger)
        cells, sparse = counted.cells, counted.tally
        first, last, cats = counted.first, counted.last, counted.categories
    else:
        records = read_point_records(src, ledger, ctx, detect=False)
        cells = point_cells(records["lon"], records["lat"], resolutions)
    unitset = build_units(levels, study_area=area, crs=ctx.working_crs, h3_resolutions=resolutions, point_cells=cells)
    level = h3_level(res) if res is not None else "area"
    if scheduler is None:
        located = locate_points(records, unitset, cells, ledger, "points")
        if period:
            keys["period"] = period_labels(records["occurred_at"].to_numpy(), period)
            first, last = records["occurred_at"].min(), records["occurred_at"].max()
        if category:
            keys["category"] = records["category"].to_numpy(dtype=object)
            cats = set(keys["category"])
        sparse = tally({level: located[level].to_numpy(dtype=object)}, keys)
    axes = {"unit_id": unitset.levels[level]["unit_id"].to_numpy(dtype=object)}
    if period:
        axes["period"] = np.asarray(all_periods(first.date(), last.date(), period), dtype=object)
    if category:
        axes["category"] = np.asarray(sorted(cats), dtype=object)
    counts = dense(sparse[sparse["level"] == level], axes)
    grid = np.meshgrid(*[np.arange(n) for n in counts.shape], indexing="ij")
    table = pd.DataFrame({k: axes[k][g.reshape(-1)] for k, g in zip(axes, grid)})
    table["count"] = counts.reshape(-1)
    layer = unitset.levels[level][["unit_id", "name", "geometry"]]
    return Aggregation(table=table, units=layer, ledger=ledger, level=level)


def write_aggregation(agg: Aggregation, out: Path) -> None:
    """Write the counts as CSV, or with unit geometry as GeoPackage or GeoParquet (atomically)."""
    from usm_geo.io import atomic_path

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        write_csv(out, agg.table)
        return
    if suffix not in (".gpkg", ".parquet"):
        raise UsmGeoError(f"cannot write '{out.name}'", where=out, fix="end --out with .csv, .gpkg or .parquet")
    frame = gpd.GeoDataFrame(agg.table.merge(agg.units, on="unit_id", how="left"), geometry="geometry", crs=agg.units.crs)
    if suffix == ".gpkg":
        write_layers(out, {agg.level: frame})
    else:
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)


def hotspots_from_areas(areas: Path, value: str, *, id_column: str | None = None, layer: str | None = None,
                        weights: str = "queen", transform: str = "B", permutations: int = 999, seed: int = 0):
    """Hot spot analysis of any polygon layer with a numeric value column (``usm-geo hotspots AREAS``).

    Returns (layer with the input columns and :data:`usm_geo.hotspots.analysis.COLUMNS`, globals, report).
    """
    from usm_geo.hotspots.analysis import hotspot_layer

    raw = read_spatial(Path(areas), fmt=detect_format(Path(areas)), layer=layer)
    frame = raw.frame
    if value not in frame.columns:
        raise UsmGeoError(f"the layer has no column '{value}'", where=areas,
                          fix=f"name one of: {', '.join(c for c in frame.columns if c != 'geometry')}")
    y = pd.to_numeric(frame[value], errors="coerce")
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0]) + 1
        raise UsmGeoError(f"'{frame[value].iloc[row - 1]}' is not a number", where=f"{areas}:{row}, column '{value}'",
                          fix="fill or remove the feature, or choose another --value")
    gdf = gpd.GeoDataFrame(frame.copy(), geometry="geometry", crs=raw.crs)
    gdf["unit_id"] = normalise_ids(frame[id_column]).to_numpy() if id_column else np.arange(1, len(frame) + 1).astype(str)
    out, globals_, report = hotspot_layer(gdf, y.to_numpy(float), weights=weights, transform=transform,
                                          permutations=permutations, seed=seed)
    report["value"] = value
    return out, globals_, report


def hotspots_from_points(points: Path, grid: str, *, lon=None, lat=None, x=None, y=None, crs=None,
                         weights: str | None = None, transform: str = "B", permutations: int = 999, seed: int = 0,
                         max_cells: int | None = None, now: dt.datetime | None = None):
    """Counts of points on an H3 (``h3:RES``) or square (``square:METRES``) grid over the points'
    convex hull, then the same hot spot analysis. Returns (layer, globals, report, ledger).

    ``max_cells``: the grid's cell budget (default :data:`usm_geo.hotspots.grids.MAX_CELLS`); a grid
    that would hold more is refused before it is built (an automatic square cell size is coarsened)."""
    from usm_geo.hotspots.analysis import hotspot_layer
    from usm_geo.hotspots.grids import MAX_CELLS, count_points_square, h3_cells_estimate, square_grid
    from usm_geo.study import RecordSource

    kind, _, arg = grid.partition(":")
    if kind not in ("h3", "square"):
        raise UsmGeoError(f"unknown grid '{grid}'", where="--grid", fix="use h3:RES (e.g. h3:9) or square:METRES (e.g. square:250)")
    ledger = Ledger()
    src = RecordSource(name="points", path=Path(points).resolve(), lon=lon, lat=lat, x=x, y=y, crs=crs)
    work = working_crs(crs) if crs and CRS.from_user_input(crs).is_projected else None
    ctx = Context(working_crs=work, now=now)
    records = read_point_records(src, ledger, ctx, detect=False)
    px, py = records["x"].to_numpy(float), records["y"].to_numpy(float)
    hull = shapely.convex_hull(shapely.multipoints(np.column_stack([px, py])))
    budget = MAX_CELLS if max_cells is None else int(max_cells)
    if kind == "h3":
        res, _, _ = parse_units_option(grid)
        estimate = h3_cells_estimate(hull.buffer(1.0).area, res)
        if estimate > budget:
            raise UsmGeoError(
                f"an H3 resolution {res} grid over the points' convex hull would have about {estimate:,} cells, "
                f"more than the budget of {budget:,}", where="--grid",
                fix=f"use a coarser resolution (e.g. h3:{max(0, res - 1)}) or raise the budget with --max-cells {estimate}")
        cells = point_cells(records["lon"], records["lat"], [res])
        units = build_units({}, study_area=hull.buffer(1.0), crs=ctx.working_crs, h3_resolutions=[res], point_cells=cells)
        layer = units.levels[h3_level(res)][["unit_id", "geometry"]].reset_index(drop=True)
        idx = pd.Index(layer["unit_id"]).get_indexer(h3cells_str(cells[res]))
        counts = np.bincount(idx[idx >= 0], minlength=len(layer)).astype(float)
        cell_ids = layer.attrs.get("cells", units.levels[h3_level(res)].attrs["cells"])
        auto_weights = "h3"
        grid_report = {"grid": grid, "grid_cover": "H3 cells whose centre is in the points' convex hull, plus every cell holding a point"}
    else:
        try:
            size = float(arg) if arg else None
        except ValueError:
            raise UsmGeoError(f"'{grid}' needs a cell size in metres", where="--grid", fix="e.g. square:250") from None
        layer, grid_report = square_grid(hull.buffer(1.0), cell_size=size, crs=ctx.working_crs, cover="touch",
                                         max_cells=budget)
        full, _ = count_points_square(px, py, grid_report["origin"], grid_report["cell_size"], grid_report["shape"])
        counts = full[layer["row"].to_numpy(), layer["col"].to_numpy()].astype(float)
        layer = layer[["unit_id", "geometry"]]
        cell_ids, auto_weights = None, "queen"
    layer = layer.assign(count=counts.astype(np.int64))
    out, globals_, report = hotspot_layer(layer, counts, weights=weights or auto_weights, transform=transform,
                                          permutations=permutations, seed=seed, cells=cell_ids)
    report.update({f"grid_{k}": v for k, v in grid_report.items()})
    report["points_counted"] = int(counts.sum())
    return out, globals_, report, ledger


def h3cells_str(cells: np.ndarray) -> np.ndarray:
    from usm_geo.units.h3cells import cells_to_str

    return cells_to_str(cells)


#: metres around the treated and control areas of `usm-geo impact` within which a swapped lon/lat is recognised
SWAP_MARGIN = 10_000.0


def impact_from_files(points: Path, *, treated: Path, control: Path | None = None, buffer: float | None = None,
                      buffer_area: Path | None = None, before: str, after: str, time: str | None = None,
                      category: str | None = None, harm: Path | None = None, lon=None, lat=None, x=None, y=None,
                      crs=None, now: dt.datetime | None = None) -> tuple[dict, Ledger]:
    """``usm-geo impact``: the same measures as a study's intervention, from files on the command line."""
    from usm_geo import impact
    from usm_geo.indicators.registry import harm_weights, read_label_table
    from usm_geo.periods import parse_window
    from usm_geo.study import RecordSource

    before_w, after_w = parse_window(before), parse_window(after)
    ledger = Ledger()
    treated_raw = read_spatial(Path(treated), fmt=detect_format(Path(treated)))
    if treated_raw.crs is None:
        raise CRSError("the treated area has no CRS", where=treated, fix="add a .prj file or use a GeoPackage")
    work = treated_raw.crs if treated_raw.crs.is_projected else utm_of_layer(gpd.GeoDataFrame(geometry=treated_raw.frame.geometry, crs=treated_raw.crs))
    src = RecordSource(name="points", path=Path(points).resolve(), lon=lon, lat=lat, x=x, y=y, crs=crs, datetime=time)
    # no study area, but the treated (and control) polygons say where the points are meant to be:
    # a row whose lon/lat only land near them when swapped is swapped back (nothing is dropped for it)
    t_geom = polygons_in(treated, work, what="treated")
    c_geom = polygons_in(control, work, what="control") if control is not None else None
    swap_area = shapely.union_all([g for g in (t_geom, c_geom) if g is not None]).buffer(SWAP_MARGIN)
    shapely.prepare(swap_area)
    records = read_point_records(src, ledger, Context(working_crs=work, now=now, swap_area=swap_area))  # dates are needed: detected
    if "occurred_at" not in records:
        raise UsmGeoError("no date column found in the points", where=points, fix="name it with --time COLUMN")
    if category is not None:
        keep = records["category"].astype(str).str.casefold() == category.casefold()
        if not keep.any():
            raise UsmGeoError(f"no point has category '{category}'", where=points,
                              fix=f"categories present: {', '.join(sorted(set(records['category'].astype(str)))[:15])}")
        records = records[keep.to_numpy()].reset_index(drop=True)
    weights = None
    if harm is not None:
        table = read_label_table(Path(harm), "harm_days", Path(harm))
        table["harm"] = pd.to_numeric(table["harm_days"], errors="coerce")
        weights, missing = harm_weights(records["category"].to_numpy(dtype=object), table)
        if missing:
            ledger.note("points", "no_harm_weight", "harm weight 0 for: " + ", ".join(missing))
        weights = np.nan_to_num(weights, nan=0.0)
    b_geom = polygons_in(buffer_area, work, what="buffer") if buffer_area is not None else None
    areas = impact.impact_areas(t_geom, buffer_width=buffer if b_geom is None else None, buffer_area=b_geom, control=c_geom)
    result = impact_result(records["x"].to_numpy(float), records["y"].to_numpy(float), records["occurred_at"].to_numpy(),
                           areas, (before_w.start, before_w.end), (after_w.start, after_w.end), weights=weights)
    return result, ledger
