"""Chicago: the 148,636 aggravated assaults assigned to the 77 community areas point by point with
PolygonIndex, against geopandas.sjoin(within) (GEOS) as the independent reference, by the numpy
route and by the numba kernel on 1 and 2 threads (identical bit for bit)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from shared_data import CHICAGO_AREAS, CHICAGO_ASSAULTS, need_shared
from usm_geo.units.assign import PolygonIndex


@pytest.fixture(scope="module")
def chicago():
    raw = pd.read_csv(need_shared(*CHICAGO_ASSAULTS), usecols=["longitude", "latitude"])
    areas = gpd.read_file(f"zip://{need_shared(*CHICAGO_AREAS)}!Chicago_2020.shp").to_crs(32616)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs=4326).to_crs(32616)
    return pts, areas


def test_every_point_matches_sjoin_and_threads_agree(chicago):
    pts, areas = chicago
    assert len(pts) == 148_636 and len(areas) == 77
    x, y = pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy()
    idx = PolygonIndex.build(areas.geometry.to_numpy(), engine="numba")
    # the numpy route (index and labels) and the numba kernel on 1 and 2 threads: identical
    by_numpy = PolygonIndex.build(areas.geometry.to_numpy(), engine="numpy")
    assert by_numpy._cell_label.tobytes() == idx._cell_label.tobytes()
    assert by_numpy._block.tobytes() == idx._block.tobytes()
    one = idx.assign(x, y, threads=1, engine="numba")
    two = idx.assign(x, y, threads=2, parallel=True, engine="numba")
    assert one.tobytes() == two.tobytes()
    assert by_numpy.assign(x, y, engine="numpy").tobytes() == one.tobytes()

    joined = gpd.sjoin(pts, areas[["geometry"]], predicate="within", how="inner")
    assert not joined.index.duplicated().any()  # community areas do not overlap
    ref = np.full(len(pts), -1, dtype=np.int64)
    ref[joined.index.to_numpy()] = joined["index_right"].to_numpy()
    differ = np.flatnonzero(one != ref)
    # Where the two differ the point must be on (within 1e-6 m of) a boundary, where "within"
    # gives no area and the half-open rule gives exactly one, or outside the city for both.
    near = shapely.dwithin(shapely.union_all(shapely.boundary(areas.geometry.to_numpy())),
                           shapely.points(x[differ], y[differ]), 1e-6)
    assert near.all(), f"{(~near).sum()} points differ off a boundary"
    assert (ref[differ] == -1).all()  # sjoin never assigns a point we put elsewhere
    # Most points are strictly inside an area, so the comparison is not vacuous.
    assert (ref >= 0).sum() > 148_000
    assert len(differ) < 500
