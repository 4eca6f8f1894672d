"""Spatial weights: who is whose neighbour, as a binary sparse matrix.

A :class:`Weights` holds a scipy CSR **binary** adjacency matrix ``A`` (``A[i, j] = 1`` when unit
``j`` is a neighbour of unit ``i``; no self-loops), the unit ids in matrix order, the kind of
neighbourhood and a ``report`` of every value that was chosen automatically (threshold, number of
neighbours, islands, …), in the spirit of sfhotspot's messages. The statistics in
:mod:`usm_geo.hotspots.local` and :mod:`usm_geo.hotspots.global_stats` take a ``Weights`` (or a
bare sparse matrix) and apply the transformation they need themselves: binary ("B") or
row-standardised ("R", :func:`row_standardise`); Gi* adds the unit itself (diagonal = 1).

Builders (all vectorised, no Python loop over units):

* :func:`queen`, :func:`rook` — polygon contiguity, the same definition as libpysal's
  ``Queen``/``Rook`` (and GeoDa, spdep ``poly2nb``): queen = the two polygons share at least one
  boundary *vertex* (identical coordinates); rook = they share at least one boundary *edge*
  (the same pair of consecutive vertices). ``method="geometry"`` instead uses an STRtree and
  shapely predicates (queen: the polygons intersect, i.e. share any boundary point; rook: their
  boundaries share a stretch of positive length), which also links polygons whose shared border
  is digitised with different vertices.
* :func:`distance_band` — all pairs within a distance (scipy ``cKDTree``); the default threshold
  is the smallest that gives every unit at least one neighbour (the largest nearest-neighbour
  distance), and it is reported.
* :func:`knn` — the ``k`` nearest neighbours (not symmetric).
* :func:`h3_rings` — H3 cells within ``k`` grid steps (``h3ronpy.grid_disk``), restricted to the
  cells given.

Units with no neighbour ("islands") are listed in ``report["islands"]``; they never raise. The
statistics give them a NaN z and an ``island`` flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from usm_geo.units import jit

__all__ = [
    "Weights",
    "distance_band",
    "from_sparse",
    "h3_rings",
    "knn",
    "queen",
    "rook",
    "row_standardise",
    "with_self",
]


@dataclass
class Weights:
    """Binary spatial weights.

    Attributes
    ----------
    sparse : scipy.sparse.csr_array
        ``n × n`` binary adjacency (float64 ones), no self-loops, sorted indices. Row ``i`` lists
        the neighbours of unit ``i``. Symmetric for contiguity, distance band and H3 rings; not
        for k nearest neighbours.
    ids : numpy.ndarray
        Unit ids in matrix order (length ``n``).
    kind : str
        ``"queen"``, ``"rook"``, ``"distance_band"``, ``"knn"``, ``"h3_rings"`` or ``"custom"``.
    report : dict
        Every value chosen automatically, plus a summary: ``n``, ``links`` (non-zero entries),
        ``neighbours_min/mean/max`` and ``islands`` (ids of units without a neighbour).
    """

    sparse: sp.csr_array
    ids: np.ndarray
    kind: str = "custom"
    report: dict = field(default_factory=dict)

    def __post_init__(self):
        matrix = _clean_binary(self.sparse)
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or ids.shape[0] != matrix.shape[0]:
            raise ValueError(f"ids must have one entry per row of the matrix ({matrix.shape[0]}), got shape {ids.shape}")
        self.sparse = matrix
        self.ids = ids
        summary = _summary(matrix, ids)
        self.report = {**summary, **self.report, "islands": summary["islands"]}

    @property
    def n(self) -> int:
        """Number of units."""
        return self.sparse.shape[0]

    @property
    def cardinalities(self) -> np.ndarray:
        """Number of neighbours of each unit (int64)."""
        return np.diff(self.sparse.indptr).astype(np.int64)

    @property
    def islands(self) -> np.ndarray:
        """Positions (not ids) of the units without a neighbour."""
        return np.flatnonzero(self.cardinalities == 0)

    def row_standardised(self) -> sp.csr_array:
        """The adjacency with every row divided by its sum (islands stay all-zero rows)."""
        return row_standardise(self.sparse)


# ----------------------------------------------------------------------------- helpers
def _clean_binary(matrix) -> sp.csr_array:
    """CSR float64 with ones where ``matrix`` is non-zero, the diagonal removed."""
    matrix = sp.csr_array(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"weights must be a square matrix, got shape {matrix.shape}")
    if matrix.has_canonical_format and matrix.dtype == np.float64 and (matrix.data == 1.0).all():
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        if not (matrix.indices == rows).any():
            return matrix  # already binary, sorted, no duplicates, no diagonal
    coo = matrix.tocoo()
    keep = (coo.row != coo.col) & (coo.data != 0)
    n = matrix.shape[0]
    out = sp.csr_array((np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=(n, n))
    out.sum_duplicates()
    out.data[:] = 1.0
    out.sort_indices()
    return out


def _summary(matrix: sp.csr_array, ids: np.ndarray) -> dict:
    card = np.diff(matrix.indptr)
    n = matrix.shape[0]
    return {
        "n": int(n),
        "links": int(matrix.nnz),
        "neighbours_min": int(card.min()) if n else 0,
        "neighbours_mean": float(card.mean()) if n else 0.0,
        "neighbours_max": int(card.max()) if n else 0,
        "islands": [_plain(v) for v in ids[card == 0]],
    }


def _plain(value):
    """A numpy scalar as the Python scalar (so that reports serialise to JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _from_pairs(i: np.ndarray, j: np.ndarray, n: int) -> sp.csr_array:
    keep = i != j
    return _clean_binary(sp.coo_array((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n)))


def row_standardise(matrix) -> sp.csr_array:
    """Divide each row of a sparse matrix by its sum (``w_ij / Σ_j w_ij``; "R" / spdep style "W").

    Rows that sum to zero (islands) stay zero. The diagonal is kept as it is: to row-standardise
    Gi* weights, add the self-weight first (:func:`with_self`).
    """
    matrix = sp.csr_array(matrix, dtype=np.float64, copy=True)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums != 0)
    matrix.data *= np.repeat(scale, np.diff(matrix.indptr))
    return matrix


