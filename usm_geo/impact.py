"""Area-based impact measurement: treated, buffer and control areas; gross and net effect, WDQ, TNE,
WDD and difference-in-differences, each also weighted by harm.

Plain data in, plain data out, no file I/O. Distances and areas are metres in the working CRS; times
are naive local datetimes (see DESIGN.md).

The three steps
---------------
1. :func:`impact_areas` builds the **treated** area (R in Bowers & Johnson, T in Wheeler & Ratcliffe),
   the **buffer** (D: the ring around it where displacement or diffusion would show) and the
   **control** area (C), and checks that no two of them overlap. :func:`areas_from_units` makes an
   area from unit ids.
2. :func:`count_in_areas` counts incidents (and sums their harm) per area in the before and after
   windows.
3. :func:`impact_measures` turns the counts into the measures below.

Notation: ``Rb, Ra`` treated before/after, ``Db, Da`` buffer, ``Cb, Ca`` control.

Sign conventions
----------------
Gross effect, net effect, WDD and DiD are *changes*: **negative = fewer incidents** (a reduction).
The total net effect keeps Bowers & Johnson's sign: **positive = incidents prevented**.

Unequal before and after periods
--------------------------------
Counts are compared over periods of equal length by dividing every *before* count by the period
weight ``w = before_days / after_days`` (the after counts keep ``w = 1``); a before count then says
how many incidents a period as long as the after period would have had at the before rate. This is
Wheeler's ``time_weights = c(w, 1)`` in the R package ptools (``wdd``): a count ``X`` used as ``X / w``
has the Poisson variance ``X · (1/w)²``. WDQ, net effect and TNE compare ratios within a period and do
not change with ``w``; gross effect, WDD and DiD are changes per after-period length. The weights are
stated in the output (``weights``). Equal periods give ``w = 1`` (counts used as they are).

Measures (``before`` counts already divided by ``w``)
-----------------------------------------------------
* **Gross effect** (change in the treated area): ``absolute = Ra − Rb``,
  ``relative = Ra/Rb − 1``. (Guerette 2009, POP Center Tool Guide 10, writes GE = Rb − Ra; the sign
  here is the other way round, like every other change in this module.)
* **Net effect** (change relative to the control; the ratio form):
  ``relative = (Ra/Rb) / (Ca/Cb) − 1``, and ``absolute = Ra − Rb·(Ca/Cb)``: the observed after count
  minus the count the treated area would have had had it followed the control's trend.
* **WDQ**, weighted displacement quotient (Bowers & Johnson 2003, *J. Quant. Criminol.* 19(3),
  275–301; Guerette 2009, Appendices B–C)::

      WDQ = (Da/Ca − Db/Cb) / (Ra/Ca − Rb/Cb)
          = (Da·Cb − Db·Ca) / (Ra·Cb − Rb·Ca)      (computed this way: exact for integer counts)

  The denominator is the *success measure*: < 0 means the treated area improved relative to the
  control. The numerator is the *buffer displacement measure*: > 0 hints at displacement, < 0 at
  diffusion of benefits. The WDQ is read only when the success measure is < 0 (Guerette 2009,
  Appendix C):

  ======================  =====================================================================
  WDQ > 1                 diffusion of benefits greater than the direct effect
  0 < WDQ ≤ 1             diffusion of benefits (the buffer gained too)
  WDQ = 0                 neither displacement nor diffusion
  −1 ≤ WDQ < 0            displacement, smaller than the direct effect: a net benefit remains
  WDQ < −1                displacement greater than the direct effect: the benefit is erased
  success measure ≥ 0     no effect measurable: the WDQ is not interpreted
  ======================  =====================================================================

  The WDQ has no standard error; whether the buffer's change is more than chance is a question for
  the WDD (its buffer term) — the reading says so.
* **TNE**, total net effect (Bowers & Johnson 2003; Guerette 2009, Appendix B, eq. 4)::

      TNE = [Rb·(Ca/Cb) − Ra] + [Db·(Ca/Cb) − Da]

  incidents prevented in the treated area (expected at the control's trend minus observed) plus those
  prevented in the buffer; displacement makes the second term negative. Without a buffer only the
  first term. Counted in after-period incidents.
* **WDD**, weighted displacement difference (Wheeler & Ratcliffe 2018, *Crime Science* 7:11)::

      WDD = (Ta − Tb) − (Ca − Cb) + (Da − Db) [− (CDa − CDb)]
      Var = Ta + Tb/w² + Ca + Cb/w² + Da + Db/w² [+ CDa + CDb/w²]

  with ``T = R`` the treated area. The bracketed term is the paper's separate control for the
  displacement area (counts key ``"buffer_control"``, optional); without it the buffer's change is
  added as it is, which is ptools' ``wdd(..., disp_control = c(0, 0))``. The variance is the sum of
  the (Poisson) counts; ``se = √Var``, ``z = WDD/se``, ``p`` two-sided normal, interval
  ``WDD ± z_{(1+level)/2}·se``. **Negative WDD = crime reduction.** The normal approximation is
  rough for small counts (the reading warns when a count is below 5).
* **DiD**, difference in differences of rates per 1,000 residents (populations in ``population``)::

      DiD = (rTa − rTb) − (rCa − rCb),   rXp = 1000 · Xp / (w_p · pop_X,p)
      se  = 1000 · √(Ta/popTa² + Tb/(w·popTb)² + Ca/popCa² + Cb/(w·popCb)²)

  rates per 1,000 residents per after-period length; the interval is ``DiD ± z·se`` (Poisson counts,
  populations taken as known).
* **Harm-weighted versions**: the same formulas on harm sums ``H = Σ wᵢ`` (weight = harm per
  incident) in place of counts. The variance of a harm sum is compound Poisson: ``Var(H) = Σ wᵢ²``
  (counts' ``harm_sq``); a before harm sum divided by ``w`` has variance ``Σ wᵢ² / w²``. With one
  weight per category this equals ptools' ``wdd_harm`` (Σ weight² · Var of each category's WDD).

Statuses
--------
Every measure has a status: ``"ok"``, or ``"cannot compute: <why>"`` when a denominator is zero or an
input is missing (no population, no buffer, a control with no incidents before, …). A value that
cannot be computed is ``None``; never ``inf`` or ``NaN``. Gross and net effect have two parts each
(absolute and relative): when only the relative part cannot be computed the absolute part is still
given and the status names the missing part. Likewise DiD and WDD give their estimate when only the
standard error is missing (harm sums without ``harm_sq``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd
import shapely

from usm_geo.errors import BoundaryError, CRSError, DateError, UsmGeoError

__all__ = [
    "AREAS",
    "ImpactAreas",
    "areas_from_units",
    "count_in_areas",
    "impact_areas",
    "impact_measures",
    "wdq_reading",
    "window_days",
]

#: The three areas, in the order a point on a shared boundary is given to them.
AREAS = ("treated", "buffer", "control")

#: Pairwise overlap (m²) above which two areas are said to overlap.
OVERLAP_TOLERANCE_M2 = 1e-6

#: Precision grid (metres) of every area and every overlay between areas: 1 mm. See impact_areas.
GRID_M = 1e-3

#: Counts below this in any WDD term make the reading warn about the normal approximation.
SMALL_COUNT = 5

REST_OF_CITY_WARNING = "control is the rest of the city: a weak comparison"


# =============================================================================== areas


@dataclass
class ImpactAreas:
    """The treated area, the buffer around it and the control area (shapely, metres).

    ``buffer`` is an empty polygon when there is no buffer. ``report`` states how each area was made,
    the areas in m² and any warnings (``report["warnings"]``; ``report["control_is_rest_of_city"]``).
    """

    treated: shapely.Geometry
    buffer: shapely.Geometry
    control: shapely.Geometry
    report: dict = field(default_factory=dict)


def _as_polygonal(geom, name: str, report: dict) -> shapely.Geometry:
    """A valid, non-empty (Multi)Polygon from a shapely geometry, GeoSeries/GeoDataFrame or list."""
    if geom is None:
        raise BoundaryError(f"the {name} area is missing", where=name, fix=f"give a polygon for the {name} area")
    if not isinstance(geom, shapely.Geometry):
        geoms = getattr(geom, "geometry", geom)
        geoms = np.asarray(getattr(geoms, "values", geoms), dtype=object).ravel()
        if not all(g is None or isinstance(g, shapely.Geometry) for g in geoms):
            raise BoundaryError(f"the {name} area is not a geometry ({type(geom).__name__})", where=name,
                                fix="pass a shapely Polygon/MultiPolygon or a GeoSeries/GeoDataFrame of polygons")
        geom = shapely.union_all(geoms[[g is not None for g in geoms]])
    if geom.is_empty:
        raise BoundaryError(f"the {name} area is empty", where=name, fix=f"give a non-empty polygon for the {name} area")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        report.setdefault("warnings", []).append(f"the {name} area was not a valid polygon and was repaired (make_valid)")
    if geom.geom_type == "GeometryCollection":
        parts = shapely.get_parts(geom)
        geom = shapely.union_all(parts[np.isin(shapely.get_type_id(parts), (3, 6))])
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.area <= 0:
        raise BoundaryError(f"the {name} area is a {geom.geom_type} with no area, not a polygon", where=name,
                            fix=f"give a polygon for the {name} area")
    return shapely.set_precision(geom, GRID_M)


def areas_from_units(layer_gdf, unit_ids) -> shapely.Geometry:
    """The union of the units ``unit_ids`` of a unit layer (``unit_id`` column, working CRS, metres).

    Ids are compared as strings (``unit_id`` is a string everywhere). Unknown ids raise
    :class:`UsmGeoError` listing them all.
    """
    if isinstance(unit_ids, (str, int)):
        unit_ids = [unit_ids]
    wanted = [str(u) for u in unit_ids]
    if not wanted:
        raise UsmGeoError("no unit ids given", where="unit_ids", fix="name at least one unit")
    crs = getattr(layer_gdf, "crs", None)
    if crs is not None and crs.is_geographic:
        raise CRSError(f"the unit layer is in degrees ({crs.name}); impact areas are measured in metres",
                       where="unit layer", fix="use the layer in the working CRS (projected, metres)")
    if "unit_id" not in getattr(layer_gdf, "columns", ()):
        raise BoundaryError("the unit layer has no 'unit_id' column", where="unit layer",
                            fix="pass a unit level built by usm_geo.units (unit_id, name, geometry)")
    ids = layer_gdf["unit_id"].astype(str).to_numpy()
    unknown = sorted(set(wanted) - set(ids))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise UsmGeoError(
            f"{len(unknown)} unit id(s) not in the layer: {shown}", where="unit_ids",
            fix=f"use ids from the layer's unit_id column (e.g. {', '.join(repr(i) for i in sorted(ids)[:3])})")
    geoms = np.asarray(layer_gdf.geometry.values, dtype=object)[np.isin(ids, wanted)]
    return shapely.union_all(geoms)


def ring_buffer(treated, width: float) -> shapely.Geometry:
    """The displacement ring ``treated.buffer(width) − treated`` on the 1 mm grid (metres); empty for 0."""
    treated = _as_polygonal(treated, "treated", {"warnings": []})
    if not width:
        return shapely.Polygon()
    return shapely.difference(shapely.buffer(treated, float(width)), treated, grid_size=GRID_M)


def mahalanobis_nearest(features: np.ndarray, target: np.ndarray, covariance: np.ndarray, candidates: np.ndarray,
                        ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` candidate rows of ``features`` nearest ``target`` by Mahalanobis distance
    ``d_i = √((x_i − t)ᵀ S⁺ (x_i − t))`` (``S⁺`` the Moore–Penrose inverse of ``covariance``: its inverse
    when it has one; a constant feature then adds nothing instead of dividing by 0).

    Returns (row positions of the chosen rows, nearest first; every row's distance, NaN where not a
    candidate). Ties are broken by ``ids`` (sorted as strings), so the choice is deterministic.
    """
    x = np.asarray(features, dtype=float)
    diff = x - np.asarray(target, dtype=float)[None, :]
    inv = np.linalg.pinv(np.atleast_2d(np.asarray(covariance, dtype=float)))
    d2 = np.einsum("ij,jk,ik->i", diff, inv, diff)
    d = np.sqrt(np.maximum(d2, 0.0))
    d = np.where(candidates & np.isfinite(d), d, np.nan)
    rows = np.flatnonzero(np.isfinite(d))
    order = rows[np.lexsort((np.asarray(ids, dtype=str)[rows], d[rows]))]
    return order[:k], d


