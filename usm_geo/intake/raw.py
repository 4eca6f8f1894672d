"""The records of one input as read, before any check: what every reader returns.

Its own module so that the readers (:mod:`usm_geo.intake.files`, :mod:`usm_geo.intake.datasets`,
:mod:`usm_geo.intake.database`) can share it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


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
