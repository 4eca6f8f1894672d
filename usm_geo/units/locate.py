"""Point → unit at every level: one point, one unit per level.

Polygon levels use the exact grid-indexed point-in-polygon (see :mod:`usm_geo.units.assign` for the
rule on shared boundaries); the finest H3 level uses the H3 cell of the point's lon/lat; coarser
H3 levels use the H3 parent of that cell, so H3 counts roll up exactly; ``city`` holds every point.
Records located by a unit id (survey respondents) get that unit and its coarser units through
the crosswalk where the levels nest; finer levels stay empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usm_geo.intake.ledger import Ledger
from usm_geo.units import h3cells
from usm_geo.units.hierarchy import UnitSet


def point_cells(lon: np.ndarray, lat: np.ndarray, resolutions) -> dict[int, np.ndarray]:
    """H3 cells (uint64) of every point at every resolution: the finest computed, the rest as parents."""
    resolutions = sorted(set(resolutions), reverse=True)
    if not resolutions:
        return {}
    finest = h3cells.points_to_cells(np.asarray(lon, float), np.asarray(lat, float), resolutions[0])
    out = {resolutions[0]: finest}
    for res in resolutions[1:]:
        out[res] = h3cells.parent_cells(finest, res)
    return out


def locate_points(records: pd.DataFrame, units: UnitSet, cells: dict[int, np.ndarray] | None = None,
                  ledger: Ledger | None = None, source: str | None = None) -> pd.DataFrame:
    """A column per level with each record's unit_id (None where it lies in no unit of the level).

    ``records`` needs ``x``, ``y`` (working CRS) and ``lon``, ``lat``; records in no unit of a level
    are listed in the ledger as ``outside_units`` (status ``kept``: they still count at the levels
    that hold them and at the city).
    """
    n = len(records)
    out = {}
    x = records["x"].to_numpy(float)
    y = records["y"].to_numpy(float)
    for level, layer in units.levels.items():
        kind = units.kinds[level]
        if kind == "city":
            out[level] = np.full(n, "city", dtype=object)
            continue
        if kind == "h3":
            res = int(level.split("_")[1])
            c = (cells or {}).get(res)
            if c is None:
                c = point_cells(records["lon"], records["lat"], [res])[res]
            ids = h3cells.cells_to_str(c)
            known = pd.Index(layer["unit_id"]).get_indexer(ids) >= 0
            out[level] = np.where(known, ids, None)
        else:
            pos = units.index(level).assign(x, y)
            out[level] = np.where(pos >= 0, layer["unit_id"].to_numpy(dtype=object)[np.clip(pos, 0, None)], None)
        missing = pd.isna(out[level])
        if ledger is not None and missing.any():
            rows = records["row"].to_numpy()
            ids = records["record_id"].to_numpy(dtype=object) if "record_id" in records else None
            if "source" not in records:
                ledger.add(source, rows[missing], "kept", "outside_units", f"in no {level} unit",
                           None if ids is None else ids[missing])
            else:  # several incident files in one table: each entry under its own file's name
                names = records["source"].to_numpy(dtype=object)
                for name in pd.unique(names[missing]):
                    sel = missing & (names == name)
                    ledger.add(name, rows[sel], "kept", "outside_units", f"in no {level} unit", None if ids is None else ids[sel])
    return pd.DataFrame(out, index=records.index)


def locate_by_unit(records: pd.DataFrame, units: UnitSet) -> pd.DataFrame:
    """For records with ``unit_level``/``unit_id`` (e.g. survey respondents): their unit and, through
    the crosswalk, the units of nested coarser levels; None elsewhere."""
    level = records["unit_level"].iloc[0] if len(records) else None
    out = {name: np.full(len(records), None, dtype=object) for name in units.names}
    if level is None:
        return pd.DataFrame(out, index=records.index)
    ids = records["unit_id"].to_numpy(dtype=object)
    out[level] = ids
    names = units.names
    for coarse in names[names.index(level) + 1:]:
        if units.nested.get((level, coarse)):
            out[coarse] = units.parents(level, coarse).reindex(ids).to_numpy(dtype=object)
    return pd.DataFrame(out, index=records.index)
