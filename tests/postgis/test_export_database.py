"""`usm-geo export RUN --to postgresql://… --schema S`: one table per level plus hot spots and impact
areas, opened by GDAL's ogrinfo/ogr2ogr (an independent reader), in one transaction.

References: the run folder's own areas.gpkg (internal profile, written by `run`) and a file export
of the same run with the public profile (`export_run`): the database tables must hold the same
rows, columns and values.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from click.testing import CliRunner

from pg_helpers import ogr_dsn, ogr_summary
from usm_geo import database
from usm_geo.export import postgis as postgis_export
from usm_geo.cli import main
from usm_geo.errors import UsmGeoError
from usm_geo.export import export_run

LEVELS = ("h3_9", "neighbourhood", "district", "city")
EXTRA = ("hotspots_h3_9", "hotspots_neighbourhood", "hotspots_district", "impact_areas")


def _export(run_dir, url, schema, *args) -> str:
    result = CliRunner().invoke(main, ["export", str(run_dir), "--to", url, "--schema", schema, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def internal(pg_url, demo):
    run_dir, _ = demo
    output = _export(run_dir, pg_url, "usm_internal", "--profile", "internal")
    return run_dir, pg_url, output


def _db_layer(url: str, schema: str, table: str, tmp_path) -> pd.DataFrame:
    """The table as GDAL reads it (ogr2ogr to a GeoPackage, then pyogrio)."""
    out = tmp_path / f"{table}.gpkg"
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), ogr_dsn(url), f"{schema}.{table}", "-nln", table],
                   check=True, capture_output=True)
    return pyogrio.read_dataframe(out, fid_as_index=True)


def _assert_same_layer(db: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(db.index) == list(range(1, len(ref) + 1))  # fid = 1…n in the file layer's order
    assert [c for c in db.columns if c != "geometry"] == [c for c in ref.columns if c != "geometry"]
    for col in ref.columns:
        if col == "geometry":
            continue
        got, want = db[col].reset_index(drop=True), ref[col].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(want):
            np.testing.assert_array_equal(got.to_numpy(float), want.to_numpy(float), err_msg=col)
        else:
            assert got.fillna("").astype(str).tolist() == want.fillna("").astype(str).tolist(), col
    assert shapely.equals(db.geometry.to_numpy(), ref.geometry.to_numpy()).all()


def test_tables_open_in_ogrinfo_with_crs_counts_and_values(internal, tmp_path):
    run_dir, url, output = internal
    ref = {name: pyogrio.read_dataframe(run_dir / "areas.gpkg", layer=name) for name, _ in pyogrio.list_layers(run_dir / "areas.gpkg")}
    assert set(ref) == set(LEVELS + EXTRA)
    for name in LEVELS + EXTRA:
        summary = ogr_summary(url, f"usm_internal.{name}")
        assert summary["count"] == len(ref[name]), name
        assert summary["epsg"] == 32633, name
        assert summary["geometry"] == "Multi Polygon", name
        assert f"  {name}: {len(ref[name]):,} rows" in output
    assert ogr_summary(url, "usm_internal.neighbourhood")["count"] == 60 * 5  # 60 units × 5 years
    for name in ("neighbourhood", "hotspots_h3_9", "impact_areas"):
        _assert_same_layer(_db_layer(url, "usm_internal", name, tmp_path), ref[name])


def test_primary_key_spatial_index_and_comments(internal, pg):
    rows = pg.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'usm_internal'").fetchall()
    for name in LEVELS + EXTRA:
        defs = [d for t, d in rows if t == name]
        assert any("UNIQUE" in d and "(fid)" in d for d in defs), name
        assert any("USING gist (geom)" in d for d in defs), name
    primary = pg.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid = 'usm_internal.district'::regclass").fetchone()
    assert primary == (1,)

    def comment(table, column):
        return pg.execute("SELECT col_description(%s::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = %s::regclass "
                          "AND attname = %s))", (table, table, column)).fetchone()[0]

    # the shapefile export's field dictionary (fields.csv), as comments
    assert comment("usm_internal.district", "unit_id") == "unit id (text)"
    assert comment("usm_internal.district", "incident_rate_lower").startswith("lower bound of the 95 % interval: ")
    assert comment("usm_internal.district", "incident_rate").endswith("(per 1,000 residents)")
    assert comment("usm_internal.hotspots_district", "gistar_bin").startswith("hot (+) / cold (-) spot class")
    assert comment("usm_internal.impact_areas", "area_km2") == "area of the polygon (km²)"
    assert comment("usm_internal.district", "geom") == "unit geometry (SRID 32633)"
    note = pg.execute("SELECT obj_description('usm_internal.district'::regclass)").fetchone()[0]
    assert note.startswith("Demo City: district; usm_geo export, internal profile")


def test_public_profile_is_the_file_exports(pg_url, demo, tmp_path):
    """The public tables equal the public file export's layers: same suppressed values, hot spots
    without counts, impact areas without before/after."""
    run_dir, _ = demo
    output = _export(run_dir, pg_url, "usm_public", "--levels", "neighbourhood,district")
    assert output.startswith("public export")
    export_run(run_dir, tmp_path / "files", formats=("gpkg",), levels=["neighbourhood", "district"], profile="public")
    gpkg = tmp_path / "files" / "areas.gpkg"
    names = [n for n, _ in pyogrio.list_layers(gpkg)]
    assert names == ["neighbourhood", "district", "hotspots_neighbourhood", "hotspots_district", "impact_areas"]
    for name in names:
        ref = pyogrio.read_dataframe(gpkg, layer=name)
        db = _db_layer(pg_url, "usm_public", name, tmp_path)
        _assert_same_layer(db, ref)
    hot = _db_layer(pg_url, "usm_public", "hotspots_district", tmp_path)
    assert "count" not in hot.columns and "gistar_z" in hot.columns
    assert {"before", "after"}.isdisjoint(_db_layer(pg_url, "usm_public", "impact_areas", tmp_path).columns)
    flags = _db_layer(pg_url, "usm_public", "neighbourhood", tmp_path)["homicide_rate_flags"]
    assert flags.str.contains("suppressed").any()  # small counts really were suppressed


def _snapshot(pg, schema: str) -> dict:
    """md5 of every table's rows (in fid order) in ``schema``."""
    tables = [r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,))]
    return {t: pg.execute(f'SELECT count(*), md5(string_agg(x::text, \'|\' ORDER BY fid)) FROM "{schema}"."{t}" x').fetchone()
            for t in tables}


