"""A run's published tables written into PostgreSQL/PostGIS (``usm-geo export RUN --to URL --schema S``).

The tables are the file export's GeoPackage layers, built by the same code after the same profile
(:func:`usm_geo.export.read_run`, :func:`usm_geo.export.extra_layers`): one table per
level (the wide indicator table with the unit polygons), ``hotspots_<level>`` and
``impact_areas``. Each table has a primary key ``fid`` (1…n in the layer's sorted order), its
geometry in ``geom`` (polygons as MultiPolygon, with the layer's EPSG code as SRID) with a GiST
index, and a comment on every column from the field dictionary the shapefile export uses. The SQL
is :func:`usm_geo.database.write_tables`'s; this module chooses the tables and their comments.

Every table is written in ONE transaction: either all of them are replaced, or — when anything
fails midway — none is, and the previous tables stay as they were. Names (schema, tables,
columns) reach the server only as quoted identifiers.
"""

from __future__ import annotations

import time

from usm_geo.database import check_identifier, checked_url, write_tables
from usm_geo.disclosure.area_tables import read_run
from usm_geo.disclosure.profiles import SUPPRESSION_RULE
from usm_geo.export.fields import field_dictionary, indicator_definitions
from usm_geo.export.run_export import extra_layers

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
    rows = write_tables(url, schema, layers, column_comments(layers, definitions), notes=notes)
    return {"tables": rows, "schema": schema, "profile": tables.profile, "k": tables.k,
            "seconds": round(time.perf_counter() - t0, 2)}


def column_comments(layers: dict, definitions: dict | None) -> dict[str, str]:
    """Column name → comment text for the tables ``layers``: the field dictionary's description
    with its unit, as in fields.csv."""
    columns = list(dict.fromkeys(str(c) for frame in layers.values() for c in frame.columns))
    return {r.name: r.description + (f" ({r.unit})" if r.unit else "")
            for r in field_dictionary(columns, definitions or {}).itertuples()}
