"""Kernel density estimation (KDE) of incidents on a square grid, in events per km².

Method
------
The points are binned to the centres of the cells of a square grid with ``np.bincount``, and the
grid of (weighted) counts is convolved with the discretised kernel. Binning (``binning=``):

* ``"linear"`` (default; Wand & Jones 1995, appendix D; KernSmooth's default): each point's weight
  is split between the four cell centres around it with bilinear weights, which keeps both its
  mass and its mean position. Four ``np.bincount`` passes.
* ``"simple"``: each point goes wholly to the centre of its own cell
  (:func:`~usm_geo.hotspots.grids.count_points_square`: ``np.floor`` + ``np.bincount``), i.e. it
  is moved by at most half a cell along each axis (≤ cell/√2).

Kernels:

* ``kernel="quartic"`` (default; the biweight kernel of Silverman 1986, eq. 4.5, used by ArcGIS
  *Kernel Density*)::

      K(d) = 3 / (π h²) · (1 − d² / h²)²   for d < h,   0 otherwise

  ``h`` (the *bandwidth* or *search radius*, metres) is the distance beyond which a point adds
  nothing. The kernel is evaluated at the centres of the cells within ``h`` of the centre cell and
  normalised to sum to 1, then applied by FFT convolution (what ``scipy.signal.fftconvolve``
  does, computed with ``scipy.fft``; FFT round-off below ``1e-12`` of the maximum is set to 0).
* ``kernel="gaussian"``: ``scipy.ndimage.gaussian_filter`` with ``sigma = h / cell`` and
  ``truncate = 4`` (the kernel stops at 4 σ, per axis); here ``h`` is the standard deviation of
  the Gaussian along each axis, not a radius. A Gaussian with σ = ``h/√8`` has the same spread as
  a quartic kernel of radius ``h`` (the quartic kernel's variance per axis is ``h²/8``).

Both discrete kernels sum to 1, so the surface conserves mass: Σ density × cell area = the number
of points (or Σ weights) whose kernel lies inside the grid. **Density unit: events per km²**
(weighted events per km² with ``weights``). Density is computed for every cell; cells with no
point within reach are 0 (ArcGIS gives them NoData).

Approximation (measured in the tests, where the density exceeds 1 % of its maximum): with linear
binning the error is of order (cell / h)² — against ``scipy.stats.gaussian_kde`` (Gaussian, h = 10
cells) at most 0.3 %; against the exact quartic sum at cell centres (what ArcGIS computes) at most
1.2 % at h = 20 cells and 3.5 % at h = 10 cells (1.2 % above 10 % of the maximum; the quartic's
support edge is not smooth). With simple binning a point's displacement (≤ half a cell) changes its
kernel to first order, which averages out over many points but not in sparse tails: 6 % (Gaussian)
and 7–18 % (quartic) at 1 % of the maximum. Keep ``h`` at ten cells or more where accuracy matters
(the automatic cell size gives ~250 cells across the extent; report flag
``bandwidth_under_3_cells`` below three).

Grid
----
The output grid covers ``extent`` if given, else the bounds of ``area``, else the bounding box of
the points padded by the kernel's reach (``h`` for quartic, ``4h`` for Gaussian, plus a cell) so
that every point's whole kernel is inside and the surface integrates to the number of points. The grid is
aligned to multiples of the cell size (two surfaces with the same extent and cell size share a
grid, as :func:`dual_kde` needs; ``extent=result.extent, cell_size=result.cell_size`` reproduces a
result's grid). Points within the kernel's reach *outside* the extent contribute to it (no edge
cut-off); the counting grid is padded by the kernel radius plus one cell and cropped after
smoothing. With
``area``, cells whose centre lies outside the area are NaN (no data).

Automatic values (reported)
---------------------------
* **Bandwidth** — ArcGIS's default search radius ("How Kernel Density works", ArcGIS Pro;
  a spatial variant of Silverman's (1986) rule of thumb, robust to spatial outliers)::

      h = 0.9 · min(SD, sqrt(1 / ln 2) · Dm) · n^(−0.2)

  where the mean centre is ``(x̄, ȳ)``, ``SD = sqrt(Σ (x − x̄)² / n + Σ (y − ȳ)² / n)`` is the
  standard distance, ``Dm`` is the median distance of the points from the mean centre, and ``n``
  the number of points. With ``weights`` (ArcGIS's *population field*) the mean centre, SD and
  median are weighted and ``n = Σ weights`` (so weights much larger or smaller than 1 shrink or
  widen the bandwidth, as ArcGIS warns). For a bivariate normal with σ per axis both ``SD`` and
  ``sqrt(1/ln 2) · Dm`` equal ``σ√2``. ArcGIS uses ``h`` as the quartic radius; for the Gaussian
  kernel the same number is used as σ, the scale of Silverman's rule.
* **Cell size** — ArcGIS's default: the shorter side of the output extent / 250, rounded down to a
  nice value (1, 2, 2.5 or 5 × 10^k m; ArcGIS does not round) so that grids align.

Sources: Silverman, B. W. (1986) *Density Estimation for Statistics and Data Analysis*, Chapman &
Hall, §4.2 (eq. 4.5, the biweight kernel) and §3.4.2 (rule of thumb); Esri, ArcGIS Pro
documentation, "How Kernel Density works" and "Kernel Density (Spatial Analyst)"; Wand, M. P. &
Jones, M. C. (1995) *Kernel Smoothing*, Chapman & Hall, appendix D (binning); Kelsall, J. E. &
Diggle, P. J. (1995) Non-parametric estimation of spatial variation in relative risk, Statistics in
Medicine 14, 2335–2342 (log relative risk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import Affine

from usm_geo.errors import CoordinateError, CRSError, UsmGeoError
from usm_geo.hotspots.grids import (
    _area_geometry,
    _check_cell_size,
    count_points_square,
    nice_floor,
)

__all__ = [
    "KDEResult",
    "arcgis_bandwidth",
    "dual_kde",
    "kde",
    "kde_at_units",
    "quartic_kernel",
    "write_geotiff",
]

DENSITY_UNITS = "events per km2"
CELLS_ACROSS = 250              # automatic cell size = shorter side of the extent / 250 (ArcGIS)
GAUSS_TRUNCATE = 4.0
MAX_CELLS = 20_000_000          # output grid budget (the padded float64 grid and its FFT fit in ~1 GB)
_FFT_NOISE = 1e-12

BANDWIDTH_RULE = ("ArcGIS default search radius: 0.9 * min(SD, sqrt(1/ln 2) * Dm) * n^-0.2, SD = standard "
                  "distance, Dm = median distance from the mean centre, n = number of points (or sum of weights)")
CELL_SIZE_RULE = ("shorter side of the extent / 250 (ArcGIS's default), rounded down to 1, 2, 2.5 or 5 x 10^k m")


@dataclass(frozen=True, eq=False)
class KDEResult:
    """A density surface.

    Attributes
    ----------
    values : numpy.ndarray
        2-D float64, rows top (north) → bottom, columns west → east; events per km² for
        :func:`kde` (see ``report["units"]``); NaN = no data (outside the area).
    transform : rasterio.Affine
        Cell → working-CRS transform (``Affine(cell, 0, xmin, 0, -cell, ymax)``), metres.
    crs : pyproj.CRS or None
        Working CRS, when known.
    report : dict
        Every value chosen and the rule used (see :func:`kde`).
    """

    values: np.ndarray
    transform: Affine
    crs: Any = None
    report: dict = field(default_factory=dict)

    @property
    def cell_size(self) -> float:
        return float(self.transform.a)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.values.shape)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the grid, metres."""
        rows, cols = self.shape
        xmin, ymax = self.transform.c, self.transform.f
        return (float(xmin), float(ymax - rows * self.cell_size), float(xmin + cols * self.cell_size), float(ymax))

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: 1-D centre coordinates of the columns (west → east) and rows (north → south)."""
        rows, cols = self.shape
        c = self.cell_size
        return (self.transform.c + (np.arange(cols) + 0.5) * c, self.transform.f - (np.arange(rows) + 0.5) * c)


# --------------------------------------------------------------------------------------------
# bandwidth and kernel
# --------------------------------------------------------------------------------------------

def _weighted_median(d: np.ndarray, w: np.ndarray) -> float:
    """Weighted median; with equal (or integer) weights it equals ``np.median`` of the points
    repeated ``w`` times (the two middle values are averaged when the cumulative weight hits half
    exactly)."""
    order = np.argsort(d, kind="stable")
    d, w = d[order], w[order]
    keep = w > 0
    d, w = d[keep], w[keep]
    cum = np.cumsum(w)
    half = cum[-1] / 2
    k = int(np.searchsorted(cum, half, side="left"))
    if math.isclose(cum[k], half, rel_tol=1e-12) and k + 1 < len(d):
        return float((d[k] + d[k + 1]) / 2)
    return float(d[k])


def arcgis_bandwidth(x, y, weights=None) -> tuple[float, dict]:
    """ArcGIS's default KDE search radius (metres) and its inputs.

    ``h = 0.9 · min(SD, sqrt(1/ln 2) · Dm) · n^(−0.2)`` — see the module docstring. Returns
    ``(h, inputs)`` with ``inputs = {"n", "mean_centre", "standard_distance", "median_distance"}``.
    Raises :class:`~usm_geo.errors.UsmGeoError` when it is undefined (fewer than 2 distinct points,
    or more than half the weight on the mean centre).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if weights is None:
        n = float(x.shape[0])
        if n < 2:
            raise UsmGeoError(f"cannot choose a bandwidth automatically from {int(n)} point(s)",
                              fix="pass bandwidth= (metres)")
        mx, my = float(x.mean()), float(y.mean())
        dx, dy = x - mx, y - my
        sd = math.sqrt(float(np.mean(dx * dx)) + float(np.mean(dy * dy)))
        dm = float(np.median(np.hypot(dx, dy)))
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        n = float(w.sum())
        if not n > 0 or np.count_nonzero(w) < 2:
            raise UsmGeoError("cannot choose a bandwidth automatically: fewer than 2 points with a positive weight",
                              fix="pass bandwidth= (metres)")
        mx, my = float(np.dot(w, x) / n), float(np.dot(w, y) / n)
        dx, dy = x - mx, y - my
        sd = math.sqrt(float(np.dot(w, dx * dx) / n) + float(np.dot(w, dy * dy) / n))
        dm = _weighted_median(np.hypot(dx, dy), w)
    h = 0.9 * min(sd, math.sqrt(1 / math.log(2)) * dm) * n ** -0.2
    inputs = {"n": n, "mean_centre": (mx, my), "standard_distance": sd, "median_distance": dm}
    if not (math.isfinite(h) and h > 0):
        raise UsmGeoError(
            f"cannot choose a bandwidth automatically: the points do not spread (standard distance {sd:g} m, "
            f"median distance from the mean centre {dm:g} m)", fix="pass bandwidth= (metres)")
    return h, inputs


