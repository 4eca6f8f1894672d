"""Population denominators per unit: from a table, from points, from a raster or from other areas.

Every function returns a :class:`pandas.DataFrame` with one row per unit of the target layer, sorted
by ``unit_id``, and the columns

``unit_id``     str, the unit's id (as in the layer).
``population``  float, persons. ``NaN`` when the source says nothing about the unit.
``flags``       str, ``""`` or flag names joined by ``";"`` in the order of :data:`FLAGS`.

Flags
-----
``population_missing``   the source has no value for the unit (population is NaN), or — after
                         :func:`roll_up` and :func:`from_areas` — part of it is missing, so the
                         value kept is a lower bound.
``population_partial``   the source covers only part of the unit's area (less than
                         :data:`PARTIAL_COVERAGE` of it): the value is a lower bound.
``population_zero``      the population is exactly 0. Rates on it are undefined (never a division
                         error: downstream code must read the flag, or divide with NaN semantics).
``population_conflict``  (tables) the unit had several rows with different values; the first
                         valid row was used (see :func:`from_table`).

Run totals are in ``frame.attrs`` (plain Python scalars and strings only, so the frame concatenates
and compares safely). Every function sets ``total`` (persons in the source that was read),
``assigned`` (persons given to units) and ``outside`` (persons in no unit), plus a ``method``
name and method-specific keys listed in each docstring.

Units and CRS
-------------
Populations are persons. Unit layers are GeoDataFrames in the study's working CRS (projected,
metres) with a unique string column ``unit_id``. Areas are m² in the working CRS. Only
:func:`from_raster` reprojects (sub-cell centres, from any raster CRS to the layer's CRS).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from usm_geo.errors import BoundaryError, CRSError, InputFileError, UsmGeoError
from usm_geo.intake.columns import resolve
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import normalise_ids
from usm_geo.units import jit

__all__ = [
    "FLAGS",
    "PARTIAL_COVERAGE",
    "default_subdivide",
    "from_areas",
    "from_points",
    "from_raster",
    "from_table",
    "roll_up",
]

#: Flag names, in the order they are written in ``flags``.
FLAGS = ("population_missing", "population_partial", "population_zero", "population_conflict")

#: A unit whose area is covered by the source (raster extent, source polygons) for less than this
#: share is flagged ``population_partial``: the value is then a lower bound.
PARTIAL_COVERAGE = 0.995

#: Sub-cells handled per batch in :func:`from_raster` (24 bytes each in flight: 4 Mi ≈ 100 MB).
SUBCELL_BATCH = 1 << 22

#: Raster cells read per row block in :func:`from_raster` (4 Mi cells ≈ 150 MB in flight with
#: the float64 copy, the mask and the block's corner coordinates).
READ_BLOCK_CELLS = 1 << 22

#: Bounds of the automatic subdivision (see :func:`default_subdivide`).
SUBDIVIDE_MIN, SUBDIVIDE_MAX = 4, 64


# --------------------------------------------------------------------------- shared helpers
def _unit_ids(layer) -> np.ndarray:
    """The layer's ``unit_id`` values as a str object array (positions = layer rows)."""
    if "unit_id" not in getattr(layer, "columns", ()):
        raise BoundaryError("the unit layer has no 'unit_id' column",
                            fix="pass a units GeoDataFrame as built by usm_geo.units (columns unit_id, name, geometry)")
    ids = layer["unit_id"].astype(str).to_numpy(dtype=object)
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise BoundaryError(f"unit_id '{ids[int(np.flatnonzero(dup)[0])]}' occurs more than once in the unit layer",
                            fix="give every unit a distinct id")
    return ids


def _frame(ids: np.ndarray, population: np.ndarray, flags: dict[str, np.ndarray] | None = None,
           attrs: dict | None = None) -> pd.DataFrame:
    """Assemble the result frame: flags from masks (plus missing/zero from the values), sorted by id."""
    population = np.asarray(population, dtype=np.float64)
    masks = {name: np.zeros(len(ids), dtype=bool) for name in FLAGS}
    for name, mask in (flags or {}).items():
        masks[name] |= np.asarray(mask, dtype=bool)
    masks["population_missing"] |= np.isnan(population)
    masks["population_zero"] |= population == 0
    text = np.full(len(ids), "", dtype=object)
    for name in FLAGS:
        m = masks[name]
        if m.any():
            text[m] = np.where(text[m] == "", name, text[m] + ";" + name)
    out = pd.DataFrame({"unit_id": pd.Series(ids, dtype=object).astype(str),
                        "population": population, "flags": pd.Series(text, dtype=object).astype(str)})
    out = out.sort_values("unit_id", kind="stable").reset_index(drop=True)
    out.attrs.update(attrs or {})
    return out


def _geoms(layer) -> np.ndarray:
    geoms = getattr(layer, "geometry", None)
    if geoms is None:
        raise BoundaryError("the unit layer has no geometry", fix="pass a GeoDataFrame of polygons")
    return np.asarray(geoms.values, dtype=object)


def _layer_crs(layer, what: str):
    from pyproj import CRS

    crs = getattr(layer, "crs", None)
    if crs is None:
        raise CRSError(f"the {what} has no CRS, and its areas (or a reprojection to it) need one",
                       fix="set the layer's CRS (units built by usm_geo are in the study's working CRS)")
    return CRS.from_user_input(crs)


