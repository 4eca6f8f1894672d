"""Benchmark: H3 weights + analytic Gi* in usm_geo vs libpysal + esda (PERF-BASELINES §4).

Data: every H3 resolution-9 cell within grid distance 182 of a centre in Berlin (``grid_disk``:
99,919 cells ≈ 100k, the PERF-BASELINES set), ``y`` = seeded Poisson counts (mean 2) with five
planted hot areas (Gaussian bumps of +15 expected events, σ ≈ 600 m, around random cells).

Routes, each timed as the median of ``--repeat`` runs (default 5) in this process (imports excluded):

* **usm_geo**: ``weights.h3_rings(cells, 1)`` (h3ronpy ``grid_disk`` → CSR) +
  ``local.getis_ord(y, w, star=True, transform="B")``.
* **esda (statistic only)**: ``esda.G_Local(y, W, star=True, transform="B", permutations=0)`` with
  ``W = libpysal.weights.W.from_sparse(A + I)`` built from *our* adjacency (conversion timed
  separately): the self-weight 1 is put on the diagonal explicitly, so esda uses it as given
  (``_infer_star_and_structure_w``: a non-zero diagonal with ``star=True`` is kept; an empty one
  would be filled with 1 by ``fill_diagonal`` — same result, checked once on the data).
* **libpysal + esda (full baseline)**: ``libpysal.weights.W(neighbours)`` from a Python loop over
  ``h3.grid_ring`` (PERF-BASELINES §4 baseline) + the esda statistic above.

Checks: identical neighbour sets, and max |z_usm_geo − esda.Zs| ≤ 1e-9. Run by hand, not by CI::

    /work/venv/bin/python benchmarks/bench_gistar.py [--radius 182] [--repeat 5] [--skip-dict-w]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

CENTRE = (52.5200, 13.4050)  # lat, lon (Berlin)
RES = 9


def make_cells(radius: int) -> np.ndarray:
    import h3
    import h3ronpy

    centre = np.array([h3.str_to_int(h3.latlng_to_cell(*CENTRE, RES))], dtype=np.uint64)
    return np.sort(np.asarray(h3ronpy.grid_disk(centre, radius, flatten=True), dtype=np.uint64))


def make_counts(cells: np.ndarray, seed: int = 0) -> np.ndarray:
    import h3ronpy.vector as h3v

    rng = np.random.default_rng(seed)
    coords = h3v.cells_to_coordinates(cells)
    lat = np.asarray(coords.column("lat"))
    lon = np.asarray(coords.column("lng"))
    x = (lon - CENTRE[1]) * 111_320 * np.cos(np.radians(CENTRE[0]))  # metres, local equirectangular
    y = (lat - CENTRE[0]) * 110_574
    lam = np.full(cells.shape[0], 2.0)
    for c in rng.choice(cells.shape[0], 5, replace=False):
        lam += 15.0 * np.exp(-((x - x[c]) ** 2 + (y - y[c]) ** 2) / (2 * 600.0**2))
    return rng.poisson(lam).astype(np.float64)


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--radius", type=int, default=182, help="grid_disk radius (182 → 99,919 cells)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-dict-w", action="store_true", help="skip the slow h3.grid_ring + W(dict) baseline")
    args = parser.parse_args()

    import esda
    import h3
    import libpysal
    import scipy.sparse as sp

    from usm_geo.hotspots.local import getis_ord
    from usm_geo.units.weights import h3_rings, with_self

    cells = make_cells(args.radius)
    y = make_counts(cells)
    n = cells.shape[0]
    print(f"{n:,} H3 res-{RES} cells (grid_disk radius {args.radius}), y: Poisson, mean {y.mean():.2f}, max {y.max():.0f}")

    # --- usm_geo (one untimed warm-up call: lazy imports of h3ronpy/pyarrow)
    getis_ord(y, h3_rings(cells, 1), star=True)
    t_w, w = timed(lambda: h3_rings(cells, 1), args.repeat)
    t_g, res = timed(lambda: getis_ord(y, w, star=True, transform="B"), args.repeat)
    t_ours = t_w + t_g
    print(f"usm_geo   weights h3_rings          {t_w:8.4f} s   ({w.report['links']:,} links, islands {len(w.report['islands'])})")
    print(f"usm_geo   getis_ord(star=True)      {t_g:8.4f} s")
    print(f"usm_geo   total                     {t_ours:8.4f} s")

    # --- esda on our adjacency, self-weight on the diagonal
    star_matrix = sp.csr_matrix(with_self(w.sparse, 1.0))
    t_conv, wl = timed(lambda: libpysal.weights.W.from_sparse(star_matrix), args.repeat)

    def run_esda(weights):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return esda.G_Local(y, weights, star=True, transform="B", permutations=0)

    t_esda, lg = timed(lambda: run_esda(wl), args.repeat)
    diff = float(np.max(np.abs(res["z"].to_numpy() - lg.Zs)))
    print(f"esda      W.from_sparse(A + I)      {t_conv:8.4f} s")
    print(f"esda      G_Local(star=True, B, 0)  {t_esda:8.4f} s")
    print(f"check     max |z - esda.Zs|         {diff:.2e}  ({'OK' if diff <= 1e-9 else 'FAIL'}, tolerance 1e-9)")
    if diff > 1e-9:
        raise SystemExit("z differs from esda")

    # esda's own self-weight filling (no diagonal given) must give the same z
    plain = libpysal.weights.W.from_sparse(sp.csr_matrix(w.sparse))
    filled = run_esda(plain)
    diff_fill = float(np.max(np.abs(filled.Zs - lg.Zs)))
    print(f"check     esda fill_diagonal route  max |Δz| {diff_fill:.2e}")

    print(f"ratio     esda G_Local / usm_geo getis_ord (statistic only)  = {t_esda / t_g:6.1f}×")
    print(f"ratio     (W.from_sparse + esda) / usm_geo (weights + Gi*)   = {(t_conv + t_esda) / t_ours:6.1f}×")

    if not args.skip_dict_w:
        ids = [h3.int_to_str(int(c)) for c in cells]
        position = {c: i for i, c in enumerate(ids)}

        def dict_w():
            neighbours = {c: [d for d in h3.grid_ring(c, 1) if d in position] for c in ids}
            return libpysal.weights.W(neighbours, id_order=ids, silence_warnings=True)

        t_dict, wd = timed(dict_w, 1)
        same = (sp.csr_matrix(wd.sparse) != sp.csr_matrix(w.sparse)).nnz == 0
        t_esda_d, lg_d = timed(lambda: run_esda(wd), 1)
        diff_d = float(np.max(np.abs(res["z"].to_numpy() - lg_d.Zs)))
        print(f"baseline  W(dict) from h3.grid_ring {t_dict:8.4f} s   (same neighbours: {same})")
        print(f"baseline  G_Local on dict W         {t_esda_d:8.4f} s   (max |Δz| {diff_d:.2e})")
        print(f"ratio     (W(dict) + esda) / usm_geo (weights + Gi*)        = {(t_dict + t_esda_d) / t_ours:6.1f}×")


if __name__ == "__main__":
    main()