def matched_control(layer, treated_ids, *, baseline_count, population=None, buffer=None, k: int = 5,
                    per: float = 1000.0) -> tuple[shapely.Geometry, dict]:
    """A control area of the ``k`` untreated units of ``layer`` (a unit level: ``unit_id``, ``name``,
    geometry in the working CRS) most like the treated units before the intervention.

    Features per unit: the baseline rate (``baseline_count / population · per``) and the population;
    without a population for every unit (> 0), the baseline count alone. The target is the mean of
    the treated units' features; the covariance ``S`` is the sample covariance (n − 1) of the features
    over every unit of the level. Candidates are the units not treated whose polygon overlaps neither
    the treated area nor ``buffer`` by more than 1e-6 m² (the buffer is excluded, so that displacement
    does not leak into the control). The ``k`` nearest by :func:`mahalanobis_nearest` are chosen
    (fewer when fewer are candidates; none is an error).

    Returns (the union of the chosen units, a report for impact.json: method, level features,
    target, covariance, candidates and every chosen unit with its features and distance).
    """
    ids = layer["unit_id"].astype(str).to_numpy()
    treated_ids = [str(u) for u in treated_ids]
    treated = np.isin(ids, treated_ids)
    count = np.asarray(baseline_count, dtype=float)
    pop = None if population is None else np.asarray(population, dtype=float)
    use_rate = pop is not None and bool((np.isfinite(pop) & (pop > 0)).all())
    if use_rate:
        rate = count / pop * per
        features, names = np.c_[rate, pop], ["baseline_rate", "population"]
    else:
        features, names = count[:, None], ["baseline_count"]
    geoms = np.asarray(layer.geometry.values, dtype=object)
    treated_geom = shapely.union_all(geoms[treated])
    overlap_t = shapely.area(shapely.intersection(geoms, treated_geom, grid_size=GRID_M))
    overlap_b = (shapely.area(shapely.intersection(geoms, buffer, grid_size=GRID_M))
                 if buffer is not None and not shapely.is_empty(buffer) else np.zeros(len(ids)))
    in_buffer = ~treated & (overlap_b > OVERLAP_TOLERANCE_M2)
    candidates = ~treated & ~in_buffer & (overlap_t <= OVERLAP_TOLERANCE_M2)
    if not candidates.any():
        raise UsmGeoError(f"no untreated unit lies outside the treated area and its buffer, so none can be matched "
                          f"({int(treated.sum())} treated, {int(in_buffer.sum())} in the buffer)",
                          where='[intervention] control = "matched"', fix="use a narrower buffer, or give a control polygon")
    covariance = np.atleast_2d(np.cov(features, rowvar=False, ddof=1))
    target = features[treated].mean(axis=0)
    chosen, dist = mahalanobis_nearest(features, target, covariance, candidates, ids, int(k))
    names_col = layer["name"].astype(str).to_numpy() if "name" in layer.columns else ids
    rows = []
    for i in chosen:  # k rows at most
        rec = {"unit_id": ids[i], "name": names_col[i], "distance": float(dist[i]), "baseline_count": float(count[i])}
        if use_rate:
            rec.update(baseline_rate=float(rate[i]), population=float(pop[i]))
        rows.append(rec)
    report = {
        "method": "mahalanobis", "k": int(k), "features": names,
        "why_features": ("baseline rate per %g residents and population" % per if use_rate else
                         "baseline count only: not every unit of the level has a population > 0"),
        "target": dict(zip(names, map(float, target))),
        "covariance": covariance.tolist(),
        "treated_units": sorted(treated_ids), "candidates": int(candidates.sum()),
        "excluded_in_buffer": int(in_buffer.sum()), "chosen": rows,
    }
    if len(chosen) < k:
        report["warning"] = f"only {len(chosen)} candidate unit(s), fewer than k = {k}"
    return shapely.union_all(geoms[chosen]), report


