"""Reading records from a PostgreSQL/PostGIS table or query: the same :class:`RawRecords` the file
readers return, so every later check (ledger, coordinates, CRS, dates, ids) is the one files get.

The rows are streamed from the server with ``COPY (…) TO STDOUT`` as CSV text, parsed block by
block by pyarrow (every column as a string, as for a CSV file), in a read-only transaction. A
geometry (or geography) column arrives as hex EWKB and becomes shapely geometries block by block;
its CRS comes from the SRID via the database's ``spatial_ref_sys``. Row ``i`` is the ``i``-th row
the server returned: in primary key order for a ``table`` that has one, else in the order of the
query (give it an ``ORDER BY``).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely

from usm_geo.database import DatabaseSource, connect, driver_error
from usm_geo.errors import CRSError, InputFileError

if TYPE_CHECKING:
    from usm_geo.intake.raw import RawRecords

BLOCK_BYTES = 64 << 20  # a pyarrow block must hold the longest row (a detailed polygon is megabytes of hex)


class _CopyStream(io.RawIOBase):
    """A read-only file over the chunks of a psycopg ``COPY … TO STDOUT``."""

    def __init__(self, copy):
        self._chunks = iter(copy)
        self._buf = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = len(b)
        while len(self._buf) < n and not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
            else:
                self._buf += chunk
        k = min(n, len(self._buf))
        b[:k] = self._buf[:k]
        del self._buf[:k]
        return k


def _select(conn, src: DatabaseSource):
    """The SELECT that yields the source's rows, in a stated order."""
    from psycopg import sql

    if src.query is not None:
        return sql.SQL(src.query.strip().rstrip(";").rstrip())
    name = sql.Identifier(*src.table)
    oid = conn.execute("SELECT to_regclass(%s)::oid", (name.as_string(conn),)).fetchone()[0]
    if oid is None:
        raise InputFileError(f"the table {'.'.join(src.table)} does not exist (or this user cannot see it)",
                             where=src.where, fix="check the schema and table name; a name with capitals or spaces "
                             'is written in double quotes: table = \'"My Schema"."Wards"\'')
    keys = [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)", (oid,))]
    order = sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, keys))) if keys else sql.SQL("")
    return sql.SQL("SELECT * FROM {}{}").format(name, order)


def _geometry_oids(conn) -> dict[int, str]:
    """Type oid → 'geometry' / 'geography' of the PostGIS extension (empty without PostGIS)."""
    return dict(conn.execute(
        "SELECT t.oid, t.typname FROM pg_type t JOIN pg_extension e ON t.typnamespace = e.extnamespace "
        "WHERE e.extname = 'postgis' AND t.typname IN ('geometry', 'geography')").fetchall())


def _crs_of_srid(conn, srid: int, src: DatabaseSource):
    from pyproj import CRS

    row = conn.execute("SELECT auth_name, auth_srid, srtext FROM spatial_ref_sys WHERE srid = %s", (srid,)).fetchone()
    if row is None:
        raise CRSError(f"SRID {srid} of the geometries is not in the database's spatial_ref_sys", where=src.where,
                       fix="transform the geometries in the query, e.g. ST_Transform(geom, 4326)")
    auth, code, wkt = row
    if auth and code:
        try:
            return CRS.from_authority(auth, int(code))
        except Exception:  # an authority pyproj does not know: fall back to the WKT
            pass
    return CRS.from_wkt(wkt)


