"""A run's published tables written into PostgreSQL/PostGIS (``usm-geo export RUN --to URL --schema S``).

The tables are the file export's GeoPackage layers, built by the same code after the same profile
(:func:`usm_geo.export.read_run`, :func:`usm_geo.export.extra_layers`): one table per
level (the wide indicator table with the unit polygons), ``hotspots_<level>`` and
``impact_areas``. Each table has a primary key ``fid`` (1…n in the layer's sorted order), its
geometry in ``geom`` (polygons as MultiPolygon, with the layer's EPSG code as SRID) with a GiST
index, and a comment on every column from the field dictionary the shapefile export uses.

Every table is written in ONE transaction: either all of them are replaced, or — when anything
fails midway — none is, and the previous tables stay as they were. Names (schema, tables,
columns) reach the server only as quoted identifiers.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely

from usm_geo.database import check_identifier, checked_url, connect, driver_error, postgis_version
from usm_geo.errors import CRSError, UsmGeoError
from usm_geo.area_tables import read_run
from usm_geo.export import SUPPRESSION_RULE, extra_layers, field_dictionary, indicator_definitions

KEY, GEOMETRY = "fid", "geom"
COPY_CHUNK = 8 << 20
_MULTI = {3: ("MultiPolygon", 6, shapely.multipolygons), 0: ("MultiPoint", 4, shapely.multipoints),
          1: ("MultiLineString", 5, shapely.multilinestrings)}


def export_run_to_database(run_dir, url: str, schema: str, *, indicators=None, levels=None, periods=None, crs=None,
                           profile: str = "public", k: int | None = None) -> dict:
    """Write a run folder's published tables into ``schema`` of the database at ``url``.

    Same selection and profile as :func:`usm_geo.export.export_run` (public by default). The
    password comes from ``PGPASSWORD`` or ``~/.pgpass``; a URL holding one is refused. Returns
    ``{"tables": {name: rows}, "schema", "profile", "k", "seconds"}``.
    """
    t0 = time.perf_counter()
    url = checked_url(url, "--to")
    check_identifier(schema, "--schema", "schema name")
    run = read_run(run_dir, indicators=indicators, levels=levels, periods=periods, crs=crs, profile=profile, k=k)
    tables = run.tables
    layers = {**tables.layers, **extra_layers(tables, run.raw_hotspots, run.raw_impact_areas)}
    definitions = indicator_definitions(tables.ids, run.info.get("indicator_definitions"))
    city = (run.info.get("study") or {}).get("name") or "city"
    rule = SUPPRESSION_RULE[tables.profile] + (f" (k = {tables.k})" if tables.profile == "public" else "")
    notes = {name: f"{city}: {'hot spots of ' + name[9:] if name.startswith('hotspots_') else name}; "
                   f"usm_geo export, {tables.profile} profile; suppression: {rule}" for name in layers}
    rows = write_tables(url, schema, layers, definitions, notes=notes)
    return {"tables": rows, "schema": schema, "profile": tables.profile, "k": tables.k,
            "seconds": round(time.perf_counter() - t0, 2)}


def write_tables(url: str, schema: str, layers: dict, definitions: dict | None = None, *,
                 notes: dict[str, str] | None = None, where: str = "--to") -> dict[str, int]:
    """Replace the tables ``schema.<name>`` by the GeoDataFrames ``layers``, all in one transaction.

    The schema is created when missing. Column comments come from :func:`field_dictionary` with
    ``definitions``; ``notes`` are table comments. Raises :class:`UsmGeoError` (nothing changed) for
    names PostgreSQL cannot hold, a CRS without EPSG code, no PostGIS, or any server error.
    """
    check_identifier(schema, "--schema", "schema name")
    prepared = {check_identifier(name, where, "table name"): _prepare(name, frame, where) for name, frame in layers.items()}
    columns = list(dict.fromkeys(c for p in prepared.values() for c in p[0].column_names))
    comments = {r.name: r.description + (f" ({r.unit})" if r.unit else "")
                for r in field_dictionary(columns, definitions or {}).itertuples()}
    comments[KEY] = "row number (primary key)"
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
