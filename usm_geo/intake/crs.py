"""CRS handling: the working CRS (projected, metres) and comparisons that ignore axis order."""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer

from usm_geo.errors import CRSError

WGS84 = CRS.from_epsg(4326)


def same_crs(a, b) -> bool:
    """True when two CRSs are the same, whatever the axis order (Chicago's GCS_unknown WGS 84 = EPSG:4326)."""
    if a is None or b is None:
        return a is None and b is None
    return CRS.from_user_input(a).equals(CRS.from_user_input(b), ignore_axis_order=True)


def utm_for(lon: np.ndarray, lat: np.ndarray, where=None, swap_fix: str | None = None) -> CRS:
    """The WGS 84 / UTM zone CRS that holds the centre of the given lon/lat points (degrees).

    ``where`` (the file the points come from) is named in errors; ``swap_fix`` is the fix given
    when the centre is only covered with longitude and latitude swapped.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        raise CRSError("cannot choose a working CRS: no valid coordinates", where=where, fix='set study.working_crs = "EPSG:...."')
    cx, cy = float(np.median(lon[ok])), float(np.median(lat[ok]))
    if not (-80.0 <= cy <= 84.0 and -180.0 <= cx <= 180.0) and swap_fix and -80.0 <= cx <= 84.0:
        raise CRSError(f"cannot choose a working CRS: longitude and latitude look swapped (the centre of the points, "
                       f"longitude {cx:.3f}, latitude {cy:.3f}, is beyond every UTM zone; swapped it is not)",
                       where=where, fix=swap_fix)
    if not (-80.0 <= cy <= 84.0 and -180.0 <= cx <= 180.0):
        # UTM stops at 80°S and 84°N: points "near a pole" are usually lon/lat read the wrong way round
        raise CRSError(f"cannot choose a working CRS: no UTM zone covers the centre of the points (longitude {cx:.3f}, "
                       f"latitude {cy:.3f})", where=where,
                       fix='if longitude and latitude are swapped, name the columns the other way round (lon = "...", '
                           'lat = "..."); otherwise set study.working_crs = "EPSG:...."')
    # The standard 6° zones (EPSG 326zz north, 327zz south); the Norway/Svalbard exceptions are not
    # applied: any zone near its edge is still a fine metric working CRS for a city. Computed
    # directly because pyproj's database query costs ~150 ms.
    zone = min(int((cx + 180.0) // 6.0) + 1, 60)
    return CRS.from_epsg((32600 if cy >= 0 else 32700) + zone)


def working_crs(setting: str, lon_hint=None, lat_hint=None) -> CRS:
    """The study's working CRS: ``auto`` → local UTM; otherwise it must be projected in metres."""
    if setting == "auto":
        return utm_for(lon_hint, lat_hint)
    from usm_geo.study import projected_in_metres

    return projected_in_metres(setting)


def transformer(src, dst) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def crs_label(crs) -> str:
    """``EPSG:nnnn`` when the CRS has an EPSG code, else its name."""
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    if epsg is None and same_crs(crs, WGS84):
        epsg = 4326  # e.g. Chicago's "GCS_unknown" WGS 84
    return f"EPSG:{epsg}" if epsg else crs.name
