"""Intake of point records (incidents) and survey responses into the incidents/responses table.

Every record read is either returned (one row, with its source ``row``) or put in the ledger as
``dropped`` with a reason. Checks are vectorised; each adds rows to the ledger once, so a
record dropped for several reasons is listed under the first one in this order:

malformed_row → missing/non-numeric/non-finite coordinates → out of range (after fixing
unambiguous lat/lon swaps) → null island / zero coordinate → outside the study area →
missing/unparseable date → outside the study period (or, without one, implausible: 1900 or
earlier) / future → invalid weight → unknown unit
→ duplicate (``kept`` or ``dropped`` by the study's ``duplicates`` setting).

Output columns: ``row`` (1-based source row), ``lon``, ``lat`` (EPSG:4326 degrees), ``x``, ``y``
(working CRS, metres), ``occurred_at`` (naive local time), ``date_precision``, ``category``,
``weight`` (if any), ``record_id`` (if any); surveys add ``unit_id``, ``unit_level`` (when located
by unit) and one column per question (answer label or missing), plus ``stratum``/``psu``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS

from usm_geo.errors import CoordinateError, CRSError, DateError, InputFileError
from usm_geo.intake import columns as cols
from usm_geo.intake.crs import WGS84, same_crs, transformer, utm_for
from usm_geo.intake.dates import parse_date_parts, parse_dates
from usm_geo.intake.files import RawRecords, read_records
from usm_geo.intake.raw import string_buffers
from usm_geo.intake.ledger import Ledger
from usm_geo.io import Steps
from usm_geo.study import Periods, RecordSource

MISSING_TEXT = ("", "na", "n/a", "nan", "null", "none", "-")


@dataclass
class Context:
    """What intake needs to know about the rest of the study."""

    working_crs: CRS
    timezone: str = "UTC"
    study_area: object = None  # shapely geometry in the working CRS, or None
    # the finest boundary level's PolygonIndex: "inside the study area" then means "in a unit",
    # by the same rule as the units stage (so a used point always lands in a finest unit); with an
    # index, study_area may be None (the union of its polygons is not needed to test a point)
    study_index: object = None
    periods: Periods | None = None
    now: dt.datetime | None = None  # local "now" for the future-date check
    unit_ids: dict | None = None  # level → set of unit ids (surveys located by unit)
    # without a study area, polygons known otherwise (the treated and control areas of `usm-geo impact`,
    # with a margin): used only to tell which of two valid lon/lat readings is meant, never to drop
    swap_area: object = None
    # [units] snap (metres): points this close outside are moved just inside the nearest of
    # ``snap_geoms`` (the finest level's polygons in the study_index order, or [study_area])
    snap: float = 0.0
    snap_geoms: object = None


class _Keep:
    """The set of rows still in use, and the ledger calls that shrink it."""

    def __init__(self, raw: RawRecords, source: str, ledger: Ledger, ids: np.ndarray | None = None):
        self.rows = raw.rows
        self.mask = np.ones(len(raw.rows), dtype=bool)
        self.source = source
        self.ledger = ledger
        self.ids = ids  # each record's own id (the study's id column), carried into the ledger

    def _ids(self, which):
        return None if self.ids is None else self.ids[which]

    def drop(self, bad, reason: str, detail=""):
        bad = np.asarray(bad, dtype=bool) & self.mask
        if bad.any():
            det = detail if isinstance(detail, str) else np.asarray(detail, dtype=object)[bad]
            self.ledger.add(self.source, self.rows[bad], "dropped", reason, det, self._ids(bad))
            self.mask &= ~bad

    def mark(self, which, status: str, reason: str, detail=""):
        which = np.asarray(which, dtype=bool) & self.mask
        if which.any():
            det = detail if isinstance(detail, str) else np.asarray(detail, dtype=object)[which]
            self.ledger.add(self.source, self.rows[which], status, reason, det, self._ids(which))


def _text(series: pd.Series) -> pd.Series:
    return series.astype(str).str.strip() if series.dtype == object or pd.api.types.is_string_dtype(series) else series


def _objects(text: pd.Series) -> np.ndarray:
    """A text column as an object array, each distinct value converted to a Python string once:
    for a column of few labels (categories) ``pd.factorize`` + a take is 2-8× faster than
    converting all 148 k arrow strings (4-5 ms vs 10-43 ms for Chicago's ``loc_cat``)."""
    codes, uniques = pd.factorize(text)
    out = np.asarray(uniques, dtype=object)[codes]
    missing = codes < 0
    if missing.any():  # missing values as to_numpy gives them (None, nan or pd.NA by dtype)
        out[missing] = text[missing].to_numpy(dtype=object)
    return out


def _numbers(series: pd.Series, keep: _Keep, label: str) -> np.ndarray:
    """Column → float array; missing and non-numeric values are dropped with a reason.

    A column written with decimal commas (``13,4567``) is read as such when that is the only
    way most values parse, and a file note says so.
    """
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=float)
        keep.drop(np.isnan(values), "missing_coordinates", f"{label} is empty")
        return values
    values = plain_numbers(series)
    if values is not None:  # every value a plain number: nothing to drop, nothing to note
        return values
    text = series.astype(str).str.strip()
    missing = text.str.lower().isin(MISSING_TEXT).to_numpy()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    failed = np.isnan(values) & ~missing
    if failed.sum() > 0.5 * max(1, (~missing).sum()):
        comma = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce").to_numpy(dtype=float)
        if (np.isnan(comma) & ~missing).sum() < failed.sum():
            keep.ledger.note(keep.source, "decimal_comma", f"{label} uses decimal commas; read as decimals")
            values, failed = comma, np.isnan(comma) & ~missing
    keep.drop(missing, "missing_coordinates", f"{label} is empty")
    keep.drop(failed, "coordinate_not_numeric", _shown(failed, lambda w: label + " = " + text[w].str.slice(0, 40)))
    return values


def plain_numbers(series: pd.Series) -> np.ndarray | None:
    """A text column → float64 in one vectorised pass (pyarrow's cast, ~25× faster than
    ``pd.to_numeric`` on 148 k strings), or None when any value needs the careful path.

    None, so that :func:`_numbers` decides as before, when a value does not parse as it stands
    (spaces, decimal commas, "NA", empty), parses to NaN ("nan" counts as missing there), is a
    zero (``pd.to_numeric`` reads "-0" as the integer 0, pyarrow as -0.0) or is 2**53 or more
    (``pd.to_numeric`` may read a column of whole numbers through int64/uint64). Every other
    value is read to the same float by both: both round correctly (checked on 950 k random
    decimal strings, see tests/unit/test_intake_fast_paths.py).
    """
    try:
        arr = pa.array(series, from_pandas=True)
        if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
            return None
        if arr.null_count:
            return None
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    with np.errstate(invalid="ignore"):
        if np.isnan(values).any() or (values == 0).any() or (np.abs(values[np.isfinite(values)]) >= 2.0**53).any():
            return None
    return values


