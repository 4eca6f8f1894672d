"""How hot spots change between periods, and how well a set of hot spots captures incidents.

:func:`classify_change` labels each unit from its hot / not-hot status over T ≥ 2 periods
(e.g. ``gistar_bin > 0`` per year, or "in the top 5 % of counts") by the order of its hot periods
(an unbroken run at the start or the end); :func:`classify_persistence` gives sfhotspot's classes
from the *shares* of all, recent and older periods in which it is hot or cold, for long series
(e.g. the space–time bins of :func:`usm_geo.hotspots.emerging.emerging_hotspots`, which reports both). :func:`pai` computes the
Predictive Accuracy Index of Chainey, Tompson & Uhlig (2008) for a selection of units, and the
Predictive Efficiency Index of Hunt (2016) when the units are of equal area.

Sources: Ashby, M. sfhotspot R package (``hotspot_classify``, ``hotspot_classify_params`` defaults);
Chainey, S. (2020) Understanding Crime: Analyzing the Geography of Crime, Esri Press (the classes).
Chainey, S., Tompson, L. & Uhlig, S. (2008) The utility of hotspot mapping for
predicting spatial patterns of crime. Security Journal 21(1–2), 4–28 (PAI). Hunt, J. M. (2016)
Do crime hot spots move? Exploring the effects of the modifiable areal unit problem and modifiable
temporal unit problem on crime hot spot stability. PhD dissertation, American University (PEI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from usm_geo.errors import UsmGeoError

__all__ = ["CHANGE_CLASSES", "PERSISTENCE_CLASSES", "PAIResult", "classify_change", "classify_persistence", "pai"]

#: The change classes, in the order of the rules in :func:`classify_change`.
CHANGE_CLASSES: tuple[str, ...] = ("none", "persistent", "emerging", "former", "intermittent")


def _bool_array(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != bool:
        if arr.dtype.kind not in "biuf" or not np.all(np.isin(arr, (0, 1))):
            raise UsmGeoError(f"{name} must be boolean (hot or not), got values of type {arr.dtype}",
                              fix="pass True/False (or 1/0) per unit and period")
        arr = arr.astype(bool)
    return arr


def classify_change(hot, hot_after=None, *, persistent_share: float = 0.8) -> np.ndarray:
    """Classify each unit's hot-spot history as none, persistent, emerging, former or intermittent.

    Call as ``classify_change(hot_before, hot_after)`` with two (U,) boolean arrays, or as
    ``classify_change(series)`` with a (T, U) boolean array (T ≥ 2 periods in time order, rows =
    periods). With ``h_1 … h_T`` a unit's hot flags and ``n = Σ h``, the first rule that applies wins:

    1. ``none``: never hot (n = 0).
    2. ``persistent``: hot in at least ``ceil(persistent_share · T)`` periods (default 80 %; always at
       least 2 periods). For T = 2 that is hot in both periods.
    3. ``emerging``: hot only in later periods: not hot in the first period, hot in the last, and the
       hot periods form one unbroken run up to the last period (``0…0 1…1``).
    4. ``former``: hot only in earlier periods: hot in the first period, not in the last, and the hot
       periods form one unbroken run from the first period (``1…1 0…0``).
    5. ``intermittent``: anything else — hot, then not, then hot again (``1 0 1``), or hot only in
       the middle (``0 1 1 0``).

    With T = 2: (1, 1) persistent, (0, 1) emerging, (1, 0) former, (0, 0) none; ``intermittent``
    needs T ≥ 3. Returns an object array of the class names, one per unit.
    """
    if hot_after is not None:
        before = _bool_array(hot, "hot_before")
        after = _bool_array(hot_after, "hot_after")
        if before.ndim != 1 or before.shape != after.shape:
            raise UsmGeoError(f"hot_before and hot_after must be (U,) arrays of the same length, "
                              f"got {before.shape} and {after.shape}")
        series = np.vstack([before, after])
    else:
        series = _bool_array(hot, "hot")
        if series.ndim != 2:
            raise UsmGeoError(f"a hot-spot series must be a (periods, units) array, got {series.ndim} dimension(s)",
                              fix="pass hot_before and hot_after, or stack the periods as rows")
    t_periods = series.shape[0]
    if t_periods < 2:
        raise UsmGeoError(f"change needs at least 2 periods, got {t_periods}")
    if not 0 < persistent_share <= 1:
        raise UsmGeoError(f"persistent_share must be in (0, 1], got {persistent_share!r}")

    n_hot = series.sum(axis=0)
    need = max(2, int(np.ceil(round(persistent_share * t_periods, 9))))
    first, last = series[0], series[-1]
    switches = (series[1:] != series[:-1]).sum(axis=0)   # one switch = a single step change

    out = np.full(series.shape[1], "intermittent", dtype=object)
    out[~first & last & (switches == 1)] = "emerging"
    out[first & ~last & (switches == 1)] = "former"
    out[n_hot >= need] = "persistent"
    out[n_hot == 0] = "none"
    return out


#: The persistence classes of :func:`classify_persistence` (sfhotspot's ``hotspot_classify`` labels).
PERSISTENCE_CLASSES: tuple[str, ...] = (
    "persistent hotspot", "emerging hotspot", "former hotspot", "intermittent hotspot",
    "persistent coldspot", "emerging coldspot", "former coldspot", "intermittent coldspot",
    "mixed hot/coldspot", "no pattern")


def _persistence_one(flags: np.ndarray, recent: int, hotspot_prop: float, persistent_prop: float,
                     word: str) -> np.ndarray:
    """sfhotspot's four classes for one kind of spot (hot or cold) from a (T, U) boolean series."""
    t_periods = flags.shape[0]
    eps = 1e-12  # proportions compared with a tolerance: 4/5 ≥ 0.8 must hold in floating point
    prop = flags.sum(axis=0) / t_periods
    prop_recent = flags[t_periods - recent:].sum(axis=0) / recent
    prop_older = flags[:t_periods - recent].sum(axis=0) / (t_periods - recent)
    out = np.full(flags.shape[1], "no pattern", dtype=object)
    out[prop >= hotspot_prop - eps] = f"intermittent {word}"
    out[(prop_older >= hotspot_prop - eps) & (prop_recent < hotspot_prop - eps)] = f"former {word}"
    out[(prop_older < hotspot_prop - eps) & (prop_recent >= hotspot_prop - eps)] = f"emerging {word}"
    out[prop >= persistent_prop - eps] = f"persistent {word}"
    return out


