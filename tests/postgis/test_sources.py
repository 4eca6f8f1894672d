"""Database sources in the study file, the reader's rows and chunks, and the errors a city team meets
(wrong password, server down, no such table, no PostGIS): one message naming the study key and the fix,
never the password."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.database import DatabaseSource, split_table_name
from usm_geo.errors import StudyError, UsmGeoError
from usm_geo import database
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger
from usm_geo.study import load_study

URL = "postgresql://analyst@db.city.example:5432/safety"


def _study(tmp_path, incidents: str):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(f"""
        [inputs.incidents]
        {incidents}
        lon = "lon"
        lat = "lat"
    """), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the study file (no server)


def test_a_database_source_in_the_study(tmp_path):
    src = load_study(_study(tmp_path, f'source = "{URL}"\ntable = "police.incidents_2023"')).incidents.path
    assert isinstance(src, DatabaseSource)
    assert (src.url, src.table, src.query, src.key) == (URL, ("police", "incidents_2023"), None, "inputs.incidents")
    assert str(src) == f"inputs.incidents ({URL}, table police.incidents_2023)"
    q = load_study(_study(tmp_path, f'source = "{URL}"\nquery = "SELECT * FROM x ORDER BY id;"')).incidents.path
    assert q.query == "SELECT * FROM x ORDER BY id;" and q.table is None
    assert load_study(tmp_path / "study.toml").input_paths() == {}


@pytest.mark.parametrize("lines, fragments", [
    ('source = "postgresql://analyst:s3cret@db.city.example/safety"\ntable = "t"',
     ["'inputs.incidents.source': the database URL holds a password", "PGPASSWORD", ".pgpass"]),
    (f'source = "{URL}?sslmode=require&password=s3cret"\ntable = "t"', ["holds a password"]),
    (f'source = "{URL}"', ["'inputs.incidents' needs either table or query"]),
    (f'source = "{URL}"\ntable = "t"\nquery = "SELECT 1"', ["names both table and query"]),
    ('table = "t"', ["'inputs.incidents.table' is set, but there is no source"]),
    (f'source = "{URL}"\ntable = "t"\npath = "x.csv"', ["names both path and source"]),
    (f'source = "{URL}"\ntable = "t"\nformat = "csv"', ["'inputs.incidents.format' does not apply to a database source"]),
    (f'source = "{URL}"\nquery = " ; "', ["'inputs.incidents.query' is empty"]),
    (f'source = "{URL}"\ntable = "a.b.c"', ["'a.b.c' is not a table name"]),
    ('source = "mysql://analyst@db/safety"\ntable = "t"', ["is not a PostgreSQL URL"]),
])
def test_database_source_mistakes(tmp_path, lines, fragments):
    with pytest.raises(StudyError) as err:
        load_study(_study(tmp_path, lines))
    message = str(err.value)
    assert str(tmp_path / "study.toml") in message
    for fragment in fragments:
        assert fragment in message
    assert "s3cret" not in message


def test_names_postgresql_would_cut_are_refused_before_connecting():
    import geopandas as gpd
    import shapely

    from usm_geo.database import write_tables

    layer = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32633")
    nowhere = "postgresql://usm@127.0.0.1:9/none"
    with pytest.raises(UsmGeoError, match="PostgreSQL names hold at most 63"):
        write_tables(nowhere, "s", {"é" * 32: layer})  # 64 bytes
    with pytest.raises(UsmGeoError, match="column name"):
        write_tables(nowhere, "s", {"t": layer.rename(columns={"a": "c" * 64})})
    with pytest.raises(UsmGeoError, match="schema name"):
        write_tables(nowhere, "s" * 64, {"t": layer})


def test_table_names():
    assert split_table_name("wards", "k") == ("wards",)
    assert split_table_name("gis.wards", "k") == ("gis", "wards")
    assert split_table_name('"My Schema"."Wards 2022"', "k") == ("My Schema", "Wards 2022")
    assert split_table_name('"a.b"."say ""hi"""', "k") == ("a.b", 'say "hi"')
    for bad in ("", ".", "a.", "a..b", '"unclosed', "a.b.c", "x" * 64):
        with pytest.raises(UsmGeoError):
            split_table_name(bad, "k")


# --------------------------------------------------------------------------- with the server


