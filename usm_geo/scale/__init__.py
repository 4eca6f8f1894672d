"""The heavy stages on Dask, for incident files too large for one machine's memory.

Input: a partitioned Parquet/GeoParquet dataset (a folder of ``.parquet`` files, or one large file
split by row groups), read lazily part by part (:mod:`usm_geo.intake.datasets`). Each part goes through
the single-machine path's own intake checks, H3 indexing, polygon assignment and tally on a Dask
worker (:mod:`usm_geo.scale.partition`); the small per-part results are added on the workers
(:mod:`usm_geo.scale.compute`) and the sum — counts per unit × period × category, the ledger, the
totals — continues through the normal in-memory pipeline. Results equal the single-machine run's
(tested); see docs/scale.md.
"""

from usm_geo.scale.compute import connect, count_dataset, ledger_of
from usm_geo.intake.datasets import PART_ROWS, Part, is_dataset, partitions, read_dataset, read_part
from usm_geo.scale.partition import Job, Partial, count_part, merge

__all__ = ["PART_ROWS", "Job", "Part", "Partial", "connect", "count_dataset", "count_part", "is_dataset",
           "ledger_of", "merge", "partitions", "read_dataset", "read_part"]