def with_self(matrix, value: float = 1.0) -> sp.csr_array:
    """``matrix`` with its diagonal set to ``value`` (Gi*: the unit counts as its own neighbour)."""
    matrix = sp.csr_array(matrix, dtype=np.float64)
    n = matrix.shape[0]
    coo = matrix.tocoo()
    off = coo.row != coo.col
    rows = np.concatenate([coo.row[off], np.arange(n)])
    cols = np.concatenate([coo.col[off], np.arange(n)])
    data = np.concatenate([coo.data[off], np.full(n, float(value))])
    out = sp.csr_array((data, (rows, cols)), shape=(n, n))
    out.sort_indices()
    return out


def _ids_of(frame, ids, n: int) -> np.ndarray:
    if ids is None:
        if isinstance(frame, pd.DataFrame) and "unit_id" in frame.columns:
            return np.asarray(frame["unit_id"])
        if isinstance(frame, (pd.DataFrame, pd.Series)):
            return np.asarray(frame.index)
        return np.arange(n)
    if isinstance(ids, str):
        return np.asarray(frame[ids])
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise ValueError(f"ids must have one entry per unit ({n}), got shape {ids.shape}")
    return ids


def from_sparse(matrix, ids=None, kind: str = "custom", **report) -> Weights:
    """Weights from any square sparse (or dense) matrix: non-zero entries become neighbours
    (binary), the diagonal is dropped. ``ids`` default to ``0 … n−1``."""
    matrix = sp.csr_array(matrix)
    n = matrix.shape[0]
    return Weights(matrix, np.arange(n) if ids is None else np.asarray(ids), kind, dict(report))


# ----------------------------------------------------------------------------- contiguity
def _geometries(gdf) -> np.ndarray:
    import shapely

    if hasattr(gdf, "geometry"):
        geoms = np.asarray(gdf.geometry.values, dtype=object)
    else:
        geoms = np.asarray(gdf, dtype=object)
    geoms = geoms.reshape(-1)
    types = shapely.get_type_id(geoms)  # -1 for None
    empty = shapely.is_empty(geoms) | (types < 0)
    bad = ~empty & ~np.isin(types, (3, 6))  # Polygon, MultiPolygon
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise TypeError(
            f"contiguity needs polygons; unit at position {first} is a {shapely.get_type_id(geoms[first])!r} "
            f"({geoms[first].geom_type})"
        )
    return geoms


