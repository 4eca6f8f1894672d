"""The numpy route of :mod:`usm_geo.units.assign`: the same index and the same answers, bit for bit,
without numba.

Each function here is the vectorised twin of a numba kernel in ``assign.py`` (named in its
docstring): per-edge and per-point loops become ``np.repeat`` expansions, per-group sorts a
``lexsort`` within groups, the crossing parity a ``bincount`` and "the first containing candidate"
a minimum over positions. Every floating-point value is computed by the same IEEE operations in
the same order as in the kernel (e.g. ``x1 + (py - y1) * (x2 - x1) / (y2 - y1)``, then the clamp,
then ``px < xi``; the same ``floor``/``ceil`` binning), so no rounding can differ: numba compiles
without ``fastmath``, which keeps LLVM from fusing a multiply and an add into one FMA (checked by
tests/unit/test_assign_numpy.py on points one ulp either side of edges). Integers are int64 as in
the kernels.

Why a second route: a process that runs a numba kernel pays ~1.5 s to import numba and set up its
CPU target before the first (cached) kernel runs. For the layers and point counts of a city's
records, the numpy route finishes well within that time (docs/scale.md, "Two routes").

Coordinates are planar, in the polygon layer's projected CRS (metres), as in ``assign.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["assign_points", "copy_edges", "fill_rows", "prefix_end", "touch_keys"]

#: (point, edge) pairs per step of :func:`assign_points`. Small steps keep the temporaries (0.5 MB
#: each) in cache: in a fresh process 3 assignments of the 148 k Chicago points took 0.09-0.16 s
#: CPU at 65,536 pairs per step, 0.19-0.22 s at 2,000,000.
_PAIRS_PER_STEP = 65_536


def _expand(lo: np.ndarray, hi: np.ndarray):
    """For ranges ``[lo[i], hi[i]]`` (inclusive; empty when hi < lo): the range of each entry and
    its value, ``(src, value)``, ranges in order and values increasing within a range."""
    count = np.maximum(hi - lo + 1, 0)
    src = np.repeat(np.arange(len(lo)), count)
    first = np.cumsum(count) - count
    value = lo[src] + (np.arange(len(src)) - first[src])
    return src, value


def touch_keys(x1, y1, x2, y2, poly, x0, y0, cs, nx, ny, pad, n_polys) -> np.ndarray:
    """Twin of ``_touch_kernel``: the keys ``cell * n_polys + polygon`` of every cell each edge
    passes through or within ``pad`` of (with repeats, in no particular order)."""
    ylo = np.minimum(y1, y2)
    yhi = np.maximum(y1, y2)
    r_lo = np.maximum(np.floor((ylo - pad - y0) / cs), 0).astype(np.int64)
    r_hi = np.minimum(np.floor((yhi + pad - y0) / cs), ny - 1).astype(np.int64)
    e, r = _expand(r_lo, r_hi)  # one entry per (edge, grid row it reaches)
    ax, ay, bx, by = x1[e], y1[e], x2[e], y2[e]
    # horizontal edge: its whole x-range in every row it reaches (as the kernel)
    xa = np.minimum(ax, bx)
    xb = np.maximum(ax, bx)
    s = np.flatnonzero(ay != by)
    lo_s, hi_s, r_s = ylo[e[s]], yhi[e[s]], r[s]
    ax_s, ay_s, bx_s, by_s = ax[s], ay[s], bx[s], by[s]
    # the part of the segment inside the padded row band; operations in the kernel's order
    b0 = np.minimum(np.maximum(y0 + r_s * cs - pad, lo_s), hi_s)
    b1 = np.minimum(np.maximum(y0 + (r_s + 1) * cs + pad, lo_s), hi_s)
    xa_s = ax_s + (b0 - ay_s) * (bx_s - ax_s) / (by_s - ay_s)
    xb_s = ax_s + (b1 - ay_s) * (bx_s - ax_s) / (by_s - ay_s)
    xa[s] = np.minimum(xa_s, xb_s)
    xb[s] = np.maximum(xa_s, xb_s)
    c_lo = np.maximum(np.floor((xa - pad - x0) / cs), 0).astype(np.int64)
    c_hi = np.minimum(np.floor((xb + pad - x0) / cs), nx - 1).astype(np.int64)
    k, c = _expand(c_lo, c_hi)
    return (r[k] * nx + c) * n_polys + poly[e[k]]


def fill_rows(band_key, band_start, band_end, ex1, ey1, ex2, ey2, x0, y0, cs, nx, n_polys,
              mixed, cover_min) -> np.ndarray:
    """Twin of ``_fill_rows`` (both passes): even-odd scanline fill of every polygon along each
    row's centre line. Lowers ``cover_min`` (int32) to the lowest covering polygon of each unmixed
    cell, in place, and returns the keys ``cell * n_polys + polygon`` of the mixed cells' covers."""
    row = band_key // n_polys
    p = band_key - row * n_polys
    yc = y0 + (row + 0.5) * cs
    g, e = _expand(band_start, band_end - 1)  # every edge of every (row, polygon) group
    a, b, ycg = ey1[e], ey2[e], yc[g]
    cross = np.flatnonzero((a > ycg) != (b > ycg))
    g, e, a, b, ycg = g[cross], e[cross], a[cross], b[cross], ycg[cross]
    xs = ex1[e] + (ycg - a) * (ex2[e] - ex1[e]) / (b - a)
    order = np.lexsort((xs, g))  # crossings sorted within each group
    g, xs = g[order], xs[order]
    m = np.bincount(g, minlength=len(band_key))
    first = np.cumsum(m) - m
    rank = np.arange(len(g)) - first[g]
    mg = m[g]
    odd = mg % 2
    # a centre is inside when an odd number of crossings lie strictly right of it: intervals
    # [xs[j], xs[j+1]) for j = m % 2, m % 2 + 2, ..., m - 2 (rank within the group)
    j = np.flatnonzero((rank >= odd) & ((rank - odd) % 2 == 0) & (rank + 1 < mg))
    lo, hi, gj = xs[j], xs[j + 1], g[j]
    c_lo = np.maximum(np.ceil((lo - x0) / cs - 0.5), 0).astype(np.int64)
    c_hi = np.minimum(np.ceil((hi - x0) / cs - 0.5) - 1, nx - 1).astype(np.int64)
    k, c = _expand(c_lo, c_hi)
    cell = row[gj[k]] * nx + c
    pk = p[gj[k]]
    is_mixed = mixed[cell]
    np.minimum.at(cover_min, cell[~is_mixed], pk[~is_mixed].astype(cover_min.dtype))
    return cell[is_mixed] * n_polys + pk[is_mixed]


