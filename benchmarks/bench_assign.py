"""Benchmark: point → polygon assignment and lon/lat → H3 indexing.

Compares ``usm_geo.units.assign.assign_points`` (numba grid index) with the baseline
``geopandas.sjoin(predicate="within")``, and ``usm_geo.units.h3cells.points_to_cells`` (h3ronpy)
with a Python loop over ``h3.latlng_to_cell``, on seeded synthetic data: a 30 × 30 km city in
UTM 33N (EPSG:32633), 70 % of points in 200 Gaussian hotspots and 30 % uniform, and Voronoi
neighbourhood layers. Each method runs in its own subprocess so that its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, includes imports and the loaded input arrays) is its
own. Run by hand, not by CI::

    python benchmarks/bench_assign.py --points 10000000 --polygons 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

X0, Y0, SIZE = 400_000.0, 5_800_000.0, 30_000.0
CRS = "EPSG:32633"


# ----------------------------------------------------------------------------- synthetic data
def make_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (metres, EPSG:32633): 70 % around 200 Gaussian hotspots (sd 100–600 m),
    30 % uniform over the 30 × 30 km square. Hotspot points falling outside the square are
    redrawn uniformly, so every point lies in the square."""
    rng = np.random.default_rng(seed)
    n_hot = round(0.7 * n)
    centres = rng.uniform([X0 + 2000, Y0 + 2000], [X0 + SIZE - 2000, Y0 + SIZE - 2000], (200, 2))
    sd = rng.uniform(100, 600, 200)
    which = rng.integers(0, 200, n_hot)
    x = np.empty(n)
    y = np.empty(n)
    x[:n_hot] = centres[which, 0] + rng.standard_normal(n_hot) * sd[which]
    y[:n_hot] = centres[which, 1] + rng.standard_normal(n_hot) * sd[which]
    x[n_hot:] = rng.uniform(X0, X0 + SIZE, n - n_hot)
    y[n_hot:] = rng.uniform(Y0, Y0 + SIZE, n - n_hot)
    out = (x < X0) | (x >= X0 + SIZE) | (y < Y0) | (y >= Y0 + SIZE)
    x[out] = rng.uniform(X0, X0 + SIZE, out.sum())
    y[out] = rng.uniform(Y0, Y0 + SIZE, out.sum())
    perm = rng.permutation(n)  # hotspot and uniform points interleaved, as in real files
    return x[perm], y[perm]


def make_voronoi(m: int, seed: int = 1) -> np.ndarray:
    """A planar partition of the square into ``m`` Voronoi polygons (shapely array, EPSG:32633)."""
    import shapely

    rng = np.random.default_rng(seed)
    seeds = shapely.multipoints(rng.uniform([X0, Y0], [X0 + SIZE, Y0 + SIZE], (m, 2)))
    square = shapely.box(X0, Y0, X0 + SIZE, Y0 + SIZE)
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=square))
    cells = shapely.intersection(cells, square)
    # Order by seed-independent position (lower-left first) so that positions are reproducible.
    c = shapely.centroid(cells)
    order = np.lexsort((shapely.get_x(c), shapely.get_y(c)))
    return cells[order]


# ----------------------------------------------------------------------------- workers
def _peak_rss_gb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _median_time(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), result


