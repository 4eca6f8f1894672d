"""The work done on one part of a dataset, and how two parts' results add up.

:func:`count_part` runs a part through the very functions of the single-machine path — intake
(:func:`usm_geo.intake.records.read_point_records`), H3 cells (:func:`usm_geo.units.locate.point_cells`),
polygon assignment (:func:`usm_geo.units.locate.locate_points`, the grid-indexed
:class:`~usm_geo.units.assign.PolygonIndex`) and the sparse unit × period × category tally
(:func:`usm_geo.measures.tally`) — and returns a small :class:`Partial`: the tally, the part's ledger
entries (rows numbered across the whole dataset), its totals, first and last time, categories and
the H3 cells holding a point. :func:`merge` adds partials; the sum over every part is what the
single-machine path computes on the whole dataset (tested).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import Context, read_point_records
from usm_geo.measures import add_tallies, tally
from usm_geo.periods import labels as period_labels
from usm_geo.intake.datasets import Part, read_part
from usm_geo.study import RecordSource
from usm_geo.units.hierarchy import UnitSet, h3_level
from usm_geo.units.locate import locate_points, point_cells


@dataclass
class Job:
    """Everything a part needs besides its records; sent to every worker once (broadcast).

    ``units`` holds the polygon levels and the city (their indexes built); H3 levels are counted by
    cell at ``h3_resolutions``. ``frequency`` (``year``/``quarter``/``month``) adds a ``period`` key,
    ``by_category`` a ``category`` key. ``harm``: the study's harm table (weights by category), or
    None to use the records' own ``weight`` column when they have one.
    """

    source: RecordSource
    ctx: Context
    units: UnitSet
    h3_resolutions: tuple[int, ...] = ()
    frequency: str | None = None
    by_category: bool = True
    harm: pd.DataFrame | None = None
    detect: bool = True


@dataclass
class Partial:
    """The counts of some parts of a dataset (see the module docstring); adds up with :func:`merge`."""

    tally: pd.DataFrame
    ledger: pd.DataFrame
    read: int
    used: int
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    categories: set = field(default_factory=set)
    cells: dict[int, np.ndarray] = field(default_factory=dict)  # resolution → sorted unique uint64 cells
    weighted: bool = False


def count_part(part: Part, job: Job) -> Partial:
    """Intake, H3 cells, polygon assignment and the tally of one part (runs in a Dask worker)."""
    from usm_geo.units import jit

    # a worker is one thread: its kernels use one thread (per thread; numba is not imported for it)
    jit.limit_threads(1)
    raw = read_part(part)
    ledger = Ledger()
    src = dataclasses.replace(job.source, path=part.path)  # errors name the file of the part
    ctx = dataclasses.replace(job.ctx)  # intake may set fields of its context: keep the broadcast one intact
    records = read_point_records(src, ledger, ctx, detect=job.detect, raw=raw, allow_empty=True)
    cells = point_cells(records["lon"], records["lat"], job.h3_resolutions) if len(records) else \
        {r: np.zeros(0, np.uint64) for r in job.h3_resolutions}
    located = locate_points(records, job.units, None, ledger, job.source.name)
    units = {h3_level(r): cells[r] for r in sorted(job.h3_resolutions, reverse=True)}
    units.update({level: located[level].to_numpy(dtype=object) for level in job.units.names})
    keys = {}
    times = records["occurred_at"] if "occurred_at" in records else None
    if job.frequency is not None and times is not None:
        keys["period"] = period_labels(times.to_numpy(), job.frequency)
    if job.by_category:
        keys["category"] = records["category"].to_numpy(dtype=object)
    weight = _weights(records, job)
    return Partial(
        tally=_compact(tally(units, keys, weight)),
        ledger=ledger.to_frame(),
        read=raw.read,
        used=len(records),
        first=times.min() if times is not None and len(times) else None,
        last=times.max() if times is not None and len(times) else None,
        categories=set(records["category"].unique()) if "category" in records else set(),
        cells={r: np.unique(c) for r, c in cells.items()},
        weighted=weight is not None,
    )


def _weights(records: pd.DataFrame, job: Job) -> np.ndarray | None:
    from usm_geo.indicators.registry import incident_harm

    return incident_harm(records, job.harm)[0]


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """Label columns as pandas categoricals: a partial travels between processes in a few MB."""
    return frame.astype({c: "category" for c in frame.columns if c not in ("n", "harm")})


def _min(values):
    values = [v for v in values if v is not None and not pd.isna(v)]
    return min(values) if values else None


def _max(values):
    values = [v for v in values if v is not None and not pd.isna(v)]
    return max(values) if values else None


def merge(*partials: Partial) -> Partial:
    """The sum of partials of disjoint parts (counts and harm added, ledgers concatenated in part order)."""
    resolutions = set().union(*(p.cells for p in partials))
    tallies = [p.tally.astype({c: object for c in p.tally.columns if c not in ("n", "harm")}) for p in partials]
    return Partial(
        tally=_compact(add_tallies(tallies)),
        ledger=pd.concat([p.ledger for p in partials], ignore_index=True),
        read=sum(p.read for p in partials),
        used=sum(p.used for p in partials),
        first=_min(p.first for p in partials),
        last=_max(p.last for p in partials),
        categories=set().union(*(p.categories for p in partials)),
        cells={r: np.unique(np.concatenate([p.cells[r] for p in partials if r in p.cells])) for r in resolutions},
        weighted=any(p.weighted for p in partials),
    )