def impact_areas(treated, *, buffer_width: float | None = 400.0, buffer_area=None, control=None,
                 study_area=None) -> ImpactAreas:
    """Build and check the treated, buffer and control areas (metres, working CRS).

    Parameters
    ----------
    treated : (Multi)Polygon, or GeoSeries/GeoDataFrame of polygons (unioned)
        The area that received the intervention (see :func:`areas_from_units`).
    buffer_width : float or None, default 400
        The buffer is the ring ``treated.buffer(buffer_width) − treated``. ``None`` or 0: no buffer
        (an empty polygon; WDQ then cannot be computed). Ignored when ``buffer_area`` is given.
    buffer_area : (Multi)Polygon, optional
        The buffer as a polygon; it must not overlap the treated area.
    control : (Multi)Polygon, optional
        The comparison area. When not given it is the rest of the study area
        (``study_area − treated − buffer``), flagged in the report as a weak comparison.
    study_area : (Multi)Polygon, optional
        Needed only when ``control`` is not given.

    Notes
    -----
    Every area is snapped to a 1 mm grid (``shapely.set_precision``) and every overlay between them
    (ring, default control, overlap check) is computed on that grid (GEOS snap-rounding overlay), so
    that the ring and the default control share their boundaries exactly. Floating-point overlay
    does not guarantee that: on Demo City it left 2.5 mm wide slivers, 8 m² in all, between the
    400 m ring and the rest of the city.

    Raises
    ------
    UsmGeoError
        When two areas overlap by more than 1e-6 m² (the message names the pair and the overlap),
        when an area is empty, or when neither a control nor a study area is given.
    """
    report: dict = {"warnings": []}
    treated = _as_polygonal(treated, "treated", report)

    if buffer_area is not None:
        buffer = _as_polygonal(buffer_area, "buffer", report)
        report["buffer_source"] = "given"
        report["buffer_width_m"] = None
    elif buffer_width is None or buffer_width == 0:
        buffer = shapely.Polygon()
        report["buffer_source"] = "none"
        report["buffer_width_m"] = None
    else:
        width = float(buffer_width)
        if not math.isfinite(width) or width < 0:
            raise UsmGeoError(f"buffer width {buffer_width!r} is not a distance", where="buffer_width",
                              fix="give a positive width in metres (e.g. 400), or 0 for no buffer")
        buffer = ring_buffer(treated, width)
        report["buffer_source"] = "ring"
        report["buffer_width_m"] = width

    if control is not None:
        control = _as_polygonal(control, "control", report)
        report["control_source"] = "given"
        report["control_is_rest_of_city"] = False
    elif study_area is not None:
        study = _as_polygonal(study_area, "study area", report)
        control = shapely.difference(study, shapely.union(treated, buffer, grid_size=GRID_M), grid_size=GRID_M)
        if control.is_empty or control.area <= OVERLAP_TOLERANCE_M2:
            raise UsmGeoError("the study area holds nothing outside the treated area and its buffer", where="control",
                              fix="give a control area, or a narrower buffer")
        if control.geom_type == "GeometryCollection":
            control = _as_polygonal(control, "control", report)
        report["control_source"] = "rest of study area"
        report["control_is_rest_of_city"] = True
        report["warnings"].append(REST_OF_CITY_WARNING)
    else:
        raise UsmGeoError("no control area and no study area to take one from", where="control",
                          fix="give a control polygon (comparable units away from the treated area) or the study area")

    named = {"treated": treated, "buffer": buffer, "control": control}
    for i, a in enumerate(AREAS):
        for b in AREAS[i + 1:]:
            if named[a].is_empty or named[b].is_empty:
                continue
            overlap = float(shapely.area(shapely.intersection(named[a], named[b], grid_size=GRID_M)))
            if overlap > OVERLAP_TOLERANCE_M2:
                fix = {("treated", "buffer"): "cut the treated area out of the buffer (buffer − treated)",
                       ("treated", "control"): "choose a control area away from the treated area",
                       ("buffer", "control"): "choose a control area beyond the buffer, or a narrower buffer "
                                              "(or cut the buffer out of the control)"}[(a, b)]
                raise UsmGeoError(f"the {a} and {b} areas overlap by {overlap:,.1f} m²", where=f"{a}/{b}",
                                  fix=fix + "; the three areas must not overlap")

    report.update({
        "treated_area_m2": float(treated.area),
        "buffer_area_m2": float(buffer.area),
        "control_area_m2": float(control.area),
    })
    return ImpactAreas(treated=treated, buffer=buffer, control=control, report=report)


