"""Benchmark: a partitioned Parquet dataset counted on Dask (usm_geo.scale) against the in-memory path.

Synthetic incidents from ``bench_assign.make_points`` (30 × 30 km city in UTM 33N, 70 % in 200
Gaussian hotspots), one seed per file, written as ``FILES × ROWS`` Parquet files (lon, lat, time over
2019–2023, one of 5 categories) into ``--data`` (outside the repository; delete it afterwards), and
``--polygons`` Voronoi polygons (``bench_assign.make_voronoi``). The study counts them per H3 r9
cell and per polygon (and district-free city) × year × category: ``run_intake → run_units →
run_measures``.

* baseline: the in-memory path (no scheduler) on the first ``--baseline`` points (whole files);
* dask: ``run_intake(..., scheduler=LocalCluster(2 workers × 1 thread, --memory-limit each))`` on all
  ``--points``.

Each runs in its own subprocess; a thread samples (every 0.1 s) the summed RSS of that subprocess and
all its descendants (client + scheduler + nannies + workers) with psutil; the peak is reported.
Times exclude Python start-up and imports, include reading, intake, units and measures. Run by hand::

    python benchmarks/bench_scale.py --points 100000000 --baseline 10000000 --data /work/bench-data
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_assign import CRS, make_points, make_voronoi  # noqa: E402

CATEGORIES = np.array(["theft", "assault", "burglary", "robbery", "vandalism"])


def generate(data: Path, files: int, rows: int, polygons: int) -> None:
    """Write the dataset (skipping files already there) and the polygon layer."""
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import Transformer

    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    (data / "all").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        path = data / "all" / f"part-{i:04d}.parquet"
        if path.exists():
            continue
        x, y = make_points(rows, seed=1000 + i)
        lon, lat = to_ll.transform(x, y)
        rng = np.random.default_rng(5000 + i)
        t = np.datetime64("2019-01-01T00:00:00") + rng.integers(0, 5 * 365 * 86400, rows).astype("timedelta64[s]")
        cat = pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), rows)]).dictionary_encode()
        table = pa.table({"lon": lon, "lat": lat, "time": t, "category": cat})
        pq.write_table(table, path.with_suffix(".tmp"), row_group_size=250_000)
        path.with_suffix(".tmp").rename(path)
    layer = data / f"polygons_{polygons}.gpkg"
    if not layer.exists():
        gpd.GeoDataFrame({"code": [f"P{i:05d}" for i in range(polygons)]}, geometry=make_voronoi(polygons),
                         crs=CRS).to_file(layer)


def subset(data: Path, files: int) -> Path:
    """A dataset of the first ``files`` files (symbolic links)."""
    folder = data / f"first{files}"
    folder.mkdir(exist_ok=True)
    for src in sorted((data / "all").glob("*.parquet"))[:files]:
        link = folder / src.name
        if not link.exists():
            link.symlink_to(src)
    return folder


def study_file(data: Path, points: Path, polygons: int) -> Path:
    path = data / f"study_{points.name}.toml"
    path.write_text(f'''[study]
name = "Bench City"
timezone = "UTC"
working_crs = "{CRS}"

[inputs.incidents]
path = "{points}"
lon = "lon"
lat = "lat"
datetime = "time"
category = "category"

[[inputs.boundaries]]
level = "area"
path = "{data / f"polygons_{polygons}.gpkg"}"
id = "code"

[units]
h3_resolution = [9]

[periods]
frequency = "year"
''')
    return path


def worker(study: str, scheduler: str | None, memory_limit: str) -> dict:
    """Run intake → units → measures in this process; print the figures as JSON."""
    sys.path.insert(0, str(HERE.parent))
    from usm_geo import scale
    from usm_geo.pipeline import run_intake, run_measures, run_units
    from usm_geo.study import load_study

    spec = load_study(Path(study))
    t0 = time.perf_counter()
    if scheduler:
        with scale.connect(scheduler, memory_limit=memory_limit) as client:
            client.run(lambda: __import__("usm_geo.scale.partition"))  # imports in the workers: not timed
            t0 = time.perf_counter()
            intake = run_intake(spec, scheduler=client)
    else:
        intake = run_intake(spec)
    located = run_units(intake)
    measures = run_measures(intake, located)
    seconds = time.perf_counter() - t0
    totals = intake.ledger.totals()["incidents"]
    counts = measures[(measures["measure"] == "count") & (measures["category"] == "all")]
    return {"seconds": seconds, "read": totals["read"], "used": totals["used"],
            "counted": {lv: int(counts.loc[counts["level"] == lv, "numerator"].sum()) for lv in counts["level"].unique()},
            "units": {lv: len(layer) for lv, layer in located.units.levels.items()}}


def measure(args: list[str]) -> dict:
    """Run ``worker`` in a subprocess; sample the summed RSS of its process tree."""
    import psutil

    proc = subprocess.Popen([sys.executable, __file__, "--worker", *args], stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = 0
                for p in tree:
                    try:
                        rss += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                peak[0] = max(peak[0], rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"worker failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_gib"] = peak[0] / 2**30
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=100_000_000)
    ap.add_argument("--baseline", type=int, default=10_000_000)
    ap.add_argument("--rows-per-file", type=int, default=1_000_000)
    ap.add_argument("--polygons", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GiB", help="per worker")
    ap.add_argument("--worker", nargs=3, metavar=("STUDY", "SCHEDULER", "MEMORY"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        study, scheduler, memory = a.worker
        print(json.dumps(worker(study, None if scheduler == "none" else scheduler, memory)))
        return
    files, base_files = a.points // a.rows_per_file, a.baseline // a.rows_per_file
    t = time.perf_counter()
    generate(a.data, files, a.rows_per_file, a.polygons)
    print(f"data: {files} files × {a.rows_per_file:,} rows in {a.data / 'all'} ({time.perf_counter() - t:.0f} s)", flush=True)
    base = measure([str(study_file(a.data, subset(a.data, base_files), a.polygons)), "none", a.memory_limit])
    print("in-memory:", json.dumps(base), flush=True)
    dask = measure([str(study_file(a.data, subset(a.data, files), a.polygons)), f"local:{a.workers}", a.memory_limit])
    print("dask:     ", json.dumps(dask), flush=True)
    per_base = base["seconds"] / (base["read"] / 1e6)
    per_dask = dask["seconds"] / (dask["read"] / 1e6)
    print(f"\nin-memory  {base['read']:>12,} points  {base['seconds']:8.1f} s  {per_base:6.2f} s/M  peak {base['peak_rss_gib']:.2f} GiB")
    print(f"dask       {dask['read']:>12,} points  {dask['seconds']:8.1f} s  {per_dask:6.2f} s/M  peak {dask['peak_rss_gib']:.2f} GiB "
          f"({a.workers} workers × 1 thread, {a.memory_limit} each; all processes)")
    print(f"time per million points, dask / in-memory: {per_dask / per_base:.2f} (target ≤ 1.5); "
          f"peak {dask['peak_rss_gib']:.2f} GiB (target < 6)")
    ok = all(v == dask["used"] for lv, v in dask["counted"].items() if lv in ("city", "h3_9")) and dask["read"] == a.points
    print("counts: every used point counted at the city and h3_9 levels:", ok)


if __name__ == "__main__":
    main()
