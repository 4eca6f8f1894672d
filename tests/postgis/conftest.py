"""A real PostgreSQL + PostGIS server for the tests in this folder.

The server is the one `.ci/postgres` starts (CI runs it from .ci/run; developers run
``eval "$(bash .ci/postgres)"``), reached through ``USM_GEO_TEST_PG`` (a URL without password)
and ``PGPASSWORD``. Without that variable the tests skip, except under CI=true, where they fail.

Inputs are loaded with tools other than usm_geo: CSV files with PostgreSQL's own ``COPY … FROM``
(every column text, in file order, numbered by a ``seq`` column) and spatial layers with GDAL's
``ogr2ogr``.
"""

from __future__ import annotations

import os

import pytest

from pg_helpers import load_csv, load_layer
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


@pytest.fixture(scope="session")
def demo_db(pg_url, demo):  # pg_url first: no server, no demo run
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
