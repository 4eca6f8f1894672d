"""Risk terrain modelling (RTM; Caplan & Kennedy): where do risk features make incidents likelier?

Every place of the study area is a grid cell of ``cell_size`` metres (working CRS, projected, metres;
rows north → south, columns west → east; a cell belongs to the study area when its centre does). Each
risk feature becomes one layer over the cells:

- ``distance``: metres from the cell centre to the nearest feature (entered in the model per 100 m);
- ``density``: kernel density of the features at the cell centre, features per km² —
  quartic ``K(d) = 3/(π h²) · (1 − d²/h²)²`` for ``d < h`` (0 beyond), or Gaussian
  ``K(d) = 1/(2π h²) · exp(−d²/(2h²))`` (summed to 8 h, beyond which a term is below 1.3e-14 of the peak);
  ``h`` = the feature's ``bandwidth`` in metres; the sum over features is multiplied by 10⁶ (m² → km²).

The incidents are counted per cell and the NB2 model of usm_geo.models.counts is fitted over the
cells of the study area, with each cell's area (km²) as exposure (all equal, so the offset only moves
the intercept)::

    log μ_c = log(area_c) + β₀ + Σ_k β_k x_ck

The **relative-risk surface** is ``RR_c = exp(Σ_k β_k x_ck) / mean_c' exp(Σ_k β_k x_c'k)`` over the
cells of the study area: 1 = the study area's average modelled risk, 2 = twice it (the intercept and
offset cancel, so RR_c = μ̂_c / mean μ̂). Per feature the **rate ratio** exp(β_k) (per 100 m farther
for a distance, per feature/km² more for a density) with its Wald interval.

These are associations between where features are and where incidents were recorded: a rate ratio
above 1 does not show that the feature causes incidents; cells are not independent (residual space),
and the surface depends on the cell size and bandwidths chosen.

Reference: Caplan, J. M. & Kennedy, L. W. (2016) *Risk Terrain Modeling: Crime Prediction and Risk
Reduction*, University of California Press; Caplan, Kennedy & Miller (2011) *Justice Quarterly*
28(2), 360–381. Kernels: Silverman (1986) *Density Estimation*, §3.3 (quartic = biweight).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError
from usm_geo.models.counts import CountModel, negative_binomial

CAVEATS = (
    "associations, not causes: a rate ratio above 1 means more recorded incidents where the layer is higher "
    "(nearer features for a distance ratio below 1); it does not show that the features cause incidents",
    "recorded incidents depend on reporting and policing, which may themselves concentrate near the features",
    "neighbouring cells are not independent, so the intervals may be too narrow",
    "the surface depends on the cell size and bandwidths chosen; compare runs with the same settings",
)
RR_UNITS = "relative risk (1 = the study area's average)"
DISTANCE_SCALE = 100.0  # metres: distance enters the model per 100 m, so its rate ratio is per 100 m farther
GAUSS_CUTOFF = 8.0  # bandwidths: exp(-32) ≈ 1.3e-14 of the kernel's peak is left out beyond


@dataclass
class Grid:
    """Cells of ``cell_size`` metres covering the study area's bounds. ``x0``, ``y1``: the west and
    north edges (working CRS, metres); ``inside``: (rows, cols) bool, the cell's centre is in the area."""

    x0: float
    y1: float
    cell_size: float
    rows: int
    cols: int
    inside: np.ndarray

    @property
    def transform(self):
        from affine import Affine

        return Affine(self.cell_size, 0.0, self.x0, 0.0, -self.cell_size, self.y1)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates (rows, cols) arrays, metres."""
        cx = self.x0 + (np.arange(self.cols) + 0.5) * self.cell_size
        cy = self.y1 - (np.arange(self.rows) + 0.5) * self.cell_size
        return np.meshgrid(cx, cy)


def grid_over(area, cell_size: float, max_cells: int = 4_000_000) -> Grid:
    """The grid over ``area`` (a shapely polygon in the working CRS): bounds snapped outward to
    multiples of ``cell_size`` so the same area and size always give the same cells."""
    import shapely

    if area is None:
        raise UsmGeoError("risk terrain needs a study area", where="[model] risk_terrain",
                          fix="add [[inputs.boundaries]] (or [units] study_area)")
    if not cell_size > 0:
        raise UsmGeoError(f"cell_size is {cell_size}", where="[model] cell_size", fix="use a positive number of metres, e.g. 250")
    minx, miny, maxx, maxy = shapely.bounds(area)
    x0, y0 = np.floor(minx / cell_size) * cell_size, np.floor(miny / cell_size) * cell_size
    x1, y1 = np.ceil(maxx / cell_size) * cell_size, np.ceil(maxy / cell_size) * cell_size
    cols, rows = int(round((x1 - x0) / cell_size)), int(round((y1 - y0) / cell_size))
    if rows * cols > max_cells:
        raise UsmGeoError(f"a {cell_size:g} m grid over the study area has {rows * cols:,} cells (more than {max_cells:,})",
                          where="[model] cell_size", fix="use larger cells")
    g = Grid(x0=float(x0), y1=float(y1), cell_size=float(cell_size), rows=rows, cols=cols, inside=np.zeros((rows, cols), bool))
    cx, cy = g.centres()
    shapely.prepare(area)
    g.inside = shapely.contains_xy(area, cx, cy)
    return g


def distance_layer(grid: Grid, fx, fy) -> np.ndarray:
    """Metres from each cell centre to the nearest feature; NaN outside the study area."""
    from scipy.spatial import cKDTree

    fx, fy = np.asarray(fx, float), np.asarray(fy, float)
    if not len(fx):
        raise UsmGeoError("a distance layer needs at least one feature", fix="check the point layer's ledger rows")
    cx, cy = grid.centres()
    out = np.full((grid.rows, grid.cols), np.nan)
    d, _ = cKDTree(np.column_stack([fx, fy])).query(np.column_stack([cx[grid.inside], cy[grid.inside]]), k=1)
    out[grid.inside] = d
    return out


def density_layer(grid: Grid, fx, fy, bandwidth: float, kernel: str = "quartic") -> np.ndarray:
    """Kernel density of the features at each cell centre, features per km² (module docstring);
    NaN outside the study area. Pairs within the kernel's reach only (a KD-tree's sparse distances)."""
    from scipy.spatial import cKDTree

    if not bandwidth > 0:
        raise UsmGeoError(f"bandwidth is {bandwidth}", fix="use a positive number of metres")
    h = float(bandwidth)
    cx, cy = grid.centres()
    centres = np.column_stack([cx[grid.inside], cy[grid.inside]])
    out = np.full((grid.rows, grid.cols), np.nan)
    values = np.zeros(len(centres))
    fx, fy = np.asarray(fx, float), np.asarray(fy, float)
    if len(fx):
        reach = h if kernel == "quartic" else GAUSS_CUTOFF * h
        # every (cell, feature) pair within reach, zero distances included (a feature on a cell centre)
        pairs = cKDTree(centres).sparse_distance_matrix(cKDTree(np.column_stack([fx, fy])), reach, output_type="ndarray")
        d = pairs["v"]
        if kernel == "quartic":
            k = 3.0 / (np.pi * h * h) * np.clip(1.0 - (d / h) ** 2, 0.0, None) ** 2
        elif kernel == "gaussian":
            k = np.exp(-0.5 * (d / h) ** 2) / (2.0 * np.pi * h * h)
        else:
            raise UsmGeoError(f"unknown kernel {kernel!r}", fix="use quartic or gaussian")
        # summed in (cell, feature) order, not the tree's: the same pairs always give the same bytes
        order = np.lexsort((pairs["j"], pairs["i"]))
        values = np.bincount(pairs["i"][order], weights=k[order], minlength=len(centres))
    out[grid.inside] = values * 1e6
    return out


def cell_counts(grid: Grid, x, y) -> np.ndarray:
    """Incidents per cell (int64), 0 outside the area's cells too (points there are not counted)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    finite = np.isfinite(x) & np.isfinite(y)  # NaN would cast to a nonsense integer (and warn)
    x, y = x[finite], y[finite]
    col = np.floor((x - grid.x0) / grid.cell_size).astype(np.int64)
    row = np.floor((grid.y1 - y) / grid.cell_size).astype(np.int64)
    ok = (col >= 0) & (col < grid.cols) & (row >= 0) & (row < grid.rows)
    flat = np.bincount(row[ok] * grid.cols + col[ok], minlength=grid.rows * grid.cols).reshape(grid.rows, grid.cols)
    return np.where(grid.inside, flat, 0).astype(np.int64)