def read_database(src: DatabaseSource) -> "RawRecords":
    """Every row of ``src`` with the row number (1-based, in the order served) of each.

    Columns are strings (``""`` for NULL and for empty text), as for a CSV file; the geometry
    column (``src.geometry``, or the only one) becomes the frame's ``geometry`` with the CRS of its
    SRID (SRID 0: no CRS, so the study's ``crs`` key is used). Problems — no connection, no such
    table, a failing query, several geometry columns or SRIDs — raise :class:`UsmGeoError` naming
    the study key.
    """
    import geopandas as gpd
    import psycopg

    from usm_geo.intake.raw import RawRecords

    try:
        with connect(src.url, src.where, read_only=True) as conn:
            select = _select(conn, src)
            geo = _geometry_oids(conn)
            from psycopg import sql

            with conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(select))
                names = [d.name for d in cur.description]
                kinds = [geo.get(d.type_code) for d in cur.description]
            geometry = _geometry_column(names, kinds, src)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise InputFileError(f"the {src.what} returns the column '{dupes[0]}' more than once", where=src.where,
                                     fix="give every column a distinct name (SELECT a.id AS a_id, …)")
            frames, geoms, read = [], [], 0
            with conn.cursor() as cur, cur.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(select)) as copy:
                reader = pacsv.open_csv(
                    _CopyStream(copy),
                    read_options=pacsv.ReadOptions(use_threads=False, column_names=names, block_size=BLOCK_BYTES),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                         strings_can_be_null=False, quoted_strings_can_be_null=False))
                for batch in reader:  # one block at a time: geometry decoded per block
                    frame = batch.to_pandas()
                    if geometry is not None:
                        geoms.append(_decode(frame.pop(geometry).to_numpy(dtype=object)))
                    frames.append(frame)
                    read += batch.num_rows
            srids = np.unique(np.concatenate([shapely.get_srid(g) for g in geoms])) if geoms else np.array([], int)
            srids = srids[srids >= 0]  # -1: NULL geometry
            crs = None
            if len(srids) > 1:
                raise CRSError(f"the geometries have several SRIDs ({', '.join(map(str, srids[:5]))})", where=src.where,
                               fix="transform them to one in a query: ST_Transform(geom, 4326) AS geom")
            if len(srids) == 1 and srids[0] != 0:
                crs = _crs_of_srid(conn, int(srids[0]), src)
    except psycopg.Error as exc:
        raise driver_error(exc, src.where, f"cannot read the {src.what}") from None
    except pa.ArrowInvalid as exc:  # pragma: no cover - COPY's CSV is well formed
        raise InputFileError(f"cannot parse the rows the server sent ({exc})", where=src.where) from None
    columns = [n for n in names if n != geometry]
    frame = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame({n: pd.Series(dtype=object) for n in columns}))
    rows = np.arange(1, read + 1, dtype=np.int64)
    if geometry is None:
        return RawRecords(frame=frame, rows=rows, read=read)
    values = shapely.set_srid(np.concatenate(geoms) if geoms else np.array([], dtype=object), 0)
    frame = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(values, crs=crs), crs=crs)
    return RawRecords(frame=frame, rows=rows, read=read, crs=crs)


def _geometry_column(names: list[str], kinds: list[str | None], src: DatabaseSource) -> str | None:
    spatial = [n for n, k in zip(names, kinds) if k is not None]
    if src.geometry is not None:
        if src.geometry not in spatial:
            raise InputFileError(f"the {src.what} has no geometry column '{src.geometry}'", where=src.where,
                                 fix=f"use one of: {', '.join(spatial)}" if spatial else
                                 "remove geometry = … (the result has no geometry column; is PostGIS installed?)")
        return src.geometry
    if len(spatial) > 1:
        raise InputFileError(f"the {src.what} has {len(spatial)} geometry columns ({', '.join(spatial)})", where=src.where,
                             fix=f'name one with geometry = "{spatial[0]}"')
    return spatial[0] if spatial else None


def _decode(hex_ewkb: np.ndarray) -> np.ndarray:
    """Hex EWKB text (``""`` for NULL) → shapely geometries (None for NULL), keeping the SRID."""
    out = np.full(len(hex_ewkb), None, dtype=object)
    present = hex_ewkb != ""
    out[present] = shapely.from_wkb(hex_ewkb[present])
    return out