def _require_projected(crs, what: str) -> None:
    if not crs.is_projected:
        raise CRSError(f"the {what} is in {crs.name}, which is not projected: areas in degrees are not areas",
                       fix="transform the layer to the study's working CRS (metres) first")


# --------------------------------------------------------------------------- 1. table
_THOUSANDS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_MISSING_TEXT = {"", "na", "n/a", "nan", "null", "none", "-", ".."}


def from_table(path, layer, *, id_column: str, value_column: str, sheet: str | None = None,
               ledger: Ledger, source: str = "population") -> pd.DataFrame:
    """Population per unit from a table keyed by unit id (CSV, TSV, XLSX, or a spatial file's table).

    Parameters
    ----------
    path : str, Path or DatabaseSource
        The table. Read with :func:`usm_geo.intake.files.read_records` (format from the extension,
        or a PostgreSQL table or query).
    layer : GeoDataFrame or DataFrame
        The target units (only its ``unit_id`` column is used).
    id_column, value_column : str
        Column names in the table (case and spaces tolerated). Ids are normalised with
        :func:`~usm_geo.intake.records.normalise_ids` (``35.0`` → ``"35"``). Values are persons;
        text values with thousands separators (``"8,028"``) are read as numbers, and a file note
        says so.
    sheet : str, optional
        Worksheet (XLSX) or layer (GPKG) name; default the first.
    ledger : Ledger
        Receives the source (``source``, ``path``, rows read) and one entry per row not used.
    source : str
        Ledger source name.

    Every row is used or in the ledger as ``dropped``, checked in this order:

    ``missing_unit``        the id is empty;
    ``unknown_unit``        the id is not a ``unit_id`` of ``layer`` (e.g. a ward code of an older
                            vintage);
    ``invalid_population``  the value is empty, not a number, infinite or negative;
    ``duplicate_unit``      an earlier row (lower row number) already gave a valid value for this
                            unit: **the first valid row wins**. If the values differ, the unit is
                            also flagged ``population_conflict``; the ledger detail names the row
                            kept and both values.

    Units with no valid row get NaN and ``population_missing``; units with 0 get
    ``population_zero``. ``attrs``: ``method="table"``, ``total`` = ``assigned`` (sum of the values
    used), ``outside`` = 0.0 (rows of unknown units carry no usable population: see the ledger),
    ``rows_read``, ``rows_used``, ``units_missing``.
    """
    path = Path(path) if isinstance(path, str) else path  # a Path, or a database source
    ids_layer = _unit_ids(layer)
    raw = read_records(path, source, ledger, layer=sheet)
    ledger.open_source(source, str(path), raw.read)
    frame = raw.frame
    rows = np.asarray(raw.rows, dtype=np.int64)
    id_col = resolve(frame.columns, id_column, "unit", path, f"{source}.id")
    value_col = resolve(frame.columns, value_column, "population", path, f"{source}.column")

    ids = normalise_ids(frame[id_col]).astype(str).to_numpy(dtype=object)
    ids = np.where(pd.isna(frame[id_col]).to_numpy(), "", ids)
    values, separators = _parse_values(frame[value_col])
    if separators:
        ledger.note(source, "thousands_separator",
                    f"{separators} values in column '{value_col}' have thousands separators (e.g. 8,028) and were read as numbers")

    keep = np.ones(len(frame), dtype=bool)

    def drop(mask, reason, detail):
        mask = np.asarray(mask, dtype=bool) & keep
        if mask.any():
            det = detail if isinstance(detail, str) else np.asarray(detail, dtype=object)[mask]
            ledger.add(source, rows[mask], "dropped", reason, det)
            keep[mask] = False

    shown_ids = pd.Series(ids, dtype=object).str.slice(0, 30)
    raw_values = frame[value_col].astype(str).str.slice(0, 30).to_numpy(dtype=object)
    drop(ids == "", "missing_unit", f"column '{id_col}' is empty")
    known = set(ids_layer.tolist())
    unknown = ~pd.Series(ids, dtype=object).isin(known).to_numpy()
    drop(unknown, "unknown_unit", (f"{id_col} = " + shown_ids + " is not a unit of the layer").to_numpy(dtype=object))
    bad = ~np.isfinite(values) | (values < 0)
    drop(bad, "invalid_population",
         (f"{value_col} = '" + pd.Series(raw_values, dtype=object) + "' is not a number ≥ 0").to_numpy(dtype=object))

    # Duplicates among the rows still kept: the first (lowest row number) wins.
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(rows[kept], kind="stable")]
    kept_ids = pd.Series(ids[order], dtype=object)
    later = kept_ids.duplicated(keep="first").to_numpy()
    conflict_units: set[str] = set()
    if later.any():
        first_pos = pd.Series(order[~later], index=ids[order[~later]])
        dup_pos = order[later]
        winner = first_pos.loc[ids[dup_pos]].to_numpy()
        differs = values[dup_pos] != values[winner]
        conflict_units = set(ids[dup_pos[differs]].tolist())
        detail = [f"unit {u} already has {values[w]:g} from row {rows[w]}; this row says {values[d]:g}"
                  + ("" if values[d] == values[w] else " (different: the first row is used)")
                  for u, w, d in zip(ids[dup_pos], winner, dup_pos)]
        mask = np.zeros(len(frame), dtype=bool)
        mask[dup_pos] = True
        full = np.empty(len(frame), dtype=object)
        full[dup_pos] = detail
        drop(mask, "duplicate_unit", full)

    used = np.flatnonzero(keep)
    ledger.close_source(source, used.size)
    by_unit = pd.Series(values[used], index=ids[used])
    population = by_unit.reindex(ids_layer).to_numpy(dtype=np.float64)
    conflict = np.isin(ids_layer, list(conflict_units))
    total = float(values[used].sum())
    attrs = {"method": "table", "source": source, "total": total, "assigned": total, "outside": 0.0,
             "rows_read": int(raw.read), "rows_used": int(used.size),
             "units_missing": int(np.isnan(population).sum())}
    return _frame(ids_layer, population, {"population_conflict": conflict}, attrs)


