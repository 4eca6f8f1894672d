"""PostgreSQL/PostGIS as a place to read inputs from and write results to — the one module that
speaks SQL: the database source a study names, connections, the translation of driver errors into
:class:`UsmGeoError`, reading a table or query (:func:`read_rows`) and writing tables in one
transaction (:func:`write_tables`). The intake turns what :func:`read_rows` returns into records
(:func:`usm_geo.intake.files.read_records`); the export chooses what :func:`write_tables` writes
(:func:`usm_geo.export.postgis.export_run_to_database`).

A study names a database input with ``source = "postgresql://USER@HOST:PORT/DB"`` and either
``table = "schema.name"`` or ``query = "SELECT …"`` (docs/postgis.md). The password never comes
from the study or the command line: libpq reads ``PGPASSWORD`` or ``~/.pgpass``. A URL holding a
password is refused. Identifiers (schema, table, column names) are always passed to the server as
quoted identifiers (``psycopg.sql.Identifier``), never pasted into SQL text.

psycopg is imported only when a database is used, so file-only studies do not need a server.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely

from usm_geo.errors import CRSError, InputFileError, UsmGeoError

SCHEMES = ("postgresql://", "postgres://")
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL cuts longer names silently (NAMEDATALEN - 1)
PASSWORD_FIX = ("set PGPASSWORD in the environment, or add the line HOST:PORT:DB:USER:PASSWORD to ~/.pgpass "
                "(chmod 600); never write the password in the study file or on the command line")
_IDENT = re.compile(r'"((?:[^"]|"")+)"|([^."]+)')


def is_database_url(text: str) -> bool:
    """True when ``text`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(text, str) and text.strip().lower().startswith(SCHEMES)


def checked_url(url: str, where: str) -> str:
    """``url`` after refusing one that holds a password (in ``USER:PASSWORD@`` or ``?password=``).

    Raises :class:`UsmGeoError` naming ``where`` (a study key or ``--to``). The error never repeats
    the password: only the part after ``@`` is shown.
    """
    url = url.strip()
    if not is_database_url(url):
        raise UsmGeoError(f"'{url.split('@')[-1]}' is not a PostgreSQL URL", where=where,
                          fix="write it as postgresql://USER@HOST:PORT/DATABASE")
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo or any(k.lower() == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise UsmGeoError(f"the database URL holds a password ({parts.scheme}://…@{parts.netloc.rpartition('@')[2]}{parts.path})",
                          where=where, fix=f"remove it from the URL and {PASSWORD_FIX}")
    return url


def split_table_name(text: str, where: str) -> tuple[str, ...]:
    """``"schema.name"`` → ``("schema", "name")``; ``"name"`` → ``("name",)``.

    A part written in double quotes keeps dots and case (``'"my.schema"."Wards 2022"'``), with
    ``""`` for a quote inside it, as in SQL. Anything else is refused.
    """
    parts, pos, ok = [], 0, False
    text = text.strip()
    while True:
        m = _IDENT.match(text, pos)
        if m is None:
            ok = False  # nothing (or a stray quote) where a name should be
            break
        ok = True
        parts.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2).strip())
        pos = m.end()
        if pos == len(text) or text[pos] != ".":
            break
        pos += 1
    if not ok or pos != len(text) or not 1 <= len(parts) <= 2 or not all(parts):
        raise UsmGeoError(f"'{text}' is not a table name", where=where,
                          fix='write table = "schema.name" (double-quote a part holding a dot: \'"my.schema".wards\')')
    for part in parts:
        check_identifier(part, where)
    return tuple(parts)


def check_identifier(name: str, where: str, what: str = "name") -> str:
    """Refuse a name PostgreSQL would cut (over 63 bytes) or cannot hold (a NUL character)."""
    if "\x00" in name or not name:
        raise UsmGeoError(f"the {what} {name!r} is empty or holds a NUL character", where=where, fix="choose another name")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise UsmGeoError(f"the {what} '{name[:40]}…' is {len(name.encode('utf-8'))} bytes long; PostgreSQL names hold "
                          f"at most {MAX_IDENTIFIER_BYTES}", where=where, fix="choose a shorter name")
    return name


@dataclass(frozen=True)
class DatabaseSource:
    """A table (``table``, as ``(schema, name)`` or ``(name,)``) or a ``query`` of a PostgreSQL database.

    ``url`` never holds a password. ``geometry`` names the geometry column when the result has more
    than one. ``key`` is the study key (``inputs.incidents``) and ``study_file`` the study, for messages.
    Rows are numbered 1, 2, … in the order the server returns them: a table's primary key order when
    it has one, else the query's ``ORDER BY`` (docs/postgis.md).
    """

    url: str
    table: tuple[str, ...] | None = None
    query: str | None = None
    geometry: str | None = None
    key: str = "source"
    study_file: Path | None = None

    @property
    def what(self) -> str:
        if self.table is not None:
            return "table " + ".".join(self.table)
        return "query"

    @property
    def where(self) -> str:
        """``study.toml: inputs.incidents (postgresql://…, table x.y)``: the key and the source."""
        return f"{self.study_file}: {self}" if self.study_file else str(self)

    def __str__(self) -> str:
        return f"{self.key} ({self.url}, {self.what})"

    def provenance(self) -> dict:
        """What run.json records about this input (no password: the URL never holds one)."""
        out = {"database": self.url}
        if self.table is not None:
            out["table"] = ".".join(self.table)
        else:
            out["query"] = self.query
        return out


def _scrub(text: str) -> str:
    password = os.environ.get("PGPASSWORD")
    return text.replace(password, "***") if password else text


def driver_error(exc: Exception, where: str, action: str) -> UsmGeoError:
    """A psycopg error → :class:`UsmGeoError` with the server's first line and a fix for the usual causes."""
    diag = getattr(exc, "diag", None)
    state = getattr(exc, "sqlstate", None) or ""
    text = (getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__).strip()
    first = _scrub(text.splitlines()[0] if text else type(exc).__name__)
    low = text.lower()
    if state == "28P01" or "password authentication failed" in low or "no password supplied" in low:
        fix = PASSWORD_FIX
    elif state == "3D000" or ("database" in low and "does not exist" in low):
        fix = "check the database name at the end of the URL"
    elif "role" in low and "does not exist" in low:
        fix = "check the user name before @ in the URL"
    elif any(s in low for s in ("connection refused", "could not connect", "could not translate host", "timeout",
                                 "no route", "server closed", "is the server running")):
        fix = "check that the server is running and that HOST:PORT in the URL are right"
    elif state == "42P01":
        fix = "check the schema and table name, and that this user may see them"
    elif state == "42501":
        fix = "ask the database owner for the permission (docs/postgis.md lists what is needed)"
    elif state == "25006":
        fix = "a database input is read in a read-only transaction: the query may only read (SELECT …)"
    elif state.startswith("42"):
        fix = "check the SQL of the query (run it in psql first)"
    elif state == "2BP01":
        fix = "drop or change the views that use these tables, or export into another --schema"
    else:
        fix = "check the URL, the server and the permissions (docs/postgis.md)"
    return UsmGeoError(f"{action}: {first}", where=where, fix=fix)


def connect(url: str, where: str, *, read_only: bool = False):
    """A psycopg connection to ``url`` (no autocommit; ``read_only`` for inputs).

    The password comes from ``PGPASSWORD`` or ``~/.pgpass``, as for ``psql``. Connection problems
    (server down, wrong password, unknown database) raise :class:`UsmGeoError` naming ``where``.
    """
    try:
        import psycopg
    except ModuleNotFoundError:  # pragma: no cover - a dependency
        raise UsmGeoError("reading or writing a database needs psycopg", where=where,
                          fix="pip install 'psycopg[binary]'") from None
    kwargs = {} if "connect_timeout" in url else {"connect_timeout": 15}
    try:
        conn = psycopg.connect(checked_url(url, where), application_name="usm_geo", **kwargs)
    except psycopg.Error as exc:
        raise driver_error(exc, where, f"cannot connect to {url}") from None
    conn.read_only = read_only
    with conn.cursor() as cur:
        # text output that reads back exactly: ISO dates in UTC, shortest exact doubles
        cur.execute("SET TIME ZONE 'UTC'; SET datestyle = 'ISO, YMD'; SET extra_float_digits = 1")
    conn.commit()
    return conn


def postgis_version(conn) -> str | None:
    """The installed PostGIS extension's version in the connected database, or None."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
    return row[0] if row else None


# ---- reading a table or query ----

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


@dataclass
class DatabaseRows:
    """What :func:`read_rows` returns: ``frame`` (text columns; a GeoDataFrame when the rows have a
    geometry), ``read`` rows in the order served, and the geometry's ``crs`` (None: none or SRID 0)."""

    frame: pd.DataFrame
    read: int
    crs: object = None


def read_rows(src: DatabaseSource) -> DatabaseRows:
    """Every row of ``src`` with the row number (1-based, in the order served) of each.

    Columns are strings (``""`` for NULL and for empty text), as for a CSV file; the geometry
    column (``src.geometry``, or the only one) becomes the frame's ``geometry`` with the CRS of its
    SRID (SRID 0: no CRS, so the study's ``crs`` key is used). Problems — no connection, no such
    table, a failing query, several geometry columns or SRIDs — raise :class:`UsmGeoError` naming
    the study key.
    """
    import geopandas as gpd
    import psycopg

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
    if geometry is None:
        return DatabaseRows(frame=frame, read=read)
    values = shapely.set_srid(np.concatenate(geoms) if geoms else np.array([], dtype=object), 0)
    frame = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(values, crs=crs), crs=crs)
    return DatabaseRows(frame=frame, read=read, crs=crs)


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


# ---- writing tables ----

KEY, GEOMETRY = "fid", "geom"
COPY_CHUNK = 8 << 20
_MULTI = {3: ("MultiPolygon", 6, shapely.multipolygons), 0: ("MultiPoint", 4, shapely.multipoints),
          1: ("MultiLineString", 5, shapely.multilinestrings)}


def write_tables(url: str, schema: str, layers: dict, comments: dict[str, str] | None = None, *,
                 notes: dict[str, str] | None = None, where: str = "--to") -> dict[str, int]:
    """Replace the tables ``schema.<name>`` by the GeoDataFrames ``layers``, all in one transaction.

    The schema is created when missing. ``comments`` (column name → text) become column comments
    (a column without one is commented with its name); ``notes`` are table comments. Raises
    :class:`UsmGeoError` (nothing changed) for names PostgreSQL cannot hold, a CRS without EPSG
    code, no PostGIS, or any server error.
    """
    check_identifier(schema, "--schema", "schema name")
    prepared = {check_identifier(name, where, "table name"): _prepare(name, frame, where) for name, frame in layers.items()}
    comments = {**(comments or {}), KEY: "row number (primary key)"}
    import psycopg

    current = None
    with connect(url, where) as conn:
        if postgis_version(conn) is None:
            raise UsmGeoError(f"the database {url} has no PostGIS extension", where=where,
                              fix="run CREATE EXTENSION postgis; in it (as its owner or a superuser), or use another database")
        try:
            with conn.transaction():
                exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
                if not exists:
                    conn.execute(_sql("CREATE SCHEMA {}", schema))
                for name, (table, srid, gtype) in prepared.items():
                    current = name
                    write_table(conn, schema, name, table, srid, gtype, comments, (notes or {}).get(name))
        except psycopg.Error as exc:
            target = f"{schema}.{current}" if current else f"schema {schema}"
            raise driver_error(exc, where, f"cannot write {target}; no table was changed") from None
    return {name: p[0].num_rows for name, p in prepared.items()}


def _sql(template: str, *names, literal=None):
    from psycopg import sql

    parts = [sql.Identifier(*n) if isinstance(n, tuple) else sql.Identifier(n) for n in names]
    if literal is not None:
        parts.append(sql.Literal(literal))
    return sql.SQL(template).format(*parts)


def _prepare(name: str, frame, where: str) -> tuple[pa.Table, int, str]:
    """(table with ``fid``, the attributes and ``geom`` as hex EWKB; SRID; PostGIS geometry type)."""
    geom_name = frame.geometry.name
    attrs = pd.DataFrame(frame.drop(columns=geom_name)).reset_index(drop=True)
    for col in attrs.columns:
        check_identifier(str(col), f"{where}: table {name}", "column name")
        if col in (KEY, GEOMETRY):
            raise UsmGeoError(f"table {name} has a column named '{col}', which the export uses itself", where=where,
                              fix="rename the indicator or level")
        if attrs[col].dtype == object:
            attrs[col] = attrs[col].astype("string")
    srid = 0
    if frame.crs is not None:
        code = frame.crs.to_epsg()
        if code is None:
            raise CRSError(f"the CRS of table {name} has no EPSG code, so it has no PostGIS SRID", where=where,
                           fix="export with --crs EPSG:… (e.g. the working CRS's code)")
        srid = int(code)
    geoms, gtype = _uniform(frame.geometry.to_numpy())
    wkb = shapely.to_wkb(shapely.set_srid(geoms, srid), hex=True, include_srid=True)
    table = pa.Table.from_pandas(attrs, preserve_index=False)
    table = table.add_column(0, KEY, pa.array(np.arange(1, len(attrs) + 1, dtype=np.int64)))
    table = table.append_column(GEOMETRY, pa.array(wkb, type=pa.string(), from_pandas=True))
    return table, srid, gtype


def _uniform(geoms: np.ndarray) -> tuple[np.ndarray, str]:
    """Geometries of one PostGIS type: single parts promoted to multi (Polygon → MultiPolygon)."""
    kinds = shapely.get_type_id(geoms)
    present = set(np.unique(kinds[kinds >= 0]).tolist())
    for single, (name, multi, make) in _MULTI.items():
        if present and present <= {single, multi}:
            one = kinds == single
            if one.any():
                geoms = geoms.copy()
                geoms[one] = make(geoms[one], indices=np.arange(int(one.sum())))
            return geoms, name
    return geoms, "Geometry"


def write_table(conn, schema: str, name: str, table: pa.Table, srid: int, gtype: str, comments: dict,
                note: str | None) -> None:
    """Drop and recreate ``schema.name`` and fill it with ``table`` by COPY (inside the caller's transaction)."""
    from psycopg import sql

    types = []
    for field in table.schema:
        if field.name == KEY:
            types.append(sql.SQL("bigint PRIMARY KEY"))
        elif field.name == GEOMETRY:
            types.append(sql.SQL("geometry({}, {})").format(sql.SQL(gtype), sql.Literal(srid)))
        else:
            types.append(sql.SQL(_pg_type(field.type)))
    target = (schema, name)
    conn.execute(_sql("DROP TABLE IF EXISTS {}", target))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(*target), sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(f.name), t)
                                                    for f, t in zip(table.schema, types))))
    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(include_header=False))
    data = memoryview(buf.getvalue())
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(*target), sql.SQL(", ").join(map(sql.Identifier, table.column_names)))
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for start in range(0, len(data), COPY_CHUNK):
            copy.write(data[start:start + COPY_CHUNK])
    conn.execute(_sql("CREATE INDEX ON {} USING GIST ({})", target, GEOMETRY))
    for col in table.column_names:
        text = (f"unit geometry (SRID {srid})" if col == GEOMETRY else comments.get(col)) or col
        conn.execute(_sql("COMMENT ON COLUMN {} IS {}", (schema, name, col), literal=text))
    if note:
        conn.execute(_sql("COMMENT ON TABLE {} IS {}", target, literal=note))


def _pg_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_floating(t):
        return "double precision"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return "text"