# =============================================================================== counting


def _window(win, name: str) -> tuple[np.datetime64, np.datetime64]:
    """``(start, end)``, a :class:`usm_geo.periods.Window` or ``"START:END"`` → [start, stop) in ns.

    An end with no time of day (a date, a ``YYYY-MM-DD`` string or a datetime at exactly 00:00) covers
    that whole day; an end with a time of day is included up to that instant.
    """
    if isinstance(win, str):
        from usm_geo.periods import parse_window
        w = parse_window(win)
        win = (w.start, w.end)
    elif hasattr(win, "start") and hasattr(win, "end"):
        win = (win.start, win.end)
    try:
        start, end = win
        start, end = pd.Timestamp(start), pd.Timestamp(end)
    except (TypeError, ValueError):
        raise DateError(f"the {name} window {win!r} is not a (start, end) pair of dates", where=name,
                        fix="give (start, end) dates, e.g. ('2021-01-01', '2021-12-31'); both are included") from None
    if pd.isna(start) or pd.isna(end):
        raise DateError(f"the {name} window {win!r} has a missing date", where=name, fix="give both dates")
    if start.tz is not None or end.tz is not None:
        raise DateError(f"the {name} window has a time zone", where=name, fix="give naive local dates")
    stop = end + pd.Timedelta(days=1) if end == end.normalize() else end + pd.Timedelta(1, "ns")
    if stop <= start:
        raise DateError(f"the {name} window ends before it starts ({start} → {end})", where=name,
                        fix="swap the two dates")
    return np.datetime64(start.as_unit("ns").asm8, "ns"), np.datetime64(stop.as_unit("ns").asm8, "ns")