def _parse_values(series: pd.Series) -> tuple[np.ndarray, int]:
    """Column → float array (NaN where not a number) and the number of thousands-separated values."""
    if pd.api.types.is_bool_dtype(series):
        return np.full(len(series), np.nan), 0
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), 0
    text = series.astype(str).str.strip()
    text = text.where(~text.str.lower().isin(_MISSING_TEXT), "")
    thousands = text.str.fullmatch(_THOUSANDS).fillna(False).to_numpy(dtype=bool)
    text = text.where(~thousands, text.str.replace(",", "", regex=False))
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, int(thousands.sum())


# --------------------------------------------------------------------------- 2. points
def from_points(x, y, values, layer, *, return_outside: bool = False):
    """Sum population points (e.g. census block centroids) per unit by exact point-in-polygon.

    Parameters
    ----------
    x, y : array-like of float
        Point coordinates in the layer's CRS (working CRS, metres).
    values : array-like of float or None
        Persons at each point (≥ 0, finite); ``None`` counts each point as one person.
    layer : GeoDataFrame
        Target units (``unit_id``, polygon ``geometry``).
    return_outside : bool
        Also return the int64 positions of the points that fall in no unit.

    Points are assigned with :class:`usm_geo.units.assign.PolygonIndex` (half-open crossing
    rule: a point on an edge shared by two units counts once). NaN coordinates fall in no unit.
    A unit that contains no point gets 0 and ``population_zero`` (with centroids this happens to
    small units whose blocks' centroids lie elsewhere: read the flag).

    ``attrs``: ``method="points"``, ``total`` (sum of all values), ``assigned``, ``outside``
    (persons at points in no unit), ``n_points``, ``n_outside``.

    Returns
    -------
    DataFrame, or ``(DataFrame, outside_positions)`` when ``return_outside``.
    """
    from usm_geo.units.assign import PolygonIndex

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise UsmGeoError(f"x and y have different lengths ({x.size} and {y.size})")
    w = np.ones(x.size) if values is None else np.asarray(values, dtype=np.float64).reshape(-1)
    if w.shape != x.shape:
        raise UsmGeoError(f"values has {w.size} entries for {x.size} points",
                          fix="pass one population value per point")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsmGeoError(f"{int(bad.sum())} population values are missing, infinite or negative "
                          f"(first at position {i}: {w[i]!r})",
                          fix="drop those points or set their population to a number ≥ 0 before calling from_points")
    ids = _unit_ids(layer)
    pos = PolygonIndex.build(_geoms(layer)).assign(x, y)
    sums = np.bincount(pos + 1, weights=w, minlength=len(ids) + 1)
    outside_mask = pos < 0
    attrs = {"method": "points", "total": float(w.sum()), "assigned": float(sums[1:].sum()),
             "outside": float(sums[0]), "n_points": int(x.size), "n_outside": int(outside_mask.sum())}
    out = _frame(ids, sums[1:], None, attrs)
    if return_outside:
        return out, np.flatnonzero(outside_mask).astype(np.int64)
    return out


# --------------------------------------------------------------------------- 3. raster
def default_subdivide(cell_size_m: float, unit_size_m: float) -> int:
    """Sub-cells per raster cell side that :func:`from_raster` uses when ``subdivide`` is None.

    With ``r = cell / unit`` (``cell`` = √ median cell area, ``unit`` = √ median unit area, both in
    the layer's metres)::

        s = 4 × ceil(max(50 r, min(12, 400 r)) / 4),  clipped to [4, 64]

    * ``50 r``: a sub-cell is at most 1/50 of a typical unit's side (typical error ≪ 0.5 %);
    * ``min(12, 400 r)``: a floor of 12 sub-cells per side, relaxed down to a sub-cell of 1/400 of
      a unit's side when cells are tiny compared with units (a 10 m raster under 1.5 km
      neighbourhoods needs only 4, where 12 would cost 9× the time for no visible gain);
    * a multiple of 4, so a boundary along a cell's half or quarter line passes between sub-cell
      centres and is split exactly; at most 64² = 4,096 sub-cells per cell.

    Accuracy. The raster total is conserved exactly (every sub-cell goes to one unit or to
    ``outside``). A unit's error comes from its boundary: where a boundary crosses a cell, the
    sub-cells whose centres fall on its side are counted, which misplaces up to ``v / (2s)`` of a
    cell's ``v`` persons (the worst case is a boundary running along a row of sub-cell centres).
    Along a boundary that crosses the grid at a slant these errors cancel; along one that runs
    parallel to the raster's rows or columns at a fixed offset they add up, to at most
    ``boundary length × sub-cell width / 2 × density``. Measured (worst unit): H3 res-9 hexagons
    (≈ 320 m) over a constant raster: 100 m cells, s = 16 → 0.16 %; 30 m cells, s = 12 → 0.07 %;
    a boundary parallel to a 16 m lon/lat grid, s = 12 → 0.16 % (s = 8 → 0.65 %). Time grows with
    cells × s² (about 50 M sub-cells per second): pass ``subdivide`` to trade it for accuracy.
    """
    if not (np.isfinite(cell_size_m) and np.isfinite(unit_size_m)) or unit_size_m <= 0 or cell_size_m <= 0:
        return 12
    r = cell_size_m / unit_size_m
    s = 4 * math.ceil(max(50.0 * r, min(12.0, 400.0 * r)) / 4.0)
    return int(min(max(s, SUBDIVIDE_MIN), SUBDIVIDE_MAX))


