"""Hostile names cannot inject SQL: schema, table, column and geometry names reach the server only
as quoted identifiers, and a database input is read in a read-only transaction.

The canary is a table ``inj.incidents`` with three rows; after every attempt it must still be there.
"""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.database import DatabaseSource
from usm_geo.errors import StudyError, UsmGeoError
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.database import write_tables
from usm_geo.study import load_study

HOSTILE = 'x"; DROP TABLE inj.incidents; --'


@pytest.fixture
def canary(pg):
    pg.execute("DROP SCHEMA IF EXISTS inj CASCADE")
    pg.execute("CREATE SCHEMA inj; CREATE TABLE inj.incidents (id int); INSERT INTO inj.incidents VALUES (1), (2), (3)")
    yield lambda: pg.execute("SELECT count(*) FROM inj.incidents").fetchone()[0]
    pg.execute("DROP SCHEMA IF EXISTS inj CASCADE")
    pg.execute('DROP SCHEMA IF EXISTS "x""; DROP TABLE inj.incidents; --" CASCADE')


def test_hostile_schema_table_and_column_names_are_only_names(pg_url, pg, canary):
    layer = gpd.GeoDataFrame({HOSTILE: ["a'b", "c;d"]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
                             crs="EPSG:32633")
    assert write_tables(pg_url, HOSTILE, {HOSTILE: layer}) == {HOSTILE: 2}
    assert canary() == 3
    # the names exist exactly as given
    cls = pg.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = %s AND c.relname = %s", (HOSTILE, HOSTILE)).fetchone()
    assert cls is not None
    columns = [r[0] for r in pg.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                                        "AND NOT attisdropped ORDER BY attnum", cls)]
    assert columns == ["fid", HOSTILE, "geom"]
    # reading it back through a study key: quoted parts keep the quote (written "") and the semicolon
    quoted = '"' + HOSTILE.replace('"', '""') + '"'
    raw = read_records(DatabaseSource(pg_url, table=(HOSTILE, HOSTILE)), "t", Ledger())
    assert raw.frame[HOSTILE].tolist() == ["a'b", "c;d"]
    assert raw.rows.tolist() == [1, 2] and raw.crs.to_epsg() == 32633
    assert canary() == 3
    with pytest.raises(UsmGeoError, match="has no geometry column"):
        read_records(DatabaseSource(pg_url, table=(HOSTILE, HOSTILE), geometry=HOSTILE), "t", Ledger())
    assert quoted.count('""') == 1 and canary() == 3


def test_hostile_names_in_the_study_file(pg_url, tmp_path, canary):
    def study(lines: str):
        path = tmp_path / "study.toml"
        path.write_text(f'[inputs.incidents]\nsource = "{pg_url}"\n{lines}\n', encoding="utf-8")
        return path

    with pytest.raises(StudyError, match="is not a table name"):  # an unquoted name with a quote in it
        load_study(study(f"table = '{HOSTILE}'"))
    quoted = '"' + HOSTILE.replace('"', '""') + '"'
    src = load_study(study(f"table = '{quoted}.{quoted}'")).incidents.path
    assert src.table == (HOSTILE, HOSTILE)
    with pytest.raises(UsmGeoError, match="does not exist"):
        read_records(src, "incidents", Ledger())
    assert canary() == 3


@pytest.mark.parametrize("query, message", [
    ("SELECT 1 AS a; DROP TABLE inj.incidents", "cannot read the query"),
    ("DELETE FROM inj.incidents RETURNING *", "cannot read the query"),
    ("WITH gone AS (DELETE FROM inj.incidents RETURNING *) SELECT * FROM gone", "cannot read the query"),
])
def test_a_query_can_only_read(pg_url, canary, query, message):
    with pytest.raises(UsmGeoError, match=message):
        read_records(DatabaseSource(pg_url, query=query, key="inputs.incidents"), "incidents", Ledger())
    assert canary() == 3


def test_a_query_runs_in_a_read_only_transaction(pg_url, pg, canary):
    """Even a function that deletes, called from a plain SELECT, cannot change anything."""
    pg.execute("CREATE FUNCTION inj.wipe() RETURNS bigint LANGUAGE sql AS "
               "'WITH gone AS (DELETE FROM inj.incidents RETURNING 1) SELECT count(*) FROM gone'")
    with pytest.raises(UsmGeoError, match="read-only transaction") as err:
        read_records(DatabaseSource(pg_url, query="SELECT inj.wipe() AS n", key="inputs.incidents"), "incidents", Ledger())
    assert "the query may only read" in err.value.fix
    assert canary() == 3


def test_hostile_schema_on_the_command_line(pg_url, pg, canary, demo):
    run_dir, _ = demo
    result = CliRunner().invoke(main, ["export", str(run_dir), "--to", pg_url, "--schema", HOSTILE, "--profile", "internal",
                                       "--levels", "district", "--periods", "2023"])
    assert result.exit_code == 0, result.output
    assert canary() == 3
    tables = [r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (HOSTILE,))]
    assert tables == ["district", "hotspots_district", "impact_areas"]
