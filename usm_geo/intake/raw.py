"""The records of one input as read, before any check: what every reader returns.

Its own module so that the readers (:mod:`usm_geo.intake.files`, :mod:`usm_geo.intake.datasets`,
and the database rows of :func:`usm_geo.database.read_rows`) can share it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa


@dataclass
class RawRecords:
    """Records as read. ``frame`` is a DataFrame (text) or GeoDataFrame (spatial);
    ``rows`` the 1-based data row of each record; ``crs`` the layer's CRS (spatial only)."""

    frame: pd.DataFrame
    rows: np.ndarray
    read: int
    crs: object = None

    @property
    def spatial(self) -> bool:
        return "geometry" in self.frame.columns and hasattr(self.frame, "geometry")


def string_buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of a pyarrow ``string`` or ``large_string`` array without making Python strings:
    ``(offsets, data)``, int64 offsets of its ``len + 1`` value boundaries into the uint8 ``data``
    (the array's own slice offset applied; a missing value spans whatever arrow stored, usually
    nothing — check ``text.is_null()``). ``data`` is never empty, so it can be indexed safely."""
    buffers = text.buffers()
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=width)[text.offset:text.offset + len(text) + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None and buffers[2].size else np.zeros(1, np.uint8)
    return offsets, data
