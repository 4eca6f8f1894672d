"""Helpers of the PostGIS tests: loading inputs with tools other than usm_geo (PostgreSQL's
``COPY … FROM`` for CSV files, GDAL's ``ogr2ogr`` for spatial layers) and reading tables back
with GDAL's ``ogrinfo``."""

from __future__ import annotations

import csv
import gzip
import io
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit


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


def load_layer(url: str, source: str, layer: str | None, schema: str, table: str, *options: str) -> None:
    """ogr2ogr a layer into ``schema.table`` (geometry column ``geom``, primary key ``fid``) with
    extra ogr2ogr ``options`` (e.g. ``-a_srs EPSG:4326`` for a "GCS_unknown" WGS 84 shapefile)."""
    args = ["ogr2ogr", "-f", "PostgreSQL", ogr_dsn(url), source] + ([layer] if layer else []) + list(options) + [
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