def _pairs_sharing(keys: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b), a ≠ b, of owners that share a key (a vertex or an edge)."""
    table = pd.DataFrame({"key": keys, "owner": owner}).drop_duplicates()
    shared = table[table.duplicated("key", keep=False)]  # keys held by ≥ 2 polygons
    pairs = shared.merge(shared, on="key", suffixes=("_a", "_b"))
    pairs = pairs[pairs.owner_a != pairs.owner_b]
    return pairs.owner_a.to_numpy(), pairs.owner_b.to_numpy()


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """An integer key per distinct row of a float array (exact equality; -0.0 == 0.0)."""
    if rows.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    rows = np.ascontiguousarray(rows + 0.0)  # folds -0.0 into 0.0
    _, inverse = np.unique(rows, axis=0, return_inverse=True)
    return inverse.reshape(-1)


def _contiguity(gdf, ids, rook: bool, method: str) -> Weights:
    import shapely

    geoms = _geometries(gdf)
    n = geoms.shape[0]
    ids = _ids_of(gdf, ids, n)
    present = np.flatnonzero(~shapely.is_empty(geoms) & (shapely.get_type_id(geoms) >= 0))
    if method == "vertex":
        if rook:
            lines, line_owner = shapely.get_parts(shapely.boundary(geoms[present]), return_index=True)
            line_owner = present[line_owner]
            coords, line = shapely.get_coordinates(lines, return_index=True)
            same = line[:-1] == line[1:]  # consecutive vertices of the same ring = an edge
            a, b = coords[:-1][same], coords[1:][same]
            swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
            lo = np.where(swap[:, None], b, a)
            hi = np.where(swap[:, None], a, b)
            keys = _row_keys(np.hstack([lo, hi]))
            owner = line_owner[line[:-1][same]]
        else:
            coords, owner = shapely.get_coordinates(geoms, return_index=True)
            keys = _row_keys(coords)
        i, j = _pairs_sharing(keys, owner)
    elif method == "geometry":
        tree = shapely.STRtree(geoms[present])
        qi, qj = tree.query(geoms[present], predicate="intersects")
        keep = qi != qj
        qi, qj = qi[keep], qj[keep]
        if rook:
            bounds = shapely.boundary(geoms[present])
            shared = shapely.intersection(bounds[qi], bounds[qj])
            keep = shapely.length(shared) > 0
            qi, qj = qi[keep], qj[keep]
        i, j = present[qi], present[qj]
    else:
        raise ValueError(f"method must be 'vertex' or 'geometry', got {method!r}")
    matrix = _from_pairs(np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64), n)
    matrix = ((matrix + matrix.T) > 0).astype(np.float64)  # symmetric by definition
    kind = "rook" if rook else "queen"
    return Weights(matrix, ids, kind, {"kind": kind, "method": method})


def queen(gdf, ids=None, method: str = "vertex") -> Weights:
    """Queen contiguity: polygons that share at least one boundary vertex are neighbours.

    Parameters
    ----------
    gdf : GeoDataFrame, GeoSeries or array of shapely (Multi)Polygons
        Empty or missing geometries become islands. No CRS is needed (nothing is measured).
    ids : str, array-like, optional
        A column name, or one id per unit. Default: the ``unit_id`` column if there is one,
        else the index.
    method : {"vertex", "geometry"}
        ``"vertex"`` (default): shared vertex with identical coordinates, exactly libpysal's
        ``Queen`` (and GeoDa's, spdep ``poly2nb(queen=TRUE)`` with ``snap`` ≈ 0).
        ``"geometry"``: any shared boundary point (STRtree + ``intersects``), which also links
        polygons whose common border has different vertices.
    """
    return _contiguity(gdf, ids, rook=False, method=method)


def rook(gdf, ids=None, method: str = "vertex") -> Weights:
    """Rook contiguity: polygons that share at least one boundary edge are neighbours.

    ``method="vertex"`` (default): the same pair of consecutive vertices, as libpysal's ``Rook``;
    ``"geometry"``: boundaries whose intersection has positive length (STRtree). See :func:`queen`.
    """
    return _contiguity(gdf, ids, rook=True, method=method)


# ----------------------------------------------------------------------------- points
def _xy(x, y) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite (drop or ledger unusable coordinates first)")
    return np.column_stack([x, y])


def _distance(pts: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.sqrt(((pts[i] - pts[j]) ** 2).sum(axis=1))


def distance_band(x, y, threshold: float | None = None, ids=None) -> Weights:
    """Distance-band weights: ``j`` is a neighbour of ``i`` when ``0 < d_ij ≤ threshold``
    (Euclidean, in the units of ``x, y``: metres of the working CRS), or ``d_ij = 0`` for
    distinct units at the same place.

    ``threshold=None`` chooses the smallest threshold that gives every unit at least one
    neighbour: the largest nearest-neighbour distance (``report["threshold"]``,
    ``report["threshold_chosen"] = True``). With an explicit threshold, units farther than it from
    everyone are islands (``report["islands"]``).
    """
    from scipy.spatial import cKDTree

    pts = _xy(x, y)
    n = pts.shape[0]
    ids = np.arange(n) if ids is None else np.asarray(ids)
    tree = cKDTree(pts)
    chosen = threshold is None
    if chosen:
        if n < 2:
            threshold = 0.0
        else:
            _, nearest = tree.query(pts, k=2)
            threshold = float(_distance(pts, np.arange(n), nearest[:, 1]).max())
    threshold = float(threshold)
    if not threshold >= 0:
        raise ValueError(f"threshold must be a distance ≥ 0, got {threshold!r}")
    # The tree's own arithmetic may differ in the last bit from ours: search a hair wider, then
    # keep exactly the pairs with d ≤ threshold as computed by _distance (the same formula as the
    # chosen threshold, so that every unit keeps its nearest neighbour).
    pairs = tree.query_pairs(threshold * (1 + 1e-9) + 1e-300, output_type="ndarray").astype(np.int64)
    if len(pairs):
        pairs = pairs[_distance(pts, pairs[:, 0], pairs[:, 1]) <= threshold]
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    matrix = _from_pairs(i, j, n)
    return Weights(matrix, ids, "distance_band",
                   {"kind": "distance_band", "threshold": threshold, "threshold_chosen": chosen})


def knn(x, y, k: int, ids=None) -> Weights:
    """The ``k`` nearest other units of each unit (scipy ``cKDTree``; ties broken by the tree).
    Not symmetric: ``j`` may be among ``i``'s nearest without the converse."""
    from scipy.spatial import cKDTree

    pts = _xy(x, y)
    n = pts.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n - 1:
        raise ValueError(f"k={k} needs at least {k + 1} units, got {n}")
    ids = np.arange(n) if ids is None else np.asarray(ids)
    _, idx = cKDTree(pts).query(pts, k=k + 1)
    idx = idx.reshape(n, k + 1)
    own = np.arange(n)[:, None]
    is_self = idx == own
    # Drop the unit itself; if it is not among the k+1 (exact duplicates), drop the farthest.
    no_self = ~is_self.any(axis=1)
    is_self[no_self, k] = True
    nbrs = idx[~is_self].reshape(n, k)
    matrix = _from_pairs(np.repeat(np.arange(n), k), nbrs.reshape(-1).astype(np.int64), n)
    return Weights(matrix, ids, "knn", {"kind": "knn", "k": int(k)})


def h3_rings(cells, k: int = 1, ids=None) -> Weights:
    """H3 cells within ``k`` grid steps of each other (``grid_disk``), among the ``cells`` given.

    Parameters
    ----------
    cells : array-like of uint64 H3 indexes or hexadecimal strings
        Distinct cells (any resolution, usually one). Neighbours outside this set are ignored
        (their number is ``report["outside_links"]``), so cells at the edge of a study area have
        fewer neighbours.
    k : int
        Grid distance (1 = the 6 touching hexagons).
    ids : array-like, optional
        Default: ``cells`` as given.

    Uses ``h3ronpy.grid_disk`` (Rust, one call for every cell), a ``searchsorted`` lookup of the
    disk cells among ``cells`` and a CSR built directly: the fast route of PERF-BASELINES §4.
    """
    import h3ronpy
    import pyarrow as pa

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    raw = np.asarray(cells).reshape(-1)
    if raw.dtype.kind in ("U", "S", "O"):
        h64 = np.asarray(h3ronpy.cells_parse(pa.array(raw.astype(str))), dtype=np.uint64) if len(raw) else np.empty(0, np.uint64)
    else:
        h64 = raw.astype(np.uint64)
    n = h64.shape[0]
    ids = raw if ids is None else np.asarray(ids)
    order = np.argsort(h64, kind="stable")
    ordered = h64[order]
    if n > 1 and (ordered[1:] == ordered[:-1]).any():
        raise ValueError("cells must be distinct")
    if n == 0:
        return Weights(sp.csr_array((0, 0)), ids, "h3_rings", {"kind": "h3_rings", "k": int(k), "outside_links": 0})
    disks = pa.array(h3ronpy.grid_disk(np.ascontiguousarray(h64), int(k)))
    offsets = np.asarray(disks.offsets).astype(np.int64)
    values = np.asarray(disks.values, dtype=np.uint64)
    # one numba pass: look each disk cell up among the cells (hash table) and write the CSR rows
    # directly, sorted; 4-5× faster than searchsorted + masks + bincount on 100k cells
    indptr, indices, outside = _disk_csr(ordered, order.astype(np.int64), offsets, values)
    matrix = sp.csr_array((np.ones(indices.shape[0]), indices, indptr), shape=(n, n))
    matrix.has_sorted_indices = True  # sorted per row by _disk_csr; grid_disk lists no cell twice
    return Weights(matrix, ids, "h3_rings", {"kind": "h3_rings", "k": int(k), "outside_links": int(outside)})


@jit.njit(cache=True, nogil=True)
def _disk_csr(ordered, order, offsets, values):
    """CSR (indptr, indices, cells outside) of the adjacency given by ``grid_disk`` lists:
    row ``r`` holds the positions of the cells listed in ``values[offsets[r]:offsets[r + 1]]``
    that are among the cells (``ordered`` sorted, ``order`` their positions), itself excluded,
    sorted."""
    n = ordered.shape[0]
    bits = 1
    while (1 << bits) < 2 * n:
        bits += 1
    cap = 1 << bits
    mask = cap - 1
    table = np.full(cap, -1, np.int64)
    shift = np.uint64(64 - bits)
    mult = np.uint64(0x9E3779B97F4A7C15)
    for t in range(n):  # open addressing: cell → its position in the matrix
        h = np.int64((ordered[t] * mult) >> shift)
        while table[h] >= 0:
            h = (h + 1) & mask
        table[h] = t
    indptr = np.zeros(n + 1, np.int64)
    indices = np.empty(values.shape[0], np.int64)
    fill = 0
    outside = 0
    for r in range(n):
        start = fill
        for v in range(offsets[r], offsets[r + 1]):
            cell = values[v]
            h = np.int64((cell * mult) >> shift)
            pos = -1
            while table[h] >= 0:
                if ordered[table[h]] == cell:
                    pos = order[table[h]]
                    break
                h = (h + 1) & mask
            if pos < 0:
                outside += 1
            elif pos != r:
                # insertion into the sorted row (a disk has 7 cells for k = 1)
                q = fill
                while q > start and indices[q - 1] > pos:
                    indices[q] = indices[q - 1]
                    q -= 1
                indices[q] = pos
                fill += 1
        indptr[r + 1] = fill
    return indptr, indices[:fill].copy(), outside


def binary_and_ids(w) -> tuple[sp.csr_array, np.ndarray | None]:
    """The binary adjacency (no diagonal) and the ids of a :class:`Weights`, a libpysal ``W`` /
    ``Graph`` (anything with ``.sparse``) or a bare sparse/dense matrix (ids ``None``)."""
    if isinstance(w, Weights):
        return w.sparse, w.ids
    if hasattr(w, "sparse") and not sp.issparse(w) and not isinstance(w, (pd.DataFrame, np.ndarray)):
        ids = getattr(w, "id_order", None)
        if ids is None and hasattr(w, "unique_ids"):
            ids = w.unique_ids
        return _clean_binary(w.sparse), None if ids is None else np.asarray(ids)
    return _clean_binary(w), None
