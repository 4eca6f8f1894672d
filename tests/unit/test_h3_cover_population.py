"""H3 that adds up: clipped cover (default), population disaggregated to cells, boundary snap.

Every expectation comes from an independent computation in the test: h3-py's latlng_to_cell and a
pandas groupby for counts, geopandas.overlay for the area shares, geopandas.sjoin_nearest for snaps.
"""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS

from usm_geo import pipeline
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import Context, _snap_points
from usm_geo.population import disaggregate
from usm_geo.units.hierarchy import h3_units

UTM = CRS.from_epsg(32633)


@pytest.fixture(scope="module")
def demo_stages(tmp_path_factory):
    """The Demo City's intake, units and population stages (no outputs written)."""
    from usm_geo.demo.inputs import generate_demo_inputs
    from usm_geo.study import load_study

    study = load_study(generate_demo_inputs(tmp_path_factory.mktemp("demo")))
    intake = pipeline.run_intake(study)
    located = pipeline.run_units(intake)
    return intake, located, pipeline.run_population(intake, located)


def test_demo_population_adds_up_at_every_level(demo_stages):
    intake, located, pop = demo_stages
    table = pd.read_csv(intake.study.population.path)
    total = float(table[intake.study.population.column].sum())  # independent: the table itself
    assert total == 1_177_998
    for level in ("h3_9", "neighbourhood", "district", "city"):
        # float sums of ~7k shares: exact to 1e-6 persons per million
        assert abs(pop[level]["population"].sum() - total) <= 1e-6 * total, level
    assert pop["h3_9"].attrs["method"] == "disaggregated_raster"
    assert pipeline.population_methods(pop) == {"neighbourhood": "table", "district": "rolled_up:neighbourhood",
                                                "city": "rolled_up:neighbourhood",
                                                "h3_9": "disaggregated_raster"}


def test_demo_counts_add_up_and_match_h3py(demo_stages):
    intake, located, _ = demo_stages
    inc = intake.incidents
    loc = located.incidents
    assert loc["h3_9"].notna().all()  # every used point is in exactly one cell of the cover
    expected = pd.Series([h3.latlng_to_cell(la, lo, 9) for lo, la in zip(inc["lon"][:3000], inc["lat"][:3000])])
    assert (loc["h3_9"][:3000].to_numpy() == expected.to_numpy()).all()
    per = pd.DataFrame({"cell": loc["h3_9"], "nb": loc["neighbourhood"], "p": inc["occurred_at"].dt.year,
                        "c": inc["category"]})
    by_h3 = per.groupby(["p", "c"]).cell.count()
    by_nb = per.dropna(subset=["nb"]).groupby(["p", "c"]).nb.count()
    pd.testing.assert_series_equal(by_h3, by_nb, check_names=False)
    assert by_h3.sum() == len(inc)


def test_demo_clipped_cells_tile_the_study_area(demo_stages):
    intake, located, _ = demo_stages
    cells = located.units.levels["h3_9"]
    area = intake.study_area
    # independent: geopandas.clip of the unclipped hexagons
    full = h3_units(9, area, located.units.crs, cover="touch")
    clipped = gpd.clip(full, area)
    clipped = clipped[clipped.area > 0].sort_values("unit_id")
    assert list(cells.unit_id) == list(clipped.unit_id)
    assert np.allclose(cells.area.to_numpy(), clipped.area.to_numpy(), rtol=1e-9, atol=1e-6)
    assert abs(cells.area.sum() - area.area) <= 1e-6 * area.area  # no gap, no overlap
    edge = cells["flags"] == "edge_cell"
    assert edge.sum() == (~shapely.contains_properly(area, full.set_index("unit_id").loc[cells.unit_id].geometry.to_numpy())).sum()
    cw = located.units.crosswalk
    city = cw[(cw.level == "h3_9") & (cw.to_level == "city")]
    assert np.allclose(city.overlap_share, 1.0, atol=1e-6)


