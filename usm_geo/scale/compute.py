"""Running the parts of a dataset on a Dask cluster and adding up their results.

``scheduler`` (the ``--scheduler`` option) is ``local`` (a :class:`distributed.LocalCluster` of one
single-threaded worker process per CPU, ``memory_limit`` each), ``local:N`` (N such workers),
``threads`` (one in-process worker thread per CPU: no process start-up, for notebooks and tests), or
the address of a running scheduler (``tcp://HOST:8786``). The job (study area, polygon indexes,
settings) is sent to every worker once; each part becomes one task; partials are added in a tree
(``fan_in`` at a time) on the workers, so only the final sum travels to the client.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from usm_geo.errors import UsmGeoError
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.records import read_point_records, refuse_empty
from usm_geo.intake.datasets import PART_ROWS, partitions, read_part
from usm_geo.scale.partition import Job, Partial, count_part, merge

#: Memory limit of each worker of ``local`` clusters.
WORKER_MEMORY = "2GiB"


def _local_cluster(n_workers: int, processes: bool, memory_limit: str):
    from distributed import LocalCluster

    # one thread per worker: count_part keeps the kernels' threads to that thread
    # (usm_geo.units.jit.limit_threads; an environment variable would leak into this process too)
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                        memory_limit=memory_limit, dashboard_address=":0")


@contextlib.contextmanager
def connect(scheduler, *, memory_limit: str = WORKER_MEMORY):
    """A :class:`distributed.Client` for ``scheduler`` (see the module docstring), closed on exit
    (with the cluster, when it was started here). An existing Client is used as it is."""
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    text = str(scheduler).strip()
    cpus = os.cpu_count() or 1
    if text == "local" or text.startswith("local:"):
        try:
            n = int(text.split(":", 1)[1]) if ":" in text else cpus
        except ValueError:
            n = 0
        if n < 1:
            raise UsmGeoError(f"'{text}' does not give a number of workers", where="--scheduler",
                              fix="use local, local:N (N ≥ 1 worker processes) or tcp://HOST:PORT")
        cluster = _local_cluster(n, True, memory_limit)
    elif text == "threads":
        cluster = _local_cluster(cpus, False, memory_limit)
    elif "://" in text:
        try:
            client = Client(text, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UsmGeoError(f"cannot reach the Dask scheduler at {text} ({exc})", where="--scheduler",
                              fix="start one with `dask scheduler` and workers with `dask worker ADDRESS` "
                                  "(see docs/scale.md), or use --scheduler local") from None
        try:
            yield client
        finally:
            client.close()
        return
    else:
        raise UsmGeoError(f"unknown scheduler '{text}'", where="--scheduler",
                          fix="use local, local:N, threads or the address of a scheduler (tcp://HOST:8786)")
    with cluster, Client(cluster) as client:
        yield client


def _fix_working_crs(job: Job, first) -> None:
    """A context without a working CRS takes the local UTM zone of the first part's first
    100,000 records (the single-machine path uses all records; they agree unless the data span
    two zones). Set before the job is sent, so that every part uses the same CRS."""
    if job.ctx.working_crs is not None:
        return
    raw = read_part(first)
    n = min(len(raw.frame), 100_000)
    raw.frame, raw.rows, raw.read = raw.frame.iloc[:n], raw.rows[:n], n
    read_point_records(job.source, Ledger(), job.ctx, detect=job.detect, raw=raw, allow_empty=True)


def count_dataset(job: Job, path: Path, client, *, part_rows: int = PART_ROWS, fan_in: int = 8) -> Partial:
    """Count every part of the dataset at ``path`` on ``client``'s cluster; return the sum."""
    parts = partitions(Path(path), part_rows)
    _fix_working_crs(job, parts[0])
    job_f = client.scatter(job, broadcast=True, hash=False)
    # submit each group of parts just before its merge, so that merges run as soon as their parts
    # are done (tasks submitted earlier run first) and partials do not pile up in worker memory
    level = []
    for i in range(0, len(parts), fan_in):
        futures = client.map(count_part, parts[i:i + fan_in], job=job_f, key=[f"usm-part-{p.offset}" for p in parts[i:i + fan_in]])
        level.append(client.submit(merge, *futures, key=f"usm-merge-0-{i}") if len(futures) > 1 else futures[0])
        del futures
    depth = 1
    while len(level) > 1:
        level = [client.submit(merge, *level[i:i + fan_in], key=f"usm-merge-{depth}-{i}") for i in range(0, len(level), fan_in)]
        depth += 1
    result = level[0].result()
    del level, job_f
    return result


def ledger_of(partial: Partial, source: str, path: Path, ledger: Ledger) -> None:
    """Put a dataset's ledger entries and totals into ``ledger`` (the invariant is checked on the
    whole dataset). Notes a part repeats (the same remark about the file) are listed once.
    Raises the "no usable records" error when no record of the dataset is used."""
    entries = partial.ledger
    note = (entries["status"] == "note").to_numpy()
    repeated = note & entries.duplicated(["source", "status", "reason", "detail"]).to_numpy()
    ledger.open_source(source, path, partial.read)
    ledger.extend(entries[~repeated])
    ledger.close_source(source, partial.used)
    if partial.used == 0:
        refuse_empty(ledger, source, partial.read, path)