def test_a_failure_midway_leaves_every_previous_table_as_it_was(internal, pg, monkeypatch):
    run_dir, url, _ = internal
    before = _snapshot(pg, "usm_internal")
    assert before["h3_9"][0] == 6753 * 5 and before["neighbourhood"][0] == 300
    real, calls = database.write_table, []

    def failing(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise RuntimeError("the disk is full")  # after two tables were replaced in the transaction
        return real(*args, **kwargs)

    monkeypatch.setattr(database, "write_table", failing)
    with pytest.raises(RuntimeError, match="disk is full"):
        postgis_export.export_run_to_database(run_dir, url, "usm_internal", profile="internal", periods=["2023"])
    assert calls == ["h3_9", "neighbourhood", "district"]
    assert _snapshot(pg, "usm_internal") == before  # h3_9 and neighbourhood too: rolled back


def test_a_server_error_midway_changes_nothing_and_says_why(internal, pg):
    """A view on one table makes its DROP fail on the server: an error naming the fix, exit 2."""
    run_dir, url, _ = internal
    before = _snapshot(pg, "usm_internal")
    pg.execute("CREATE VIEW usm_internal.district_view AS SELECT unit_id FROM usm_internal.district")
    try:
        result = CliRunner().invoke(main, ["export", str(run_dir), "--to", url, "--schema", "usm_internal",
                                           "--profile", "internal", "--periods", "2023"])
    finally:
        pg.execute("DROP VIEW usm_internal.district_view")
    assert result.exit_code == 2, result.output
    assert "cannot write usm_internal.district; no table was changed" in result.output
    assert "views" in result.output and "Traceback" not in result.output
    assert _snapshot(pg, "usm_internal") == before


def test_export_refuses_a_password_in_the_url_and_mixed_options(demo):
    run_dir, _ = demo
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(run_dir), "--to", "postgresql://usm:hunter2@127.0.0.1:1/db", "--schema", "s"])
    assert result.exit_code == 2 and "holds a password" in result.output and "hunter2" not in result.output
    result = runner.invoke(main, ["export", str(run_dir), "--to", "postgresql://usm@127.0.0.1:1/db"])
    assert result.exit_code == 2 and "--to needs --schema" in result.output
    result = runner.invoke(main, ["export", str(run_dir), "--to", "postgresql://usm@127.0.0.1:1/db", "--schema", "s",
                                  "--format", "shp"])
    assert result.exit_code == 2 and "--format applies to files" in result.output


def test_export_to_a_database_without_postgis_is_refused(pg_url):
    plain = pg_url.rsplit("/", 1)[0] + "/usm_plain"
    with pytest.raises(UsmGeoError, match="has no PostGIS extension") as err:
        database.write_tables(plain, "s", {})
    assert "CREATE EXTENSION postgis" in err.value.fix
