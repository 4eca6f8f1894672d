"""Exact, fast lon/lat → H3 cell: point-in-hexagon on the icosahedron faces, h3-py at the edges.

Coordinates are longitude/latitude in degrees (EPSG:4326); cells are ``uint64`` H3 indexes, equal
bit for bit to ``h3.latlng_to_cell`` (h3-py, the reference) for every point.

How H3 places a point (H3 v4 ``latLngToCell``): the unit vector ``p`` of the point goes to the
icosahedron face with the nearest centre ``c``; in that face's gnomonic plane (a straight line
there is a great circle) the point has the "hex2d" coordinates
``S_res · tan(r) · (cos θ, sin θ)``, with ``r`` the angle between ``p`` and ``c`` and ``θ`` measured
from the face's i-axis (rotated by ``atan(√3/5)`` at odd, Class III, resolutions); the hexagon of a
regular lattice that holds them gives integer ``(i, j, k)`` coordinates, and the H3 index is a
function of ``(face, i, j, k)`` alone.

This module computes the same face and lattice hexagon in numba, without trigonometry beyond the
point's own sine and cosine: ``tan(r)·cos θ = p·A / p·c`` and ``tan(r)·sin θ = p·B / p·c`` for two
fixed tangent vectors ``A``, ``B`` per face. Because the H3 index depends only on the
``(face, hexagon)`` pair, one h3-py call per distinct pair (on one of its points) gives the cell of
all its points: a lookup table built from the data, ~10k calls for a city at resolution 9.

Exactness. Our arithmetic and H3's differ by rounding (different but equivalent formulas;
H3's ``acos(1 − d²/2)`` loses precision near a face centre). A point is decided here only when it
is clear of every decision line of the lattice quantisation (H3's ``_hex2dToCoordIJK``) and of the
face choice by many times a bound on that difference (:data:`ERROR_FACTOR` × ``S_res`` × machine ε
× (1 + 1/chord to the face centre), × :data:`GAP_FACTOR`); every other point — within micrometres of
a cell edge or vertex, within ~1e-12 of a face boundary, at a face centre — is sent to
``h3.latlng_to_cell`` itself. At resolution 9 that is a few points per million (see
docs/methods.md); the tests compare every point with h3-py, including points 1e-9° to 1e-15° from
cell edges and vertices, near the poles and on the antimeridian.

The icosahedron (face centres, axis directions, the gnomonic unit) is derived from h3-py's own
resolution-0 pentagons (the icosahedron's vertices), so this module carries no table of H3
constants.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from usm_geo.units import jit

__all__ = ["cells_of_points"]

#: Bound on |our hex2d coordinates − H3's| in units of ``S_res · ε · (1 + 1/chord)``: the rounding
#: of both computations is ~20 ε relative plus ~11 ε / chord from H3's ``acos`` near a face centre
#: (ε = 2.2e-16); 64 leaves a margin of 3×.
ERROR_FACTOR = 64.0

#: A point is decided here only when every quantisation test is this many error bounds from its
#: threshold (a shift δ of the hex2d coordinates moves each tested quantity by at most 4.3 δ).
GAP_FACTOR = 8.0

#: Two face centres closer (in squared chord) than this to the point: the face is left to h3-py.
FACE_GAP = 1e-12

# Points with |latitude| ≤ 90 and |longitude| ≤ 180 use the sine/cosine table; others (H3 wraps
# them) go to h3-py.
_TABLE_STEP = 128  # table entries per degree (2**7: the table's angles are exact binary numbers)


@functools.lru_cache(maxsize=None)
def _trig_table() -> np.ndarray:
    """sin/cos of latitudes (rows 0–1) and longitudes (rows 2–3) at multiples of 2**-7 degrees,
    from −90 (−180) upwards, with the same degree → radian product as H3 (``deg * π/180``)."""
    k = np.arange(360 * _TABLE_STEP + 1)
    out = np.zeros((4, k.shape[0]))
    lat = (k[: 180 * _TABLE_STEP + 1] - 90 * _TABLE_STEP) / _TABLE_STEP * 0.017453292519943295
    lng = (k - 180 * _TABLE_STEP) / _TABLE_STEP * 0.017453292519943295
    # math.sin/cos (correctly rounded to within 1 ulp) rather than numpy's SIMD versions
    out[0, : lat.shape[0]] = [math.sin(a) for a in lat.tolist()]
    out[1, : lat.shape[0]] = [math.cos(a) for a in lat.tolist()]
    out[2] = [math.sin(a) for a in lng.tolist()]
    out[3] = [math.cos(a) for a in lng.tolist()]
    return out


@functools.lru_cache(maxsize=None)
def _face_tiles() -> np.ndarray:
    """Nearest icosahedron face of each half-degree lat/lng tile (row: latitude from −90, column:
    longitude from −180; one extra row and column for lat = 90, lng = 180), or -1 where the tile
    may come within 2e-6 rad of a face boundary.

    Rigorous by the triangle inequality: every point of a tile lies within ρ of its centre (ρ: the
    largest distance to a corner, × 1.05), so if at the centre the angle to every other face
    centre exceeds the angle to face f by more than 2ρ + 2e-6 rad, every point of the tile is in
    face f and 2e-6 rad nearer to its centre than to any other (a dot-product lead > 1e-12).
    """
    geo, _ = _faces()
    step = 64 / _TABLE_STEP  # half a degree: 64 table steps, so the tile is (table index) >> 6
    lat0 = np.arange(-90.0, 90.0 + step, step)
    lng0 = np.arange(-180.0, 180.0 + step, step)
    la, lo = np.meshgrid(lat0, lng0, indexing="ij")
    top = np.minimum(la + step, 90.0)
    centre = _unit(np.minimum((la + top) / 2, 90.0), lo + step / 2)
    rho = np.zeros(la.shape)
    for clat, clng in ((la, lo), (la, lo + step), (top, lo), (top, lo + step)):
        corner = _unit(clat, clng)
        rho = np.maximum(rho, np.arccos(np.clip((corner * centre).sum(0), -1.0, 1.0)))
    rho = rho * 1.05 + 1e-9
    angles = np.arccos(np.clip(np.tensordot(geo[:, :3], centre, axes=(1, 0)), -1.0, 1.0))  # (20, ...)
    order = np.sort(angles, axis=0)
    best = np.argmin(angles, axis=0).astype(np.int8)
    clear = order[1] - order[0] > 2 * rho + 2e-6
    return np.where(clear, best, np.int8(-1)).astype(np.int8)


# ----------------------------------------------------------------------------- the icosahedron
def _unit(lat_deg, lng_deg):
    lat = np.radians(lat_deg)
    lng = np.radians(lng_deg)
    return np.array([np.cos(lng) * np.cos(lat), np.sin(lng) * np.cos(lat), np.sin(lat)])


@functools.lru_cache(maxsize=None)
def _faces() -> tuple[np.ndarray, float]:
    """Face centres and the gnomonic unit of H3's icosahedron, from h3-py's 12 resolution-0
    pentagons (the vertices): a (20, 4) array of centre (x, y, z) and azimuth of the i-axis, and
    ``2 / tan R`` (R: the angle from a face centre to its vertices; a vertex is 2 hex units from
    the centre at resolution 0)."""
    import h3

    verts = np.array([_unit(*h3.cell_to_latlng(c)) for c in sorted(h3.get_pentagons(0))])
    dots = verts @ verts.T
    faces = []
    for a in range(12):  # three mutually adjacent vertices (63.4° apart, cos 0.447) form a face
        for b in range(a + 1, 12):
            for c in range(b + 1, 12):
                if dots[a, b] > 0.4 and dots[a, c] > 0.4 and dots[b, c] > 0.4:
                    faces.append((a, b, c))
    if len(faces) != 20:
        raise RuntimeError(f"h3 resolution-0 pentagons gave {len(faces)} icosahedron faces, not 20")
    out = np.empty((20, 4))
    tan_r = []
    for f, (a, b, c) in enumerate(faces):
        centre = verts[a] + verts[b] + verts[c]
        centre /= np.linalg.norm(centre)
        north = np.array([0.0, 0.0, 1.0]) - centre[2] * centre  # as H3's _vec3TangentBasis
        north /= np.linalg.norm(north)
        east = np.cross(north, centre)
        proj = verts[a] - (verts[a] @ centre) * centre
        proj /= np.linalg.norm(proj)
        # azimuth (clockwise from north) from the centre to a vertex: H3's faceAxesAzRadsCII up to
        # a multiple of 120°, under which the hexagonal lattice is unchanged
        out[f, :3] = centre
        out[f, 3] = math.atan2(proj @ east, proj @ north)
        tan_r.append(math.sqrt(max(0.0, 1.0 - (verts[a] @ centre) ** 2)) / (verts[a] @ centre))
    return out, 2.0 / float(np.mean(tan_r))


@functools.lru_cache(maxsize=None)
def _frame(res: int) -> tuple[np.ndarray, float]:
    """Per face: centre ``c`` and the tangent vectors ``A``, ``B`` with
    ``tan r · cos θ = p·A / p·c``, ``tan r · sin θ = p·B / p·c`` (θ from the i-axis, counter-
    clockwise, Class III rotation included), as a (20, 9) array; and the scale ``S_res``."""
    geo, unit = _faces()
    frame = np.empty((20, 9))
    for f in range(20):
        centre = geo[f, :3]
        north = np.array([0.0, 0.0, 1.0]) - centre[2] * centre
        north /= np.linalg.norm(north)
        east = np.cross(north, centre)
        phi = geo[f, 3] - (math.atan2(math.sqrt(3.0), 5.0) if res % 2 else 0.0)
        frame[f, :3] = centre
        frame[f, 3:6] = math.cos(phi) * north + math.sin(phi) * east
        frame[f, 6:9] = math.sin(phi) * north - math.cos(phi) * east
    return frame, unit * math.sqrt(7.0) ** res


# ----------------------------------------------------------------------------- numba kernels
@jit.njit(cache=True, nogil=True, inline="always")
def _point_key(lat_deg, lng_deg, frame, scale, trig, face_tiles):
    """(face, i, j) of the point's hexagon packed into an int64, or -1 when the point is too close
    to a decision line for our rounding to be sure to agree with H3's."""
    # sin/cos from a table at multiples of 2**-7 degrees and the angle-sum formula, with Taylor
    # series for the small remainder (|d| < 1.4e-4 rad: the dropped terms are < 1e-30): faster
    # than four libm calls and as accurate (a few ulp). lat − table angle is exact (Sterbenz).
    ta = math.floor(lat_deg * 128.0)
    tb = math.floor(lng_deg * 128.0)
    if not (-11520.0 <= ta <= 11520.0 and -23040.0 <= tb <= 23040.0):
        return np.int64(-1)  # |lat| > 90 or |lng| > 180 (H3 wraps them): h3-py decides
    ia = int(ta) + 11520
    ib = int(tb) + 23040
    da = (lat_deg - ta * 0.0078125) * 0.017453292519943295
    db = (lng_deg - tb * 0.0078125) * 0.017453292519943295
    da2 = da * da
    db2 = db * db
    sda = da * (1.0 - da2 * (1.0 / 6.0 - da2 * (1.0 / 120.0)))
    cda = 1.0 - da2 * (0.5 - da2 * (1.0 / 24.0 - da2 * (1.0 / 720.0)))
    sdb = db * (1.0 - db2 * (1.0 / 6.0 - db2 * (1.0 / 120.0)))
    cdb = 1.0 - db2 * (0.5 - db2 * (1.0 / 24.0 - db2 * (1.0 / 720.0)))
    cl = trig[1, ia] * cda - trig[0, ia] * sda  # cos(lat)
    px = (trig[3, ib] * cdb - trig[2, ib] * sdb) * cl
    py = (trig[2, ib] * cdb + trig[3, ib] * sdb) * cl
    pz = trig[0, ia] * cda + trig[1, ia] * sda  # sin(lat)
    # Nearest face centre: known for most of the globe from a half-degree tile table (tiles wholly
    # in one face, 2e-6 rad clear of the others); near face edges, all 20 centres.
    best = face_tiles[ia >> 6, ib >> 6]
    if best >= 0:
        d1 = px * frame[best, 0] + py * frame[best, 1] + pz * frame[best, 2]
    else:
        d1 = -2.0
        d2 = -2.0
        for f in range(20):
            d = px * frame[f, 0] + py * frame[f, 1] + pz * frame[f, 2]
            if d > d1:
                d2 = d1
                d1 = d
                best = f
            elif d > d2:
                d2 = d
        # squared chords to the two nearest centres differ by 2 (d1 − d2)
        if 2.0 * (d1 - d2) <= FACE_GAP:
            return np.int64(-1)
    sqd = (px - frame[best, 0]) ** 2 + (py - frame[best, 1]) ** 2 + (pz - frame[best, 2]) ** 2
    inv = scale / d1
    x = (px * frame[best, 3] + py * frame[best, 4] + pz * frame[best, 5]) * inv
    y = (px * frame[best, 6] + py * frame[best, 7] + pz * frame[best, 8]) * inv
    # H3's _hex2dToCoordIJK, with how close each of its tests comes to its threshold
    a1 = abs(x)
    a2 = abs(y)
    x2 = a2 * 1.1547005383792515
    x1 = a1 + x2 / 2.0
    if not (x1 < 1e8 and x2 < 1e8):
        return np.int64(-1)
    m1 = int(x1)
    m2 = int(x2)
    r1 = x1 - m1
    r2 = x2 - m2
    gap = min(a1, a2, r1, 1.0 - r1, r2, 1.0 - r2, abs(r1 - 1.0 / 3.0), abs(r1 - 0.5),
              abs(r1 - 2.0 / 3.0), abs(r2 - (1.0 + r1) / 2.0), abs(r2 - (1.0 - r1)), abs(r2 - 2.0 * r1),
              abs(r2 - r1 / 2.0), abs(r2 - (2.0 * r1 - 1.0)))
    # decided only if gap > GAP_FACTOR · ERROR_FACTOR · S · ε · (1 + 1/chord), chord = sqrt(sqd):
    # (gap − K) · chord > K, squared to avoid the root
    k = GAP_FACTOR * ERROR_FACTOR * 2.220446049250313e-16 * scale
    over = gap - k
    if not (over > 0.0 and over * over * sqd > k * k):
        return np.int64(-1)
    # the branches of _hex2dToCoordIJK as arithmetic (its outcomes are unpredictable for a CPU)
    lt_half = r1 < 0.5
    lt_third = r1 < 1.0 / 3.0
    lt_two_thirds = r1 < 2.0 / 3.0
    up_a = np.int64(r2 >= (1.0 + r1) / 2.0)
    up_bc = np.int64(r2 >= (1.0 - r1))
    up_d = np.int64(r2 >= r1 / 2.0)
    in_b = np.int64((1.0 - r1) <= r2 and r2 < (2.0 * r1))
    in_c = np.int64((2.0 * r1 - 1.0) < r2 and r2 < (1.0 - r1))
    if lt_half:
        di = 0 if lt_third else in_b
        dj = up_a if lt_third else up_bc
    else:
        di = (1 - in_c) if lt_two_thirds else 1
        dj = up_bc if lt_two_thirds else up_d
    i = m1 + di
    j = m2 + dj
    # the folds across the axes; with j ≥ 0 both of H3's cases for x < 0 give i = j − i, and
    # (2j + 1) / 2 = j for y < 0
    if x < 0.0:
        i = j - i
    if y < 0.0:
        i = i - j
        j = -j
    return (np.int64(best) << 56) | (np.int64(i + 134217728) << 28) | np.int64(j + 134217728)


