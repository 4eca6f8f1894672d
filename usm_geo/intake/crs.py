"""CRS handling: the working CRS (projected, metres) and comparisons that ignore axis order."""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from usm_geo.errors import CRSError

WGS84 = CRS.from_epsg(4326)


def same_crs(a, b) -> bool:
    """True when two CRSs are the same, whatever the axis order (Chicago's GCS_unknown WGS 84 = EPSG:4326)."""
    if a is None or b is None:
        return a is None and b is None
    return CRS.from_user_input(a).equals(CRS.from_user_input(b), ignore_axis_order=True)


def utm_for(lon: np.ndarray, lat: np.ndarray) -> CRS:
    """The WGS 84 / UTM zone CRS that holds the centre of the given lon/lat points (degrees)."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        raise CRSError("cannot choose a working CRS: no valid coordinates", fix='set study.working_crs = "EPSG:...."')
    cx, cy = float(np.median(lon[ok])), float(np.median(lat[ok]))
    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(cx, cy, cx, cy))
    if not infos:
        raise CRSError(f"no UTM zone found for ({cx:.3f}, {cy:.3f})", fix='set study.working_crs = "EPSG:...."')
    return CRS.from_epsg(infos[0].code)


def working_crs(setting: str, lon_hint=None, lat_hint=None) -> CRS:
    """The study's working CRS: ``auto`` → local UTM; otherwise it must be projected in metres."""
    if setting == "auto":
        return utm_for(lon_hint, lat_hint)
    crs = CRS.from_user_input(setting)
    if not crs.is_projected:
        raise CRSError(f"the working CRS {crs.name} is not projected: distances and areas need metres",
                       where="study.working_crs", fix='use "auto" (local UTM) or a projected EPSG code')
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if unit not in ("metre", "meter"):
        raise CRSError(f"the working CRS {crs.name} has units of {unit}, not metres", where="study.working_crs",
                       fix='use "auto" (local UTM) or a projected CRS in metres')
    return crs


def transformer(src, dst) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def crs_label(crs) -> str:
    """``EPSG:nnnn`` when the CRS has an EPSG code, else its name."""
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    if epsg is None and same_crs(crs, WGS84):
        epsg = 4326  # e.g. Chicago's "GCS_unknown" WGS 84
    return f"EPSG:{epsg}" if epsg else crs.name
