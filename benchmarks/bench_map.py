"""Benchmark: size and opening time of usm_geo's maps (PERF-BASELINES §5; budget in issue 7).

Budget: a map of 50,000 H3 cells stays under 15 MB of HTML and opens in headless Chromium in
under 5 s. Baseline (PERF-BASELINES §5, 50k res-9 hexagons): ``folium.Choropleth(geo_data=gdf)``
31.4 MB (624 B/hex), built in 8.7 s.

Data: :func:`usm_geo.maps.synthetic.h3_inputs` — ``--cells`` H3 res-9 cells (a ``grid_disk``
around Berlin, closest first) with ``incident_rate`` for two periods, a Gi* layer over the same
cells (hidden on opening) and the city. The H3 layer is shown on opening, so the page parses and
draws every cell. Also the Demo City map when ``--demo DIR`` (a ``usm-geo demo`` folder) is given.

Measured (median of ``--repeat`` runs):

* **build**: ``build_map`` in this process (imports excluded), HTML size and gzip size;
* **open**: in Debian's headless Chromium via Playwright, from ``page.goto`` of the file to
  ``usmGeo.ready`` plus two animation frames (the first paint), the page's own
  ``performance.now()`` at that point, and the page's parse/pack/draw times of the H3 layer.
  Leaflet is written into every page (self-contained), so the page makes no network request.

Figures (2026-12-06, this 2-core machine, ``--cells 50000 --repeat 3``): 3.24 MB (gzip 0.68 MB,
65 B/cell), build 0.98 s, open 0.57 s. Before the integer/shape-table geometry encoding (session of
issue 7): 9.65 MB (gzip 2.16 MB, 193 B/cell), build 3.28 s, open 1.41 s. Goal (issue 20): ≤ 4 MB, < 2 s.

Run by hand, not by CI (needs chromium and playwright)::

    /work/venv/bin/python benchmarks/bench_map.py [--cells 50000] [--repeat 3] [--demo /tmp/demo-out]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]
BUDGET_MB, BUDGET_S = 15.0, 5.0


def open_times(path: Path, repeat: int, key: str) -> dict:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if not exe:
        raise SystemExit("no chromium: apt-get install chromium chromium-driver")
    walls, pages, details = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=ARGS)
        for _ in range(repeat):
            ctx = browser.new_context(viewport={"width": 1200, "height": 800})
            page = ctx.new_page()
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: not r.url.startswith(("file:", "data:")) and requests.append(r.url))
            t0 = time.perf_counter()
            page.goto(path.as_uri(), timeout=120_000)
            page.wait_for_function("window.usmGeo && usmGeo.ready === true", timeout=120_000)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            walls.append(time.perf_counter() - t0)
            pages.append(page.evaluate("performance.now()"))
            details.append(page.evaluate("k => [usmGeo.count(k), usmGeo.drawn(k), usmGeo.timings[k]]", key))
            assert not errors and not requests, (errors, requests)
            ctx.close()
        browser.close()
    count, drawn, timing = details[-1]
    return {"wall": statistics.median(walls), "page": statistics.median(pages) / 1000, "count": count,
            "drawn": drawn, "timing": timing}


def report(name: str, html_path: Path, build_s: float, cells: int | None, repeat: int, key: str) -> None:
    raw = html_path.read_bytes()
    mb, gz = len(raw) / 1e6, len(gzip.compress(raw, 6)) / 1e6
    o = open_times(html_path, repeat, key)
    print(f"\n{name}")
    print(f"  build        {build_s:6.2f} s")
    print(f"  size         {mb:6.2f} MB (gzip {gz:.2f} MB)" + (f", {len(raw) / cells:.0f} B/cell" if cells else ""))
    print(f"  open         {o['wall']:6.2f} s wall (goto → ready + first paint); page clock {o['page']:.2f} s")
    t = o["timing"] or {}
    draws = ", ".join(f"{n} cells in {ms} ms" for n, ms in t.get("draws", []))
    print(f"  {key}: {o['count']} features, {o['drawn']} drawn; parse {t.get('parse', 0):.0f} ms, "
          f"pack {t.get('pack', 0):.0f} ms, draw {draws or '-'}")
    if cells:
        ok = mb < BUDGET_MB and o["wall"] < BUDGET_S
        print(f"  budget       < {BUDGET_MB:.0f} MB and < {BUDGET_S:.0f} s: {'OK' if ok else 'OVER'}; "
              f"vs folium.Choropleth baseline 624 B/hex: {624 / (len(raw) / cells):.1f}× smaller")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo", type=Path, help="a `usm-geo demo --out` folder: also measure its map")
    args = parser.parse_args()

    from usm_geo.maps import build_map
    from usm_geo.maps.synthetic import h3_inputs

    inputs = h3_inputs(args.cells)
    build_map(inputs)  # warm-up (imports, caches)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h3.html"
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            build_map(inputs, out, show_level="h3_9")
            times.append(time.perf_counter() - t0)
        report(f"{args.cells:,} H3 res-9 cells (+ hidden Gi* layer, city)", out, statistics.median(times),
               args.cells, args.repeat, "level:h3_9")
        if args.demo:
            out = Path(tmp) / "demo.html"
            t0 = time.perf_counter()
            build_map(args.demo, out)
            report(f"Demo City ({args.demo})", out, time.perf_counter() - t0, None, args.repeat,
                   "level:neighbourhood")


if __name__ == "__main__":
    main()