def test_rows_come_in_primary_key_order_and_in_chunks(demo_db, monkeypatch):
    """A table is read in primary key order (row i = i-th key); a small block size reads it in many
    chunks with the same result."""
    _, inputs, url = demo_db
    src = DatabaseSource(url, table=("demo_in", "survey"))
    whole = read_records(src, "survey", Ledger())
    monkeypatch.setattr(database, "BLOCK_BYTES", 4096)
    chunks = []
    monkeypatch.setattr(database, "pacsv", _CountingCsv(database.pacsv, chunks))
    chunked = read_records(src, "survey", Ledger())
    assert chunks[0] > 50  # batches
    assert whole.read == chunked.read == 5006
    assert whole.frame.equals(chunked.frame)
    np.testing.assert_array_equal(whole.rows, np.arange(1, 5007))
    # row i of the table is line i + 1 of the CSV it was loaded from
    lines = (inputs / "survey.csv").read_text(encoding="utf-8").splitlines()
    assert whole.frame["seq"].tolist()[:3] == ["1", "2", "3"]
    assert lines[1].startswith(f'"{whole.frame["respondent_id"].iloc[0]}"')
    assert lines[3000].startswith(f'"{whole.frame["respondent_id"].iloc[2999]}"')
    assert whole.frame["design_weight"].iloc[0] == lines[1].split(",")[4].strip('"')


class _CountingCsv:
    """pyarrow.csv with open_csv counting the batches it yields."""

    def __init__(self, module, counter: list):
        self._m, self._counter = module, counter

    def __getattr__(self, name):
        return getattr(self._m, name)

    def open_csv(self, *args, **kwargs):
        assert kwargs["read_options"].block_size == 4096
        batches = list(self._m.open_csv(*args, **kwargs))
        self._counter.append(len(batches))
        return iter(batches)


def test_a_table_without_postgis_reads_like_a_csv(pg_url):
    """Population or survey tables need no PostGIS: usm_plain has none."""
    import psycopg

    plain = pg_url.rsplit("/", 1)[0] + "/usm_plain"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pop; CREATE TABLE pop (nbhd_id text PRIMARY KEY, population bigint, note text)")
        conn.execute("INSERT INTO pop VALUES ('N02', 85818, ''), ('N01', 54382, NULL), ('N03', 7, 'a,\"b\"\nc')")
    raw = read_records(DatabaseSource(plain, table=("pop",)), "population", Ledger())
    assert not raw.spatial and raw.crs is None
    assert raw.frame.to_dict("list") == {"nbhd_id": ["N01", "N02", "N03"], "population": ["54382", "85818", "7"],
                                         "note": ["", "", 'a,"b"\nc']}


def _validate(study) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(study)])
    return result.exit_code, result.output


def test_wrong_password_names_the_key_and_the_fix(demo_db, tmp_path, monkeypatch):
    _, _, url = demo_db
    monkeypatch.setenv("PGPASSWORD", "not-the-password-7731")
    code, output = _validate(_study(tmp_path, f'source = "{url}"\ntable = "demo_in.incidents"'))
    assert code == 2, output
    assert "inputs.incidents (" in output and "password authentication failed" in output
    assert "PGPASSWORD" in output and "not-the-password-7731" not in output and "Traceback" not in output


def test_server_down_and_missing_table(demo_db, tmp_path):
    _, _, url = demo_db
    down = url.replace(url.split("@")[1].split("/")[0], "127.0.0.1:9")  # nothing listens on port 9
    code, output = _validate(_study(tmp_path, f'source = "{down}"\ntable = "demo_in.incidents"'))
    assert code == 2 and "cannot connect to postgresql://usm@127.0.0.1:9/" in output
    assert "check that the server is running" in output
    code, output = _validate(_study(tmp_path, f'source = "{url}"\ntable = "demo_in.no_such_table"'))
    assert code == 2 and "inputs.incidents" in output and "the table demo_in.no_such_table does not exist" in output
    code, output = _validate(_study(tmp_path, f'source = "{url}"\nquery = "SELEC 1"'))
    assert code == 2 and "syntax error" in output and "check the SQL of the query" in output


def test_geometry_column_choice(demo_db):
    _, _, url = demo_db
    two = "SELECT fid, geom, ST_Centroid(geom) AS centre FROM demo_in.districts ORDER BY fid"
    with pytest.raises(UsmGeoError, match=r"has 2 geometry columns \(geom, centre\)") as err:
        read_records(DatabaseSource(url, query=two), "x", Ledger())
    assert 'geometry = "geom"' in err.value.fix
    raw = read_records(DatabaseSource(url, query=two, geometry="centre"), "x", Ledger())
    assert raw.spatial and raw.crs.to_epsg() == 32633 and list(raw.frame.columns) == ["fid", "geom", "geometry"]
    assert raw.frame.geometry.geom_type.unique().tolist() == ["Point"]
    mixed = ("SELECT geom FROM demo_in.districts UNION ALL "
             "SELECT ST_Transform(geom, 4326) FROM demo_in.districts")
    with pytest.raises(UsmGeoError, match="several SRIDs"):
        read_records(DatabaseSource(url, query=mixed), "x", Ledger())


def test_a_missing_column_is_named_as_the_tables(demo_db, tmp_path):
    _, _, url = demo_db
    code, output = _validate(_study(tmp_path, f'source = "{url}"\ntable = "demo_in.incidents"'))
    assert code == 2, output
    assert "the study names column 'lon'" in output and "but the table or query has no such column" in output
    assert "columns in the table or query: " in output and "longitude" in output and "Traceback" not in output
