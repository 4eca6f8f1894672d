"""Demo City boundaries: an irregular city outline cut into ~60 neighbourhoods and ~6 districts.

Everything is in metres in EPSG:32633 (UTM zone 33N); the city is centred near
easting 400 000, northing 5 800 000 (about 52.3° N, 13.5° E) and is about 30 km across.

Neighbourhoods are the Voronoi cells of seeded points (relaxed twice by Lloyd's algorithm so that
no cell is a sliver), clipped to the outline. Districts are contiguous groups of neighbourhoods
found by a seeded k-means on the neighbourhood centroids; each district geometry is the exact
union of its neighbourhoods, so the two levels nest.

Run ``python -m usm_geo.demo.city OUT.gpkg`` to write both layers (``neighbourhoods`` and
``districts``); the committed ``data/boundaries/demo_city.gpkg`` is made that way.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

DEMO_SEED = 20220101
"""Seed of the committed Demo City and of ``usm-geo demo`` unless told otherwise."""

CRS = "EPSG:32633"
CENTRE = (400_000.0, 5_800_000.0)  # metres, EPSG:32633
RADIUS = 14_000.0  # mean outline radius in metres: ~30 km across with the wobble
N_NEIGHBOURHOODS = 60
N_DISTRICTS = 6
GRID_SIZE = 0.01  # metres; coordinates are snapped to this grid so neighbours share exact vertices

# Plausible, unique names; some non-ASCII, one with an apostrophe and one with "&" so that
# every writer and map has to escape and encode them properly.
NEIGHBOURHOOD_NAMES = (
    "Zöllnerviertel", "Łąkowo", "São Bento", "Ærø Park", "Brückenhof", "Köpenicker Feld",
    "Altstadt", "Neumarkt", "Hafenkante", "Lindenau", "Birkenhain", "Mühlenberg",
    "Schlossgarten", "Weidendamm", "Rosental", "Eichwalde Süd", "Fischerkiez", "Glockenturm",
    "Ostkreuz", "Westend", "Nordhafen", "Südstern", "Kirchsteig", "Am Wasserturm",
    "Sonnenhügel", "Grünau", "Marienfelde", "Tannenbusch", "Kastanienallee", "Ufergarten",
    "Wiesengrund", "Ziegelei", "Friedrichsau", "Blumenviertel", "Hirschsprung", "Seeblick",
    "Großer Anger", "Kleiner Anger", "Straßenbahnhof", "Fährhaus", "Weißensee Ost",
    "Gärtnerstadt", "Bäckerkiez", "Jägerheide", "Dębowa Góra", "Żurawiniec", "Vila Nova",
    "Praça Alta", "Île Verte", "Côte Rouge", "Søndermark", "Ørstedhøj", "Åkerby", "Hällefors",
    "Čapkovo", "Dvořákova", "Pré d'Amont", "Hafen & Speicher", "Αγία Ειρήνη", "Rybníček",
    "Ölmühle", "Kreuzäcker", "Üferle", "Moorwiese", "Sandkrug", "Lerchenfeld", "Heideblick",
    "Torfhaus", "Zur Schleuse", "Bärenzwinger",
)
CENTRAL_DISTRICT_NAME = "Mitte"
DISTRICT_NAMES = (
    "Nordufer", "Südheide", "Östliche Vorstadt", "Westkreuz-Łąki", "Seeviertel", "Bergfeld",
    "Auenland", "Oberhöfe",
)


def component_rng(seed: int, component: str) -> np.random.Generator:
    """Return a generator for one named part of the Demo City.

    The stream depends on ``seed`` and the component name only (CRC-32 of the name, which is
    stable across runs and platforms, unlike ``hash``), so changing or adding one part never
    reshuffles the others.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(component.encode())]))


def wobbly_outline(rng: np.random.Generator, centre: tuple[float, float], radius: float,
                   harmonics: int = 6, wobble: float = 0.32, n_vertices: int = 360) -> shapely.Polygon:
    """Return an irregular star-shaped polygon around ``centre`` (metres).

    The radius is ``radius`` times a sum of low-order harmonics with seeded amplitudes and phases,
    so the shape is neither round nor square; being star-shaped it is always valid.
    """
    theta = np.linspace(0.0, 2.0 * np.pi, n_vertices, endpoint=False)
    orders = np.arange(2, harmonics + 2)
    # Amplitudes fall with the order: large lobes, small bumps.
    amplitudes = rng.uniform(0.3, 1.0, orders.size) / orders
    amplitudes *= wobble / amplitudes.sum()
    phases = rng.uniform(0.0, 2.0 * np.pi, orders.size)
    r = radius * (1.0 + (amplitudes[:, None] * np.cos(orders[:, None] * theta + phases[:, None])).sum(axis=0))
    x = centre[0] + r * np.cos(theta)
    y = centre[1] + r * np.sin(theta)
    return shapely.Polygon(np.column_stack([x, y]))


