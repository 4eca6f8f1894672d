"""Time reading and checking the 148,636 Chicago aggravated assaults (../shared/data).

usm_geo's intake (read, coordinate/date/duplicate checks, study-area test, ledger) against a
baseline of the usual way: pandas.read_csv(parse_dates) + geopandas points + sjoin(within) on the
community areas (which checks much less). Median of --repeat runs of each in this process, run in
turn, after one warm-up run of each (imports and numba/GDAL initialisation are not counted).

Then what a user waits: whole processes, `python -m usm_geo.cli aggregate` (imports, intake,
assignment, counts, CSV written) against a script doing read_csv + sjoin + counts + to_csv, run
alternately --repeat times (median; after one warm-up of each so numba's cache and the OS file
cache are filled), usm_geo's bytecode written in the warm-up as an installed package has it. The load
average is printed: the machine is shared.

    python benchmarks/bench_intake.py [--repeat 3] [--whole-only]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import datetime as dt
import resource
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CSV = SHARED / "chicago-aggravated-assaults-2010-2019" / "chicago_aggravated_assaults.csv.gz"
CCA = SHARED / "chicago-community-areas-population-geoda" / "Chi-CCA.zip"


def usm_geo_intake():
    from usm_geo.pipeline import run_intake
    from usm_geo.study import load_study

    folder = Path(tempfile.mkdtemp())
    (folder / "study.toml").write_text(textwrap.dedent(f"""
        [study]
        timezone = "America/Chicago"
        working_crs = "auto"
        [inputs.incidents]
        path = "{CSV}"
        category = "loc_cat"
        [[inputs.boundaries]]
        level = "community_area"
        path = "{CCA}"
        id = "area_num_1"
        name = "community"
        [periods]
        start = 2010-01-01
        end = 2019-12-31
    """))
    intake = run_intake(load_study(folder / "study.toml"), now=dt.datetime(2026, 1, 1))
    return intake.ledger.totals()["incidents"], intake.timings


def baseline():
    import geopandas as gpd
    import pandas as pd

    raw = pd.read_csv(CSV, parse_dates=["date"])
    areas = gpd.read_file(f"zip://{CCA}!Chicago_2020.shp").to_crs("EPSG:32616")
    pts = gpd.GeoDataFrame(raw, geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs="EPSG:4326").to_crs("EPSG:32616")
    joined = gpd.sjoin(pts, areas[["geometry"]], predicate="within", how="inner")
    return len(joined)


BASELINE_SCRIPT = f"""
import sys
import geopandas as gpd
import pandas as pd
raw = pd.read_csv({str(CSV)!r}, parse_dates=["date"])
areas = gpd.read_file("zip://{CCA}!Chicago_2020.shp").to_crs("EPSG:32616")
pts = gpd.GeoDataFrame(raw, geometry=gpd.points_from_xy(raw.longitude, raw.latitude), crs="EPSG:4326").to_crs("EPSG:32616")
joined = gpd.sjoin(pts, areas[["area_num_1", "geometry"]], predicate="within", how="inner")
joined["area_num_1"].value_counts().rename("count").rename_axis("unit_id").to_csv(sys.argv[1])
"""


def whole_processes(repeat: int) -> tuple[float, float]:
    """Median wall time of `usm-geo aggregate` and of the baseline script, each in a fresh process."""
    out = Path(tempfile.mkdtemp())
    # Bytecode as an installed package has it: pip compiles site-packages (pandas, geopandas…), and
    # an editable install writes usm_geo's .pyc files (__pycache__, git-ignored) on first import,
    # here in the warm-up round — unless PYTHONDONTWRITEBYTECODE is set, as on these machines, when
    # every process would recompile usm_geo's ~100 modules (0.12 s). So it is unset for both sides.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ours = [sys.executable, "-m", "usm_geo.cli", "aggregate", str(CSV), "--units", f"{CCA}:area_num_1",
            "--out", str(out / "ours.csv")]
    base = [sys.executable, "-c", BASELINE_SCRIPT, str(out / "base.csv")]
    times = {"ours": [], "base": []}
    for k in range(repeat + 1):
        for name, cmd in (("ours", ours), ("base", base)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            if k:  # the first round is the warm-up
                times[name].append(time.perf_counter() - t0)
    return statistics.median(times["ours"]), statistics.median(times["base"])


def timed_alternately(fns, repeat):
    """Median time and last result of each function, run in turn ``repeat`` times after one warm-up
    round: on a shared machine a slow minute then falls on both sides, not on one."""
    times = [[] for _ in fns]
    results = [None] * len(fns)
    for k in range(repeat + 1):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            if k:
                times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), r) for t, r in zip(times, results)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--whole-only", action="store_true", help="only the whole-process comparison")
    args = parser.parse_args()
    if not CSV.exists():
        raise SystemExit(f"needs {CSV}")
    print("load:", os.getloadavg())
    if args.whole_only:
        return whole(args.repeat)
    (t_ours, (totals, stages)), (t_base, n_base) = timed_alternately((usm_geo_intake, baseline), args.repeat)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"Chicago aggravated assaults: read {totals['read']:,}, used {totals['used']:,}, dropped {totals['dropped']:,}")
    print(f"usm_geo intake (boundaries + incidents, all checks): {t_ours:.2f} s  (stages: {stages})")
    print(f"baseline read_csv + sjoin(within), no checks:        {t_base:.2f} s  ({n_base:,} points joined)")
    print(f"ratio baseline / usm_geo: {t_base / t_ours:.2f}x   peak RSS (both, this process): {peak:.2f} GB")
    whole(args.repeat)


def whole(repeat: int) -> None:
    t_ours, t_base = whole_processes(repeat)
    print(f"whole process: usm-geo aggregate {t_ours:.2f} s, read_csv + sjoin script {t_base:.2f} s, "
          f"ratio {t_base / t_ours:.2f}x (median of {repeat})   load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