def quartic_kernel(bandwidth_cells: float) -> np.ndarray:
    """Discrete quartic kernel ``(1 − d²/h²)²`` at cell-centre offsets ``d`` (in cells) with
    ``d < h = bandwidth_cells``, normalised to sum to 1; square, odd side ``2·floor(h)+1``. The
    constant ``3/(π h²)`` cancels in the normalisation; ``Σ K(d)·cell² → 1`` as ``h/cell`` grows."""
    h = float(bandwidth_cells)
    r = math.floor(h)
    off = np.arange(-r, r + 1, dtype=np.float64)
    d2 = off[:, None] ** 2 + off[None, :] ** 2
    k = np.where(d2 < h * h, (1.0 - d2 / (h * h)) ** 2, 0.0)
    return k / k.sum()


# --------------------------------------------------------------------------------------------
# KDE
# --------------------------------------------------------------------------------------------

def _linear_bin(x, y, weights, origin, cell, shape) -> np.ndarray:
    """Linear binning (Wand & Jones 1995, appendix D; KernSmooth's default): each point's weight is
    split between the four cell centres around it with bilinear weights, so that the mass and the
    mean position of every point are kept. Four ``np.bincount`` passes; raster order (row 0 at the
    top). Shares that fall off the grid are dropped."""
    rows, cols = shape
    fx = (x - origin[0]) / cell - 0.5   # position in cells; 0 = centre of column 0
    fy = (y - origin[1]) / cell - 0.5   # 0 = centre of the bottom row
    c0 = np.floor(fx)
    r0 = np.floor(fy)
    # keep points with any share on the grid; bin on the grid grown by one cell on every side so that
    # all four shares land in it, then drop the ring
    keep = (c0 >= -1) & (c0 < cols) & (r0 >= -1) & (r0 < rows)
    if not keep.all():
        fx, fy, c0, r0 = fx[keep], fy[keep], c0[keep], r0[keep]
        weights = weights[keep] if weights is not None else None
    tx = fx - c0
    ty = fy - r0
    R, C = rows + 2, cols + 2
    # lower-left share at extended row (from the top) R - 2 - r0, column c0 + 1
    idx = (R - 2 - r0.astype(np.int64)) * C + (c0.astype(np.int64) + 1)
    wx1 = tx if weights is None else weights * tx
    wx0 = (1.0 - tx) if weights is None else weights - wx1
    n = R * C
    out = np.bincount(idx, weights=wx0 * (1.0 - ty), minlength=n)
    out += np.bincount(idx + 1, weights=wx1 * (1.0 - ty), minlength=n)
    idx -= C  # the row above
    out += np.bincount(idx, weights=wx0 * ty, minlength=n)
    out += np.bincount(idx + 1, weights=wx1 * ty, minlength=n)
    return np.ascontiguousarray(out.reshape(R, C)[1:-1, 1:-1])