@dataclass
class RiskTerrain:
    """The fitted risk terrain. ``layers``: column name → (rows, cols) raster as entered in the model
    (distances in 100 m, densities per km²); ``counts``: incidents per cell; ``relative_risk``: the
    surface (NaN outside the area); ``rate_ratios``: one row per layer (``feature, operation, term,
    units, rate_ratio, rr_lower, rr_upper, coef, se, p``); ``model``: the CountModel over the cells."""

    grid: Grid
    layers: dict[str, np.ndarray]
    counts: np.ndarray
    relative_risk: np.ndarray
    rate_ratios: pd.DataFrame
    model: CountModel
    report: dict = field(default_factory=dict)
    caveats: tuple[str, ...] = CAVEATS


def relative_risk(model: CountModel, layers: dict[str, np.ndarray], inside: np.ndarray) -> np.ndarray:
    """RR_c = exp(Σ β_k x_ck) / mean over the area's cells (module docstring); NaN outside."""
    coef = model.coefficients.set_index("term")["coef"]
    eta = np.zeros(int(inside.sum()))
    for name, values in layers.items():
        eta = eta + float(coef[name]) * values[inside]
    r = np.exp(eta - eta.max())  # shifted for overflow safety: the ratio to the mean is unchanged
    out = np.full(inside.shape, np.nan)
    out[inside] = r / r.mean()
    return out


