"""Benchmark: lon/lat → H3 cells + counts per cell (PERF-BASELINES §3, issue 22 speed table).

Data: the seeded synthetic city of ``bench_assign.make_points`` (30 × 30 km in UTM 33N, 70 % of the
points in 200 Gaussian hotspots), converted to lon/lat. Routes, each the median of ``--repeat``
runs in this process (imports and numba compilation excluded by a warm-up call):

* **baseline**: ``[h3.latlng_to_cell(lat, lng, res) for …]`` (h3-py, string ids) + ``value_counts``
  (PERF-BASELINES §3 baseline), on every point (or ``--loop-points``, extrapolated, if smaller);
* **h3ronpy**: ``h3ronpy.vector.coordinates_to_cells`` (1 thread) + ``value_counts`` (the previous
  usm_geo route);
* **usm_geo**: ``units.h3cells.points_to_cells`` (exact point-in-hexagon, ``usm_geo.units.h3index``)
  + ``value_counts``, with 1 and 2 threads.

Checks: every route's cells equal the loop's on the points the loop ran on, and the counts are
equal. Run by hand, not by CI::

    python benchmarks/bench_h3.py [--points 10000000] [--res 9] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--res", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loop-points", type=int, default=0, help="points for the h3-py loop (0 = all)")
    args = ap.parse_args(argv)

    import h3
    import h3ronpy.vector as h3v
    import pyproj

    from bench_assign import CRS, make_points
    from usm_geo.units.h3cells import points_to_cells

    n, res = args.points, args.res
    x, y = make_points(n)
    lon, lat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
    lon, lat = np.ascontiguousarray(lon), np.ascontiguousarray(lat)
    del x, y
    print(f"# bench_h3: {n:,} points, res {res}, median of {args.repeat} runs; {os.cpu_count()} CPUs; "
          f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")

    k = args.loop_points or n
    lo, la = lon[:k].tolist(), lat[:k].tolist()

    def baseline():
        ids = [h3.latlng_to_cell(b, a, res) for a, b in zip(lo, la)]
        return ids, pd.Series(ids).value_counts()

    def h3ronpy_route():
        cells = np.asarray(h3v.coordinates_to_cells(lat, lon, res), dtype=np.uint64)
        return cells, pd.Series(cells).value_counts()

    def usm(threads):
        def run():
            cells = points_to_cells(lon, lat, res, threads=threads)
            return cells, pd.Series(cells).value_counts()
        return run

    points_to_cells(lon[:1000], lat[:1000], res)  # compile / load the numba cache
    h3v.coordinates_to_cells(lat[:10], lon[:10], res)
    t_base, ts_base, (ids, base_counts) = timed(baseline, args.repeat)
    t_base_n = t_base * n / k
    ref = np.array([h3.str_to_int(c) for c in ids], dtype=np.uint64)
    ref_counts = pd.Series(ref).value_counts().sort_index()
    rows = [("h3-py loop + value_counts [baseline]", t_base_n, ts_base, True)]
    for label, fn in (("h3ronpy (1 thr) + value_counts", h3ronpy_route),
                      ("usm_geo points_to_cells 1 thr + value_counts", usm(1)),
                      ("usm_geo points_to_cells 2 thr + value_counts", usm(2))):
        t, ts, (cells, counts) = timed(fn, args.repeat)
        same = np.array_equal(cells[:k], ref)
        if k == n:
            same = same and counts.sort_index().equals(ref_counts)
        rows.append((label, t, ts, same))
    extra = f" (loop timed on {k:,} points, × {n / k:g})" if k < n else ""
    print(f"{'route':<48} {'median s':>9} {'runs s':>24} {'× baseline':>11}  same cells+counts{extra}")
    for label, t, ts, same in rows:
        print(f"{label:<48} {t:9.3f} {' '.join(f'{v:.3f}' for v in ts):>24} {t_base_n / t:10.1f}×  {same}")
    if not all(r[3] for r in rows):
        raise SystemExit("a route disagrees with h3.latlng_to_cell")


if __name__ == "__main__":
    main()
