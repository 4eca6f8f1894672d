"""A real PostgreSQL + PostGIS server for the tests in this folder.

The server is the one `.ci/postgres` starts (CI runs it from .ci/run; developers run
``eval "$(bash .ci/postgres)"``), reached through ``USM_GEO_TEST_PG`` (a URL without password)
and ``PGPASSWORD``. Without that variable the tests skip, except under CI=true, where they fail.

Inputs are loaded with tools other than usm_geo: CSV files with PostgreSQL's own ``COPY … FROM``
(every column text, in file order, numbered by a ``seq`` column) and spatial layers with GDAL's
``ogr2ogr``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared_data import IN_CI


def _missing(what: str):
    if IN_CI:
        pytest.fail(f"{what} (CI=true: .ci/run must start the server with .ci/postgres)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("USM_GEO_TEST_PG")
    if not url:
        _missing('USM_GEO_TEST_PG is not set: run eval "$(bash .ci/postgres)" first')
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT postgis_version()")
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable server
        _missing(f"cannot use the test database {url}: {str(exc).splitlines()[0]}")
    return url


@pytest.fixture
def pg(pg_url):
    """An autocommit psycopg connection to the test database, for setting up and checking."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def ogr_dsn(url: str, schema: str | None = None) -> str:
    """``PG:host=… port=… dbname=… user=…`` for GDAL (the password comes from PGPASSWORD)."""
    p = urlsplit(url)
    dsn = f"PG:host={p.hostname} port={p.port or 5432} dbname={p.path.lstrip('/')} user={p.username}"
    return dsn + (f" schemas={schema}" if schema else "")


def load_csv(conn, path: Path, schema: str, table: str) -> list[str]:
    """COPY a CSV file (``.gz`` too) into a new table of text columns plus ``seq`` (file order,
    primary key). Returns the CSV's column names."""
    from psycopg import sql

    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    header = next(csv.reader(io.StringIO(data[:65536].decode("utf-8-sig"))))
    target = sql.Identifier(schema, table)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
    conn.execute(sql.SQL("CREATE TABLE {} (seq bigserial PRIMARY KEY, {})").format(
        target, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in header)))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, header)))
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for start in range(0, len(data), 8 << 20):
            copy.write(data[start:start + (8 << 20)])
    return header


def load_layer(url: str, source: str, layer: str | None, schema: str, table: str) -> None:
    """ogr2ogr a layer into ``schema.table`` (geometry column ``geom``, primary key ``fid``)."""
    args = ["ogr2ogr", "-f", "PostgreSQL", ogr_dsn(url), source] + ([layer] if layer else []) + [
        "-nln", f"{schema}.{table}", "-lco", "GEOMETRY_NAME=geom", "-lco", "FID=fid", "-lco", f"SCHEMA={schema}",
        "-overwrite"]
    subprocess.run(args, check=True, capture_output=True, text=True)


def ogr_summary(url: str, table: str) -> dict:
    """Feature count, EPSG code and geometry type of a table as ``ogrinfo -so`` reports them."""
    out = subprocess.run(["ogrinfo", "-ro", "-so", ogr_dsn(url), table], check=True, capture_output=True, text=True).stdout
    count = re.search(r"^Feature Count: (\d+)", out, re.M)
    epsg = re.findall(r'ID\["EPSG",(\d+)\]\]\s*$', out, re.M)
    geom = re.search(r"^Geometry: (.+)$", out, re.M)
    return {"count": int(count.group(1)) if count else None, "epsg": int(epsg[-1]) if epsg else None,
            "geometry": geom.group(1) if geom else None, "text": out}


@pytest.fixture(scope="session")
def demo_db(demo, pg_url):
    """The Demo City inputs of the shared demo run, loaded into schema ``demo_in``.

    Returns (run folder, inputs folder, url). Tables: incidents, survey (COPY: text columns + seq),
    population (COPY; primary key nbhd_id), neighbourhoods and districts (ogr2ogr from the GeoPackage).
    """
    import psycopg

    out, _ = demo
    inputs = out / "inputs"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS demo_in CASCADE")
        load_csv(conn, inputs / "incidents.csv", "demo_in", "incidents")
        load_csv(conn, inputs / "survey.csv", "demo_in", "survey")
        load_csv(conn, inputs / "population.csv", "demo_in", "population")
        conn.execute("ALTER TABLE demo_in.population DROP COLUMN seq")
        conn.execute("ALTER TABLE demo_in.population ADD PRIMARY KEY (nbhd_id)")
    for layer, table in (("neighbourhoods", "neighbourhoods"), ("districts", "districts")):
        load_layer(pg_url, str(inputs / "demo_city.gpkg"), layer, "demo_in", table)
    return out, inputs, pg_url
