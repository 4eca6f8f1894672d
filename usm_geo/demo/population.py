"""Demo City population: a 100 m raster of persons per cell and the neighbourhood table made from it.

The raster is in EPSG:32633 (metres), 100 m cells covering the city bounding box, float32 persons
per cell, nodata outside the city. Density is a few dense centres decaying exponentially outward,
times seeded cell-to-cell noise, scaled to a seeded city total of 1.0–1.3 million.
A cell belongs to the city, and to a neighbourhood, by its centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from rasterio import features

from usm_geo.demo.city import CENTRE, CRS, component_rng
from usm_geo.io import atomic_path

CELL = 100.0  # metres
NODATA = -9999.0
N_CENTRES = 4  # the main centre plus three secondary ones


@dataclass(frozen=True)
class PopulationGrid:
    """Population on a 100 m grid (EPSG:32633).

    ``persons``: float32 (rows, cols), persons per cell, ``NODATA`` outside the city.
    ``labels``: int32 (rows, cols), 1-based index of the neighbourhood holding the cell centre, 0 outside.
    ``transform``: affine transform of the grid; ``centres``: the density centres (x, y, scale_m, weight).
    """

    persons: np.ndarray
    labels: np.ndarray
    transform: Affine
    total: float
    centres: list[dict]

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of cells inside the city."""
        return self.labels > 0


def grid_for(bounds: tuple[float, float, float, float], cell: float) -> tuple[Affine, int, int]:
    """Return (transform, rows, cols) of a grid of ``cell`` metres snapped to multiples of ``cell``."""
    minx, miny = np.floor(np.asarray(bounds[:2]) / cell) * cell
    maxx, maxy = np.ceil(np.asarray(bounds[2:]) / cell) * cell
    cols, rows = int(round((maxx - minx) / cell)), int(round((maxy - miny) / cell))
    return Affine(cell, 0.0, minx, 0.0, -cell, maxy), rows, cols


def label_grid(geoms, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """Return an int32 grid: 1-based index of the geometry holding each cell centre, 0 elsewhere."""
    return features.rasterize(
        [(g, i + 1) for i, g in enumerate(geoms)], out_shape=shape, transform=transform,
        fill=0, all_touched=False, dtype="int32",
    )


def cell_centres(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the x and y (metres) of every cell centre as two 1-D arrays of length rows × cols."""
    rows, cols = shape
    xs = transform.c + (np.arange(cols) + 0.5) * transform.a
    ys = transform.f + (np.arange(rows) + 0.5) * transform.e
    return np.tile(xs, rows), np.repeat(ys, cols)


def _density_centres(rng: np.random.Generator) -> list[dict]:
    """Return the dense centres: the main one near the city centre and secondary ones 5–9 km out."""
    angles = rng.uniform(0, 2 * np.pi) + np.arange(N_CENTRES - 1) * 2 * np.pi / (N_CENTRES - 1)
    angles += rng.uniform(-0.4, 0.4, N_CENTRES - 1)
    dist = rng.uniform(5_000, 9_000, N_CENTRES - 1)
    xs = np.r_[CENTRE[0] + rng.uniform(-800, 800), CENTRE[0] + dist * np.cos(angles)]
    ys = np.r_[CENTRE[1] + rng.uniform(-800, 800), CENTRE[1] + dist * np.sin(angles)]
    scales = np.r_[rng.uniform(3_500, 4_500), rng.uniform(1_200, 2_200, N_CENTRES - 1)]
    weights = np.r_[1.0, rng.uniform(0.45, 0.8, N_CENTRES - 1)]
    return [
        {"x": round(float(x), 2), "y": round(float(y), 2), "scale_m": round(float(s), 1),
         "weight": round(float(w), 4)}
        for x, y, s, w in zip(xs, ys, scales, weights)
    ]


def build_population(nbhd: gpd.GeoDataFrame, seed: int) -> PopulationGrid:
    """Build the Demo City population grid for the neighbourhoods ``nbhd`` (EPSG:32633)."""
    rng = component_rng(seed, "population")
    outline = shapely.coverage_union_all(nbhd.geometry.values)
    transform, rows, cols = grid_for(outline.bounds, CELL)
    labels = label_grid(nbhd.geometry.values, transform, (rows, cols))
    x, y = cell_centres(transform, (rows, cols))
    centres = _density_centres(rng)
    density = np.full(x.shape, 0.04)  # a thin floor so that no built-up cell is empty
    for c in centres:
        density += c["weight"] * np.exp(-np.hypot(x - c["x"], y - c["y"]) / c["scale_m"])
    # Lognormal cell noise: real densities jump between blocks, parks and railway land.
    density *= rng.lognormal(0.0, 0.45, x.size)
    density = density.reshape(rows, cols)
    valid = labels > 0
    total = float(np.round(rng.uniform(1.05e6, 1.25e6), -3))
    persons = np.where(valid, density * (total / density[valid].sum()), NODATA).astype(np.float32)
    return PopulationGrid(persons, labels, transform, float(persons[valid].astype(np.float64).sum()),
                          centres)


def population_by_unit(grid: PopulationGrid, n_units: int) -> np.ndarray:
    """Return float64 persons per unit (index 0 is the first unit), cells assigned by their centre."""
    valid = grid.valid
    return np.bincount(grid.labels[valid] - 1, weights=grid.persons[valid].astype(np.float64),
                       minlength=n_units)


def population_table(nbhd: gpd.GeoDataFrame, grid: PopulationGrid) -> pd.DataFrame:
    """Return ``nbhd_id, population`` (integers, rounded raster sums), sorted by ``nbhd_id``."""
    pop = population_by_unit(grid, len(nbhd))
    return pd.DataFrame({"nbhd_id": nbhd["nbhd_id"].to_numpy(), "population": np.rint(pop).astype(np.int64)})


def write_population_raster(path: Path, grid: PopulationGrid, seed: int) -> Path:
    """Write ``grid`` as a deflate-compressed float32 GeoTIFF (EPSG:32633), atomically.

    Only fixed tags are written (no dates), so the same grid gives the same bytes.
    """
    path = Path(path)
    rows, cols = grid.persons.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=1, dtype="float32", crs=CRS,
                   transform=grid.transform, nodata=NODATA, compress="deflate", predictor=3,
                   tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(grid.persons, 1)
        dst.update_tags(UNITS="persons per 100 m cell", SOURCE=f"usm_geo Demo City, seed {seed}")
        dst.set_band_description(1, "population")
    return path