def city_outline(seed: int = DEMO_SEED) -> shapely.Polygon:
    """Return the city outline (Polygon, metres, EPSG:32633), snapped to the 1 cm grid."""
    outline = wobbly_outline(component_rng(seed, "city.outline"), CENTRE, RADIUS)
    return shapely.set_precision(outline, GRID_SIZE)


def _random_points_in(polygon: shapely.Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` uniform random points (n×2 array, metres) inside ``polygon`` by rejection."""
    minx, miny, maxx, maxy = polygon.bounds
    shapely.prepare(polygon)
    out = np.empty((0, 2))
    while len(out) < n:
        cand = rng.uniform((minx, miny), (maxx, maxy), size=(4 * n, 2))
        out = np.vstack([out, cand[shapely.contains_xy(polygon, cand[:, 0], cand[:, 1])]])
    return out[:n]


def _voronoi_cells(points: np.ndarray, outline: shapely.Polygon) -> np.ndarray:
    """Return the Voronoi cells of ``points`` clipped to ``outline``, in the order of the points."""
    cells = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=outline.buffer(1000.0),
                                     ordered=True)
    return shapely.intersection(shapely.get_parts(cells), outline)


def _lloyd(points: np.ndarray, outline: shapely.Polygon, iterations: int) -> np.ndarray:
    """Move each point to the centroid of its clipped Voronoi cell, ``iterations`` times.

    Relaxation evens out cell sizes and removes slivers, which makes neighbourhoods look planned.
    """
    for _ in range(iterations):
        centroids = shapely.centroid(_voronoi_cells(points, outline))
        points = shapely.get_coordinates(centroids)
    return points


def _single_parts(cells: np.ndarray) -> np.ndarray:
    """Return polygons only: detached bits of a clipped cell go to the neighbour they touch most.

    Clipping a Voronoi cell to a concave outline can leave a small detached piece across a bay; a
    neighbourhood must be one Polygon, so the piece joins the cell with the longest shared border.
    """
    cells = np.array(cells, dtype=object)
    parts, owner = shapely.get_parts(cells, return_index=True)
    areas = shapely.area(parts)
    keep = np.zeros(len(parts), dtype=bool)
    # Largest part of each cell stays with it.
    order = np.lexsort((-areas, owner))
    first = np.r_[True, owner[order][1:] != owner[order][:-1]]
    keep[order[first]] = True
    main = np.empty(len(cells), dtype=object)
    main[owner[keep]] = parts[keep]
    for piece in parts[~keep]:  # a handful at most, not per point
        shared = shapely.length(shapely.intersection(shapely.boundary(main), piece.boundary))
        target = int(np.argmax(shared))
        main[target] = shapely.union(main[target], piece, grid_size=GRID_SIZE)
    return main


def _kmeans(xy: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50) -> np.ndarray:
    """Return a cluster label per row of ``xy`` from a plain seeded k-means (k-means++ start)."""
    centres = [xy[rng.integers(len(xy))]]
    for _ in range(1, k):
        d2 = np.min(((xy[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(xy[rng.choice(len(xy), p=d2 / d2.sum())])
    centres = np.array(centres)
    labels = np.zeros(len(xy), dtype=int)
    for _ in range(iterations):
        labels = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        new = np.array([xy[labels == j].mean(axis=0) if np.any(labels == j) else centres[j]
                        for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return labels


def _make_contiguous(cells: np.ndarray, labels: np.ndarray, max_rounds: int = 20) -> np.ndarray:
    """Reassign neighbourhoods cut off from the main body of their district, until all are contiguous.

    A cut-off neighbourhood joins the district of the neighbour it shares the longest border with.
    Returns the new labels.
    """
    labels = labels.copy()
    boundaries = shapely.boundary(cells)
    for _ in range(max_rounds):
        moved = False
        for d in np.unique(labels):
            members = np.flatnonzero(labels == d)
            union = shapely.coverage_union_all(cells[members])
            parts = shapely.get_parts(union)
            if len(parts) == 1:
                continue
            main = parts[np.argmax(shapely.area(parts))]
            shapely.prepare(main)
            points = shapely.point_on_surface(cells[members])
            for i in members[~shapely.contains(main, points)]:
                shared = shapely.length(shapely.intersection(boundaries, boundaries[i]))
                shared[labels == d] = 0.0
                if shared.max() > 0:
                    labels[i] = labels[int(np.argmax(shared))]
                    moved = True
        if not moved:
            break
    return labels


def _neighbourhood_cells(seed: int, outline: shapely.Polygon) -> np.ndarray:
    """Return ~60 valid Polygons covering ``outline`` without gaps or overlaps (metres)."""
    rng = component_rng(seed, "city.neighbourhoods")
    points = _random_points_in(outline, N_NEIGHBOURHOODS, rng)
    points = _lloyd(points, outline, iterations=2)
    cells = _voronoi_cells(points, outline)
    # Snapping the whole coverage to one grid makes shared edges bit-identical in both neighbours.
    cells = shapely.set_precision(cells, GRID_SIZE)
    return _single_parts(cells)


def _order_districts(cells: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Number districts D1.. (D1 holds the city centre, the rest clockwise from north) and name them."""
    k = labels.max() + 1
    union = [shapely.coverage_union_all(cells[labels == j]) for j in range(k)]
    c = shapely.get_coordinates(shapely.point_on_surface(union))
    centre_point = shapely.Point(CENTRE)
    central = next((j for j in range(k) if union[j].contains(centre_point)),
                   int(np.argmin(np.hypot(c[:, 0] - CENTRE[0], c[:, 1] - CENTRE[1]))))
    # Bearing clockwise from north, so the numbering reads like a compass.
    bearing = np.mod(np.degrees(np.arctan2(c[:, 0] - CENTRE[0], c[:, 1] - CENTRE[1])), 360.0)
    others = sorted((j for j in range(k) if j != central), key=lambda j: bearing[j])
    order = [central, *others]
    new_label = np.empty(k, dtype=int)
    new_label[order] = np.arange(k)
    names = [CENTRAL_DISTRICT_NAME, *DISTRICT_NAMES[: k - 1]]
    return new_label[labels], names


def build_boundaries(seed: int = DEMO_SEED) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Build the Demo City boundaries.

    Returns ``(neighbourhoods, districts)``, both GeoDataFrames in EPSG:32633 (metres), sorted by id:

    - neighbourhoods: ``nbhd_id`` ("N01".."N60"), ``name``, ``district_id``, ``geometry`` (Polygon);
    - districts: ``district_id`` ("D1".."D6"), ``name``, ``geometry`` (the exact union of its
      neighbourhoods; a Polygon unless a district could not be made contiguous).
    """
    outline = city_outline(seed)
    cells = _neighbourhood_cells(seed, outline)
    centroids = shapely.get_coordinates(shapely.centroid(cells))
    labels = _kmeans(centroids, N_DISTRICTS, component_rng(seed, "city.districts"))
    labels = _make_contiguous(cells, labels)
    labels, district_names = _order_districts(cells, labels)

    # Neighbourhood ids run district by district, north to south, then west to east.
    order = np.lexsort((centroids[:, 0], -np.round(centroids[:, 1], -2), labels))
    cells, labels = cells[order], labels[order]
    name_rng = component_rng(seed, "city.names")
    names = name_rng.choice(np.array(NEIGHBOURHOOD_NAMES, dtype=object), size=len(cells), replace=False)

    nbhd = gpd.GeoDataFrame(
        {
            "nbhd_id": [f"N{i + 1:02d}" for i in range(len(cells))],
            "name": list(names),
            "district_id": [f"D{j + 1}" for j in labels],
        },
        geometry=list(cells),
        crs=CRS,
    )
    k = labels.max() + 1
    districts = gpd.GeoDataFrame(
        {"district_id": [f"D{j + 1}" for j in range(k)], "name": district_names},
        geometry=[shapely.coverage_union_all(cells[labels == j]) for j in range(k)],
        crs=CRS,
    )
    return nbhd, districts


def write_boundaries(path: Path, seed: int = DEMO_SEED) -> Path:
    """Write the ``neighbourhoods`` and ``districts`` layers of the Demo City to a GeoPackage."""
    nbhd, districts = build_boundaries(seed)
    from usm_geo.io import write_layers

    write_layers(Path(path), {"neighbourhoods": nbhd, "districts": districts})
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m usm_geo.demo.city OUT.gpkg [SEED]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        print("usage: python -m usm_geo.demo.city OUT.gpkg [SEED]", file=sys.stderr)
        return 2
    seed = int(argv[1]) if len(argv) == 2 else DEMO_SEED
    out = write_boundaries(Path(argv[0]), seed)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