def classify_persistence(hot, cold=None, *, hotspot_prop: float = 0.1, persistent_prop: float = 0.8,
                         recent_prop: float = 0.2) -> np.ndarray:
    """sfhotspot-style hot spot classes over T ≥ 2 periods (``hotspot_classify``, Chainey 2020).

    ``hot`` and ``cold`` are (T, U) boolean arrays, periods in time order as rows: a unit is a
    significant hot (cold) spot in that period. With ``R = max(1, floor(recent_prop · T))`` recent
    periods (the last R) and ``T − R ≥ 1`` older ones, and for each unit the shares of periods in
    which it is hot — ``all`` over the T periods, ``recent`` over the last R, ``older`` over the
    first T − R — the first rule that applies wins:

    1. ``persistent hotspot``: ``all ≥ persistent_prop`` (0.8);
    2. ``emerging hotspot``: ``older < hotspot_prop`` (0.1) and ``recent ≥ hotspot_prop``;
    3. ``former hotspot``: ``older ≥ hotspot_prop`` and ``recent < hotspot_prop``;
    4. ``intermittent hotspot``: ``all ≥ hotspot_prop``;
    5. ``no pattern``.

    The same rules on ``cold`` give the ``… coldspot`` classes; a unit with a hot and a cold class is
    ``mixed hot/coldspot``. Returns an object array of :data:`PERSISTENCE_CLASSES`, one per unit.

    Differences from sfhotspot 1.x's code (its documentation is followed): the recent and older
    windows are disjoint (sfhotspot's recent slice ``(T − R):T`` takes R + 1 columns, one shared with
    the older slice), and an emerging spot needs ``recent ≥ hotspot_prop`` (its code compares with
    ``recent_prop``). Proportions are compared with a 1e-12 tolerance.
    """
    hot = _bool_array(hot, "hot")
    if hot.ndim != 2 or hot.shape[0] < 2:
        raise UsmGeoError(f"persistence needs a (periods, units) array with at least 2 periods, got shape {hot.shape}",
                          fix="stack the periods as rows, first period first")
    cold = np.zeros_like(hot) if cold is None else _bool_array(cold, "cold")
    if cold.shape != hot.shape:
        raise UsmGeoError(f"hot and cold must have the same shape, got {hot.shape} and {cold.shape}")
    for name, v in (("hotspot_prop", hotspot_prop), ("persistent_prop", persistent_prop), ("recent_prop", recent_prop)):
        if not 0 < v < 1:
            raise UsmGeoError(f"{name} must be between 0 and 1, got {v!r}")
    t_periods = hot.shape[0]
    recent = max(1, int(np.floor(round(recent_prop * t_periods, 9))))
    if t_periods - recent < 1:
        raise UsmGeoError(f"{t_periods} periods leave no older period beside {recent} recent one(s)",
                          fix="use more (shorter) periods or a smaller recent_prop")
    h = _persistence_one(hot, recent, hotspot_prop, persistent_prop, "hotspot")
    c = _persistence_one(cold, recent, hotspot_prop, persistent_prop, "coldspot")
    out = np.where(h != "no pattern", h, c).astype(object)
    out[(h != "no pattern") & (c != "no pattern")] = "mixed hot/coldspot"
    return out