def window_days(window) -> float:
    """Length of a window in days, both ends included: ``("2021-01-01", "2021-12-31")`` → 365.0.

    Accepts what :func:`count_in_areas` accepts; use it for ``before_days`` / ``after_days``.
    """
    start, stop = _window(window, "window")
    return float((stop - start) / np.timedelta64(1, "D"))


def _times(t, n: int) -> np.ndarray:
    """Naive local datetime64[ns] array (tz-aware input keeps its wall-clock time)."""
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(t))
    except (TypeError, ValueError) as exc:
        raise DateError(f"times cannot be read as dates ({exc})", where="t",
                        fix="pass naive local datetimes (datetime64, pandas Timestamps or ISO strings)") from None
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    if len(idx) != n:
        raise UsmGeoError(f"{len(idx)} times for {n} points", where="t", fix="pass one time per point")
    return idx.to_numpy(dtype="datetime64[ns]")


def count_in_areas(x, y, t, areas: ImpactAreas, before, after, weights=None) -> dict:
    """Count incidents per area (treated, buffer, control) in the before and after windows.

    Parameters
    ----------
    x, y : array-like
        Coordinates in the working CRS (metres), the same CRS as ``areas``.
    t : array-like of datetimes
        Naive local times (tz-aware times are used at their wall-clock time). NaT counts nowhere.
    areas : ImpactAreas
    before, after : (start, end), :class:`usm_geo.periods.Window` or ``"START:END"``
        Both ends included: an end date covers its whole day (through 23:59:59.999…). The windows
        must not overlap and ``before`` must end before ``after`` starts.
    weights : array-like, optional
        Harm per incident (≥ 0, finite for every counted incident).

    Returns
    -------
    dict
        ``{"treated"|"buffer"|"control": {"before": n, "after": n}}``; with ``weights`` each area also
        has ``"harm": {"before": Σw, "after": Σw}`` and ``"harm_sq": {"before": Σw², "after": Σw²}``
        (for the compound-Poisson variance). ``"buffer"`` is ``None`` when there is no buffer.

    Notes
    -----
    Points are tested with ``shapely.intersects_xy`` on prepared geometries (vectorised). A point on
    a shared boundary belongs to the first area holding it in the order treated, buffer, control, so
    each point counts at most once and none on a boundary is lost.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.size != y.size:
        raise UsmGeoError(f"{x.size} x coordinates but {y.size} y coordinates", where="x, y",
                          fix="pass one x and one y per point")
    tt = _times(t, x.size)
    b0, b1 = _window(before, "before")
    a0, a1 = _window(after, "after")
    if a0 < b1:
        raise DateError("the before window must end before the after window starts", where="before/after",
                        fix="use a before window that ends before the after window starts")
    if weights is not None:
        w = np.asarray(weights, dtype=float).ravel()
        if w.size != x.size:
            raise UsmGeoError(f"{w.size} harm weights for {x.size} points", where="weights",
                              fix="pass one harm weight per point")

    period = np.full(x.size, -1, dtype=np.int8)
    period[(tt >= b0) & (tt < b1)] = 0
    period[(tt >= a0) & (tt < a1)] = 1
    sel = np.flatnonzero(period >= 0)
    xs, ys = x[sel], y[sel]
    code = np.full(sel.size, -1, dtype=np.int64)
    for k, name in reversed(list(enumerate(AREAS))):  # treated last, so it wins on a shared boundary
        geom = getattr(areas, name)
        if geom is None or geom.is_empty:
            continue
        shapely.prepare(geom)
        code[shapely.intersects_xy(geom, xs, ys)] = k
    ok = code >= 0
    cell = code[ok] * 2 + period[sel][ok]
    n = np.bincount(cell, minlength=6)
    if weights is not None:
        wk = w[sel][ok]
        bad = ~np.isfinite(wk) | (wk < 0)
        if bad.any():
            raise UsmGeoError(f"{int(bad.sum())} counted incident(s) have a missing or negative harm weight",
                              where="weights", fix="give every incident a harm weight ≥ 0 (see the harm table)")
        h = np.bincount(cell, weights=wk, minlength=6)
        h2 = np.bincount(cell, weights=wk * wk, minlength=6)

    out: dict = {}
    for k, name in enumerate(AREAS):
        geom = getattr(areas, name)
        if name == "buffer" and (geom is None or geom.is_empty):
            out[name] = None
            continue
        entry: dict = {"before": int(n[2 * k]), "after": int(n[2 * k + 1])}
        if weights is not None:
            entry["harm"] = {"before": float(h[2 * k]), "after": float(h[2 * k + 1])}
            entry["harm_sq"] = {"before": float(h2[2 * k]), "after": float(h2[2 * k + 1])}
        out[name] = entry
    return out


# =============================================================================== measures


def _number(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsmGeoError(f"{value!r} is not a number", where=where, fix="give a count ≥ 0") from None
    if not math.isfinite(v) or v < 0:
        raise UsmGeoError(f"{value!r} is not a count ≥ 0", where=where, fix="give a finite count ≥ 0")
    return v


def _pairs(counts: dict, kind: str) -> dict | None:
    """{area: (before, after)} and {area: (var_before, var_after)} for counts or harm sums.

    ``kind`` is ``"count"`` or ``"harm"``. Returns None for harm when no area carries harm sums.
    Variances: counts are Poisson (var = count); harm uses ``harm_sq`` (None when absent).
    """
    values, variances = {}, {}
    for area in ("treated", "buffer", "control", "buffer_control"):
        entry = counts.get(area)
        if entry is None:
            if area in ("treated", "control"):
                raise UsmGeoError(f"the counts have no '{area}' area", where="counts",
                                  fix="pass the dict count_in_areas returns")
            continue
        if not isinstance(entry, dict):
            raise UsmGeoError(f"the '{area}' counts are {entry!r}, not {{'before': n, 'after': n}}",
                              where=f"counts.{area}", fix="pass the dict count_in_areas returns")
        if kind == "count":
            pair = tuple(_number(entry.get(p), f"counts.{area}.{p}") for p in ("before", "after"))
            values[area], variances[area] = pair, pair
        else:
            if "harm" not in entry:
                if area == "treated":
                    return None
                raise UsmGeoError(f"the '{area}' counts have no harm sums while others do", where=f"counts.{area}",
                                  fix="count every area with the same harm weights")
            values[area] = tuple(_number(entry["harm"].get(p), f"counts.{area}.harm.{p}") for p in ("before", "after"))
            sq = entry.get("harm_sq")
            variances[area] = (None if sq is None else
                               tuple(_number(sq.get(p), f"counts.{area}.harm_sq.{p}") for p in ("before", "after")))
    return {"values": values, "variances": variances}


def _population(population, area: str) -> tuple[float | None, float | None, str | None]:
    """(before, after) population of an area, or a reason it is unusable."""
    if population is None:
        return None, None, "no population"
    p = population.get(area)
    if p is None:
        return None, None, f"no population for the {area} area"
    pair = (p.get("before"), p.get("after")) if isinstance(p, dict) else (p, p)
    try:
        pb, pa = float(pair[0]), float(pair[1])
    except (TypeError, ValueError):
        return None, None, f"the {area} population {p!r} is not a number"
    if not (math.isfinite(pb) and math.isfinite(pa)) or pb <= 0 or pa <= 0:
        return None, None, f"the {area} population is {p!r}, not a positive number"
    return pb, pa, None


def _fmt(v: float) -> str:
    """A number for the reading: whole from 100 on, 1 decimal from 10 on, else 3 significant digits."""
    if float(v).is_integer():
        return str(int(v))
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _pct(v: float) -> str:
    return f"{100 * v:+.1f} %"


def _measures(vals: dict, vars_: dict, w: float, level: float, population, unit: str) -> dict:
    """Every measure for one kind of quantity (counts or harm sums). Returns the output keys."""
    status = {}
    notes: list[str] = []
    Rb, Ra = vals["treated"]
    Cb, Ca = vals["control"]
    has_buffer = "buffer" in vals
    Db, Da = vals.get("buffer", (0.0, 0.0))
    rb = Rb / w  # the treated before value per after-period length

    # ---- gross effect
    gross = {"absolute": Ra - rb, "relative": None}
    if Rb > 0:
        gross["relative"] = (Ra - rb) / rb
        status["gross_effect"] = "ok"
    else:
        status["gross_effect"] = ("cannot compute: relative change: no incidents in the treated area "
                                  "before (Rb = 0); the absolute change is given")

    # ---- net effect (ratio form, and the difference from the control-trend expectation)
    net = {"absolute": None, "relative": None}
    if Cb <= 0:
        status["net_effect"] = "cannot compute: no incidents in the control area before (Cb = 0)"
    else:
        net["absolute"] = Ra - Rb * (Ca / Cb)
        if Rb <= 0:
            status["net_effect"] = ("cannot compute: relative net effect: no incidents in the treated area "
                                    "before (Rb = 0); the absolute net effect is given")
        elif Ca <= 0:
            status["net_effect"] = ("cannot compute: relative net effect: no incidents in the control area "
                                    "after (Ca = 0); the absolute net effect is given")
        else:
            net["relative"] = (Ra * Cb - Rb * Ca) / (Rb * Ca)
            status["net_effect"] = "ok"

    # ---- WDQ (Bowers & Johnson 2003), cross-multiplied by Ca·Cb
    wdq = None
    success = buffer_measure = None
    if not has_buffer:
        status["wdq"] = "cannot compute: no buffer area"
    elif Cb <= 0 or Ca <= 0:
        which = "before (Cb = 0)" if Cb <= 0 else "after (Ca = 0)"
        status["wdq"] = f"cannot compute: no incidents in the control area {which}"
    else:
        success = Ra / Ca - Rb / Cb
        buffer_measure = Da / Ca - Db / Cb
        den = Ra * Cb - Rb * Ca
        num = Da * Cb - Db * Ca
        if abs(den) <= 1e-12 * max(abs(Ra * Cb), abs(Rb * Ca)):
            success = 0.0
            status["wdq"] = ("cannot compute: the success measure Ra/Ca − Rb/Cb is 0 (the treated area "
                             "changed exactly as the control did)")
        else:
            wdq = num / den
            status["wdq"] = "ok"

    # ---- TNE (Bowers & Johnson 2003)
    tne = None
    if Cb <= 0:
        status["tne"] = "cannot compute: no incidents in the control area before (Cb = 0)"
    else:
        trend = Ca / Cb
        tne = (Rb * trend - Ra) + ((Db * trend - Da) if has_buffer else 0.0)
        status["tne"] = "ok"

    # ---- WDD (Wheeler & Ratcliffe 2018)
    terms = [("treated", +1), ("control", -1)] + ([("buffer", +1)] if has_buffer else [])
    if "buffer_control" in vals:
        terms.append(("buffer_control", -1))
    wdd = se = z = p = None
    ci = None
    q = NormalDist().inv_cdf(0.5 + level / 2)
    est = sum(sign * (vals[a][1] - vals[a][0] / w) for a, sign in terms)
    if any(vars_[a] is None for a, _ in terms):
        wdd = est
        status["wdd"] = ("cannot compute: standard error, z, p and interval: no sums of squared harm "
                         "weights (harm_sq); the estimate is given")
    else:
        var = sum(vars_[a][1] + vars_[a][0] / w**2 for a, _ in terms)
        if var <= 0:
            status["wdd"] = "cannot compute: no incidents in any area or period (the variance is 0)"
        else:
            wdd, se = est, math.sqrt(var)
            z = wdd / se
            p = math.erfc(abs(z) / math.sqrt(2))
            ci = [wdd - q * se, wdd + q * se]
            status["wdd"] = "ok"
            if unit == "incidents" and min(v for a, _ in terms for v in vals[a]) < SMALL_COUNT:
                notes.append(f"some counts are below {SMALL_COUNT}: the WDD's normal approximation is rough")

    # ---- DiD on rates per 1,000 residents
    did = None
    did_ci = None
    pTb, pTa, why_t = _population(population, "treated")
    pCb, pCa, why_c = _population(population, "control")
    if why_t or why_c:
        status["did"] = "cannot compute: " + (why_t if population is None else "; ".join(r for r in (why_t, why_c) if r))
    else:
        k = 1000.0
        est = k * ((Ra / pTa - Rb / (w * pTb)) - (Ca / pCa - Cb / (w * pCb)))
        vt, vc = vars_["treated"], vars_["control"]
        if vt is None or vc is None:
            did = est
            status["did"] = ("cannot compute: interval: no sums of squared harm weights (harm_sq); "
                             "the estimate is given")
        else:
            var = k**2 * (vt[1] / pTa**2 + vt[0] / (w * pTb) ** 2 + vc[1] / pCa**2 + vc[0] / (w * pCb) ** 2)
            if var <= 0:
                status["did"] = "cannot compute: no incidents in the treated or control area in either period"
            else:
                did = est
                did_ci = [did - q * math.sqrt(var), did + q * math.sqrt(var)]
                status["did"] = "ok"

    reading = _reading(unit=unit, w=w, level=level, vals=vals, has_buffer=has_buffer, gross=gross, net=net,
                       wdq=wdq, success=success, buffer_measure=buffer_measure, tne=tne, wdd=wdd, se=se, p=p,
                       ci=ci, did=did, did_ci=did_ci, status=status, notes=notes)
    return {"gross_effect": gross, "net_effect": net, "wdq": wdq, "tne": tne, "wdd": wdd, "wdd_se": se,
            "wdd_z": z, "wdd_p": p, "wdd_ci": ci, "did": did, "did_ci": did_ci, "reading": reading,
            "status": status}


def wdq_reading(wdq: float | None, success: float | None) -> str:
    """Bowers & Johnson's reading of a WDQ (Guerette 2009, Appendix C), in words."""
    if wdq is None or success is None:
        return "WDQ not available"
    if success >= 0:
        return "no effect measurable: the treated area did not improve relative to the control, so the WDQ is not read"
    if wdq > 1:
        return "diffusion of benefits greater than the direct effect"
    if wdq > 0:
        return "diffusion of benefits into the buffer"
    if wdq == 0:
        return "neither displacement nor diffusion"
    if wdq >= -1:
        return "displacement into the buffer, smaller than the direct effect (a net benefit remains)"
    return "displacement greater than the direct effect (the benefit is erased)"