def _grid(n=4, size=1000.0):
    """n×n square units of ``size`` metres near lon 15°, lat 52° (UTM 33N)."""
    x0, y0 = 500_000.0, 5_760_000.0
    boxes = [shapely.box(x0 + i * size, y0 + j * size, x0 + (i + 1) * size, y0 + (j + 1) * size)
             for i in range(n) for j in range(n)]
    return gpd.GeoDataFrame({"unit_id": [f"u{k:02d}" for k in range(n * n)]}, geometry=boxes, crs=UTM)


def test_disaggregate_by_area_matches_overlay():
    units = _grid()
    area = shapely.union_all(units.geometry.to_numpy())
    cells = h3_units(8, area, UTM, cover="clip")
    pop = pd.DataFrame({"unit_id": units.unit_id, "population": np.arange(1, 17) * 100.0})
    got = disaggregate(pop, units, cells).set_index("unit_id")["population"]
    # independent: overlay pieces, share of each unit's area
    pieces = gpd.overlay(cells[["unit_id", "geometry"]].rename(columns={"unit_id": "cell"}), units, how="intersection")
    pieces["a"] = pieces.area
    pieces = pieces.merge(pop, on="unit_id")
    pieces["p"] = pieces.population * pieces.a / pieces.groupby("unit_id").a.transform("sum")
    want = pieces.groupby("cell").p.sum().reindex(got.index, fill_value=0.0)
    assert np.allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-9)
    assert abs(got.sum() - pop.population.sum()) <= 1e-9 * pop.population.sum()


def test_snap_moves_only_points_within_tolerance():
    units = _grid(2)
    from usm_geo.units.assign import PolygonIndex

    geoms = units.geometry.to_numpy()
    ctx = Context(working_crs=UTM, study_area=shapely.union_all(geoms), study_index=PolygonIndex.build(geoms),
                  snap=5.0, snap_geoms=geoms)
    x0, y0 = 500_000.0, 5_760_000.0
    # 0.1 m left, 4.9 m below, 7 m right, 3 m diagonally off the top-right corner (4.24 m), 5.1 m above
    x = np.array([x0 - 0.1, x0 + 300, x0 + 2007, x0 + 2003, x0 + 1500])
    y = np.array([y0 + 250, y0 - 4.9, y0 + 1500, y0 + 2003, y0 + 2005.1])
    outside = np.ones(5, dtype=bool)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=UTM)
    want = gpd.sjoin_nearest(pts, units, max_distance=5.0, distance_col="d")  # independent
    xs, ys = x.copy(), y.copy()
    moved, dist = _snap_points(ctx, xs, ys, outside)
    assert list(np.flatnonzero(moved)) == list(want.index)
    assert np.allclose(dist[moved], want.d.to_numpy())
    landed = ctx.study_index.assign(xs[moved], ys[moved])
    assert list(units.unit_id.to_numpy()[landed]) == list(want.unit_id)
    assert (xs[~moved] == x[~moved]).all()
    assert np.allclose(np.hypot(xs - x, ys - y)[moved], want.d.to_numpy() + 0.001, atol=1e-6)


def test_snap_key_in_study(tmp_path):
    from usm_geo.errors import StudyError
    from usm_geo.study import load_study

    pts = tmp_path / "i.csv"
    pts.write_text("lon,lat,date\n15,52,2024-01-01\n")
    base = f'[study]\nname = "x"\ntimezone = "UTC"\n[inputs.incidents]\npath = "{pts}"\n[units]\nh3_resolution = [9]\n'
    (tmp_path / "a.toml").write_text(base)
    assert load_study(tmp_path / "a.toml").units.h3_cover == "clip"
    assert load_study(tmp_path / "a.toml").units.snap == 0.0
    (tmp_path / "b.toml").write_text(base + "snap = 5\n")
    assert load_study(tmp_path / "b.toml").units.snap == 5.0
    (tmp_path / "c.toml").write_text(base + "snap = -1\n")
    with pytest.raises(StudyError, match="units.snap"):
        load_study(tmp_path / "c.toml")