def prefix_end(emax, lo, hi, thr) -> np.ndarray:
    """Twin of ``_prefix_end``: for each range ``[lo, hi)`` of ``emax`` (decreasing within the
    range), the end of its prefix of values > ``thr``; by bisection, all ranges at once (the kernel
    scans; on a decreasing range both stop at the first value <= thr)."""
    a = np.asarray(lo, dtype=np.int64).copy()
    b = np.asarray(hi, dtype=np.int64).copy()
    live = np.flatnonzero(a < b)
    while live.size:
        mid = (a[live] + b[live]) // 2
        above = emax[mid] > thr[live]
        a[live[above]] = mid[above] + 1
        b[live[~above]] = mid[~above]
        live = live[a[live] < b[live]]
    return a


def copy_edges(block, content, lo, count, *fields, headers) -> None:
    """Twin of ``_copy_edges``: each candidate's ``count[p]`` edges from ``lo[p]`` (five fields
    each) into ``block`` after its (polygon, n_edges) header at ``content[p]``.

    ``content`` must increase (candidates in block order) and ``headers`` are the mixed cells'
    header slots. Every other slot holds an edge field, in the order of the gathered (edge, field)
    rows, so all edges go in with one sequential masked write (a scattered write per field, the
    kernel's order of stores, took 3× as long in a fresh process). ``np.take`` + ``np.place``:
    8.0 ms instead of 12.1 ms for boolean indexing (Chicago's 77 areas, 396,299 edges copied)."""
    count = np.asarray(count, np.int64)
    first = np.cumsum(count) - count
    src = np.arange(int(count.sum()), dtype=np.int64)  # each copied edge's position in the fields
    src += np.repeat(np.asarray(lo, np.int64) - first, count)
    rows = np.take(np.column_stack(fields), src, axis=0)  # (edge, 5 fields), in block order
    edge_slot = np.ones(len(block), dtype=bool)
    edge_slot[headers] = False
    edge_slot[content] = False
    edge_slot[content + 1] = False
    np.place(block, edge_slot, rows)


