"""A study that reads its inputs from PostGIS gives the file-based run's results.

Reference: the shared Demo City run (`usm-geo demo`, every input read from files). The database
holds the same inputs, loaded by PostgreSQL's COPY and GDAL's ogr2ogr (tests/postgis/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from usm_geo.cli import main
from usm_geo.io import read_table
from usm_geo.pipeline import run_intake, run_measures, run_units
from usm_geo.study import load_study

INCIDENTS_QUERY = "SELECT incident_id, occurred_at, category, longitude, latitude FROM demo_in.incidents ORDER BY seq"


def db_study(inputs: Path, url: str, folder: Path, *, incidents: str | None = None, districts: str | None = None) -> Path:
    """The demo's study.toml with incidents, survey, both boundary levels and the population table
    read from the database (the raster and the intervention stay files)."""
    text = (inputs / "study.toml").read_text(encoding="utf-8")
    swaps = {
        'path = "incidents.csv"\nlon = "longitude"\nlat = "latitude"':
            incidents or f'source = "{url}"\nquery = "{INCIDENTS_QUERY}"\nlon = "longitude"\nlat = "latitude"',
        'path = "survey.csv"': f'source = "{url}"\ntable = "demo_in.survey"',
        'path = "demo_city.gpkg"\nlayer = "neighbourhoods"': f'source = "{url}"\ntable = "demo_in.neighbourhoods"',
        'path = "demo_city.gpkg"\nlayer = "districts"': districts or f'source = "{url}"\ntable = "demo_in.districts"',
        'path = "population.csv"': f'source = "{url}"\ntable = "demo_in.population"',
        '"population.tif"': json.dumps(str(inputs / "population.tif")),
        '"intervention.gpkg"': json.dumps(str(inputs / "intervention.gpkg")),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = folder / "study_db.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_database_source_is_not_counted_on_dask(demo_db, tmp_path):
    run_dir, inputs, url = demo_db
    study = db_study(inputs, url, tmp_path)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"), "--scheduler", "threads",
                                       "--quiet"])
    assert result.exit_code == 2, result.output
    assert "a database source is read in memory" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_database_study_gives_the_file_runs_measures_and_ledger(demo_db, tmp_path):
    run_dir, inputs, url = demo_db
    study = db_study(inputs, url, tmp_path)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    # every measure, indicator and ledger entry equal, byte for byte: rows of a table or query are
    # numbered like the file's rows (the query orders by the load order, the survey table by its key)
    for name in ("measures.csv", "indicators.csv", "ledger.csv", "crosswalk.csv", "map.html"):
        assert (out / name).read_bytes() == (run_dir / name).read_bytes(), name
    info = json.loads((out / "run.json").read_text())
    assert info["sources"] == json.loads((run_dir / "run.json").read_text())["sources"]
    assert info["sources"]["incidents"] == {"read": 198246, "used": 198238, "dropped": 8}
    assert info["inputs"]["incidents"] == {"database": url, "query": INCIDENTS_QUERY}
    assert info["inputs"]["boundaries.neighbourhood"] == {"database": url, "table": "demo_in.neighbourhoods"}
    assert "sha256" in info["inputs"]["population.raster"]  # files keep their hashes
    assert "password" not in (out / "run.json").read_text().lower()


def test_point_geometry_and_crs_come_from_the_database(demo_db, tmp_path):
    """Incidents as PostGIS points (SRID 4326, picked by name among two geometry columns) and the
    districts served in EPSG:4326 by a query: the CRS comes from the SRIDs, the districts are
    reprojected to the working CRS (ledger note), and every count equals the file run's."""
    run_dir, inputs, url = demo_db
    point = ("CASE WHEN longitude ~ '^-?[0-9.]+$' AND latitude ~ '^-?[0-9.]+$' "
             "THEN ST_SetSRID(ST_MakePoint(longitude::float8, latitude::float8), 4326) END")
    incidents = (f'source = "{url}"\ngeometry = "geom"\n'
                 f'query = "SELECT incident_id, occurred_at, category, {point} AS geom, '
                 f'ST_Transform({point}, 3857) AS geom_web FROM demo_in.incidents ORDER BY seq"')
    districts = (f'source = "{url}"\nquery = "SELECT district_id, name, ST_Transform(geom, 4326) AS geom '
                 f'FROM demo_in.districts ORDER BY fid"')
    study = load_study(db_study(inputs, url, tmp_path, incidents=incidents, districts=districts))
    intake = run_intake(study)
    ledger = intake.ledger.to_frame()
    notes = ledger[(ledger["source"] == "boundaries.district") & (ledger["reason"] == "reprojected")]
    assert notes["detail"].tolist() == ["from EPSG:4326 to EPSG:32633"]
    assert not ((ledger["source"] == "boundaries.neighbourhood") & (ledger["reason"] == "reprojected")).any()
    # the same records are dropped as from the CSV's lon/lat columns (empty coordinates: no geometry)
    file_ledger = read_table(run_dir / "ledger.csv")
    def dropped(frame):
        rows = frame[(frame["source"] == "incidents") & (frame["status"] == "dropped")]
        return sorted(zip(rows["row"], rows["reason"].replace("missing_coordinates", "missing_geometry")))

    assert dropped(ledger) == dropped(file_ledger)
    assert len(dropped(ledger)) == 8

    measures = run_measures(intake, run_units(intake))
    counts = measures[measures["measure"] == "count"]
    ref = read_table(run_dir / "measures.csv")
    ref = ref[ref["measure"] == "count"]
    key = ["level", "unit_id", "period", "category"]
    got = counts.set_index(key)["numerator"].sort_index()
    want = ref.set_index(key)["numerator"].sort_index()
    assert got.index.tolist() == want.index.tolist()  # same keys (text dtypes differ: CSV read back as objects)
    np.testing.assert_array_equal(got.to_numpy(float), want.to_numpy(float))
    assert got.loc[("city", "city", slice(None), "all")].sum() == 198238  # every record used