def risk_terrain(incident_x, incident_y, features: dict, specs, area, cell_size: float, *,
                 level: float = 0.95) -> RiskTerrain:
    """Fit the risk terrain model (module docstring).

    ``incident_x``, ``incident_y``: incidents in the working CRS (metres); ``features``: feature name →
    DataFrame with ``x``, ``y`` (working CRS); ``specs``: RiskFeature-like objects (``name``,
    ``operation``, ``bandwidth``, ``kernel``); ``area``: the study area polygon; ``cell_size`` metres.
    """
    grid = grid_over(area, cell_size)
    layers: dict[str, np.ndarray] = {}
    rows = []
    for f in specs:
        pts = features[f.name]
        fx, fy = pts["x"].to_numpy(float), pts["y"].to_numpy(float)
        if f.operation == "distance":
            term = f"{f.name}_distance_100m"
            layers[term] = distance_layer(grid, fx, fy) / DISTANCE_SCALE
            rows.append((f.name, "distance", term, "per 100 m farther from the nearest feature", None, None))
        else:
            term = f"{f.name}_density_km2"
            layers[term] = density_layer(grid, fx, fy, f.bandwidth, f.kernel)
            rows.append((f.name, "density", term, f"per feature/km² more ({f.kernel} kernel, bandwidth {f.bandwidth:g} m)",
                         f.bandwidth, f.kernel))
    counts = cell_counts(grid, incident_x, incident_y)
    inside = grid.inside
    n_cells = int(inside.sum())
    x = pd.DataFrame({term: v[inside] for term, v in layers.items()})
    exposure = np.full(n_cells, (grid.cell_size / 1000.0) ** 2)
    ids = np.flatnonzero(inside.ravel()).astype(str)
    model = negative_binomial(counts[inside], exposure, x, unit_ids=ids, level=level)
    rr = relative_risk(model, layers, inside)
    coef = model.coefficients.set_index("term")
    table = pd.DataFrame([{"feature": name, "operation": op, "term": term, "units": units,
                           "bandwidth_m": bw, "kernel": kern,
                           **{k: float(coef.loc[term, k]) for k in ("rate_ratio", "rr_lower", "rr_upper", "coef", "se", "p")}}
                          for name, op, term, units, bw, kern in rows])
    used = int(counts[inside].sum())
    report = {"cell_size_m": grid.cell_size, "rows": grid.rows, "cols": grid.cols, "cells_in_area": n_cells,
              "incidents_in_cells": used, "incidents_outside_cells": int(len(np.asarray(incident_x)) - used),
              "theta": model.theta, "converged": model.converged, "loglik": model.loglik, "aic": model.aic,
              "level": level, "relative_risk": "exp(sum_k beta_k x_ck) / mean over the study area's cells",
              "notes": list(model.notes)}
    return RiskTerrain(grid=grid, layers=layers, counts=counts, relative_risk=rr, rate_ratios=table, model=model,
                       report=report)
