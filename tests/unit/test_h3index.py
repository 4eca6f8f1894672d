"""The exact fast H3 path (usm_geo.units.h3index) against h3-py, point by point.

Reference: ``h3.latlng_to_cell`` (h3-py 4.5, H3 C library 4.5) called on every point. The points
are chosen where a fast path is most likely to go wrong: within 1e-9° down to 1e-15° of cell
edges and vertices (on the great-circle edge between two boundary vertices, then nudged), at the
equator, mid-latitudes, near ±80° and the poles, across the antimeridian, near icosahedron face
centres (where H3's own ``acos`` loses precision) and at any place on Earth.
"""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from usm_geo.units import h3index
from usm_geo.units.h3cells import points_to_cells


def h3_loop(lat, lng, res) -> np.ndarray:
    f = h3.api.basic_int.latlng_to_cell
    return np.fromiter((f(a, b, res) for a, b in zip(lat.tolist(), lng.tolist())), np.uint64, len(lat))


def _unit(lat, lng):
    lat, lng = np.radians(lat), np.radians(lng)
    return np.stack([np.cos(lng) * np.cos(lat), np.sin(lng) * np.cos(lat), np.sin(lat)], axis=-1)


def _latlng(v):
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1))), np.degrees(np.arctan2(v[..., 1], v[..., 0]))


def near_edges(centres, res, n_per_cell, rng):
    """Points on the edges (great-circle arcs between boundary vertices) and at the vertices of the
    cells holding ``centres``, each moved by 0, 1e-15 … 1e-9 degrees in a random direction."""
    lats, lngs = [], []
    for lat0, lng0 in centres:
        cell = h3.latlng_to_cell(lat0, lng0, res)
        # the cell and its ring: edges shared by neighbours, vertices shared by three
        for c in h3.grid_disk(cell, 1):
            b = np.array(h3.cell_to_boundary(c))
            v = _unit(b[:, 0], b[:, 1])
            k = len(v)
            edge = rng.integers(0, k, n_per_cell)
            t = rng.uniform(0, 1, n_per_cell)
            t[: n_per_cell // 5] = 0.0  # at a vertex
            p = v[edge] * (1 - t)[:, None] + v[(edge + 1) % k] * t[:, None]
            lat, lng = _latlng(p)
            step = rng.choice([0.0, 1e-15, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9], n_per_cell)
            ang = rng.uniform(0, 2 * np.pi, n_per_cell)
            lats.append(lat + step * np.sin(ang))
            lngs.append(lng + step * np.cos(ang))
    lat = np.concatenate(lats)
    lng = np.concatenate(lngs)
    lng = np.where(lng > 180, lng - 360, np.where(lng < -180, lng + 360, lng))
    return np.clip(lat, -90, 90), lng


PLACES = [(0.0, 0.0), (41.88, -87.63), (52.52, 13.40), (-33.87, 151.21), (79.9, 10.0), (-79.9, -60.0),
          (80.0, 179.9999), (-12.0, -179.99999), (0.0, 180.0), (89.99, 45.0), (-89.99, 0.0),
          # near icosahedron face centres (lat/lng of faces 0, 7, 13 centres in degrees)
          (46.0416, 71.5267), (24.4867, -108.2246), (-34.7176, -10.7527)]


@pytest.fixture(scope="module")
def hard_points():
    """≥ 1 M points: 600 k within 1e-9° of an edge or vertex at 14 places, 400 k anywhere."""
    rng = np.random.default_rng(22)
    lat, lng = near_edges(PLACES, 9, 6_000, rng)  # 14 places × 7 cells × 6,000
    n = 1_000_000 - lat.shape[0]
    glat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    glng = rng.uniform(-180, 180, n)
    return np.concatenate([lat, glat]), np.concatenate([lng, glng])


def test_million_points_equal_h3_bit_for_bit(hard_points):
    lat, lng = hard_points
    assert lat.shape[0] >= 1_000_000
    got = points_to_cells(lng, lat, 9)
    want = h3_loop(lat, lng, 9)
    np.testing.assert_array_equal(got, want)
    # the near-edge points really straddle edges: they fall in many distinct cells per place
    assert len(np.unique(want[:588_000])) > 14 * 7


@pytest.mark.parametrize("res", [0, 1, 4, 7, 10, 12, 15])
def test_edges_at_other_resolutions(res):
    rng = np.random.default_rng(res)
    lat, lng = near_edges(PLACES, res, 400, rng)
    np.testing.assert_array_equal(points_to_cells(lng, lat, res), h3_loop(lat, lng, res))


def test_counts_equal_pandas_groupby_of_h3(hard_points):
    lat, lng = hard_points
    lat, lng = lat[:600_000], lng[:600_000]
    got = pd.Series(points_to_cells(lng, lat, 9)).value_counts().sort_index()
    ids = [h3.latlng_to_cell(a, b, 9) for a, b in zip(lat.tolist(), lng.tolist())]
    want = pd.DataFrame({"cell": ids}).groupby("cell").size()
    want.index = [h3.str_to_int(c) for c in want.index]
    want = want.sort_index()
    np.testing.assert_array_equal(got.index.to_numpy(np.uint64), want.index.to_numpy(np.uint64))
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())


def test_undecided_points_are_few_and_near_edges(hard_points):
    """The fast path decides all but points within micrometres of an edge (and near face
    boundaries/centres): in a random city-sized sample none or almost none go to h3-py."""
    frame, scale = h3index._frame(9)
    rng = np.random.default_rng(5)
    lat = rng.uniform(41.6, 42.1, 1_000_000)
    lng = rng.uniform(-87.95, -87.5, 1_000_000)
    slots = np.empty(lat.shape[0], np.int64)
    h3index._index(lat, lng, frame, scale, h3index._trig_table(), h3index._face_tiles(), slots)
    assert (slots < 0).sum() <= 20
    # ... while points 1e-12° from an edge mostly go there
    lat_e, lng_e = near_edges([(41.88, -87.63)], 9, 2_000, rng)
    slots = np.empty(lat_e.shape[0], np.int64)
    h3index._index(lat_e, lng_e, frame, scale, h3index._trig_table(), h3index._face_tiles(), slots)
    assert (slots < 0).mean() > 0.5


def test_icosahedron_from_h3_pentagons():
    """The face centres derived from h3-py's pentagons are H3's: h3.get_icosahedron_faces of the
    resolution-0 cell at each centre is one face, a different one for each, and the gnomonic unit is
    H3's INV_RES0_U_GNOMONIC (2.61803398874989588842, constants.h) to 1e-15."""
    geo, unit = h3index._faces()
    lat, lng = _latlng(geo[:, :3])
    faces = [h3.get_icosahedron_faces(h3.latlng_to_cell(a, b, 0)) for a, b in zip(lat, lng)]
    assert all(len(f) == 1 for f in faces) and len({f[0] for f in faces}) == 20
    assert abs(unit - 2.61803398874989588842) < 1e-15 * unit


def test_face_tiles_agree_with_nearest_centre():
    tiles = h3index._face_tiles()
    geo, _ = h3index._faces()
    rng = np.random.default_rng(3)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 200_000)))
    lng = rng.uniform(-180, 180, 200_000)
    t = tiles[(np.floor(lat * 128).astype(int) + 11520) >> 6, (np.floor(lng * 128).astype(int) + 23040) >> 6]
    nearest = np.argmax(_unit(lat, lng) @ geo[:, :3].T, axis=1)
    known = t >= 0
    assert known.mean() > 0.9
    np.testing.assert_array_equal(t[known], nearest[known])