def _fewer(unit: str, v: float) -> str:
    """'12 fewer incidents' / '3.5 more harm' for a signed change."""
    word = ("fewer" if unit == "incidents" else "less") if v < 0 else "more"
    return f"{_fmt(abs(v))} {word} {unit}"


def _reading(*, unit, w, level, vals, has_buffer, gross, net, wdq, success, buffer_measure, tne, wdd, se, p,
             ci, did, did_ci, status, notes) -> str:
    Rb, Ra = vals["treated"]
    Cb, Ca = vals["control"]
    pct = f"{100 * level:g} %"
    parts = [f"Treated area: {_fmt(Rb / w)} → {_fmt(Ra)} {unit}"
             + (f" ({_pct(gross['relative'])})" if gross["relative"] is not None else "")
             + f"; control: {_fmt(Cb / w)} → {_fmt(Ca)}"
             + (f" ({_pct(Ca * w / Cb - 1)})" if Cb > 0 else "") + "."]
    if w != 1:
        parts.append(f"Before values are divided by {w:.4g} (before/after period length) to match the after period.")
    if net["absolute"] is not None:
        rel = f"changed by {_pct(net['relative'])}, " if net["relative"] is not None else ""
        parts.append(f"Against the control's trend the treated area {rel}{_fewer(unit, net['absolute'])} "
                     "than expected (net effect).")
    if status["wdq"] == "ok":
        parts.append(f"WDQ = {wdq:.3g} (success measure {success:+.3g}, buffer displacement measure "
                     f"{buffer_measure:+.3g}): {wdq_reading(wdq, success)}; the WDQ has no standard error, "
                     "see the WDD for chance.")
    else:
        parts.append("WDQ: " + status["wdq"] + ".")
    if tne is not None:
        what = "prevented" if tne >= 0 else "added"
        parts.append(f"Total net effect: {_fmt(abs(tne))} {unit} {what}"
                     + (", net of the buffer's change." if has_buffer else " in the treated area (no buffer)."))
    if wdd is not None and ci is not None:
        sig = "" if p < 1 - level else "not "
        direction = "a reduction" if wdd < 0 else ("an increase" if wdd > 0 else "no change")
        ptext = "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
        parts.append(f"WDD = {_fmt(wdd)} (se {_fmt(se)}, {pct} interval {_fmt(ci[0])} to {_fmt(ci[1])}, "
                     f"{ptext}): {direction}, {sig}statistically significant at the {100 * (1 - level):.3g} % "
                     f"level (negative = {'fewer incidents' if unit == 'incidents' else 'less harm'}).")
    else:
        parts.append("WDD: " + status["wdd"] + ".")
    if did is not None:
        rng = f" ({pct} interval {_fmt(did_ci[0])} to {_fmt(did_ci[1])})" if did_ci else ""
        parts.append(f"Difference in differences: {did:+.3g} {unit} per 1,000 residents over the after period "
                     f"(before counts scaled to its length){rng}.")
    else:
        parts.append("DiD: " + status["did"] + ".")
    parts.extend(n[0].upper() + n[1:] + "." for n in notes)
    return " ".join(parts)