def _fft_convolve_crop(counts: np.ndarray, kern: np.ndarray, offset: int, rows: int, cols: int) -> np.ndarray:
    """``scipy.signal.fftconvolve(counts, kern, mode="same")[offset:offset + rows, offset:offset + cols]``
    (``counts`` is padded by ``offset`` cells on every side), computed with ``scipy.fft`` directly:
    importing ``scipy.signal`` costs ~1.5 s (it pulls in ``scipy.stats``). FFT round-off below
    ``1e-12`` of the maximum (and any negative round-off) is set to exactly 0, so cells out of every
    point's reach are 0."""
    from scipy import fft as sfft

    pad = kern.shape[0] // 2
    if not counts.any():
        return np.zeros((rows, cols))
    full = (counts.shape[0] + kern.shape[0] - 1, counts.shape[1] + kern.shape[1] - 1)
    fshape = tuple(sfft.next_fast_len(n, True) for n in full)
    spec = sfft.rfft2(counts, fshape) * sfft.rfft2(kern, fshape)
    full_out = sfft.irfft2(spec, fshape)
    tol = _FFT_NOISE * max(float(full_out.max()), 0.0)  # round-off scales with the largest value
    o = offset + pad
    out = np.ascontiguousarray(full_out[o:o + rows, o:o + cols])
    out[out < tol] = 0.0
    return out