@dataclass(frozen=True)
class PAIResult:
    """Predictive Accuracy Index and its parts for one selection of units.

    ``hit_rate`` = n/N (share of incidents in the selected units), ``area_share`` = a/A,
    ``pai`` = hit_rate / area_share, ``pei`` = pai / pai_max (NaN unless all areas are equal),
    ``flags`` names any value set to NaN and why.
    """

    pai: float
    hit_rate: float
    area_share: float
    n_selected: float
    n_total: float
    area_selected: float
    area_total: float
    pei: float
    pai_max: float
    flags: tuple[str, ...] = field(default_factory=tuple)


def pai(counts, areas, selected) -> PAIResult:
    """Predictive Accuracy Index (Chainey, Tompson & Uhlig 2008) of a selection of units.

    ``PAI = (n / N) / (a / A)``: n incidents in the selected units out of N in all units, a the
    selected area out of the total area A (any one unit of area, e.g. m²; it cancels). PAI = 1 means
    the selection captures incidents no better than its share of the area.

    ``PEI = PAI / PAI*`` (Hunt 2016), where PAI* is the PAI of the best selection of the same area:
    computed only when all units have equal area (grid cells, H3 cells at one resolution, within
    1e-9 relative), where the best selection of k units is simply the k units with most incidents;
    otherwise PEI is NaN and flagged ``pei_unequal_areas`` (finding the best set of unequal areas is
    a knapsack problem).

    Parameters
    ----------
    counts : array (U,)
        Incidents per unit in the evaluation period (≥ 0), zeros included.
    areas : array (U,)
        Area per unit (≥ 0), same order, in any one unit (e.g. m²).
    selected : array (U,) of bool, or integer indices
        The units predicted hot.

    Division by zero gives NaN with a flag: ``no_incidents`` (N = 0), ``no_area_selected``
    (a = 0), ``zero_total_area`` (A = 0).
    """
    c = np.asarray(counts, dtype=float).ravel()
    a = np.asarray(areas, dtype=float).ravel()
    if c.shape != a.shape:
        raise UsmGeoError(f"counts ({c.size}) and areas ({a.size}) must have one value per unit")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))):
        raise UsmGeoError("counts or areas contain NaN or infinite values",
                          fix="fill units without incidents with 0 and check unit areas")
    if np.any(c < 0) or np.any(a < 0):
        raise UsmGeoError("counts and areas must be ≥ 0")
    sel = np.asarray(selected)
    if sel.dtype == bool:
        if sel.shape != c.shape:
            raise UsmGeoError(f"selected has {sel.size} flags for {c.size} units")
        mask = sel
    else:
        if sel.size and (sel.dtype.kind not in "iu" or sel.min() < -c.size or sel.max() >= c.size):
            raise UsmGeoError("selected must be a boolean mask or integer positions of units",
                              fix=f"use positions 0 … {c.size - 1}")
        mask = np.zeros(c.size, dtype=bool)
        mask[sel.astype(np.int64)] = True

    flags: list[str] = []
    n_sel, n_tot = float(c[mask].sum()), float(c.sum())
    a_sel, a_tot = float(a[mask].sum()), float(a.sum())
    nan = float("nan")
    if n_tot == 0:
        flags.append("no_incidents")
    if a_tot == 0:
        flags.append("zero_total_area")
    if a_sel == 0:
        flags.append("no_area_selected")
    hit = n_sel / n_tot if n_tot > 0 else nan
    share = a_sel / a_tot if a_tot > 0 else nan
    value = hit / share if (np.isfinite(hit) and np.isfinite(share) and share > 0) else nan

    pai_max, pei = nan, nan
    equal = a.size > 0 and a_tot > 0 and np.allclose(a, a[0], rtol=1e-9, atol=0)
    if not equal:
        flags.append("pei_unequal_areas")
    elif np.isfinite(value):
        k = int(mask.sum())
        best = float(np.sort(c)[::-1][:k].sum())
        pai_max = (best / n_tot) / share
        pei = value / pai_max if pai_max > 0 else nan
    return PAIResult(pai=value, hit_rate=hit, area_share=share, n_selected=n_sel, n_total=n_tot,
                     area_selected=a_sel, area_total=a_tot, pei=pei, pai_max=pai_max, flags=tuple(flags))
