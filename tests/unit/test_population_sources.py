"""Population from points and from another geography, through the study file, by hand."""

import textwrap

import geopandas as gpd
import shapely

from usm_geo.pipeline import run_intake, run_population, run_units
from usm_geo.study import load_study

X0, Y0 = 400_000.0, 5_800_000.0


def _study(tmp_path, population_block):
    nb = gpd.GeoDataFrame({"id": ["A", "B"]}, geometry=[shapely.box(X0, Y0, X0 + 1000, Y0 + 1000),
                                                        shapely.box(X0 + 1000, Y0, X0 + 2000, Y0 + 1000)], crs=32633)
    nb.to_file(tmp_path / "nb.gpkg")
    (tmp_path / "inc.csv").write_text("x,y,date\n400500,5800500,2021-01-01\n")
    (tmp_path / "study.toml").write_text(textwrap.dedent(f"""
        [study]
        working_crs = "EPSG:32633"
        [inputs.incidents]
        path = "inc.csv"
        x = "x"
        y = "y"
        crs = "EPSG:32633"
        [[inputs.boundaries]]
        level = "n"
        path = "nb.gpkg"
        id = "id"
        [inputs.population]
        {population_block}
    """))
    intake = run_intake(load_study(tmp_path / "study.toml"))
    return run_population(intake, run_units(intake))


def test_population_points(tmp_path):
    # 3 block centroids: 100 + 50 people in A, 25 in B (given in lon/lat: reprojected)
    pts = gpd.GeoDataFrame({"people": [100, 50, 25]}, geometry=gpd.points_from_xy(
        [X0 + 100, X0 + 900, X0 + 1500], [Y0 + 100, Y0 + 900, Y0 + 500]), crs=32633).to_crs(4326)
    pts.to_file(tmp_path / "blocks.gpkg")
    pop = _study(tmp_path, 'points = "blocks.gpkg"\n        value = "people"')
    assert pop["n"].set_index("unit_id")["population"].to_dict() == {"A": 150.0, "B": 25.0}
    assert pop["city"]["population"].iloc[0] == 175.0


def test_population_from_another_geography(tmp_path):
    # one tract of 400 people covering the right half of A and all of B: A gets 1/3, B 2/3
    tract = gpd.GeoDataFrame({"population": [400]}, geometry=[shapely.box(X0 + 500, Y0, X0 + 2000, Y0 + 1000)], crs=32633)
    tract.to_file(tmp_path / "tracts.gpkg")
    pop = _study(tmp_path, 'areas = "tracts.gpkg"')
    got = pop["n"].set_index("unit_id")["population"]
    assert abs(got["A"] - 400 / 3) < 1e-6 and abs(got["B"] - 800 / 3) < 1e-6
