"""Demo City incidents: ~200,000 seeded records over 2019–2023 with planted hotspots and an intervention.

Where: 30 % of incidents fall anywhere in the city with probability proportional to population, 70 % in
12 Gaussian hotspots (σ 150–600 m) of different strengths. When: a summer peak (July/January ≈ 1.25),
more on Fridays and Saturdays, and an hour-of-day profile per category. What: a fixed category mix,
independent of place and date. From 2022-01-01 a treated area over one hotspot loses a planted fraction
of its incidents, and a planted part of those reappears in the 400 m ring around it (displacement).

Coordinates are generated in EPSG:32633 (metres) and written as EPSG:4326 lon/lat with 6 decimals;
times are naive local times (Europe/Berlin) at minute resolution. A few realistic bad records are
planted afterwards; their rows are reported so tests can find them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import Transformer

from usm_geo.demo.city import CENTRE, CRS, component_rng, wobbly_outline
from usm_geo.demo.population import PopulationGrid, cell_centres, label_grid

START = np.datetime64("2019-01-01", "D")
END = np.datetime64("2023-12-31", "D")
YEARS = tuple(range(2019, 2024))
N_BASELINE = 200_000  # incidents before the intervention removes and displaces some

# Category mix (share of all incidents). Homicide ≈ 45 a year.
CATEGORY_SHARES = {
    "theft": 0.458875, "assault": 0.18, "vandalism": 0.15, "burglary": 0.12, "robbery": 0.065,
    "sexual offence": 0.025, "homicide": 0.001125,
}
CATEGORIES = tuple(CATEGORY_SHARES)

UNIFORM_SHARE = 0.3  # share of incidents spread over the city by population; the rest is in hotspots
N_HOTSPOTS = 12
SIGMA_RANGE = (150.0, 600.0)  # metres
HOTSPOT_MIN_SEPARATION = 2_500.0  # metres, so that one hotspot's tail barely reaches another's ring
HOTSPOT_EDGE_DISTANCE = 2_000.0  # metres from the city edge, so that hotspots are not truncated
EDGE_INSET = 1.0  # metres: clean points stay this far inside the city, so 6-decimal lon/lat stay inside

SEASONAL_PEAK_DAY = 196  # day of year (mid-July)
SEASONAL_RATIO = 1.25  # peak over trough of the daily rate
WEEKDAY_FACTORS = (0.93, 0.92, 0.95, 0.98, 1.07, 1.13, 1.02)  # Monday..Sunday
# Relative frequency by hour of day (0..23): evening/night for violence, daytime for theft and burglary.
_NIGHT = (5, 4, 3, 2, 1.5, 1, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4, 4.5, 5, 5.5, 6, 7, 8, 9, 9.5, 9, 7)
_DAY = (1.5, 1, 0.8, 0.6, 0.5, 0.6, 1, 2, 3, 4, 5, 5.5, 6, 6, 6, 6.5, 7, 7, 6.5, 5, 4, 3, 2.5, 2)
_BURGLARY = (2, 1.5, 1.5, 1, 1, 1, 1.5, 2.5, 4, 5.5, 6.5, 7, 7, 7, 7, 6.5, 6, 5.5, 4.5, 3.5, 3, 2.5, 2.5, 2)
HOUR_PROFILES = {
    "theft": _DAY, "assault": _NIGHT, "vandalism": _NIGHT, "burglary": _BURGLARY, "robbery": _NIGHT,
    "sexual offence": _NIGHT, "homicide": _NIGHT,
}

TREATED_HOTSPOT = 2  # the third-strongest hotspot gets the intervention
TREATED_SIGMA = 350.0  # metres; fixed so that ~90 % of that hotspot lies in the treated area
TREATED_RADIUS = 750.0  # metres, mean radius of the irregular treated area (~1.5 km across)
INTERVENTION_NAME = "Safer Streets pilot"
INTERVENTION_START = np.datetime64("2022-01-01T00:00", "m")
REDUCTION = 0.40  # share of treated-area incidents removed from the start date on
DISPLACEMENT = 0.25  # share of the removed incidents that reappear in the ring
BUFFER = 400.0  # metres

MODEL_CELL = 25.0  # metres; grid on which the planted expectations are integrated

TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
FROM_LONLAT = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)


@dataclass
class IncidentsResult:
    """Everything the incidents step makes.

    ``table``: the rows as written (strings), bad rows included. ``clean``: the clean incidents
    (``x``, ``y`` in EPSG:32633 metres recomputed from the written lon/lat, ``occurred_at``,
    ``category``). ``treated``: the treated polygon (EPSG:32633). ``rates``: planted incidents a year
    per 1,000 residents for each neighbourhood (same order as the neighbourhoods). ``truths``: the
    planted parameters and expected/observed counts for ``planted_truths.json``.
    """

    table: pd.DataFrame
    clean: pd.DataFrame
    treated: shapely.Polygon
    rates: np.ndarray
    truths: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- where


def _sample_inside(rng: np.random.Generator, draw, n: int,
                   inside: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Return n points from ``draw(rng, m) -> (x, y)`` that fall inside ``inside`` (rejection sampling)."""
    xs, ys, have = [], [], 0
    while have < n:
        m = int((n - have) * 1.2) + 16
        x, y = draw(rng, m)
        ok = shapely.contains_xy(inside, x, y)
        xs.append(x[ok]), ys.append(y[ok])
        have += int(ok.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def place_hotspots(rng: np.random.Generator, grid: PopulationGrid, outline: shapely.Polygon) -> list[dict]:
    """Return 12 hotspots ``{x, y, sigma_m, strength}`` (metres, EPSG:32633), strongest first.

    Centres are drawn where many people live (probability ∝ population²), at least 2 km inside the
    city and 2.5 km from each other; strengths (shares of the hotspot incidents) are a sorted Dirichlet.
    """
    x, y = cell_centres(grid.transform, grid.persons.shape)
    valid = grid.valid.ravel()
    w = np.where(valid, grid.persons.ravel().astype(np.float64), 0.0) ** 2
    cand = rng.choice(x.size, size=4000, p=w / w.sum())
    cx = x[cand] + rng.uniform(-50, 50, cand.size)
    cy = y[cand] + rng.uniform(-50, 50, cand.size)
    inner = shapely.buffer(outline, -HOTSPOT_EDGE_DISTANCE)
    ok = shapely.contains_xy(inner, cx, cy)
    chosen: list[int] = []
    for i in np.flatnonzero(ok):  # greedy thinning of a few hundred candidates, not per incident
        if all(np.hypot(cx[i] - cx[j], cy[i] - cy[j]) >= HOTSPOT_MIN_SEPARATION for j in chosen):
            chosen.append(i)
            if len(chosen) == N_HOTSPOTS:
                break
    if len(chosen) < N_HOTSPOTS:
        raise RuntimeError("could not place the Demo City hotspots; try another seed")
    strengths = np.sort(rng.dirichlet(np.full(N_HOTSPOTS, 2.0)))[::-1]
    sigmas = rng.uniform(*SIGMA_RANGE, N_HOTSPOTS)
    sigmas[TREATED_HOTSPOT] = TREATED_SIGMA
    return [
        {"x": round(float(cx[i]), 2), "y": round(float(cy[i]), 2), "sigma_m": round(float(s), 1),
         "strength": float(st)}
        for i, s, st in zip(chosen, sigmas, strengths)
    ]


def sample_locations(rng: np.random.Generator, n: int, grid: PopulationGrid, hotspots: list[dict],
                     inside: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Return n incident locations (x, y in metres, EPSG:32633), in random order.

    ``UNIFORM_SHARE`` of them pick a 100 m cell with probability ∝ population and a uniform spot in
    it; the rest come from the Gaussian hotspots in proportion to their strength. Points outside
    ``inside`` are redrawn, so every clean incident is in the city.
    """
    shares = np.r_[UNIFORM_SHARE, (1 - UNIFORM_SHARE) * np.array([h["strength"] for h in hotspots])]
    counts = rng.multinomial(n, shares / shares.sum())
    cx, cy = cell_centres(grid.transform, grid.persons.shape)
    pop = np.where(grid.valid.ravel(), grid.persons.ravel().astype(np.float64), 0.0)
    half = grid.transform.a / 2

    def uniform(r, m):
        cells = r.choice(pop.size, size=m, p=pop / pop.sum())
        return cx[cells] + r.uniform(-half, half, m), cy[cells] + r.uniform(-half, half, m)

    parts = [_sample_inside(rng, uniform, counts[0], inside)]
    for h, m in zip(hotspots, counts[1:]):
        def gauss(r, k, h=h):
            return r.normal(h["x"], h["sigma_m"], k), r.normal(h["y"], h["sigma_m"], k)
        parts.append(_sample_inside(rng, gauss, m, inside))
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    order = rng.permutation(n)  # locations are independent of time and category
    return x[order], y[order]


# --------------------------------------------------------------------------- when and what


def _days() -> np.ndarray:
    """Return every day of the study period, 2019-01-01..2023-12-31 (datetime64[D])."""
    return np.arange(START, END + 1)


def day_weights() -> np.ndarray:
    """Return the relative incident rate of every day 2019-01-01..2023-12-31 (seasonal × weekday)."""
    days = _days()
    doy = (days - days.astype("datetime64[Y]")).astype(int) + 1
    amplitude = (SEASONAL_RATIO - 1) / (SEASONAL_RATIO + 1)
    seasonal = 1 + amplitude * np.cos(2 * np.pi * (doy - SEASONAL_PEAK_DAY) / 365.25)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return seasonal * np.asarray(WEEKDAY_FACTORS)[weekday]


def year_fractions() -> dict[int, float]:
    """Return the expected share of incidents in each year (from the day weights)."""
    w = day_weights()
    years = _days().astype("datetime64[Y]").astype(int) + 1970
    return {y: float(w[years == y].sum() / w.sum()) for y in YEARS}


def _dst_gap_days() -> np.ndarray:
    """Return the spring-forward dates of Europe/Berlin 2019–2023 (02:00–02:59 does not exist)."""
    out = []
    for y in YEARS:  # five dates, not per incident
        d = dt.date(y, 3, 31)
        out.append(np.datetime64(d - dt.timedelta(days=(d.weekday() - 6) % 7), "D"))
    return np.array(out)


def sample_categories(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return n category codes (indices into ``CATEGORIES``) in random order."""
    counts = rng.multinomial(n, list(CATEGORY_SHARES.values()))
    return rng.permutation(np.repeat(np.arange(len(CATEGORIES)), counts))


def sample_times(rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
    """Return a naive local time (datetime64[m]) for each category code.

    Days follow :func:`day_weights`, hours the category's profile, minutes are uniform; times in the
    spring-forward gap move one hour on, so every time exists in Europe/Berlin.
    """
    n = codes.size
    w = day_weights()
    days = _days()[rng.choice(w.size, size=n, p=w / w.sum())]
    hours = np.empty(n, dtype=np.int64)
    for c, name in enumerate(CATEGORIES):  # seven categories, vectorised within each
        idx = np.flatnonzero(codes == c)
        p = np.asarray(HOUR_PROFILES[name], dtype=float)
        hours[idx] = rng.choice(24, size=idx.size, p=p / p.sum())
    hours[np.isin(days, _dst_gap_days()) & (hours == 2)] = 3
    minutes = rng.integers(0, 60, n)
    return days.astype("datetime64[m]") + hours * 60 + minutes


# --------------------------------------------------------------------------- intervention


def treated_area(rng: np.random.Generator, hotspot: dict) -> shapely.Polygon:
    """Return the irregular treated polygon (~1.5 km across, metres) around a hotspot centre."""
    centre = (hotspot["x"] + rng.uniform(-100, 100), hotspot["y"] + rng.uniform(-100, 100))
    poly = wobbly_outline(rng, centre, TREATED_RADIUS, harmonics=4, wobble=0.35, n_vertices=48)
    return shapely.set_precision(poly, 0.01)


def buffer_ring(treated: shapely.Polygon) -> shapely.Geometry:
    """Return the ``BUFFER`` m ring around the treated area (the treated area itself excluded)."""
    return shapely.difference(shapely.buffer(treated, BUFFER), treated)


def apply_intervention(rng: np.random.Generator, x, y, t, codes, treated, ring, inside):
    """Remove and displace incidents from the intervention start on.

    Each treated-area incident from ``INTERVENTION_START`` on is removed with probability
    ``REDUCTION``; ``DISPLACEMENT`` of the removed ones (same time and category) reappear at a uniform
    spot in ``ring``. Returns the new ``(x, y, t, codes)`` and ``(n_removed, n_displaced)``.
    """
    in_treated = shapely.contains_xy(treated, x, y)
    removed = (t >= INTERVENTION_START) & in_treated & (rng.random(x.size) < REDUCTION)
    idx = np.flatnonzero(removed)
    moved = np.sort(rng.choice(idx, size=int(round(DISPLACEMENT * idx.size)), replace=False))
    minx, miny, maxx, maxy = ring.bounds
    target = shapely.intersection(ring, inside)
    shapely.prepare(target)
    nx, ny = _sample_inside(
        rng, lambda r, m: (r.uniform(minx, maxx, m), r.uniform(miny, maxy, m)), moved.size, target)
    keep = ~removed
    return ((np.r_[x[keep], nx], np.r_[y[keep], ny], np.r_[t[keep], t[moved]],
             np.r_[codes[keep], codes[moved]]), (int(idx.size), int(moved.size)))


TREATED_NBHD_MIN_SHARE = 0.2  # a neighbourhood is "treated" if it holds this share of the treated area


def treated_neighbourhoods(nbhd: gpd.GeoDataFrame, treated: shapely.Polygon) -> np.ndarray:
    """Return a boolean mask of the neighbourhoods holding ≥ 20 % of the treated area."""
    overlap = shapely.area(shapely.intersection(nbhd.geometry.values, treated))
    return overlap / treated.area >= TREATED_NBHD_MIN_SHARE


# --------------------------------------------------------------------------- planted expectations


def expected_shares(nbhd: gpd.GeoDataFrame, grid: PopulationGrid, hotspots: list[dict],
                    treated: shapely.Polygon, ring: shapely.Geometry) -> dict[str, np.ndarray]:
    """Integrate the planted intensity on a 25 m grid.

    Returns the expected share of baseline incidents (before the intervention) per neighbourhood
    (``nbhd``, same order) and per area (``areas``: treated, ring, rest of the city).
    """
    factor = int(grid.transform.a / MODEL_CELL)
    coarse = grid.transform
    # Same origin as the population grid, cells 4 times finer.
    transform = Affine(coarse.a / factor, 0.0, coarse.c, 0.0, coarse.e / factor, coarse.f)
    shape = (grid.persons.shape[0] * factor, grid.persons.shape[1] * factor)
    labels = label_grid(nbhd.geometry.values, transform, shape).ravel()
    areas = label_grid([treated, ring], transform, shape).ravel()  # 1 treated, 2 ring, 0 rest
    valid = labels > 0
    # The uniform part: population spread evenly over each 100 m cell, points outside redrawn.
    pop = np.where(grid.valid, grid.persons.astype(np.float64), 0.0)
    uniform = np.repeat(np.repeat(pop, factor, 0), factor, 1).ravel() * valid
    intensity = UNIFORM_SHARE * uniform / uniform.sum()
    xs = transform.c + (np.arange(shape[1]) + 0.5) * MODEL_CELL
    ys = transform.f - (np.arange(shape[0]) + 0.5) * MODEL_CELL
    for h in hotspots:  # Gaussians are separable: an outer product per hotspot
        g = np.outer(np.exp(-0.5 * ((ys - h["y"]) / h["sigma_m"]) ** 2),
                     np.exp(-0.5 * ((xs - h["x"]) / h["sigma_m"]) ** 2)).ravel() * valid
        intensity += (1 - UNIFORM_SHARE) * h["strength"] * g / g.sum()
    by_nbhd = np.bincount(labels, weights=intensity, minlength=len(nbhd) + 1)[1:]
    by_area = np.bincount(areas[valid], weights=intensity[valid], minlength=3)
    return {"nbhd": by_nbhd, "areas": by_area[[1, 2, 0]]}


# --------------------------------------------------------------------------- coordinates and counts


def fixed_text(values: np.ndarray, decimals: int) -> np.ndarray:
    """Return ``values`` as fixed-point strings with ``decimals`` decimals (like ``"%.6f"``).

    Built from integers with numpy's vectorised string functions: several times faster than
    ``np.char.mod`` on 200,000 values.
    """
    scaled = np.rint(np.abs(np.asarray(values, dtype=float)) * 10**decimals).astype(np.int64)
    text = np.dtypes.StringDType()
    whole = (scaled // 10**decimals).astype(text)
    frac = np.strings.zfill((scaled % 10**decimals).astype(text), decimals)
    out = np.strings.add(np.strings.add(whole, "."), frac)
    return np.where((np.asarray(values) < 0) & (scaled > 0), np.strings.add("-", out), out)


def to_lonlat_text(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return longitude and latitude strings with 6 decimals (EPSG:4326) for x, y in EPSG:32633."""
    lon, lat = TO_LONLAT.transform(x, y)
    return fixed_text(lon, 6), fixed_text(lat, 6)


def from_lonlat_text(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return x, y (metres, EPSG:32633) of written lon/lat strings, as a reader will see them."""
    return FROM_LONLAT.transform(lon.astype(float), lat.astype(float))


def _year(t: np.ndarray) -> np.ndarray:
    """Return the calendar year of each datetime64 value."""
    return t.astype("datetime64[Y]").astype(int) + 1970


def area_codes(x, y, treated, ring) -> np.ndarray:
    """Return 0 for points in the treated area, 1 in the ring, 2 elsewhere."""
    code = np.full(np.shape(x), 2)
    code[shapely.contains_xy(ring, x, y)] = 1
    code[shapely.contains_xy(treated, x, y)] = 0
    return code


def counts_by_area_year(x, y, t, treated, ring) -> dict[str, dict[str, int]]:
    """Return ``{area: {year: count}}`` for the treated area, the ring ("buffer") and the rest."""
    code, year = area_codes(x, y, treated, ring), _year(t)
    return {name: {str(yr): int(np.sum((code == a) & (year == yr))) for yr in YEARS}
            for a, name in enumerate(("treated", "buffer", "rest"))}


def assign_units(x, y, geoms) -> np.ndarray:
    """Return the index of the polygon holding each point (x, y in metres), -1 if none.

    A bounding-box filter per polygon, then ``contains_xy`` on the few points left: faster than
    building 200,000 Point objects for an STRtree query.
    """
    out = np.full(np.shape(x), -1)
    for i, (g, (minx, miny, maxx, maxy)) in enumerate(zip(geoms, shapely.bounds(geoms))):
        cand = np.flatnonzero((x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy))
        out[cand[shapely.contains_xy(g, x[cand], y[cand])]] = i
    return out


# --------------------------------------------------------------------------- bad records


BAD_INCIDENT_KINDS = (
    "zero_coordinates", "zero_coordinates", "zero_coordinates", "empty_coordinates",
    "non_numeric_coordinate", "swapped_coordinates", "outside_city", "impossible_date",
    "impossible_date",
)
IMPOSSIBLE_DATES = ("2021-02-30 25:61", "not recorded")
OUTSIDE_OFFSET = 60_000.0  # metres east of the city centre


def plant_bad_rows(rng: np.random.Generator, table: pd.DataFrame,
                   avoid: np.ndarray) -> tuple[pd.DataFrame, list[dict]]:
    """Insert the planted bad rows into the sorted clean ``table`` (all columns strings).

    Bad rows get new ids after the clean ones and take the time of the clean row before them (the
    two impossible dates excepted). Two exact duplicates follow their originals, which are picked
    among rows where ``avoid`` is False. Returns the new table and one record per bad row, with its
    1-based data row number (header not counted).
    """
    n = len(table)
    after = np.sort(rng.choice(np.arange(100, n - 100), size=len(BAD_INCIDENT_KINDS), replace=False))
    cats = rng.choice(np.array([c for c in CATEGORIES if c != "homicide"]), len(BAD_INCIDENT_KINDS))
    spot_x, spot_y = rng.uniform(-3000, 3000, (2, 2)) + np.array(CENTRE)[:, None]
    good_lon, good_lat = to_lonlat_text(spot_x, spot_y)
    far_lon, far_lat = to_lonlat_text(np.array([CENTRE[0] + OUTSIDE_OFFSET]), np.array([CENTRE[1]]))
    rows, dates = [], iter(IMPOSSIBLE_DATES)
    for i, (j, kind) in enumerate(zip(after, BAD_INCIDENT_KINDS)):  # nine rows
        lon, lat, when = good_lon[i % 2], good_lat[i % 2], table["occurred_at"].iat[j]
        if kind == "zero_coordinates":
            lon, lat = "0.000000", "0.000000"
        elif kind == "empty_coordinates":
            lon, lat = "", ""
        elif kind == "non_numeric_coordinate":
            lat = "n/a"
        elif kind == "swapped_coordinates":
            lon, lat = lat, lon
        elif kind == "outside_city":
            lon, lat = far_lon[0], far_lat[0]
        elif kind == "impossible_date":
            when = next(dates)
        rows.append({"incident_id": f"DC{n + i + 1:07d}", "occurred_at": when, "category": cats[i],
                     "longitude": lon, "latitude": lat, "_after": j, "kind": kind})
    pool = np.setdiff1d(np.flatnonzero(~avoid), np.r_[after, after + 1])
    for j in np.sort(rng.choice(pool, size=2, replace=False)):
        rows.append({**table.iloc[j].to_dict(), "_after": j, "kind": "duplicate"})
    bad = pd.DataFrame(rows)
    clean = table.assign(_after=np.arange(n), kind="")
    both = pd.concat([clean.assign(_bad=0), bad.assign(_bad=1)], ignore_index=True)
    both = both.sort_values(["_after", "_bad"], kind="stable").reset_index(drop=True)
    both["row"] = np.arange(1, len(both) + 1)
    records = []
    for r in both[both["_bad"] == 1].itertuples(index=False):
        rec = {"row": int(r.row), "kind": r.kind, "incident_id": r.incident_id,
               "occurred_at": r.occurred_at, "category": r.category,
               "longitude": r.longitude, "latitude": r.latitude}
        if r.kind == "duplicate":
            rec["duplicate_of_row"] = int(r.row) - 1
        records.append(rec)
    return both[list(table.columns)], records


# --------------------------------------------------------------------------- the whole step


def _rates(population: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return incidents a year per 1,000 residents, from counts over the five years."""
    return counts / len(YEARS) / population * 1000.0


def _top5(nbhd: gpd.GeoDataFrame, rates: np.ndarray) -> list[dict]:
    """Return the five neighbourhoods with the highest rates, highest first."""
    order = np.argsort(-rates, kind="stable")[:5]
    return [{"nbhd_id": nbhd["nbhd_id"].iat[i], "name": nbhd["name"].iat[i],
             "rate_per_1000_per_year": round(float(rates[i]), 2)} for i in order]


def incident_table(x, y, t, codes) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Return the clean rows as text (ids ``DC0000001``.. in the given order) and the x, y (metres,
    EPSG:32633) that a reader recomputes from the written 6-decimal lon/lat."""
    lon, lat = to_lonlat_text(x, y)
    when = np.strings.replace(np.datetime_as_string(t, unit="m"), "T", " ")
    ids = np.strings.add("DC", np.strings.zfill(np.arange(1, t.size + 1).astype(np.dtypes.StringDType()), 7))
    table = pd.DataFrame({
        "incident_id": ids.astype(object), "occurred_at": when.astype(object),
        "category": np.array(CATEGORIES, dtype=object)[codes],
        "longitude": lon.astype(object), "latitude": lat.astype(object),
    })
    return (table, *from_lonlat_text(lon, lat))


def generate_incidents(nbhd: gpd.GeoDataFrame, grid: PopulationGrid, population: np.ndarray,
                       seed: int) -> IncidentsResult:
    """Generate the Demo City incidents for neighbourhoods ``nbhd`` and population ``grid``.

    ``population`` holds the integer residents per neighbourhood (the population table), used for
    the planted rates. Returns an :class:`IncidentsResult`.
    """
    outline = shapely.coverage_union_all(nbhd.geometry.values)
    inside = shapely.buffer(outline, -EDGE_INSET)
    shapely.prepare(inside)
    hotspots = place_hotspots(component_rng(seed, "incidents.hotspots"), grid, outline)
    treated = treated_area(component_rng(seed, "incidents.treated"), hotspots[TREATED_HOTSPOT])
    ring = buffer_ring(treated)
    shapely.prepare(treated), shapely.prepare(ring)

    rng = component_rng(seed, "incidents.records")
    codes = sample_categories(rng, N_BASELINE)
    t = sample_times(rng, codes)
    x, y = sample_locations(rng, N_BASELINE, grid, hotspots, inside)
    counterfactual = counts_by_area_year(x, y, t, treated, ring)
    (x, y, t, codes), (n_removed, n_displaced) = apply_intervention(
        component_rng(seed, "incidents.intervention"), x, y, t, codes, treated, ring, inside)

    order = np.lexsort((rng.permutation(t.size), t))  # by time, ties in random order
    t, codes = t[order], codes[order]
    table, x, y = incident_table(x[order], y[order], t, codes)
    # Duplicates copy rows away from the intervention, so the planted area counts stay exact.
    table_out, bad = plant_bad_rows(component_rng(seed, "incidents.bad_rows"), table,
                                    area_codes(x, y, treated, ring) != 2)
    clean = pd.DataFrame({"x": x, "y": y, "occurred_at": t,
                          "category": pd.Categorical.from_codes(codes, CATEGORIES)})

    shares = expected_shares(nbhd, grid, hotspots, treated, ring)
    rates = _rates(population, N_BASELINE * shares["nbhd"])
    unit = assign_units(x, y, nbhd.geometry.values)
    observed = _rates(population, np.bincount(unit[unit >= 0], minlength=len(nbhd)))
    truths = _truths(nbhd, hotspots, treated, ring, shares, rates, observed, clean, counterfactual,
                     n_removed, n_displaced, bad)
    return IncidentsResult(table_out, clean, treated, rates, truths)


def _hotspot_truths(hotspots: list[dict]) -> list[dict]:
    """Return the hotspots for planted_truths.json, with lon/lat and expected share of incidents."""
    lon, lat = TO_LONLAT.transform([h["x"] for h in hotspots], [h["y"] for h in hotspots])
    return [{"rank": i + 1, "x": h["x"], "y": h["y"], "lon": round(float(lo), 6), "lat": round(float(la), 6),
             "sigma_m": h["sigma_m"], "strength": round(h["strength"], 6),
             "expected_share": round((1 - UNIFORM_SHARE) * h["strength"], 6), "treated": i == TREATED_HOTSPOT}
            for i, (h, lo, la) in enumerate(zip(hotspots, lon, lat))]


def _expected_area_counts(area_shares: np.ndarray) -> dict[str, dict[str, float]]:
    """Expected counts per year in the treated area, ring and rest, with the planted effects."""
    out = {"treated": {}, "buffer": {}, "rest": {}}
    for yr, frac in year_fractions().items():
        base = N_BASELINE * frac * area_shares
        after = yr >= 2022
        removed = base[0] * REDUCTION if after else 0.0
        out["treated"][str(yr)] = round(base[0] - removed, 1)
        out["buffer"][str(yr)] = round(base[1] + DISPLACEMENT * removed, 1)
        out["rest"][str(yr)] = round(base[2], 1)
    return out


def _truths(nbhd, hotspots, treated, ring, shares, rates, observed, clean, counterfactual,
            n_removed, n_displaced, bad) -> dict:
    """Return the incidents' and intervention's part of planted_truths.json."""
    year = _year(clean["occurred_at"].to_numpy())
    table = np.zeros((len(CATEGORIES), len(YEARS)), dtype=np.int64)
    np.add.at(table, (clean["category"].cat.codes.to_numpy(), year - YEARS[0]), 1)
    counts = {c: {str(yr): int(table[i, j]) for j, yr in enumerate(YEARS)} for i, c in enumerate(CATEGORIES)}
    by_kind: dict[str, list[int]] = {}
    for b in bad:
        by_kind.setdefault(b["kind"], []).append(b["row"])
    return {
        "incidents": {
            "n_clean": int(len(clean)),
            "n_rows_written": int(len(clean) + len(bad)),
            "n_baseline_before_intervention": N_BASELINE,
            "counts_by_category_year": counts,
            "counts_by_year": {str(yr): int(table[:, j].sum()) for j, yr in enumerate(YEARS)},
            "category_shares": CATEGORY_SHARES,
            "uniform_share": UNIFORM_SHARE,
            "hotspot_share": round(1 - UNIFORM_SHARE, 6),
            "seasonal_peak_day_of_year": SEASONAL_PEAK_DAY,
            "seasonal_peak_over_trough": SEASONAL_RATIO,
            "weekday_factors_monday_first": list(WEEKDAY_FACTORS),
            "hour_profiles": {c: list(map(float, p)) for c, p in HOUR_PROFILES.items()},
            "expected_year_fractions": {str(k): round(v, 6) for k, v in year_fractions().items()},
            "hotspots": _hotspot_truths(hotspots),
            "planted_rate_per_1000_per_year": {
                i: round(float(r), 3) for i, r in zip(nbhd["nbhd_id"], rates)},
            "top5_planted_rate": _top5(nbhd, rates),
            "top5_observed_rate": _top5(nbhd, observed),
            "rate_note": ("planted rates are the expected baseline incidents a year (2019-2023 mean, "
                          "intervention ignored) per 1,000 residents of population.csv; observed "
                          "rates count the clean incidents"),
        },
        "intervention": {
            "name": INTERVENTION_NAME,
            "start": str(INTERVENTION_START.astype("datetime64[D]")),
            "buffer_m": BUFFER,
            "reduction_fraction": REDUCTION,
            "displacement_fraction": DISPLACEMENT,
            "treated_hotspot_rank": TREATED_HOTSPOT + 1,
            "treated_area_m2": round(float(treated.area), 1),
            "treated_nbhd_ids": list(nbhd["nbhd_id"].to_numpy()[treated_neighbourhoods(nbhd, treated)]),
            "treated_nbhd_rule": "neighbourhoods holding at least 20 % of the treated area",
            "buffer_area_m2": round(float(ring.area), 1),
            "expected_share_of_baseline": {
                k: round(float(v), 6) for k, v in zip(("treated", "buffer", "rest"), shares["areas"])},
            "expected_counts_by_year": _expected_area_counts(shares["areas"]),
            "observed_counts_by_year": counts_by_area_year(
                clean["x"].to_numpy(), clean["y"].to_numpy(), clean["occurred_at"].to_numpy(), treated, ring),
            "counterfactual_counts_by_year": counterfactual,
            "n_removed": n_removed,
            "n_displaced": n_displaced,
            "areas_note": ("treated = inside the treated polygon; buffer = within 400 m of it, outside "
                           "it; rest = the rest of the city. Observed counts use the clean incidents at "
                           "their written lon/lat; counterfactual counts are the same draw before the "
                           "intervention"),
        },
        "bad_records_incidents": {"rows": bad, "rows_by_kind": by_kind},
    }