def _points(x, y, weights):
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CoordinateError(f"{int(bad.sum())} point(s) have no finite x/y (first at position {first})",
                              fix="drop them before the KDE (intake lists them in the ledger)")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.shape != x.shape:
            raise ValueError(f"weights must have one value per point ({x.shape[0]}), got {weights.shape[0]}")
        if not np.all(np.isfinite(weights)) or (weights < 0).any():
            raise ValueError("weights must be finite and non-negative")
    return x, y, weights


def _check_extent(extent):
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in extent)
    except (TypeError, ValueError):
        raise ValueError(f"extent must be (xmin, ymin, xmax, ymax) in metres, got {extent!r}") from None
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)) or xmax <= xmin or ymax <= ymin:
        raise ValueError(f"extent must be (xmin, ymin, xmax, ymax) with xmin < xmax and ymin < ymax, got {extent!r}")
    return xmin, ymin, xmax, ymax


def _snap(value: float, cell: float, up: bool) -> float:
    """Snap to a multiple of ``cell`` (outward), ignoring float noise of a value already snapped."""
    q = value / cell
    rq = round(q)
    if abs(q - rq) < 1e-9:
        return float(rq * cell)
    return float((math.ceil(q) if up else math.floor(q)) * cell)


def kde(x, y, *, area=None, cell_size: float | None = None, bandwidth: float | None = None,
        kernel: str = "quartic", weights=None, extent=None, crs=None,
        binning: str = "linear", max_cells: int = MAX_CELLS) -> KDEResult:
    """Kernel density of points on a square grid, in **events per km²**.

    Parameters
    ----------
    x, y : array-like of float
        Point coordinates in the working CRS (projected, metres).
    area : shapely Polygon/MultiPolygon, GeoSeries or GeoDataFrame, optional
        Study area (working CRS). Sets the default extent to its bounds and masks cells whose
        centre lies outside it (NaN). Points outside the area still contribute near its edge.
    cell_size : float, optional
        Cell side, metres. Default: shorter side of the extent / 250, rounded down to a nice value.
    bandwidth : float, optional
        Metres: the radius of the quartic kernel, or the standard deviation of the Gaussian.
        Default: ArcGIS's rule (module docstring).
    kernel : {"quartic", "gaussian"}
    weights : array-like of float, optional
        Non-negative weight per point (e.g. harm); the density is then weighted events per km².
    extent : (xmin, ymin, xmax, ymax), optional
        Output extent in metres (snapped outward to multiples of the cell size).
    crs : optional
        Working CRS, recorded in the result (taken from ``area`` when it has one). A geographic CRS
        is refused.
    binning : {"linear", "simple"}
        How points are put on the grid before smoothing (module docstring): ``"linear"`` splits each
        point between the four nearest cell centres (more accurate), ``"simple"`` moves it to its
        cell's centre.
    max_cells : int
        Output-grid budget; above it :class:`~usm_geo.errors.UsmGeoError` ("pass a larger cell size").

    Returns
    -------
    KDEResult
        ``report`` keys: ``kernel``, ``kernel_formula``, ``bandwidth`` (m), ``bandwidth_rule``,
        ``bandwidth_auto``, ``bandwidth_meaning``, ``bandwidth_inputs`` (n, mean centre, SD, Dm when
        automatic), ``bandwidth_cells``, ``cell_size`` (m), ``cell_size_rule``, ``cell_size_auto``,
        ``cell_size_raw``, ``extent``, ``extent_rule``, ``shape``, ``units``, ``events`` (points given),
        ``events_weight`` (Σ weights or count), ``events_in_reach`` (weight of the points that can reach
        the grid), ``mass_in_grid`` (Σ density × cell area, events; NaN cells excluded),
        ``masked_cells``, ``binning``, ``method``, ``approximation``, ``flags``.
    """
    if kernel not in ("quartic", "gaussian"):
        raise ValueError(f"kernel must be 'quartic' or 'gaussian', got {kernel!r}")
    if binning not in ("linear", "simple"):
        raise ValueError(f"binning must be 'linear' or 'simple', got {binning!r}")
    x, y, weights = _points(x, y, weights)
    n = int(x.shape[0])
    geom = None
    if area is not None:
        geom, crs = _area_geometry(area, crs)
    elif crs is not None:
        from pyproj import CRS

        crs = CRS.from_user_input(crs)
        if crs.is_geographic:
            raise CRSError(f"KDE needs a projected working CRS in metres, got {crs.to_string()}",
                           fix="pass x, y in the working CRS (intake's x, y columns)")
    flags: list[str] = []

    # bandwidth
    if bandwidth is None:
        if n == 0:
            raise UsmGeoError("cannot choose a bandwidth automatically: there are no points",
                              fix="pass bandwidth= (metres)")
        h, inputs = arcgis_bandwidth(x, y, weights)
        bw_auto, bw_rule = True, BANDWIDTH_RULE
        if kernel == "gaussian":
            bw_rule += " (used as the Gaussian's standard deviation)"
    else:
        h = float(bandwidth)
        if isinstance(bandwidth, bool) or not (math.isfinite(h) and h > 0):
            raise ValueError(f"bandwidth must be a positive number of metres, got {bandwidth!r}")
        inputs, bw_auto, bw_rule = None, False, "given"
    reach = h if kernel == "quartic" else GAUSS_TRUNCATE * h

    # extent
    if extent is not None:
        base, extent_rule = _check_extent(extent), "given"
    elif geom is not None:
        base, extent_rule = tuple(float(v) for v in geom.bounds), "bounds of the study area"
    elif n:
        base = (float(x.min()) - reach, float(y.min()) - reach, float(x.max()) + reach, float(y.max()) + reach)
        extent_rule = "bounding box of the points, padded by the kernel's reach"
    else:
        raise UsmGeoError("there are no points and no extent or area to draw the density on",
                          fix="pass extent= or area=")

    # cell size
    if cell_size is None:
        short = min(base[2] - base[0], base[3] - base[1])
        raw = short / CELLS_ACROSS
        cell, cs_auto, cs_rule = nice_floor(raw), True, CELL_SIZE_RULE
    else:
        cell, raw, cs_auto, cs_rule = _check_cell_size(cell_size), None, False, "given"

    h_cells = h / cell
    if h_cells < 3:
        flags.append("bandwidth_under_3_cells")
    if kernel == "quartic":
        kern = quartic_kernel(h_cells)
        pad = kern.shape[0] // 2
    else:
        pad = int(GAUSS_TRUNCATE * h_cells + 0.5)  # scipy.ndimage's radius for this sigma, truncate
        kern = None

    if extent_rule.startswith("bounding box"):
        # whole cells around the points' cells, with room for every (binned) kernel
        m = pad + 1
        xmin, ymin = (math.floor(x.min() / cell) - m) * cell, (math.floor(y.min() / cell) - m) * cell
        xmax, ymax = (math.floor(x.max() / cell) + 1 + m) * cell, (math.floor(y.max() / cell) + 1 + m) * cell
    else:
        xmin, ymin = _snap(base[0], cell, False), _snap(base[1], cell, False)
        xmax, ymax = _snap(base[2], cell, True), _snap(base[3], cell, True)
    cols = max(1, round((xmax - xmin) / cell))
    rows = max(1, round((ymax - ymin) / cell))
    xmin, ymax = float(xmin), float(ymax)
    xmax, ymin = xmin + cols * cell, ymax - rows * cell
    if rows * cols > max_cells:
        raise UsmGeoError(
            f"a {cell:g} m grid over this extent has {rows:,} x {cols:,} = {rows * cols:,} cells, more than "
            f"the budget of {max_cells:,}",
            fix=f"pass a larger cell size (at least {math.sqrt((xmax - xmin) * (ymax - ymin) / max_cells):.0f} m), "
                "a smaller extent, or raise max_cells")

    # bin to the grid padded by the kernel radius (+1 cell for linear binning), smooth, crop
    bpad = pad + 1
    shape = (rows + 2 * bpad, cols + 2 * bpad)
    origin = (xmin - bpad * cell, ymin - bpad * cell)
    if binning == "linear":
        counts = _linear_bin(x, y, weights, origin, cell, shape)
    else:
        counts = count_points_square(x, y, origin, cell, shape, weights=weights)[0].astype(np.float64)
    in_reach = float(counts.sum())
    if kernel == "quartic":
        mass = _fft_convolve_crop(counts, kern, bpad, rows, cols)
    else:
        from scipy.ndimage import gaussian_filter

        smooth = gaussian_filter(counts, sigma=h_cells, truncate=GAUSS_TRUNCATE, mode="constant", cval=0.0)
        mass = smooth[bpad:bpad + rows, bpad:bpad + cols]
    cell_km2 = cell * cell / 1e6
    values = np.ascontiguousarray(mass / cell_km2)

    masked = 0
    if geom is not None:
        import shapely

        cx = xmin + (np.arange(cols) + 0.5) * cell
        cy = ymax - (np.arange(rows) + 0.5) * cell
        gx, gy = np.meshgrid(cx, cy)
        shapely.prepare(geom)
        outside = ~shapely.intersects_xy(geom, gx, gy)
        values[outside] = np.nan
        masked = int(outside.sum())

    total = float(weights.sum()) if weights is not None else float(n)
    report = {
        "kernel": kernel,
        "kernel_formula": ("K(d) = 3/(pi h^2) (1 - d^2/h^2)^2 for d < h (Silverman 1986, eq. 4.5; ArcGIS)"
                           if kernel == "quartic" else
                           "K(d) = 1/(2 pi h^2) exp(-d^2 / (2 h^2)), truncated at 4 h per axis"),
        "bandwidth": h,
        "bandwidth_rule": bw_rule,
        "bandwidth_auto": bw_auto,
        "bandwidth_meaning": ("radius in metres (the kernel is 0 beyond it)" if kernel == "quartic"
                              else "standard deviation per axis in metres"),
        "bandwidth_inputs": inputs,
        "bandwidth_cells": h_cells,
        "cell_size": cell,
        "cell_size_rule": cs_rule,
        "cell_size_auto": cs_auto,
        "cell_size_raw": raw,
        "extent": (xmin, ymin, xmax, ymax),
        "extent_rule": extent_rule,
        "shape": (rows, cols),
        "units": DENSITY_UNITS if weights is None else f"weighted {DENSITY_UNITS}",
        "events": n,
        "events_weight": total,
        "events_in_reach": in_reach,
        "mass_in_grid": float(np.nansum(values) * cell_km2),
        "masked_cells": masked,
        "binning": binning,
        "method": (("points linearly binned to the 4 nearest cell centres" if binning == "linear"
                    else "points binned to their cell's centre") + " (np.bincount), then convolved with the "
                   "discretised kernel " + ("(FFT convolution, scipy.fft)" if kernel == "quartic"
                                            else "(scipy.ndimage.gaussian_filter, truncate 4)")),
        "approximation": ("linear binning: error of order (cell/bandwidth)^2" if binning == "linear" else
                          "each point is moved to its cell centre: at most half a cell along each axis"),
        "flags": flags,
    }
    transform = Affine(cell, 0.0, xmin, 0.0, -cell, ymax)
    return KDEResult(values=values, transform=transform, crs=crs, report=report)