def from_raster(path, layer, *, subdivide: int | None = None, band: int = 1) -> pd.DataFrame:
    """Zonal sums of a population raster (persons per cell, any CRS) over the layer's polygons.

    Fractional-cell weighting by sub-cells: each cell holding a positive value ``v`` is split into
    ``s × s`` sub-cells of ``v / s²`` persons; each sub-cell's centre is placed in the layer's CRS
    and assigned to a unit with :class:`usm_geo.units.assign.PolygonIndex` (exact point in
    polygon; a centre on a shared edge counts once), then summed per unit. A cell cut by
    a unit boundary is thereby shared in proportion to area, up to the sub-cell resolution (see
    :func:`default_subdivide`; a cut along a line of sub-cell centres errs by at most
    ``v / (2s)``). Sub-cell centres are placed by bilinear interpolation between the cell's four
    corners, which are transformed exactly with pyproj when the raster's CRS differs from the
    layer's (``CRS.equals(ignore_axis_order=True)``); within one cell a projection is bilinear to
    far below a metre for cells up to ~1 km.

    Parameters
    ----------
    path : str or Path
        A raster file rasterio can read (GeoTIFF), persons per cell, with a CRS.
    layer : GeoDataFrame
        Target polygons (neighbourhoods, H3 hexagons, …) with ``unit_id``; its CRS is needed.
    subdivide : int, optional
        Sub-cells per cell side. Default :func:`default_subdivide` (reported in ``attrs``).
    band : int
        Band to read (1-based).

    Values that are nodata (the band's nodata value, mask, or NaN) or ≤ 0 are ignored: they hold no
    persons. Negative values are not used and counted in ``attrs["negative_cells"]``.
    Only the window of the raster covering the layer's bounds (plus one cell) is read; the whole
    raster when it lies within them. A unit that the raster's extent covers for less than
    :data:`PARTIAL_COVERAGE` of its area is flagged ``population_partial`` (a lower bound); one it
    does not reach at all gets NaN and ``population_missing``. Nodata cells *inside* the extent
    count as no persons (WorldPop marks water as nodata), and are not flagged.

    Work is vectorised in batches of :data:`SUBCELL_BATCH` sub-cells, reading the raster in blocks
    of :data:`READ_BLOCK_CELLS` cells (whole rows), so memory stays under ~0.5 GB whatever the
    raster's size; there is no per-cell Python loop (sub-cell centres and sums are small numba
    loops). Speed: ~40 M sub-cells per second on one core plus the assignment.

    ``attrs``: ``method="raster"``, ``total`` (persons in the cells read), ``assigned``,
    ``outside`` (persons in sub-cells in no unit; ``total = assigned + outside`` up to rounding),
    ``subdivide``, ``cell_size_m`` (√ median cell area in the layer's CRS), ``raster_crs``,
    ``window`` (``"row_off,col_off,height,width"``), ``raster_shape`` (``"rows,cols"``),
    ``cells_used``, ``nodata_cells``, ``negative_cells``.
    """
    import rasterio
    from pyproj import CRS, Transformer
    from rasterio.windows import Window

    from usm_geo.units.assign import PolygonIndex

    path = Path(path)
    ids = _unit_ids(layer)
    geoms = _geoms(layer)
    layer_crs = _layer_crs(layer, "unit layer")
    if subdivide is not None and (int(subdivide) != subdivide or subdivide < 1):
        raise UsmGeoError(f"subdivide must be a positive whole number of sub-cells per cell side, got {subdivide!r}",
                          fix="leave it unset for the automatic choice, or pass e.g. 16")
    if not path.exists():
        raise InputFileError("file not found", where=path, fix="check the population raster path in the study")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"cannot read as a raster: {str(exc).splitlines()[0]}", where=path,
                             fix="use a GeoTIFF (or another format GDAL reads)") from None
    with src:
        if src.crs is None:
            raise CRSError("the population raster has no CRS", where=path,
                           fix="set one, e.g. gdal_edit.py -a_srs EPSG:4326 FILE")
        if not 1 <= band <= src.count:
            raise InputFileError(f"band {band} requested, the raster has {src.count}", where=path)
        raster_crs = CRS.from_user_input(src.crs.to_wkt())
        same = raster_crs.equals(layer_crs, ignore_axis_order=True)
        to_layer = None if same else Transformer.from_crs(raster_crs, layer_crs, always_xy=True)
        to_raster = None if same else Transformer.from_crs(layer_crs, raster_crs, always_xy=True)
        transform = src.transform

        usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        window = _raster_window(src, geoms[usable], to_raster) if usable.any() else None
        n = len(ids)
        sums = np.zeros(n + 1, dtype=np.float64)
        total = 0.0
        cells_used = nodata_cells = negative_cells = 0
        cell_size = float("nan")
        s = subdivide
        if window is not None:
            row_off, col_off, height, width = window
            cell_size = _cell_size_m(transform, to_layer, row_off, col_off, height, width)
            unit_size = float(np.sqrt(np.median(shapely.area(geoms[usable]))))
            if s is None:
                s = default_subdivide(cell_size, unit_size)
            s = int(s)
            index = PolygonIndex.build(geoms)
            frac = (np.arange(s, dtype=np.float64) + 0.5) / s
            rows_per_block = max(1, READ_BLOCK_CELLS // max(width, 1))
            for r0 in range(row_off, row_off + height, rows_per_block):
                h = min(rows_per_block, row_off + height - r0)
                data = src.read(band, window=Window(col_off, r0, width, h), masked=True)
                vals = np.ma.getdata(data).astype(np.float64)
                valid = ~np.ma.getmaskarray(data) & np.isfinite(vals)
                nodata_cells += int((~valid).sum())
                negative_cells += int((valid & (vals < 0)).sum())
                rr, cc = np.nonzero(valid & (vals > 0))
                if rr.size == 0:
                    continue
                v = vals[rr, cc]
                total += float(v.sum())
                cells_used += int(rr.size)
                # Corners of this block's cells in the layer CRS: (h + 1) × (width + 1).
                cx, cy = _corner_grid(transform, to_layer, r0, col_off, h, width)
                step = max(1, SUBCELL_BATCH // (s * s))
                for k0 in range(0, rr.size, step):
                    r, c, vk = rr[k0:k0 + step], cc[k0:k0 + step], v[k0:k0 + step]
                    px = np.empty(r.size * s * s)
                    py = np.empty(r.size * s * s)
                    _subcell_centres(cx, cy, r, c, frac, px, py)
                    _accumulate(index.assign(px, py), vk, s * s, sums)
        coverage = _coverage(geoms, src, window, to_layer)
        raster_shape = f"{src.height},{src.width}"

    population = sums[1:].copy()
    none = coverage <= 0
    population[none] = np.nan
    partial = (coverage < PARTIAL_COVERAGE) & ~none
    attrs = {"method": "raster", "total": total, "assigned": float(sums[1:].sum()), "outside": float(sums[0]),
             "subdivide": int(s) if s is not None else 0, "cell_size_m": cell_size,
             "raster_crs": raster_crs.to_string(),
             "window": ",".join(map(str, window)) if window is not None else "",
             "raster_shape": raster_shape,
             "cells_used": cells_used, "nodata_cells": nodata_cells, "negative_cells": negative_cells}
    return _frame(ids, population, {"population_partial": partial}, attrs)


def _raster_window(src, geoms, to_raster):
    """(row_off, col_off, height, width) of the raster cells covering the layer's bounds plus one
    cell, clipped to the raster; None when they do not overlap."""
    from rasterio.windows import from_bounds

    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    if to_raster is not None:
        minx, miny, maxx, maxy = to_raster.transform_bounds(minx, miny, maxx, maxy, densify_pts=21)
    if not all(np.isfinite([minx, miny, maxx, maxy])):
        return 0, 0, src.height, src.width
    win = from_bounds(minx, miny, maxx, maxy, transform=src.transform)
    r0 = math.floor(min(win.row_off, win.row_off + win.height)) - 1
    r1 = math.ceil(max(win.row_off, win.row_off + win.height)) + 1
    c0 = math.floor(min(win.col_off, win.col_off + win.width)) - 1
    c1 = math.ceil(max(win.col_off, win.col_off + win.width)) + 1
    r0, r1 = max(r0, 0), min(r1, src.height)
    c0, c1 = max(c0, 0), min(c1, src.width)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, r1 - r0, c1 - c0


def _corner_grid(transform, to_layer, r0, c0, h, w):
    """Layer-CRS coordinates of the (h + 1) × (w + 1) cell corners of rows r0.., columns c0.."""
    cols, rows = np.meshgrid(np.arange(c0, c0 + w + 1, dtype=np.float64),
                             np.arange(r0, r0 + h + 1, dtype=np.float64))
    a, b, xoff, d, e, yoff = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    x = xoff + a * cols + b * rows
    y = yoff + d * cols + e * rows
    if to_layer is not None:
        x, y = to_layer.transform(x, y)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return x, y


@jit.njit(cache=True, nogil=True)
def _subcell_centres(cx, cy, r, c, frac, px, py):
    """Fill ``px, py`` (K·s² each) with the sub-cell centres of cells ``(r, c)`` (block-relative
    rows, columns), by bilinear interpolation between each cell's four corners ``cx, cy``.
    Sub-cell ``k`` of a cell is row ``k // s``, column ``k % s``; ``frac`` = (arange(s) + ½) / s."""
    s = frac.shape[0]
    for k in range(r.shape[0]):
        i, j = r[k], c[k]
        x00, x01, x10, x11 = cx[i, j], cx[i, j + 1], cx[i + 1, j], cx[i + 1, j + 1]
        y00, y01, y10, y11 = cy[i, j], cy[i, j + 1], cy[i + 1, j], cy[i + 1, j + 1]
        base = k * s * s
        for a in range(s):
            t = frac[a]
            for b in range(s):
                u = frac[b]
                w00, w01, w10, w11 = (1 - t) * (1 - u), (1 - t) * u, t * (1 - u), t * u
                px[base + a * s + b] = w00 * x00 + w01 * x01 + w10 * x10 + w11 * x11
                py[base + a * s + b] = w00 * y00 + w01 * y01 + w10 * y10 + w11 * y11


@jit.njit(cache=True, nogil=True)
def _accumulate(pos, values, per_cell, sums):
    """``sums[pos + 1] += values[cell] / per_cell`` for every sub-cell (slot 0 = in no unit)."""
    for k in range(pos.shape[0]):
        sums[pos[k] + 1] += values[k // per_cell] / per_cell


def _cell_size_m(transform, to_layer, r0, c0, h, w) -> float:
    """√ median area (layer units²) of a sample of ≤ 33 × 33 cells spread over the window."""
    rows = np.unique(np.linspace(r0, r0 + h - 1, min(h, 33)).round().astype(np.int64))
    cols = np.unique(np.linspace(c0, c0 + w - 1, min(w, 33)).round().astype(np.int64))
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    corners = [(rr, cc), (rr, cc + 1), (rr + 1, cc + 1), (rr + 1, cc)]
    xs, ys = [], []
    for r, c in corners:
        x = transform.c + transform.a * c + transform.b * r
        y = transform.f + transform.d * c + transform.e * r
        if to_layer is not None:
            x, y = to_layer.transform(x.astype(np.float64), y.astype(np.float64))
        xs.append(np.asarray(x, dtype=np.float64))
        ys.append(np.asarray(y, dtype=np.float64))
    area = 0.0
    xs, ys = np.array(xs), np.array(ys)
    area = 0.5 * np.abs(sum(xs[i] * ys[(i + 1) % 4] - xs[(i + 1) % 4] * ys[i] for i in range(4)))
    area = area[np.isfinite(area)]
    return float(np.sqrt(np.median(area))) if area.size else float("nan")


def _coverage(geoms, src, window, to_layer) -> np.ndarray:
    """Share of each unit's area inside the raster window's footprint (in the layer CRS)."""
    n = len(geoms)
    if window is None:
        return np.zeros(n)
    row_off, col_off, height, width = window
    t = src.transform
    # Footprint outline: the window's border, 64 points a side, in the layer's CRS.
    k = np.linspace(0.0, 1.0, 65)[:-1]
    rows = np.concatenate([np.zeros_like(k), k * height, np.full_like(k, height), (1 - k) * height]) + row_off
    cols = np.concatenate([k * width, np.full_like(k, width), (1 - k) * width, np.zeros_like(k)]) + col_off
    x = t.c + t.a * cols + t.b * rows
    y = t.f + t.d * cols + t.e * rows
    if to_layer is not None:
        x, y = to_layer.transform(x, y)
    ring = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    if not np.isfinite(ring).all():
        return np.ones(n)  # the footprint does not project (e.g. a global raster): assume it covers
    footprint = shapely.make_valid(shapely.Polygon(ring))
    area = shapely.area(geoms)
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) & (np.nan_to_num(area) > 0)
    cov = np.zeros(n)
    if usable.any():
        shapely.prepare(footprint)
        idx = np.flatnonzero(usable)
        within = shapely.within(geoms[idx], footprint)
        cov[idx[within]] = 1.0
        cut = idx[~within]
        if cut.size:
            cov[cut] = shapely.area(shapely.intersection(_valid(geoms[cut]), footprint)) / area[cut]
    return cov


def _valid(geoms: np.ndarray) -> np.ndarray:
    ok = shapely.is_valid(geoms)
    if ok.all():
        return geoms
    geoms = geoms.copy()
    geoms[~ok] = shapely.make_valid(geoms[~ok])
    return geoms


# --------------------------------------------------------------------------- 4. areas
def from_areas(source_layer, value_column: str, target_layer) -> pd.DataFrame:
    """Area-weighted interpolation of a count (persons) from another geography.

    Each source polygon's value is split among the target units in proportion to the share of the
    source's area that lies in each (uniform density within a source polygon). Pairs come from
    ``shapely.STRtree.query(predicate="intersects")``; intersection areas from vectorised
    ``shapely.intersection`` / ``shapely.area`` (m², in the target layer's CRS; the source layer is
    transformed to it if its CRS differs; both must have a CRS and the target's must be projected).
    Target units are assumed not to overlap (a partition).

    Flags: a target covered by the sources for less than :data:`PARTIAL_COVERAGE` of its area gets
    ``population_partial`` (lower bound); one no source touches gets NaN and
    ``population_missing``; one that overlaps a source with a missing (NaN) value keeps the sum of
    the known parts and is flagged ``population_missing``. Negative values are an error.

    ``attrs``: ``method="areas"``, ``total`` (sum of known source values), ``assigned``,
    ``outside`` (persons in the parts of sources outside every target), ``outside_area_m2``,
    ``source_area_m2``, ``sources_missing`` (sources with NaN values).
    """
    ids = _unit_ids(target_layer)
    t_crs = _layer_crs(target_layer, "target layer")
    _require_projected(t_crs, "target layer")
    s_crs = _layer_crs(source_layer, "source layer")
    if value_column not in source_layer.columns:
        raise InputFileError(f"the source layer has no column '{value_column}'",
                             fix=f"columns: {', '.join(map(str, source_layer.columns[:30]))}")
    if not s_crs.equals(t_crs, ignore_axis_order=True):
        source_layer = source_layer.to_crs(t_crs)
    values, _ = _parse_values(source_layer[value_column].reset_index(drop=True))
    if (values < 0).any() or np.isinf(values).any():
        i = int(np.flatnonzero((values < 0) | np.isinf(values))[0])
        raise UsmGeoError(f"source polygon at position {i} has {value_column} = {values[i]!r}, not a count ≥ 0",
                          fix="fix or drop the negative values before interpolating")
    src = _valid(_geoms(source_layer))
    tgt = _valid(_geoms(target_layer))
    src_area = np.nan_to_num(shapely.area(src))
    tgt_area = np.nan_to_num(shapely.area(tgt))
    tree = shapely.STRtree(tgt)
    si, ti = tree.query(src, predicate="intersects")
    inter = shapely.area(shapely.intersection(src[si], tgt[ti])) if si.size else np.zeros(0)
    keep = inter > 0
    si, ti, inter = si[keep], ti[keep], inter[keep]
    share = np.divide(inter, src_area[si], out=np.zeros_like(inter), where=src_area[si] > 0)
    part = values[si] * share
    known = ~np.isnan(part)
    n = len(ids)
    population = np.bincount(ti[known], weights=part[known], minlength=n).astype(np.float64)
    covered = np.bincount(ti, weights=inter, minlength=n)
    touched = np.bincount(ti, minlength=n) > 0
    has_nan = np.bincount(ti[~known], minlength=n) > 0
    coverage = np.divide(covered, tgt_area, out=np.zeros(n), where=tgt_area > 0)
    population[~touched] = np.nan
    missing = has_nan & touched
    partial = touched & (coverage < PARTIAL_COVERAGE)

    in_targets = np.bincount(si, weights=inter, minlength=len(src))
    outside_area = np.clip(src_area - in_targets, 0, None)
    finite = ~np.isnan(values)
    out_share = np.divide(outside_area, src_area, out=np.ones(len(src)), where=src_area > 0)
    attrs = {"method": "areas", "total": float(values[finite].sum()), "assigned": float(np.nansum(population)),
             "outside": float((values[finite] * out_share[finite]).sum()),
             "outside_area_m2": float(outside_area.sum()), "source_area_m2": float(src_area.sum()),
             "sources_missing": int((~finite).sum())}
    return _frame(ids, population, {"population_missing": missing, "population_partial": partial}, attrs)


# --------------------------------------------------------------------------- 5. roll-up
def roll_up(pop: pd.DataFrame, crosswalk: pd.DataFrame) -> pd.DataFrame:
    """Sum fine-unit populations to their parents.

    Parameters
    ----------
    pop : DataFrame
        ``unit_id``, ``population`` (persons), ``flags`` of the fine level (as returned here).
    crosswalk : DataFrame
        ``unit_id`` (fine) and ``parent_id`` (coarse): every fine unit maps to exactly one parent.

    A parent's population is the sum of its children's known values. If any child is missing
    (NaN, absent from ``pop``, or itself flagged ``population_missing``) the parent keeps that sum
    — a lower bound — and is flagged ``population_missing``; if *no* child has a value it is NaN.
    Children's ``population_partial`` and ``population_conflict`` flags pass up to the parent;
    ``population_zero`` is recomputed. A unit of ``pop`` that the crosswalk does not map, or maps
    twice, is an error (its persons would vanish or count twice). ``attrs``: ``method="roll_up"``,
    ``total`` (sum of the fine values), ``assigned`` (sum of the parents), ``outside`` = 0.0.
    """
    for col in ("unit_id", "parent_id"):
        if col not in crosswalk.columns:
            raise BoundaryError(f"the crosswalk has no '{col}' column", fix="pass columns unit_id (fine) and parent_id (coarse)")
    cw = pd.DataFrame({"unit_id": crosswalk["unit_id"].astype(str),
                       "parent_id": crosswalk["parent_id"]})
    if cw["parent_id"].isna().any():
        bad = cw.loc[cw["parent_id"].isna(), "unit_id"].iloc[0]
        raise BoundaryError(f"unit '{bad}' has no parent in the crosswalk", fix="map every fine unit to one parent")
    cw["parent_id"] = cw["parent_id"].astype(str)
    cw = cw.drop_duplicates()
    dup = cw["unit_id"].duplicated()
    if dup.any():
        raise BoundaryError(f"unit '{cw.loc[dup, 'unit_id'].iloc[0]}' maps to more than one parent in the crosswalk",
                            fix="map every fine unit to exactly one parent")
    fine = pd.DataFrame({"unit_id": pop["unit_id"].astype(str),
                         "population": pop["population"].astype(np.float64),
                         "flags": pop["flags"].fillna("").astype(str) if "flags" in pop.columns else ""})
    unmapped = ~fine["unit_id"].isin(cw["unit_id"])
    if unmapped.any():
        raise BoundaryError(f"{int(unmapped.sum())} units have a population but no parent in the crosswalk "
                            f"(first: '{fine.loc[unmapped, 'unit_id'].iloc[0]}')",
                            fix="rebuild the crosswalk from the same unit layers")
    m = cw.merge(fine, on="unit_id", how="left")  # children absent from pop get NaN
    m["flags"] = m["flags"].fillna("")
    def has(name):
        return m["flags"].str.contains(rf"(?:^|;){name}(?:;|$)", regex=True)

    m["_missing"] = m["population"].isna() | has("population_missing")
    m["_partial"] = has("population_partial")
    m["_conflict"] = has("population_conflict")
    g = m.groupby("parent_id", sort=True)
    population = g["population"].sum(min_count=1)
    parents = population.index.to_numpy(dtype=object)
    flags = {"population_missing": g["_missing"].any().to_numpy(),
             "population_partial": g["_partial"].any().to_numpy(),
             "population_conflict": g["_conflict"].any().to_numpy()}
    attrs = {"method": "roll_up", "total": float(np.nansum(fine["population"])),
             "assigned": float(np.nansum(population.to_numpy())), "outside": 0.0}
    return _frame(parents, population.to_numpy(dtype=np.float64), flags, attrs)


def disaggregate(pop: pd.DataFrame, units_layer, cells_layer, raster=None) -> pd.DataFrame:
    """Split each polygon unit's population over the H3 cells it overlaps, so Σ cells = Σ units.

    Parameters
    ----------
    pop : DataFrame
        ``unit_id``, ``population`` of the finest polygon level (e.g. from :func:`from_table`).
    units_layer, cells_layer : GeoDataFrame
        That polygon level and the (clipped) H3 cells, both in the same projected CRS (metres).
    raster : path, optional
        Population raster. Each unit's persons P are shared over its pieces (cell ∩ unit) in
        proportion to the raster persons inside each piece (:func:`from_raster`, sub-cell sampling);
        by piece area where there is no raster, or where the raster holds 0 persons in the unit.

    Returns ``unit_id``, ``population``, ``flags`` per cell (every cell of ``cells_layer``; 0 for a
    cell overlapping no unit). A unit with missing population passes ``population_missing`` to its
    cells. ``attrs``: ``method`` ("disaggregated_raster" or "disaggregated_area"), ``total`` (Σ units),
    ``assigned`` (Σ cells), ``area_shared_units`` (units shared by area although a raster was given).
    """
    _require_projected(_layer_crs(cells_layer, "the H3 cells"), "the H3 cells")
    cell_ids = _unit_ids(cells_layer)
    unit_ids = _unit_ids(units_layer)
    cg, ug = _geoms(cells_layer), _geoms(units_layer)
    ci, ui = shapely.STRtree(cg).query(ug, predicate="intersects")[::-1]  # (cell, unit) pairs
    pieces = shapely.intersection(cg[ci], ug[ui])
    area = shapely.area(pieces)
    keep = area > 0
    ci, ui, pieces, area = ci[keep], ui[keep], pieces[keep], area[keep]
    value = pd.Series(pop["population"].to_numpy(float), index=pop["unit_id"].astype(str)).reindex(unit_ids).to_numpy()
    weight = area.copy()
    by_area = np.ones(len(unit_ids), dtype=bool)
    if raster is not None and len(pieces):
        import geopandas as gpd

        layer = gpd.GeoDataFrame({"unit_id": np.arange(len(pieces)).astype(str)}, geometry=pieces, crs=cells_layer.crs)
        rp = from_raster(raster, layer)
        rp = rp.set_index("unit_id")["population"].reindex(layer["unit_id"]).fillna(0.0).to_numpy()
        in_unit = np.bincount(ui, weights=rp, minlength=len(unit_ids))
        by_area = ~(in_unit > 0)
        weight = np.where(by_area[ui], area, rp)
    total_w = np.bincount(ui, weights=weight, minlength=len(unit_ids))
    share = weight / np.where(total_w[ui] > 0, total_w[ui], 1.0)
    known = ~np.isnan(value)
    persons = np.where(known[ui], value[ui], 0.0) * share
    cell_pop = np.bincount(ci, weights=persons, minlength=len(cell_ids))
    missing = np.bincount(ci, weights=(~known[ui]).astype(float), minlength=len(cell_ids)) > 0
    method = "disaggregated_raster" if raster is not None else "disaggregated_area"
    return _frame(cell_ids, cell_pop, {"population_missing": missing},
                  {"method": method, "total": float(np.nansum(value)), "assigned": float(cell_pop.sum()),
                   "area_shared_units": int(by_area.sum()) if raster is not None else len(unit_ids)})