class BlockTable:
    """The mixed cells' blocks of a packed index read into flat arrays (built once per index).

    ``heads``: block offset of each mixed cell (sorted); per cell its first candidate, candidate
    count and total edge count; per candidate (cell order, then block order = increasing polygon
    position) its polygon, the block offset of its first edge and its edge count.
    """

    def __init__(self, cell_label: np.ndarray, block: np.ndarray):
        heads = np.sort(-cell_label[cell_label <= -2].astype(np.int64) - 2)
        n_cand = block[heads].astype(np.int64)
        first = np.cumsum(n_cand) - n_cand
        total = int(n_cand.sum())
        poly = np.empty(total, np.int64)
        start = np.empty(total, np.int64)
        n_edges = np.empty(total, np.int64)
        # walk the candidates of all cells side by side, one rank per step (a cell has few)
        ptr = heads + 1
        live = np.arange(len(heads))
        rank = 0
        while live.size:
            live = live[n_cand[live] > rank]
            q = ptr[live]
            at = first[live] + rank
            poly[at] = block[q].astype(np.int64)
            n_edges[at] = block[q + 1].astype(np.int64)
            start[at] = q + 2
            ptr[live] = q + 2 + 5 * n_edges[at]
            rank += 1
        self.heads = heads
        self.first = first
        self.n_cand = n_cand
        self.cell_edges = np.add.reduceat(n_edges, first) if total else np.zeros(0, np.int64)
        self.poly = poly
        self.start = start
        self.n_edges = n_edges


def assign_points(x, y, x0, y0, cs, nx, ny, cell_label, block, table: BlockTable) -> np.ndarray:
    """Twin of ``_assign_serial`` (with ``_cell_code`` and ``_test_block``): int64 position of the
    polygon containing each point (``x``, ``y`` float64, layer CRS), ``-1`` for none."""
    n = len(x)
    out = np.full(n, -1, dtype=np.int64)
    ok = np.isfinite(x) & np.isfinite(y)
    fx = (x[ok] - x0) / cs
    fy = (y[ok] - y0) / cs
    inside = ~((fx < 0.0) | (fy < 0.0) | (fx >= nx) | (fy >= ny))
    at = np.flatnonzero(ok)[inside]
    # int() in the kernel truncates; here the values are >= 0, so astype does the same
    lab = cell_label[fy[inside].astype(np.int64) * nx + fx[inside].astype(np.int64)].astype(np.int64)
    out[at] = np.where(lab >= -1, lab, -1)
    mix = np.flatnonzero(lab <= -2)
    if mix.size:
        pts = at[mix]
        cellpos = np.searchsorted(table.heads, -lab[mix] - 2)
        # steps of about _PAIRS_PER_STEP (point, edge) pairs, points in their input order
        work = np.cumsum(table.cell_edges[cellpos])
        cuts = np.searchsorted(work, np.arange(1, int(work[-1] // _PAIRS_PER_STEP) + 1) * _PAIRS_PER_STEP)
        bounds = np.unique(np.concatenate([[0], cuts, [len(pts)]]))
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            p = pts[s0:s1]
            out[p] = _test_blocks(x[p], y[p], cellpos[s0:s1], block, table)
    return out


def _test_blocks(px, py, cellpos, block, table: BlockTable) -> np.ndarray:
    """Twin of ``_test_block`` for points in mixed cells: the lowest-position candidate of the
    point's cell whose rings the point's +x ray crosses an odd number of times, else ``-1``."""
    # (point, candidate) pairs, then (pair, edge) pairs
    pt, k = _expand(np.zeros(len(cellpos), np.int64), table.n_cand[cellpos] - 1)
    cand = table.first[cellpos[pt]] + k
    pair, j = _expand(np.zeros(len(cand), np.int64), table.n_edges[cand] - 1)
    off = table.start[cand[pair]] + 5 * j
    ex = px[pt[pair]]
    # the kernel stops at the first edge wholly at or left of the point (edges sorted by
    # decreasing max x); such an edge can never count (the clamped xi <= max x <= px), so skipping
    # all of them gives the same parity
    keep = np.flatnonzero(block[off] > ex)
    pair, off, ex = pair[keep], off[keep], ex[keep]
    ey = py[pt[pair]]
    y1 = block[off + 1]
    y2 = block[off + 2]
    straddle = np.flatnonzero((y1 > ey) != (y2 > ey))
    pair, off, ex, ey, y1, y2 = pair[straddle], off[straddle], ex[straddle], ey[straddle], y1[straddle], y2[straddle]
    x1 = block[off + 3]
    x2 = block[off + 4]
    xi = x1 + (ey - y1) * (x2 - x1) / (y2 - y1)
    # the kernel's clamp: min(max(xi, x1), x2) if x1 < x2 else min(max(xi, x2), x1)
    xi = np.minimum(np.maximum(xi, np.minimum(x1, x2)), np.maximum(x1, x2))
    crossings = np.bincount(pair[ex < xi], minlength=len(cand))
    hit = np.flatnonzero(crossings % 2 == 1)
    best = np.full(len(cellpos), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, pt[hit], table.poly[cand[hit]])
    return np.where(best == np.iinfo(np.int64).max, -1, best)