# --------------------------------------------------------------------------------------------
# density per unit
# --------------------------------------------------------------------------------------------

def kde_at_units(result: KDEResult, units_gdf, *, id_column: str = "unit_id"):
    """Mean density of each unit: the mean of the cells whose **centre** lies inside it.

    Cells are assigned with ``rasterio.features.rasterize`` (GDAL's rule: a cell belongs to the
    polygon that contains its centre; units of one level must not overlap — where they do, the
    later unit wins). NaN cells (outside the KDE's area) are left out of the mean. A unit that holds
    no cell centre (smaller than a cell) takes the value of the cell under its
    ``point_on_surface`` (flag ``point_sample``); a unit off the grid gets NaN (flag
    ``outside_grid``). Units in another known CRS are reprojected to the result's CRS.

    Returns
    -------
    (table, report)
        ``table``: DataFrame in the order of ``units_gdf`` with ``unit_id``, ``density`` (the
        result's units, e.g. events per km²), ``cells`` (cells averaged), ``flags`` ("" or one flag).
        ``report``: ``units``, ``method``, ``cells_per_unit`` (min, median, max), ``point_sampled``,
        ``outside_grid``, ``density_units``, ``reprojected``.
    """
    import pandas as pd
    import shapely
    from rasterio import features

    units = units_gdf
    reprojected = False
    if result.crs is not None and getattr(units, "crs", None) is not None and not units.crs.equals(
            result.crs, ignore_axis_order=True):
        units = units.to_crs(result.crs)
        reprojected = True
    if id_column not in units.columns:
        raise UsmGeoError(f"the units have no '{id_column}' column", fix="pass id_column= naming the unit id column")
    geoms = np.asarray(units.geometry.values, dtype=object)
    m = len(geoms)
    rows, cols = result.shape
    valid = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if m else np.zeros(0, bool)
    if valid.any():
        labels = features.rasterize(
            ((g, i + 1) for i, g in zip(np.flatnonzero(valid), geoms[valid])),
            out_shape=(rows, cols), transform=result.transform, fill=0, all_touched=False, dtype="int32")
    else:
        labels = np.zeros((rows, cols), np.int32)
    vals = result.values
    ok = (labels > 0) & np.isfinite(vals)
    lab = labels[ok]
    sums = np.bincount(lab, weights=vals[ok], minlength=m + 1)[1:]
    cnt = np.bincount(lab, minlength=m + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    flags = np.full(m, "", dtype=object)

    empty = np.flatnonzero((cnt == 0) & valid)
    n_sampled = n_outside = 0
    if len(empty):
        pts = shapely.get_coordinates(shapely.point_on_surface(geoms[empty]))
        inv = ~result.transform
        c, r = inv @ (pts[:, 0], pts[:, 1])
        c, r = np.floor(c).astype(np.int64), np.floor(r).astype(np.int64)
        on = (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
        sampled = np.full(len(empty), np.nan)
        sampled[on] = vals[r[on], c[on]]
        density[empty] = sampled
        flags[empty] = np.where(on, "point_sample", "outside_grid")
        n_sampled, n_outside = int(on.sum()), int((~on).sum())
    table = pd.DataFrame({"unit_id": units[id_column].to_numpy(), "density": density,
                          "cells": cnt.astype(np.int64), "flags": flags})
    report = {
        "units": m,
        "method": "mean of the cells whose centre lies in the unit (rasterio.features.rasterize); "
                  "units without a cell centre: the cell under their point_on_surface",
        "cells_per_unit": ((int(cnt.min()), float(np.median(cnt)), int(cnt.max())) if m else (0, 0.0, 0)),
        "point_sampled": n_sampled,
        "outside_grid": n_outside,
        "density_units": result.report.get("units", DENSITY_UNITS),
        "reprojected": reprojected,
    }
    return table, report


# --------------------------------------------------------------------------------------------
# dual KDE
# --------------------------------------------------------------------------------------------

def dual_kde(inc_result: KDEResult, pop_result: KDEResult, kind: str = "ratio", *, per: float = 1.0,
             min_denominator: float = 0.0) -> KDEResult:
    """Combine two surfaces on the same grid (e.g. incidents and population).

    ``kind``:

    * ``"ratio"``: ``inc / pop × per`` — with an incident density (events/km²) over a population
      density (persons/km²) this is events per person (× ``per``, e.g. 1000 → per 1,000 persons).
    * ``"log_ratio"``: ``ln((inc / pop) / (Σ inc / Σ pop))``, the log relative risk against the
      rate over the whole grid (Kelsall & Diggle 1995): 0 = average, > 0 = above. NaN also where
      ``inc`` is 0 (the log would be −∞).
    * ``"difference"``: ``inc − pop`` for two surfaces in the same unit (e.g. two periods).

    Cells where the second surface is ≤ ``min_denominator`` (default: exactly zero population) are
    **NaN, never ±inf** for ``ratio`` and ``log_ratio``; NaN in either input stays NaN. Raising
    ``min_denominator`` avoids huge ratios where the population is a thin kernel tail.

    The grids must match (same shape and transform, same CRS when both are known): build the
    population surface with ``extent=inc.extent, cell_size=inc.cell_size``.
    """
    if kind not in ("ratio", "log_ratio", "difference"):
        raise ValueError(f"kind must be 'ratio', 'log_ratio' or 'difference', got {kind!r}")
    if inc_result.shape != pop_result.shape or not inc_result.transform.almost_equals(
            pop_result.transform, precision=1e-6):
        raise UsmGeoError(
            f"the two surfaces are on different grids ({inc_result.shape} at {tuple(inc_result.transform)[:6]} vs "
            f"{pop_result.shape} at {tuple(pop_result.transform)[:6]})",
            fix="compute the second with extent=first.extent and cell_size=first.cell_size")
    if inc_result.crs is not None and pop_result.crs is not None and not _crs_equal(inc_result.crs, pop_result.crs):
        raise CRSError("the two surfaces are in different CRSs", fix="compute both in the working CRS")
    a = inc_result.values.astype(np.float64)
    b = pop_result.values.astype(np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    out = np.full(a.shape, np.nan)
    if kind == "difference":
        out[both] = a[both] - b[both]
        units = inc_result.report.get("units", DENSITY_UNITS)
        undefined = int((~both).sum())
        overall = None
    else:
        ok = both & (b > min_denominator)
        if kind == "ratio":
            out[ok] = a[ok] / b[ok] * per
            units = ("ratio of densities (events per person when the second surface is population)"
                     + (f", x {per:g}" if per != 1 else ""))
            overall = None
        else:
            ok &= a > 0
            sa, sb = float(a[both & (b > min_denominator)].sum()), float(b[both & (b > min_denominator)].sum())
            overall = sa / sb if sb > 0 else float("nan")
            if overall > 0:
                out[ok] = np.log(a[ok] / b[ok] / overall)
            units = "log relative risk (0 = grid-wide rate)"
        undefined = int((~ok).sum())
    report = {
        "kind": kind,
        "units": units,
        "per": per,
        "min_denominator": min_denominator,
        "undefined_cells": undefined,
        "overall_ratio": overall,
        "rule": "NaN where the denominator surface is <= min_denominator (never inf)" if kind != "difference"
                else "NaN where either surface is NaN",
        "numerator": dict(inc_result.report),
        "denominator": dict(pop_result.report),
    }
    for key in ("kernel", "bandwidth", "cell_size"):
        if key in inc_result.report:
            report[key] = inc_result.report[key]
    crs = inc_result.crs if inc_result.crs is not None else pop_result.crs
    return KDEResult(values=out, transform=inc_result.transform, crs=crs, report=report)


def _crs_equal(a, b) -> bool:
    from pyproj import CRS

    return CRS.from_user_input(a).equals(CRS.from_user_input(b), ignore_axis_order=True)


# --------------------------------------------------------------------------------------------
# GeoTIFF
# --------------------------------------------------------------------------------------------

def write_geotiff(result: KDEResult, path, crs=None) -> Path:
    """Write a surface as a single-band float32 GeoTIFF, atomically and byte-reproducibly.

    Deflate-compressed (floating-point predictor), nodata NaN, tiled 256 × 256. Tags: ``UNITS``
    (e.g. "events per km2"), ``KERNEL``, ``BANDWIDTH`` (metres), ``CELL_SIZE`` (metres) and the rules
    behind automatic values; no dates, so the same surface gives the same bytes. ``crs`` defaults
    to the result's CRS; one of the two is required (:class:`~usm_geo.errors.CRSError`), and they
    must agree when both are given.
    """
    import rasterio

    from usm_geo.io import atomic_path

    if crs is None:
        crs = result.crs
    elif result.crs is not None and not _crs_equal(crs, result.crs):
        raise CRSError(f"crs={crs!r} differs from the surface's CRS", fix="drop the crs argument")
    if crs is None:
        raise CRSError("the surface has no CRS; a GeoTIFF without one cannot be placed on a map",
                       where=path, fix="pass crs= (the working CRS)")
    path = Path(path)
    rows, cols = result.shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 1, "dtype": "float32", "crs": crs,
               "transform": result.transform, "nodata": float("nan"), "compress": "deflate", "predictor": 3,
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    rep = result.report
    tags = {"UNITS": str(rep.get("units", DENSITY_UNITS))}
    for key, tag in (("kernel", "KERNEL"), ("bandwidth", "BANDWIDTH"), ("cell_size", "CELL_SIZE"),
                     ("bandwidth_rule", "BANDWIDTH_RULE"), ("cell_size_rule", "CELL_SIZE_RULE"),
                     ("kind", "DUAL_KIND")):
        if rep.get(key) is not None:
            value = rep[key]
            tags[tag] = repr(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(result.values.astype(np.float32), 1)
        dst.update_tags(**tags)
        dst.set_band_description(1, "density" if "kind" not in rep else f"dual KDE {rep['kind']}")
    return path
