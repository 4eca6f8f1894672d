"""Write every Demo City input file, ``study.toml`` and ``planted_truths.json`` into one folder.

Files (all in EPSG:32633 metres unless noted; same seed, byte-identical files):

- ``demo_city.gpkg``: layers ``neighbourhoods`` and ``districts``;
- ``population.tif``: persons per 100 m cell; ``population.csv``: ``nbhd_id,population``;
- ``incidents.csv``: incidents with lon/lat in EPSG:4326 and naive local times, a few bad rows;
- ``intervention.gpkg``: layer ``treated`` (``name``, ``geometry``);
- ``survey.csv``: two survey waves, a few bad rows;
- ``study.toml``: the study that reads them; ``planted_truths.json``: what was planted.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np

from usm_geo.demo.city import CRS, DEMO_SEED, build_boundaries
from usm_geo.io import write_csv, write_layers, write_text
from usm_geo.demo.incidents import (
    BUFFER, INTERVENTION_NAME, INTERVENTION_START, generate_incidents, treated_neighbourhoods,
)
from usm_geo.demo.population import CELL, build_population, population_table, write_population_raster
from usm_geo.demo.survey import HARASSMENT_ANSWERS, SAFE_ANSWERS, generate_survey

TIMEZONE = "Europe/Berlin"
FILES = ("demo_city.gpkg", "population.tif", "population.csv", "incidents.csv", "intervention.gpkg",
         "survey.csv", "study.toml", "planted_truths.json")


def _toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def study_toml(seed: int) -> str:
    """Return the text of the Demo City ``study.toml`` (paths relative to the study file)."""
    return f"""[study]
name = "Demo City"
timezone = "{TIMEZONE}"
working_crs = "{CRS}"
seed = {int(seed)}

[inputs.incidents]
path = "incidents.csv"
lon = "longitude"
lat = "latitude"
datetime = "occurred_at"
category = "category"
id = "incident_id"
duplicates = "keep"

[inputs.survey]
path = "survey.csv"
unit = "nbhd_id"
unit_level = "neighbourhood"
weight = "design_weight"
date = "interview_date"
id = "respondent_id"
strata = "district_id"

[inputs.survey.questions.safe_after_dark]
column = "q_safe_after_dark"
answers = {_toml_list(SAFE_ANSWERS)}

[inputs.survey.questions.harassment]
column = "q_harassment_12m"
answers = {_toml_list(HARASSMENT_ANSWERS)}

[[inputs.boundaries]]
level = "neighbourhood"
path = "demo_city.gpkg"
layer = "neighbourhoods"
id = "nbhd_id"
name = "name"
parent = "district_id"

[[inputs.boundaries]]
level = "district"
path = "demo_city.gpkg"
layer = "districts"
id = "district_id"
name = "name"

[inputs.population]
path = "population.csv"
level = "neighbourhood"
id = "nbhd_id"
column = "population"
raster = "population.tif"

[units]
h3_resolution = [9]

[periods]
frequency = "year"
start = "2019-01-01"
end = "2023-12-31"
baseline = "2019"
current = "2023"

[intervention]
name = {json.dumps(INTERVENTION_NAME, ensure_ascii=False)}
path = "intervention.gpkg"
layer = "treated"
start = "{INTERVENTION_START.astype('datetime64[D]')}"
buffer = {int(BUFFER)}

[indicators.targets.violent_crime_rate]
year = 2030
change = -0.5

[outputs]
profile = "internal"
suppression_threshold = 5
"""


def _round_floats(value, digits: int = 6):
    """Round every float in a nested structure, so the JSON carries no noise digits."""
    if isinstance(value, dict):
        return {str(k): _round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round_floats(v, digits) for v in value]
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _boundary_truths(nbhd: gpd.GeoDataFrame, districts: gpd.GeoDataFrame) -> dict:
    return {
        "n_neighbourhoods": len(nbhd),
        "n_districts": len(districts),
        "city_area_m2": round(float(nbhd.area.sum()), 1),
        "bounds": [round(float(v), 2) for v in nbhd.total_bounds],
        "district_of_nbhd": dict(zip(nbhd["nbhd_id"], nbhd["district_id"])),
    }


def generate_demo_inputs(folder: Path, seed: int = DEMO_SEED) -> Path:
    """Write the Demo City inputs for ``seed`` into ``folder`` (created if needed).

    Returns the path of ``study.toml``. Takes a few seconds; the same seed always gives
    byte-identical files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    nbhd, districts = build_boundaries(seed)
    write_layers(folder / "demo_city.gpkg", {"neighbourhoods": nbhd, "districts": districts})

    grid = build_population(nbhd, seed)
    pop = population_table(nbhd, grid)
    write_population_raster(folder / "population.tif", grid, seed)
    write_csv(folder / "population.csv", pop)
    residents = pop["population"].to_numpy()

    incidents = generate_incidents(nbhd, grid, residents, seed)
    write_csv(folder / "incidents.csv", incidents.table)
    treated = gpd.GeoDataFrame({"name": [INTERVENTION_NAME]}, geometry=[incidents.treated], crs=CRS)
    write_layers(folder / "intervention.gpkg", {"treated": treated})

    survey = generate_survey(nbhd, residents, incidents.rates,
                             treated_neighbourhoods(nbhd, incidents.treated), seed)
    write_csv(folder / "survey.csv", survey.table)

    study = folder / "study.toml"
    write_text(study, study_toml(seed))

    inc = dict(incidents.truths)
    bad_incidents = inc.pop("bad_records_incidents")
    surv = dict(survey.truths)
    bad_survey = surv.pop("bad_records_survey")
    truths = {
        "seed": int(seed),
        "crs": CRS,
        "timezone": TIMEZONE,
        "files": list(FILES),
        "boundaries": _boundary_truths(nbhd, districts),
        "population": {
            "total": round(grid.total, 1),
            "total_table": int(residents.sum()),
            "cell_m": CELL,
            "centres": grid.centres,
            "by_nbhd": dict(zip(pop["nbhd_id"], (int(v) for v in residents))),
        },
        "incidents": inc.pop("incidents"),
        "intervention": inc.pop("intervention"),
        "survey": surv,
        "bad_records": {"incidents": bad_incidents, "survey": bad_survey},
    }
    text = json.dumps(_round_floats(truths), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    write_text(folder / "planted_truths.json", text)
    return study