def _shown(which: np.ndarray, text_of) -> np.ndarray:
    """Ledger details for the rows of ``which`` only (object array over every row, None elsewhere):
    building a detail string for each of 148 k rows to keep a handful cost more than the check.
    ``text_of(which)`` returns the strings of those rows (a Series or array, in row order)."""
    out = np.empty(len(which), dtype=object)
    if which.any():
        out[which] = np.asarray(text_of(which), dtype=object)
    return out


def _in_degrees(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (np.abs(lon) <= 180) & (np.abs(lat) <= 90)


#: metres by which a point's geometry and its coordinate columns may differ (rounding) before it is noted
GEOMETRY_COLUMNS_TOLERANCE = 2.0


def _geometry_vs_columns(frame, a, b, crs: CRS, keep: _Keep, pairs) -> None:
    """A spatial file that also carries coordinate columns (lon/lat, or X/Y in the layer's CRS):
    count the points whose geometry and columns differ by more than
    :data:`GEOMETRY_COLUMNS_TOLERANCE` metres, and note it (the geometry is used).

    Columns holding degrees are compared as lon/lat (EPSG:4326); other X/Y columns are taken to be in
    the layer's CRS. Distances are in metres of the layer's CRS when it is projected, else
    approximated on the sphere (111,320 m per degree, the longitude scaled by cos latitude).
    """
    for c1, c2 in pairs:
        if c1 is None or c2 is None:
            continue
        u = pd.to_numeric(_text(frame[c1]), errors="coerce").to_numpy(dtype=float)
        v = pd.to_numeric(_text(frame[c2]), errors="coerce").to_numpy(dtype=float)
        ok = keep.mask & np.isfinite(a) & np.isfinite(b) & np.isfinite(u) & np.isfinite(v)
        if not ok.any():
            continue
        degrees = bool(_in_degrees(u[ok], v[ok]).all())
        if not degrees and crs.is_geographic:
            continue  # projected columns of an unknown CRS beside a lon/lat layer: nothing to compare with
        ga, gb, ca, cb = a[ok], b[ok], u[ok], v[ok]
        if degrees and not crs.is_geographic:
            ga, gb = transformer(crs, WGS84).transform(ga, gb)
        if degrees or crs.is_geographic:
            dist = np.hypot((ga - ca) * 111_320.0 * np.cos(np.radians(gb)), (gb - cb) * 111_320.0)
        else:
            dist = np.hypot(ga - ca, gb - cb)
        far = dist > GEOMETRY_COLUMNS_TOLERANCE
        if far.any():
            keep.ledger.note(keep.source, "geometry_columns_disagree",
                             f"{far.sum():,} of {ok.sum():,} points differ by more than {GEOMETRY_COLUMNS_TOLERANCE:g} m "
                             f"between the geometry and columns {c1}/{c2} (up to {dist.max():,.0f} m); the geometry was "
                             f"used (name the columns in the study to use them instead)")


def _locate(raw: RawRecords, src: RecordSource, keep: _Keep, ctx: Context) -> tuple[np.ndarray, np.ndarray, CRS, dict]:
    """Coordinates of every record in their own CRS, and that CRS. Returns (a, b, crs, names)."""
    frame = raw.frame
    path = src.path
    names = {}
    lon_c = cols.resolve(frame.columns, src.lon, "lon", path, f"{keep.source}.lon")
    lat_c = cols.resolve(frame.columns, src.lat, "lat", path, f"{keep.source}.lat")
    x_c = cols.resolve(frame.columns, src.x, "x", path, f"{keep.source}.x") if src.lon is None else None
    y_c = cols.resolve(frame.columns, src.y, "y", path, f"{keep.source}.y") if src.lon is None else None
    declared = src.lon is not None or src.x is not None
    use_geometry = raw.spatial and not declared
    if use_geometry:
        geom = frame.geometry.to_numpy()
        empty = shapely.is_missing(geom) | shapely.is_empty(geom)
        keep.drop(empty, "missing_geometry", "no geometry")
        kinds = shapely.get_type_id(geom)
        not_point = (kinds != 0) & ~empty
        keep.drop(not_point, "not_a_point", np.asarray(shapely.get_type_id(geom)).astype(str))
        a = np.full(len(geom), np.nan)
        b = np.full(len(geom), np.nan)
        pts = ~empty & ~not_point
        a[pts] = shapely.get_x(geom[pts])
        b[pts] = shapely.get_y(geom[pts])
        crs = raw.crs if raw.crs is not None else (CRS.from_user_input(src.crs) if src.crs else None)
        if crs is None:
            raise CRSError("the layer has no CRS, so its coordinates cannot be placed", where=path,
                           fix='add crs = "EPSG:...." to this input in the study (or add a .prj file)')
        names["location"] = "geometry"
        crs = CRS.from_user_input(crs)
        _geometry_vs_columns(frame, a, b, crs, keep, [(lon_c, lat_c), (x_c, y_c)])
        return a, b, crs, names
    if src.x is not None or (lon_c is None and x_c is not None):
        if x_c is None or y_c is None:
            raise InputFileError("no x/y columns found", where=path, fix="name them with x = \"...\" and y = \"...\"")
        a = _numbers(frame[x_c], keep, f"column '{x_c}'")
        b = _numbers(frame[y_c], keep, f"column '{y_c}'")
        if src.crs is None:
            ok = keep.mask & np.isfinite(a) & np.isfinite(b)
            if ok.any() and _in_degrees(a[ok], b[ok]).all():
                keep.ledger.note(keep.source, "crs_assumed", f"columns {x_c}/{y_c} hold degrees; read as lon/lat (EPSG:4326)")
                names.update(location=f"{x_c}/{y_c}")
                return a, b, WGS84, names
            raise CRSError(f"columns '{x_c}'/'{y_c}' hold projected coordinates but the study names no CRS",
                           where=path, fix='add crs = "EPSG:...." to this input (e.g. EPSG:27700 for British National Grid)')
        names.update(location=f"{x_c}/{y_c}")
        return a, b, CRS.from_user_input(src.crs), names
    if lon_c is None or lat_c is None:
        available = ", ".join(map(str, list(frame.columns)[:30]))
        fix = 'name them in the study with lon = "..." and lat = "..." (or x/y with crs)'
        if len(frame.columns) == 1:  # the usual cause: a wrong delimiter
            fix = (f"the delimiter {src.delimiter!r} named in the study splits the file into one column: remove it to "
                   "detect the delimiter, or name the right one" if src.delimiter else
                   'the file splits into one column: name its delimiter with delimiter = "..."')
        raise InputFileError("no coordinate columns found", where=path, fix=f"{fix}; columns: {available}")
    a = _numbers(frame[lon_c], keep, f"column '{lon_c}'")
    b = _numbers(frame[lat_c], keep, f"column '{lat_c}'")
    crs = CRS.from_user_input(src.crs) if src.crs else WGS84
    names.update(location=f"{lon_c}/{lat_c}")
    return a, b, crs, names


def _has_study_area(ctx: Context) -> bool:
    """A study area is known: a polygon, or the finest level's index (its units make up the area)."""
    return ctx.study_area is not None or ctx.study_index is not None


def _inside(ctx: Context, x, y) -> np.ndarray:
    """In the study area: in a unit of the finest level when its index is known, else in the polygon."""
    if ctx.study_index is not None:
        return ctx.study_index.assign(np.asarray(x, float), np.asarray(y, float)) >= 0
    return shapely.intersects_xy(ctx.study_area, x, y)


def _check_coordinates(a, b, crs: CRS, keep: _Keep, ctx: Context, path,
                       location: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Range, swap, zero and study-area checks. Returns lon, lat (degrees) and x, y (working CRS).

    ``location`` names the columns read as lon/lat (``"lon_col/lat_col"``), for the messages.
    """
    if location and "/" in location:
        lon_c, lat_c = location.split("/", 1)
        if keep.source == cols.CLI_SOURCE:  # a one-file command: the columns were named by --lon/--lat
            swap_fix = f"the columns are the other way round: use --lon {lat_c} --lat {lon_c}"
        else:
            swap_fix = f'the columns are the other way round: name them lon = "{lat_c}" and lat = "{lon_c}" in the study'
    else:
        swap_fix = "swap the column names given as lon and lat in the study (--lon/--lat on the command line)"
    finite_in = np.isfinite(a) & np.isfinite(b)
    keep.drop((~finite_in) & ~(np.isnan(a) | np.isnan(b)), "coordinate_not_finite", "infinite value")
    keep.drop(~finite_in, "missing_coordinates", "coordinate is missing")
    ok = keep.mask.copy()
    geographic = crs.is_geographic
    if geographic:
        in_range = _in_degrees(a, b)
        swapped_ok = _in_degrees(b, a)
        n_ok = max(1, ok.sum())
        if (ok & ~in_range).sum() > 0.5 * n_ok and (ok & ~in_range & ~swapped_ok).sum() > 0.5 * n_ok:
            raise CoordinateError(
                f"{(ok & ~in_range).sum():,} of {ok.sum():,} coordinates are outside ±180/±90: they look like projected metres, not degrees",
                where=path, fix='name them as x = "..." and y = "..." with crs = "EPSG:...." in the study')
        if (ok & ~in_range & swapped_ok).sum() > 0.5 * n_ok:
            raise CoordinateError("most coordinates only make sense with longitude and latitude swapped",
                                  where=path, fix=swap_fix)
        swap = ok & ~in_range & swapped_ok
        a, b = a.copy(), b.copy()
        # the working-CRS position (and, with a study area, the inside test) of rows already
        # projected here, reused below instead of projecting all 148 k points a second time
        known = np.zeros(len(a), dtype=bool)
        known_x, known_y = np.full(len(a), np.nan), np.full(len(a), np.nan)
        known_in = np.zeros(len(a), dtype=bool) if _has_study_area(ctx) else None
        known_crs = ctx.working_crs
        if _has_study_area(ctx) or ctx.swap_area is not None:
            # the study area, else the polygons known (ctx.swap_area): where the points are meant to be
            where_meant = ((lambda x, y: _inside(ctx, x, y)) if _has_study_area(ctx)
                           else (lambda x, y: shapely.intersects_xy(ctx.swap_area, x, y)))
            # also swap rows in range whose swapped position, but not their own, is in the study area
            to_work = transformer(WGS84, ctx.working_crs)
            cand = ok & in_range & swapped_ok & ~swap
            if cand.any():
                x1, y1 = to_work.transform(a[cand], b[cand])
                inside = where_meant(x1, y1)
                known[cand], known_x[cand], known_y[cand] = True, x1, y1
                if known_in is not None:
                    known_in[cand] = inside
                # only a row outside where it is meant to be can be a swap: project those swapped
                out_idx = np.flatnonzero(cand)[~inside]
                if out_idx.size:
                    x2, y2 = to_work.transform(b[out_idx], a[out_idx])
                    swap[out_idx[where_meant(x2, y2)]] = True
            # an out-of-range row is only fixed when the swapped point is in the study area
            if (swap & ~in_range).any():
                sidx = np.flatnonzero(swap & ~in_range)
                xs, ys = to_work.transform(b[sidx], a[sidx])
                swap[sidx[~where_meant(xs, ys)]] = False
            if swap.sum() > 0.5 * n_ok:
                # a few swapped rows are typing slips; most of them means the columns are swapped
                raise CoordinateError(
                    f"{swap.sum():,} of {ok.sum():,} points are in the study area only with longitude and latitude swapped",
                    where=path, fix=swap_fix)
        if swap.any():
            keep.mark(swap, "changed", "lat_lon_swapped",
                      _shown(swap, lambda w: np.char.add(np.char.add("lon/lat were ", np.round(a[w], 6).astype(str)),
                                                         np.char.add(",", np.round(b[w], 6).astype(str)))))
            a[swap], b[swap] = b[swap], a[swap]
            known &= ~swap  # their coordinates changed
        in_range = _in_degrees(a, b)
        if ctx.working_crs is None:  # study.working_crs = "auto" with no boundaries: local UTM
            ctx.working_crs = utm_for(a[keep.mask & in_range], b[keep.mask & in_range], where=path, swap_fix=swap_fix)
        keep.drop(~in_range, "coordinate_out_of_range", "longitude outside ±180 or latitude outside ±90")
        keep.drop((a == 0) & (b == 0), "null_island", "longitude and latitude are both 0")
        lon, lat = a, b
        x, y = np.full(len(a), np.nan), np.full(len(a), np.nan)
        m = keep.mask
        if known_crs is not ctx.working_crs:
            known[:] = False
        reuse = m & known
        x[reuse], y[reuse] = known_x[reuse], known_y[reuse]
        todo = m & ~known
        if todo.any():
            x[todo], y[todo] = transformer(WGS84, ctx.working_crs).transform(lon[todo], lat[todo])
    else:
        known, known_in = None, None
        if ctx.working_crs is None:
            ctx.working_crs = crs if crs.is_projected else None
        keep.drop((a == 0) | (b == 0), "zero_coordinate", "x or y is exactly 0 (a missing value written as 0)")
        m = keep.mask
        lon, lat = np.full(len(a), np.nan), np.full(len(a), np.nan)
        x, y = np.full(len(a), np.nan), np.full(len(a), np.nan)
        if same_crs(crs, ctx.working_crs):
            x[m], y[m] = a[m], b[m]
        else:
            x[m], y[m] = transformer(crs, ctx.working_crs).transform(a[m], b[m])
        lon[m], lat[m] = transformer(crs, WGS84).transform(a[m], b[m])
        bad = m & ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(lon) & np.isfinite(lat))
        keep.drop(bad, "coordinate_out_of_range", f"cannot be transformed from {crs.name}")
    if _has_study_area(ctx):
        m = keep.mask
        outside = np.zeros(len(a), dtype=bool)
        rest = m
        if known_in is not None:  # tested already by the swap check
            tested = m & known
            outside[tested] = ~known_in[tested]
            rest = m & ~tested
        outside[rest] = ~_inside(ctx, x[rest], y[rest])
        if ctx.snap > 0 and outside.any():
            moved, dist = _snap_points(ctx, x, y, outside)
            if moved.any():
                keep.mark(moved, "changed", "snapped_to_boundary",
                          np.char.add(np.char.add("moved ", np.round(dist, 3).astype(str)), " m into the nearest unit"))
                lon[moved], lat[moved] = transformer(ctx.working_crs, WGS84).transform(x[moved], y[moved])
                outside &= ~moved
        keep.drop(outside, "outside_study_area", "the point is not inside the study area")
    return lon, lat, x, y


# How far past the boundary a snapped point is put (metres): inside the unit, not on its edge, so
# every level and the H3 cell of the new lon/lat agree on it.
SNAP_INSIDE_M = 0.001


def _snap_points(ctx: Context, x: np.ndarray, y: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move points of ``outside`` that lie within ``ctx.snap`` metres of the nearest unit (or study
    area) to SNAP_INSIDE_M inside it, along the shortest line. ``x``/``y`` are changed in place.

    Returns (moved mask, distance in metres of each point to its unit before the move; NaN elsewhere).
    A point whose moved position is not in that very unit (a needle-thin corner) is not moved.
    """
    geoms = np.asarray(ctx.snap_geoms if ctx.snap_geoms is not None else [ctx.study_area], dtype=object)
    idx = np.flatnonzero(outside)
    pts = shapely.points(x[idx], y[idx])
    (pi, gi), d = shapely.STRtree(geoms).query_nearest(pts, max_distance=ctx.snap, return_distance=True,
                                                         all_matches=False)
    moved = np.zeros(len(x), dtype=bool)
    dist = np.full(len(x), np.nan)
    if not len(pi):
        return moved, dist
    near = shapely.get_coordinates(shapely.get_point(shapely.shortest_line(pts[pi], geoms[gi]), 1))
    step = near - np.c_[x[idx[pi]], y[idx[pi]]]
    length = np.hypot(step[:, 0], step[:, 1])
    inward = shapely.get_coordinates(shapely.point_on_surface(geoms[gi])) - near  # for a point on the edge itself
    direction = np.where((length > 0)[:, None], step, inward)
    direction /= np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-300)[:, None]
    new = near + SNAP_INSIDE_M * direction
    if ctx.snap_geoms is not None and ctx.study_index is not None:
        ok = ctx.study_index.assign(new[:, 0], new[:, 1]) == gi
    else:
        ok = shapely.intersects_xy(geoms[gi], new[:, 0], new[:, 1])
    rows = idx[pi[ok]]
    x[rows], y[rows] = new[ok, 0], new[ok, 1]
    moved[rows] = True
    dist[rows] = d[ok]
    return moved, dist


def _dates(raw: RawRecords, src: RecordSource, keep: _Keep, ctx: Context, required: bool):
    """Each record's date (naive local time) and the precision of the dates; (None, None) when no
    date is named or found and none is ``required``. Records without a usable date are dropped."""
    frame = raw.frame
    path = src.path
    parts = dict(src.date_parts)
    column = None
    if not parts and src.date is not None:
        d = cols.resolve(frame.columns, src.date, "datetime", path, f"{keep.source}.date")
        t = cols.resolve(frame.columns, src.time, "time", path, f"{keep.source}.time") if src.time else None
        text = _text(frame[d]).astype(str)
        if t is not None:
            text = (text + " " + _text(frame[t]).astype(str)).str.strip()
        column = d if t is None else f"{d} + {t}"
    elif not parts:
        if src.datetime is not None:
            d = cols.resolve(frame.columns, src.datetime, "datetime", path, f"{keep.source}.datetime")
            _refuse_date_part(frame, d, path, f"{keep.source}.datetime")
        else:
            d = _detect_date_column(frame)
        if d is None:
            parts = _detect_date_parts(frame)
            if parts:
                keep.ledger.note(keep.source, "date_parts", "no date column; the date combines columns "
                                 + ", ".join(f"{c} ({p})" for p, c in parts.items())
                                 + " (name them in the study with " + ", ".join(f'{p} = "{c}"' for p, c in parts.items()) + ")")
            elif required:
                raise _no_date_error(frame, path, keep.source)
            else:
                return None, None
        else:
            text = frame[d] if pd.api.types.is_datetime64_any_dtype(frame[d]) else _text(frame[d]).astype(str)
            column = d
    if parts:
        values, precision = _date_from_parts(frame, parts, keep, path)
    else:
        parsed = parse_dates(text, timezone=ctx.timezone, date_format=src.date_format, dayfirst=src.dayfirst,
                             column=column, where=str(path), precision=src.date_precision)
        values, precision = parsed.values, parsed.precision
        keep.drop(parsed.missing, "missing_date", f"column '{column}' is empty")
        unread = values.isna().to_numpy()
        keep.drop(unread, "unparseable_date", _shown(unread & keep.mask, lambda w: np.char.add(
            f"{column} = ", text[w].astype(str).str.slice(0, 60).to_numpy(dtype=object).astype(str))))
        if len(parsed.formats) > 1:
            keep.ledger.note(keep.source, "date_formats", "dates read with several formats: " + ", ".join(f"{k} ({n:,})" for k, n in parsed.formats.items()))
    _check_period(values, precision, keep, ctx, src)
    return values, precision


def _window_end(raw: RawRecords, src: RecordSource, keep: _Keep, ctx: Context, start: pd.Series,
                precision: str) -> np.ndarray:
    """The exclusive end of each record's time window (``datetime_end`` or ``date_end``): the record
    happened at some time in ``[occurred_at, occurred_end)``. A ``date_end`` (or a ``datetime_end``
    column holding dates only, every time 00:00) covers its whole day, so the end is the next
    midnight; a month-precision end covers its month. An empty end, one that no format reads, or an
    end before the start leaves the record a point in time (NaT; the last two are ``changed`` in
    the ledger). :func:`read_point_records` notes how many used records have a window (aoristic)."""
    frame = raw.frame
    key = "datetime_end" if src.datetime_end is not None else "date_end"
    column = cols.resolve(frame.columns, getattr(src, key), "datetime", src.path, f"{keep.source}.{key}")
    raw_end = frame[column]
    text = raw_end if pd.api.types.is_datetime64_any_dtype(raw_end) else _text(raw_end).astype(str)
    parsed = parse_dates(text, timezone=ctx.timezone, date_format=src.date_format, dayfirst=src.dayfirst,
                         column=column, where=str(src.path), precision=src.date_precision)
    end = parsed.values
    ok = end.notna()
    if parsed.precision == "month":
        end = end.dt.to_period("M").dt.end_time.dt.normalize() + pd.Timedelta(days=1)
    elif key == "date_end" or bool(((end[ok] - end[ok].dt.normalize()) == pd.Timedelta(0)).all()):
        end = end.dt.normalize() + pd.Timedelta(days=1)  # a date: its whole day
    shown = text.astype(str).str.slice(0, 40).to_numpy(dtype=object)
    unread = (~ok & ~parsed.missing).to_numpy()
    keep.mark(unread, "changed", "unparseable_window_end",
              np.char.add(np.char.add(f"{column} = ", shown.astype(str)), "; counted as a point in time at its start"))
    start = pd.Series(start.to_numpy(), index=end.index)
    if precision == "month":  # a month-only start covers its month: the window starts on the 1st
        start = start.dt.to_period("M").dt.start_time
    before = (ok & (end < start)).to_numpy()
    keep.mark(before, "changed", "window_end_before_start",
              np.char.add(np.char.add(f"{column} = ", shown.astype(str)),
                          " is before the start; counted as a point in time at its start"))
    values = end.to_numpy().copy()
    values[~ok.to_numpy() | before] = np.datetime64("NaT")
    return values


def _check_period(values: pd.Series, precision: str, keep: _Keep, ctx: Context, src: RecordSource) -> None:
    """Drop dates outside the study period (or implausibly early) and in the future."""
    v = values.to_numpy()
    periods = ctx.periods
    if precision == "year" and periods is not None and periods.frequency != "year":
        raise DateError(f"the dates of {keep.source} are known only to the year (a year column without a month), "
                        f"but the study counts per {periods.frequency}", where=f"{src.path} (periods.frequency)",
                        fix='set frequency = "year" under [periods], or name the month column too (month = "...")')
    if periods is not None and periods.start is not None:
        keep.drop(v < np.datetime64(periods.start), "outside_study_period", f"before the study start {periods.start}")
    else:
        # 1900-01-01 (and Excel's day 0, 1899-12-30/31) stand in for a missing date in many exports
        keep.drop(v < np.datetime64("1901-01-01"), "implausible_date", "in 1900 or earlier (a placeholder for a missing date?)")
    if periods is not None and periods.end is not None:
        keep.drop(v >= np.datetime64(periods.end + dt.timedelta(days=1)), "outside_study_period", f"after the study end {periods.end}")
    if ctx.now is not None:
        keep.drop(v > np.datetime64(ctx.now), "future_date", "later than the time of the run")


def _date_from_parts(frame: pd.DataFrame, parts: dict[str, str], keep: _Keep, path) -> tuple[pd.Series, str]:
    """The date combined from integer part columns; records with an invalid part are dropped
    (``invalid_date_parts``, the detail naming every part's column and value)."""
    columns = {}
    for part, name in parts.items():
        c = cols.resolve(frame.columns, name, part, path, f"{keep.source}.{part}")
        columns[part] = frame[c].rename(c)
    parsed = parse_date_parts(columns)
    keep.drop(parsed.invalid, "invalid_date_parts", parsed.detail)
    return parsed.values, parsed.precision


def _detect_date_column(frame: pd.DataFrame) -> str | None:
    """The first column with a common date name that does not hold small integers (a MONTH of
    1…12 is a date part, not a date)."""
    for c in cols.candidates(frame.columns, "datetime"):
        if pd.api.types.is_datetime64_any_dtype(frame[c]) or not cols.small_integers(frame[c]):
            return c
    return None


def _detect_date_parts(frame: pd.DataFrame) -> dict[str, str]:
    """Date parts under their common names, when there is at least a year and a month of small
    integers; the finer parts follow as long as each coarser one is there (no hour without a day)."""
    found = {p: c for p, c in cols.date_part_columns(frame.columns).items() if cols.small_integers(frame[c])}
    out = {}
    for part in cols.DATE_PARTS:
        if part not in found:
            break
        out[part] = found[part]
    return out if "month" in out else {}


def _refuse_date_part(frame: pd.DataFrame, column: str, path, key: str) -> None:
    """A declared date column of small integers would drop every record as unparseable: say why."""
    if not pd.api.types.is_datetime64_any_dtype(frame[column]) and cols.small_integers(frame[column]):
        found = cols.date_part_columns(frame.columns)
        keys = ", ".join(f'{p} = "{c}"' for p, c in found.items()) or 'year = "...", month = "..."'
        raise InputFileError(f"column '{column}' ({key}) holds small whole numbers, not dates: a part of a date",
                             where=path, fix=f"name the date parts instead of datetime: {keys}")


def _no_date_error(frame: pd.DataFrame, path, source: str) -> InputFileError:
    """No date column and no date parts: list the columns that might hold a date and the keys."""
    words = ("date", "time", "year", "month", "day", "hour", "minute", "occur", "report", "when")
    names = [str(c) for c in frame.columns]
    likely = [c for c in names if any(w in c.casefold() for w in words)]
    parts = cols.date_part_columns(frame.columns)
    fix = 'name it in the study with datetime = "..." (or date = "..." and time = "..."), or name integer date parts with year = "...", month = "..." (day, hour, minute)'
    if parts:
        fix += "; parts found: " + ", ".join(f'{p} = "{c}"' for p, c in parts.items())
        if "year" not in parts:
            fix += " (a year column is needed too)"
    fix += "; candidate columns: " + (", ".join(likely) if likely else "(none with a date-like name) " + ", ".join(names[:30]))
    return InputFileError(f"no date column found in {source}", where=path, fix=fix)


def _weights(frame, column: str, keep: _Keep, survey: bool) -> np.ndarray:
    text = frame[column]
    w = pd.to_numeric(_text(text), errors="coerce").to_numpy(dtype=float)
    keep.drop(~np.isfinite(w), "invalid_weight", (f"{column} = " + _text(text).astype(str).str.slice(0, 30)).to_numpy(dtype=object))
    keep.drop(w < 0, "invalid_weight", f"{column} is negative")
    if survey:
        keep.drop(w == 0, "zero_weight", f"{column} is 0: the response represents nobody")
    return w


def normalise_ids(values: pd.Series) -> pd.Series:
    """Unit ids as strings: strip spaces, and write whole numbers without '.0' (Chicago's 35.0 → '35')."""
    if pd.api.types.is_float_dtype(values):
        out = values.map(lambda v: "" if pd.isna(v) else (str(int(v)) if float(v).is_integer() else repr(float(v))))
        return out.astype(object)
    text = values.astype(str).str.strip().where(values.notna(), "")
    # "35.0" → "35" as text: no numeric round trip, so "35.5" and 20-digit ids pass unchanged
    text = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return text.astype(object)


def read_point_records(src: RecordSource, ledger: Ledger, ctx: Context, *, survey: bool = False,
                       detect: bool = True, raw: RawRecords | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Read incidents (``survey=False``) or survey responses, check them, and account for every row.

    Coordinates: lon/lat degrees, x/y in ``src.crs``, or a spatial file's point geometry. Survey
    responses may instead be located by a unit id (``src.unit`` at ``src.unit_level``).
    ``detect=False`` uses only the date and category columns ``src`` names (none are looked for,
    and without a date column no date is checked): what ``usm-geo aggregate`` asks for.

    ``raw`` gives records already read (one part of a partitioned dataset, see
    :mod:`usm_geo.scale`) instead of reading ``src.path``; with ``allow_empty`` a part whose
    records are all dropped returns an empty table instead of raising.
    """
    source = src.name
    progress = Steps(5, f"reading {source}")  # read, locate, dates, columns, duplicates
    if raw is None:
        raw = read_records(src.path, source, ledger, fmt=src.format, layer=src.layer, delimiter=src.delimiter,
                           encoding=src.encoding)
    progress.advance()
    ledger.open_source(source, src.path, raw.read)
    frame = raw.frame
    record_ids = icol = None
    if src.id is not None:
        icol = cols.resolve(frame.columns, src.id, "id", src.path, f"{source}.id")
        record_ids = _text(frame[icol]).astype(str).to_numpy(dtype=object)
        record_ids[frame[icol].isna().to_numpy()] = ""
    keep = _Keep(raw, source, ledger, record_ids)
    out = pd.DataFrame({"row": raw.rows})

    by_unit = survey and src.unit is not None
    if by_unit:
        ucol = cols.resolve(frame.columns, src.unit, "unit", src.path, f"{source}.unit")
        ids = normalise_ids(frame[ucol])
        known = (ctx.unit_ids or {}).get(src.unit_level, set())
        keep.drop((ids == "").to_numpy(), "missing_unit", f"column '{ucol}' is empty")
        keep.drop(~ids.isin(known).to_numpy(), "unknown_unit",
                  (f"{ucol} = " + ids.astype(str).str.slice(0, 30) + f" is not a {src.unit_level} id").to_numpy(dtype=object))
        out["unit_level"] = src.unit_level
        out["unit_id"] = ids.to_numpy()
    else:
        a, b, crs, names = _locate(raw, src, keep, ctx)
        lon, lat, x, y = _check_coordinates(a, b, crs, keep, ctx, src.path, names.get("location"))
        out["lon"], out["lat"], out["x"], out["y"] = lon, lat, x, y
    progress.advance()

    has_dates = detect or src.datetime is not None or src.date is not None or bool(src.date_parts)
    values, precision = _dates(raw, src, keep, ctx, required=not survey) if has_dates else (None, None)
    if values is not None:
        out["occurred_at"] = values.to_numpy()
        out["date_precision"] = precision
        if not survey and (src.datetime_end is not None or src.date_end is not None):
            out["occurred_end"] = _window_end(raw, src, keep, ctx, values, precision)
    progress.advance()

    cat_col = (cols.resolve(frame.columns, src.category, "category", src.path, f"{source}.category")
               if not survey and (detect or src.category) and src.category_value is None else None)
    if not survey and src.category_value is not None:  # a file of one offence: its label for every record
        out["category"] = src.category_value
    elif cat_col is not None:
        cat = _text(frame[cat_col]).astype(str)
        empty = cat.str.lower().isin(MISSING_TEXT).to_numpy()
        keep.mark(empty, "changed", "missing_category", f"column '{cat_col}' is empty; counted as 'unknown'")
        out["category"] = np.where(empty, "unknown", _objects(cat))
    elif not survey:
        out["category"] = "uncategorised"

    if src.weight is not None:
        wcol = cols.resolve(frame.columns, src.weight, "weight", src.path, f"{source}.weight")
        out["weight"] = _weights(frame, wcol, keep, survey)
    if icol is not None:
        out["record_id"] = _text(frame[icol]).astype(str).to_numpy(dtype=object)
    if survey:
        for name, key in (("stratum", src.strata), ("psu", src.psu)):
            if key is not None:
                c = cols.resolve(frame.columns, key, name, src.path, f"{source}.{name}")
                out[name] = normalise_ids(frame[c]).to_numpy()
        for q in src.questions:
            qcol = cols.resolve(frame.columns, q.column, q.id, src.path, f"{source}.questions.{q.id}.column")
            answer = _text(frame[qcol]).astype(str)
            folded = answer.str.casefold()
            labels = {a.casefold(): a for a in q.answers}
            blank = folded.isin(["", "nan"]).to_numpy()
            known = folded.isin(labels).to_numpy()
            keep.mark(~known & ~blank, "changed", "unknown_answer",
                      (f"{qcol} = '" + answer.str.slice(0, 40) + "' is not a listed answer; treated as missing").to_numpy(dtype=object))
            out[q.id] = folded.map(labels).where(known, None).to_numpy(dtype=object)

    progress.advance()
    # the parsed instants and positions: equal records have equal ones, and they are cheaper to
    # compare than the text they were read from
    exact = _duplicates(raw, src, keep, [out[c].to_numpy() for c in ("occurred_at", "x", "y") if c in out])
    _duplicate_ids(keep, exact)
    progress.advance()
    progress.close()
    result = out.loc[keep.mask].reset_index(drop=True)
    if "occurred_end" in result:
        n = int(result["occurred_end"].notna().sum())
        ledger.note(source, "aoristic", f"{n:,} of {len(result):,} used records have a time window "
                    f"({src.datetime or src.date} … {src.datetime_end or src.date_end}): count places each at its start, "
                    "aoristic_count spreads it over the periods of its window (weights summing to 1)")
    ledger.close_source(source, len(result))
    if result.empty and not allow_empty:
        refuse_empty(ledger, source, raw.read, src.path)
    return result


def refuse_empty(ledger: Ledger, source: str, read: int, path) -> None:
    """Raise the "no usable records" error, with the most frequent reasons from the ledger."""
    counts = ledger.reason_counts()
    top = sorted(((n, r) for (s, st, r), n in counts.items() if s == source and st == "dropped"), reverse=True)[:3]
    raise InputFileError(f"no usable records: all {read:,} rows were dropped"
                         + (" (" + ", ".join(f"{r}: {n:,}" for n, r in top) + ")" if top else ""),
                         where=path, fix="see the ledger reasons listed with this error; check the column names, CRS and study period")


def _duplicate_ids(keep: _Keep, exact: np.ndarray) -> None:
    """Records (still used) whose id repeats the id of an earlier one, other than exact duplicates
    (listed as ``duplicate`` already): kept, listed as ``duplicate_id`` "same id as row N".
    police.uk lists a crime twice when its outcome changed: two records, one id."""
    if keep.ids is None:
        return
    which = keep.mask & ~exact & (keep.ids != "")
    codes = pd.factorize(keep.ids[which])[0]
    first = _first_of_groups(codes)
    dup = first != np.arange(codes.size)
    if not dup.any():
        return
    full = np.zeros(len(keep.mask), dtype=bool)
    full[np.flatnonzero(which)[dup]] = True
    keep.mark(full, "kept", "duplicate_id", _shown(full, lambda w: np.char.add("same id as row ",
                                                                                keep.rows[which][first[dup]].astype(str))))


def _first_of_groups(codes: np.ndarray) -> np.ndarray:
    """For group codes numbered in order of first appearance (``pd.factorize``), the position of
    each element's first occurrence (its own position for a first occurrence)."""
    if codes.size == 0:
        return codes.astype(np.int64)
    running = np.maximum.accumulate(codes)
    new = np.empty(codes.size, dtype=bool)
    new[0] = True
    new[1:] = running[1:] > running[:-1]  # a code seen for the first time is one above all before it
    return np.flatnonzero(new)[codes]


def record_groups(frame: pd.DataFrame, mask: np.ndarray, extra: list | None = None,
                  narrow: list | None = None) -> np.ndarray:
    """A group code per row of ``frame[mask]``: equal codes for rows equal in every column (missing
    values equal to each other, as in ``DataFrame.duplicated``), numbered in order of first appearance.

    Exact (values are compared, never hashes of whole rows, so there are no collisions), and
    narrowing: column by column, each still-possible row gets a key that packs its codes so far
    (``key * k + code``, the codes 0…k-1 from pyarrow's dictionary encoding for text, else
    ``pd.factorize``; missing values one more code), and a row whose key no other row shares is
    distinct from every row whatever the later columns hold, so it is dropped. After the first
    column (a date, usually) only the few rows sharing a value are encoded. ``extra``: more columns
    (arrays over every row), e.g. a geometry's WKB. :func:`_record_groups_general` is the reference.

    ``narrow``: arrays over every row that rows equal in every column share (values parsed from the
    columns: the dates as instants, the coordinates as numbers), taken first. Cheap to encode, they
    leave only the rows that share them for the text columns: in a fresh process pyarrow's encoding
    of Chicago's 138,702 distinct date strings took 90 ms, the parsed instants 5 ms. The groups are
    still decided by the columns themselves (each is compared after them).
    """
    n = int(mask.sum())
    used = np.flatnonzero(mask)
    cand = np.arange(n)  # positions among the used rows that may still equal another row
    key = np.zeros(n, dtype=np.int64)
    span = 1  # the keys lie in [0, span)
    for column in list(narrow or []) + [frame[c] for c in frame.columns] + list(extra or []):
        if cand.size < 2:
            break
        text = _arrow_text(column)  # made once, for the summaries and the codes
        column = column if text is None else text
        if text is not None and cand.size > SUMMARY_MIN_ROWS:
            # first the strings' lengths and end bytes (read from arrow's buffers), then the few
            # rows that share them are dictionary-encoded
            at = np.arange(cand.size)  # the candidates' places in the summaries
            for summary in _text_summary(text, used[cand]):
                if cand.size < 2:
                    break
                key, span, shared = _narrow(key, span, *_column_codes(summary, at))
                cand, at = cand[shared], at[shared]
            if cand.size < 2:
                break
        key, span, shared = _narrow(key, span, *_column_codes(column, used[cand]))
        cand = cand[shared]
    rep = np.arange(n)  # each used row's first equal row (itself when none is before it)
    if cand.size:
        rep[cand] = cand[_first_of_groups(_dense(key)[0])]
    first = rep == np.arange(n)
    return (np.cumsum(first) - 1)[rep]


def _narrow(key: np.ndarray, span: int, codes: np.ndarray, k: int):
    """Pack one more column's codes (0…k-1, one per candidate) into the key and find the candidates
    whose key another candidate shares. Returns (their keys, span, mask of them)."""
    if span * k >= 1 << 62:  # the packed key would overflow: renumber it first
        key, span = _dense(key)
    key, span = key * k + codes, span * k
    if span > 4 * key.size + (1 << 16):  # keep the count below small (a dictionary's codes are dense)
        key, span = _dense(key)
    shared = np.bincount(key, minlength=span)[key] > 1
    return key[shared], span, shared


#: Above this many candidate rows a text column is first narrowed by :func:`_text_summary`.
SUMMARY_MIN_ROWS = 4096


def _arrow_text(column) -> pa.Array | None:
    """The pyarrow string array behind a pandas text column, else None."""
    values = column.array if isinstance(column, pd.Series) else column
    chunks = getattr(values, "_pa_array", None)
    if isinstance(chunks, pa.ChunkedArray) and (pa.types.is_string(chunks.type) or pa.types.is_large_string(chunks.type)):
        return chunks.combine_chunks()
    return None


def _text_summary(text: pa.Array, rows: np.ndarray) -> list[np.ndarray]:
    """Of each string at ``rows``: its length in bytes (-1 when missing), its first 8 bytes and its
    last 8 bytes (as uint64, zero-padded). Equal strings have equal summaries, so they only narrow
    the candidates; computed from arrow's offset and data buffers without making Python strings.
    (Encoding Chicago's 138,702 distinct date strings took 40 ms warm and 90 ms in a fresh process;
    their summaries take a few ms and leave few rows to encode.)"""
    offsets, data = string_buffers(text)
    start = offsets[rows]
    length = offsets[rows + 1] - start
    end = start + length
    head = np.zeros(rows.size, np.uint64)
    tail = np.zeros(rows.size, np.uint64)
    last = data.size - 1
    for j in range(8):  # byte j from each end (0 past a short string): 8 passes over n, not n × 8 temporaries
        short = length <= j
        head |= np.where(short, 0, data[np.minimum(start + j, last)]).astype(np.uint64) << np.uint64(8 * j)
        tail |= np.where(short, 0, data[np.clip(end - 1 - j, 0, last)]).astype(np.uint64) << np.uint64(8 * j)
    if text.null_count:
        length[text.is_null().to_numpy(zero_copy_only=False)[rows]] = -1
    return [length, head, tail]


def _dense(key: np.ndarray) -> tuple[np.ndarray, int]:
    """``key`` renumbered 0…m-1 in order of first appearance (equal values, equal numbers), and m."""
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64), max(len(uniques), 1)


def _column_codes(column, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes 0…k-1 of ``column``'s values at ``rows`` (positions over every row; equal values, and
    every missing value, share one code) and their number k. ``column``: a Series, an array, or
    the pyarrow text of one (:func:`_arrow_text`)."""
    whole = column if isinstance(column, pa.Array) else _arrow_text(column)
    if whole is not None:  # pandas' pyarrow-backed text: encoded without leaving arrow
        encoded = pc.dictionary_encode(whole if rows.size == len(whole) else whole.take(pa.array(rows)))
        k = len(encoded.dictionary)
        indices = encoded.indices
        if indices.null_count:  # missing values: one more code
            indices, k = pc.fill_null(indices, k), k + 1
        return indices.to_numpy().astype(np.int64), k
    values = column.array if isinstance(column, pd.Series) else column
    codes = pd.factorize(values[rows] if rows.size != len(values) else values)[0].astype(np.int64) + 1  # missing (-1) → 0
    return codes, int(codes.max(initial=0)) + 1


def _record_groups_general(frame: pd.DataFrame, mask: np.ndarray, extra: list | None = None,
                           narrow: list | None = None) -> np.ndarray:
    """The reference for :func:`record_groups` (the tests check they agree): each column
    factorised over every row, its codes combined with the key pairwise and re-factorised.
    ``narrow`` is not needed here (it cannot change a group) and is not used."""
    columns = [frame[c] for c in frame.columns] + list(extra or [])
    key = np.zeros(int(mask.sum()), dtype=np.int64)
    for column in columns:
        codes = pd.factorize(column)[0][mask].astype(np.int64) + 1  # missing (-1) → 0: one value
        key = pd.factorize(key * (int(codes.max(initial=0)) + 1) + codes)[0].astype(np.int64)
    return pd.factorize(key)[0] if not columns else key


def _duplicates(raw: RawRecords, src: RecordSource, keep: _Keep, narrow: list | None = None) -> np.ndarray:
    """Exact duplicate records (every column equal) among the rows still used: kept or dropped by the
    study. Returns the mask of those duplicates (over every row read). ``narrow``: values parsed
    from the columns, over every row (see :func:`record_groups`)."""
    frame = raw.frame
    data = frame.drop(columns="geometry") if raw.spatial else frame
    full = np.zeros(len(keep.mask), dtype=bool)
    if not keep.mask.any():
        return full
    extra = [shapely.to_wkb(frame.geometry.to_numpy())] if raw.spatial else None
    first = _first_of_groups(record_groups(data, keep.mask, extra, narrow))
    dup = first != np.arange(first.size)
    if not dup.any():
        return full
    used = np.flatnonzero(keep.mask)
    full[used[dup]] = True
    detail = _shown(full, lambda w: np.char.add("same as row ", keep.rows[used[first[dup]]].astype(str)))
    if src.duplicates == "drop":
        keep.drop(full, "duplicate", detail)
    else:
        keep.mark(full, "kept", "duplicate", detail)
    return full


def read_incident_sources(sources, ledger: Ledger, ctx: Context) -> pd.DataFrame:
    """Read several incident files (one :class:`RecordSource` each) into one table.

    One source: exactly :func:`read_point_records`. Several: each is read and checked on its own
    (row numbers, duplicates and the ledger are per file, under the source's name), and the used
    records are concatenated in the study's order with a ``source`` column after ``row``. A file
    whose records are all dropped is allowed (its ledger says why) unless every file is empty.
    """
    sources = tuple(sources)
    if len(sources) == 1:
        return read_point_records(sources[0], ledger, ctx)
    parts = []
    for src in sources:
        part = read_point_records(src, ledger, ctx, allow_empty=True)
        part.insert(1, "source", src.name)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if out.empty:
        read = sum(t["read"] for n, t in ledger.totals().items() if n in {s.name for s in sources})
        names = {s.name for s in sources}
        summed: dict[str, int] = {}
        for (s, st, r), n in ledger.reason_counts().items():
            if s in names and st == "dropped":
                summed[r] = summed.get(r, 0) + n
        top = sorted(((n, r) for r, n in summed.items()), reverse=True)[:3]
        raise InputFileError(f"no usable records: all {read:,} rows of the {len(sources)} incident files were dropped"
                             + (" (" + ", ".join(f"{r}: {n:,}" for n, r in top) + ")" if top else ""),
                             where="inputs.incidents", fix="see the ledger reasons listed with this error; check the column names, CRS and study period")
    if "record_id" in out:
        out["record_id"] = out["record_id"].where(out["record_id"].notna(), "")
    return out