def impact_measures(counts: dict, *, before_days: float, after_days: float, level: float = 0.95,
                    population: dict | None = None) -> dict:
    """Gross and net effect, WDQ, TNE, WDD and DiD from counts per area × period.

    See the module docstring for every formula, its source and the sign conventions.

    Parameters
    ----------
    counts : dict
        As returned by :func:`count_in_areas`: ``{"treated"|"buffer"|"control": {"before": n,
        "after": n[, "harm": {...}, "harm_sq": {...}]}}``. ``"buffer"`` may be None or absent (no
        buffer); an optional ``"buffer_control"`` is Wheeler & Ratcliffe's separate control for the
        buffer (used by the WDD only).
    before_days, after_days : float
        Lengths of the two windows (:func:`window_days`). Before values are divided by
        ``w = before_days / after_days``.
    level : float, default 0.95
        Confidence level of the WDD and DiD intervals (two-sided, normal).
    population : dict, optional
        Residents per area, ``{"treated": 12000, "control": 300000}``; a value may be
        ``{"before": p, "after": p}``. Needed for DiD only.

    Returns
    -------
    dict
        ``gross_effect`` ({absolute, relative}), ``net_effect`` ({absolute, relative}), ``wdq``,
        ``tne``, ``wdd``, ``wdd_se``, ``wdd_z``, ``wdd_p``, ``wdd_ci`` ([lo, hi]), ``did``,
        ``did_ci``, ``reading`` (words), ``status`` (per measure: "ok" or "cannot compute: …"),
        ``weights`` (the period weights and units), ``counts`` (the counts used), and ``harm``: the
        same measures (``gross_effect`` … ``status``) on harm sums, or None without harm weights.
        Plain Python numbers, None where a value cannot be computed.
    """
    if not isinstance(counts, dict):
        raise UsmGeoError("counts must be a dict", where="counts", fix="pass the dict count_in_areas returns")
    try:
        bd, ad, lv = float(before_days), float(after_days), float(level)
    except (TypeError, ValueError):
        raise UsmGeoError("before_days, after_days and level must be numbers", where="impact_measures",
                          fix="give the windows' lengths in days (window_days) and a level such as 0.95") from None
    if not (math.isfinite(bd) and math.isfinite(ad)) or bd <= 0 or ad <= 0:
        raise UsmGeoError(f"period lengths {before_days!r} and {after_days!r} days are not both positive",
                          where="before_days/after_days", fix="give each window's length in days (window_days)")
    if not 0 < lv < 1:
        raise UsmGeoError(f"level {level!r} is not between 0 and 1", where="level", fix="use e.g. 0.95")
    w = bd / ad

    base = _pairs(counts, "count")
    result = _measures(base["values"], base["variances"], w, lv, population, "incidents")
    harm = _pairs(counts, "harm")
    result["harm"] = (None if harm is None else
                      _measures(harm["values"], harm["variances"], w, lv, population, "harm"))

    if w == 1:
        rule = "equal periods: counts are used as they are"
    else:
        rule = (f"before counts are divided by w = before_days / after_days = {_fmt(bd)} / {_fmt(ad)} = {w:.6g}, "
                f"so every count is per {_fmt(ad)} days (the after period's length); a count X divided by w "
                f"has variance X / w²")
    result["weights"] = {
        "before": w, "after": 1.0, "before_days": bd, "after_days": ad, "rule": rule,
        "did_per": f"1,000 residents per {_fmt(ad)} days (the after period's length)",
    }
    result["counts"] = {a: (None if v is None else _plain(v)) for a, v in counts.items()}
    return result


def _plain(v):
    """Deep copy with numpy scalars turned into Python numbers (for JSON)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v