def worker(method: str, data: Path, m: int, repeat: int, loop_points: int) -> dict:
    """Run one method in this (fresh) process; save its result; return timings and peak RSS."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    out: dict = {"method": method, "polygons": m}
    if method in ("usm", "usm-1thread", "sjoin"):
        x = np.load(data / "x.npy")
        y = np.load(data / "y.npy")
        polygons = make_voronoi(m)
        out["rss_loaded_gb"] = _peak_rss_gb()
    if method in ("usm", "usm-1thread"):
        from usm_geo.units.assign import PolygonIndex

        # Load the numba kernels from the on-disk cache (compiles on the very first run only).
        t = time.perf_counter()
        PolygonIndex.build(polygons[:3]).assign(x[:10], y[:10], parallel=True)
        PolygonIndex.build(polygons[:3]).assign(x[:10], y[:10], parallel=False)
        out["jit_s"] = time.perf_counter() - t
        parallel = method == "usm"
        out["setup_s"], index = _median_time(lambda: PolygonIndex.build(polygons), repeat)
        out["run_s"], labels = _median_time(lambda: index.assign(x, y, parallel=parallel), repeat)
        out["cell_size"] = index.cell_size
        out["index_mb"] = index.stats["index_bytes"] / 1e6
        np.save(data / f"{method}_{m}.npy", labels)
    elif method == "sjoin":
        import geopandas as gpd

        def run():
            pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=CRS)
            layer = gpd.GeoDataFrame(geometry=polygons, crs=CRS)
            joined = gpd.sjoin(pts, layer, predicate="within")
            labels = np.full(len(x), -1, dtype=np.int64)
            # A point inside two polygons (never, for a partition) would keep the lowest position.
            labels[joined.index.to_numpy()[::-1]] = joined["index_right"].to_numpy()[::-1]
            return labels

        out["setup_s"] = 0.0
        out["run_s"], labels = _median_time(run, 1)
        np.save(data / f"{method}_{m}.npy", labels)
    elif method == "h3ronpy":
        from usm_geo.units.h3cells import points_to_cells

        lon = np.load(data / "lon.npy")
        lat = np.load(data / "lat.npy")
        out["rss_loaded_gb"] = _peak_rss_gb()
        points_to_cells(lon[:10], lat[:10], 9)
        out["setup_s"] = 0.0
        out["run_s"], cells = _median_time(lambda: points_to_cells(lon, lat, 9), repeat)
        np.save(data / "h3ronpy.npy", cells[:loop_points])
    elif method == "h3loop":
        import h3

        lon = np.load(data / "lon.npy")
        lat = np.load(data / "lat.npy")
        out["rss_loaded_gb"] = _peak_rss_gb()
        k = min(loop_points, len(lon))
        lo, la = lon[:k].tolist(), lat[:k].tolist()

        def run():  # PERF-BASELINES §3 baseline: string ids from a plain loop
            return [h3.latlng_to_cell(b, a, 9) for a, b in zip(lo, la)]

        out["setup_s"] = 0.0
        t, ids = _median_time(run, 1)
        out["measured_points"] = k
        out["run_s"] = t * len(lon) / k  # extrapolated when k < N
        np.save(data / "h3loop.npy", np.array([h3.str_to_int(c) for c in ids], dtype=np.uint64))
    else:
        raise ValueError(method)
    out["peak_rss_gb"] = _peak_rss_gb()
    return out


def _spawn(method, data, m, repeat, loop_points) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--data", str(data), "--m", str(m),
           "--repeat", str(repeat), "--loop-points", str(loop_points)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--polygons", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--repeat", type=int, default=3, help="runs per fast method (median reported)")
    ap.add_argument("--loop-points", type=int, default=1_000_000,
                    help="points timed for the h3 Python loop; extrapolated to --points")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--m", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data), args.m, args.repeat, args.loop_points)))
        return

    import pyproj
    import shapely

    n = args.points
    print(f"# bench_assign: {n:,} points (70 % in 200 Gaussian hotspots, 30 % uniform, 30 × 30 km, "
          f"{CRS}); Voronoi layers {args.polygons}; {os.cpu_count()} CPUs; "
          f"median of {args.repeat} runs for usm_geo and h3ronpy, 1 run for sjoin and the h3 loop")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_assign_") as tmp:
        data = Path(tmp)
        x, y = make_points(n, args.seed)
        np.save(data / "x.npy", x)
        np.save(data / "y.npy", y)
        lon, lat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
        np.save(data / "lon.npy", lon)
        np.save(data / "lat.npy", lat)
        del lon, lat

        for m in args.polygons:
            res = {meth: _spawn(meth, data, m, args.repeat, args.loop_points)
                   for meth in ("sjoin", "usm", "usm-1thread")}
            base = np.load(data / f"sjoin_{m}.npy")
            for meth in ("usm", "usm-1thread"):
                got = np.load(data / f"{meth}_{m}.npy")
                diff = np.flatnonzero(got != base)
                # Points where the answers differ must lie on a boundary (sjoin's "within" puts a
                # boundary point in no polygon; usm_geo puts it in exactly one).
                polys = make_voronoi(m)
                tree = shapely.STRtree(shapely.boundary(polys))
                on_edge = np.unique(tree.query(shapely.points(x[diff], y[diff]), predicate="dwithin",
                                               distance=1e-6)[0])
                res[meth]["differ"] = len(diff)
                res[meth]["differ_off_boundary"] = len(diff) - len(on_edge)
            b = res["sjoin"]["run_s"]
            rows.append((f"point→polygon, {m:,} polygons", "gpd.sjoin(within) [baseline]", res["sjoin"], b, ""))
            for meth, label in (("usm", "usm_geo build + assign (numba, 2 thr)"),
                                ("usm-1thread", "usm_geo build + assign (numba, 1 thr)")):
                r = res[meth]
                note = (f"cell {r['cell_size']:g} m, index {r['index_mb']:.0f} MB, jit/cache load "
                        f"{r['jit_s']:.1f} s; results differ at {r['differ']} points, "
                        f"{r['differ_off_boundary']} off a boundary")
                rows.append(("", label, r, b, note))

        h3r = _spawn("h3ronpy", data, 0, args.repeat, args.loop_points)
        loop = _spawn("h3loop", data, 0, args.repeat, args.loop_points)
        same = np.array_equal(np.load(data / "h3ronpy.npy"), np.load(data / "h3loop.npy"))
        k = loop["measured_points"]
        extrap = f"timed on {k:,} points, extrapolated ×{n / k:g}" if k < n else "all points"
        rows.append(("lon/lat → H3 r9", "[h3.latlng_to_cell loop] [baseline]", loop, loop["run_s"], extrap))
        rows.append(("", "usm_geo points_to_cells (hex PIP, exact)", h3r, loop["run_s"],
                     f"identical to the loop on the first {k:,} points: {same}"))

    head = (f"{'task':<30} {'method':<40} {'setup s':>8} {'run s':>8} {'total s':>8} "
            f"{'peak RSS GB':>12} {'× total':>8} {'× run':>8}  notes")
    print(head)
    print("-" * len(head))
    for task, label, r, base_s, note in rows:
        total = r["setup_s"] + r["run_s"]
        print(f"{task:<30} {label:<40} {r['setup_s']:>8.3f} {r['run_s']:>8.3f} {total:>8.3f} "
              f"{r['peak_rss_gb']:>12.2f} {base_s / total:>7.1f}× {base_s / r['run_s']:>7.1f}×  {note}")
    print(f"peak RSS (ru_maxrss, GiB) includes the interpreter, imports and the loaded input arrays "
          f"({16 * n / 2**30:.3f} GiB of float64 coordinates); × total = baseline time / (setup + run), "
          "× run = baseline time / run.")


if __name__ == "__main__":
    main()