@jit.njit(cache=True, nogil=True)
def _hash_slot(key, shift):
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(shift))


@jit.njit(cache=True, nogil=True)
def _index(lat, lng, frame, scale, trig, face_tiles, slots):
    """Key every point; ``slots[p]`` = position of its key among the distinct keys (first-seen
    order), or -1 where h3-py must decide. Returns (distinct keys, first point of each)."""
    n = lat.shape[0]
    bits = 12
    cap = 1 << bits
    table = np.full(cap, -1, np.int64)  # slot number per hash bucket
    keys = np.empty(cap // 2, np.int64)
    first = np.empty(cap // 2, np.int64)
    n_keys = 0
    last_key = np.int64(-2)
    last_slot = np.int64(-1)
    for p in range(n):
        key = _point_key(lat[p], lng[p], frame, scale, trig, face_tiles)
        if key < 0:
            slots[p] = -1
            continue
        if key == last_key:  # neighbouring records often share a cell
            slots[p] = last_slot
            continue
        h = _hash_slot(key, 64 - bits)
        while True:
            s = table[h]
            if s < 0:
                if n_keys == cap // 2:  # grow: double the table and rehash
                    bits += 1
                    cap = 1 << bits
                    table = np.full(cap, -1, np.int64)
                    keys2 = np.empty(cap // 2, np.int64)
                    first2 = np.empty(cap // 2, np.int64)
                    keys2[:n_keys] = keys[:n_keys]
                    first2[:n_keys] = first[:n_keys]
                    keys = keys2
                    first = first2
                    for t in range(n_keys):
                        g = _hash_slot(keys[t], 64 - bits)
                        while table[g] >= 0:
                            g = (g + 1) & (cap - 1)
                        table[g] = t
                    h = _hash_slot(key, 64 - bits)
                    continue
                table[h] = n_keys
                keys[n_keys] = key
                first[n_keys] = p
                s = n_keys
                n_keys += 1
                break
            if keys[s] == key:
                break
            h = (h + 1) & (cap - 1)
        slots[p] = s
        last_key = key
        last_slot = s
    return keys[:n_keys].copy(), first[:n_keys].copy()


# ----------------------------------------------------------------------------- driver
def _h3_loop(lat, lng, res) -> np.ndarray:
    """The reference: h3-py's ``latlng_to_cell`` for each point (used for the few undecided ones)."""
    from h3.api import basic_int

    f = basic_int.latlng_to_cell
    return np.fromiter((f(a, b, res) for a, b in zip(lat.tolist(), lng.tolist())), dtype=np.uint64,
                       count=lat.shape[0])


def cells_of_points(lat: np.ndarray, lng: np.ndarray, res: int, *, threads: int = 1,
                    chunk: int = 1_000_000) -> np.ndarray:
    """H3 cell (``uint64``) of each point, equal to ``h3.latlng_to_cell`` for every point.

    Parameters
    ----------
    lat, lng : 1-d contiguous float64 arrays
        Degrees (EPSG:4326), finite (the caller checks).
    res : int
        H3 resolution 0–15 (checked by the caller).
    threads : int
        Chunks of ``chunk`` points run in this many threads (the kernel releases the GIL); the
        result does not depend on it.
    chunk : int
        Points per kernel call.

    Returns
    -------
    numpy.ndarray of uint64, one cell per point.
    """
    frame, scale = _frame(int(res))
    trig = _trig_table()
    tiles = _face_tiles()
    n = lat.shape[0]
    slots = np.empty(n, np.int64)
    bounds = [(s, min(n, s + chunk)) for s in range(0, n, chunk)] or [(0, 0)]

    def run(b):
        start, stop = b
        return _index(lat[start:stop], lng[start:stop], frame, scale, trig, tiles, slots[start:stop])

    if threads > 1 and len(bounds) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(run, bounds))
    else:
        parts = [run(b) for b in bounds]
    # one h3-py call per distinct (face, hexagon): on the first point that has it
    all_keys = np.concatenate([k for k, _ in parts])
    all_first = np.concatenate([f + b[0] for (_, f), b in zip(parts, bounds)])
    keys, where = np.unique(all_keys, return_index=True)
    key_cells = _h3_loop(lat[all_first[where]], lng[all_first[where]], res)
    cells = np.empty(n, np.uint64)
    undecided = []
    for (k, _), (start, stop) in zip(parts, bounds):
        part_slots = slots[start:stop]
        local = key_cells[np.searchsorted(keys, k)]  # this chunk's slot → cell
        ok = part_slots >= 0
        cells[start:stop] = local[np.where(ok, part_slots, 0)] if len(local) else 0
        undecided.append(np.flatnonzero(~ok) + start)
    undecided = np.concatenate(undecided) if undecided else np.empty(0, np.int64)
    if len(undecided):
        cells[undecided] = _h3_loop(lat[undecided], lng[undecided], res)
    return cells
