"""Partitioned Parquet / GeoParquet datasets: a folder of ``.parquet`` files read lazily, in parts.

A dataset is a folder holding ``*.parquet`` files (searched recursively, in sorted order of their
path relative to the folder; files and folders whose name starts with ``.`` or ``_`` are skipped, as
Spark and Dask write ``_SUCCESS``/``_metadata`` beside the data). Its records are numbered 1… across
the files in that order, so the ledger's ``row`` is the same whether the dataset is read at once
(:func:`read_dataset`, the single-machine path) or part by part (:func:`read_part`, the Dask path).

A :class:`Part` is a run of whole row groups of one file with at most ``max_rows`` records (one row
group larger than that is a part of its own); its ``offset`` is the number of records before it,
taken from the Parquet footers (no data is read to plan the parts). Hive-style folder names
(``year=2020/``) are not turned into columns: every column must be in the files.

GeoParquet files keep their geometry (WKB, decoded with shapely) and the CRS of their ``geo``
metadata; plain Parquet files are tables with coordinate columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from usm_geo.errors import InputFileError
from usm_geo.intake.raw import RawRecords

#: Default most records per part (~1M rows keep a worker's intake well under 1 GiB).
PART_ROWS = 1_000_000


@dataclass(frozen=True)
class Part:
    """Row groups ``row_groups`` of ``path``: records ``offset + 1 … offset + rows`` of the dataset."""

    path: Path
    row_groups: tuple[int, ...]
    offset: int
    rows: int


def is_dataset(path: Path) -> bool:
    """True when ``path`` is a folder (a partitioned dataset)."""
    return Path(path).is_dir()


def dataset_files(folder: Path) -> list[Path]:
    """The dataset's ``.parquet`` files in record order (sorted relative path); error if none.
    A single Parquet file is a dataset of one file (split into parts by its row groups)."""
    folder = Path(folder)
    if folder.is_file():
        if folder.suffix.lower() not in (".parquet", ".geoparquet"):
            raise InputFileError("only Parquet/GeoParquet input is read in parts (on Dask)", where=folder,
                                 fix="convert the file to Parquet (e.g. with pandas or ogr2ogr), or leave out --scheduler")
        return [folder]
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".geoparquet")
         and not any(s.startswith((".", "_")) for s in p.relative_to(folder).parts)),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise InputFileError("the folder holds no .parquet files", where=folder,
                             fix="point the input at a folder of Parquet/GeoParquet files, or at a single file")
    return files


def partitions(folder: Path, max_rows: int = PART_ROWS) -> list[Part]:
    """Plan the parts of a dataset from its Parquet footers. Refuses files whose columns differ
    from the first file's (naming the file and the columns)."""
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    files = dataset_files(folder)
    parts: list[Part] = []
    offset = 0
    names = None
    for f in files:
        try:
            meta = pq.ParquetFile(f).metadata
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(f"cannot read as Parquet: {exc}", where=f,
                                 fix="remove the file from the folder or re-write it") from None
        cols = meta.schema.to_arrow_schema().names
        if names is None:
            names, first = cols, f
        elif sorted(cols) != sorted(names):
            extra = sorted(set(cols) ^ set(names))
            raise InputFileError(f"the file's columns differ from those of {first.name} ({', '.join(extra[:5])})",
                                 where=f, fix="every file of a dataset must have the same columns")
        group, rows = [], 0
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if group and rows + n > max_rows:
                parts.append(Part(f, tuple(group), offset, rows))
                offset += rows
                group, rows = [], 0
            group.append(i)
            rows += n
        if group:
            parts.append(Part(f, tuple(group), offset, rows))
            offset += rows
    return parts


def _geo_column(schema: pa.Schema) -> tuple[str | None, object]:
    """(primary geometry column, CRS) from GeoParquet ``geo`` metadata; (None, None) for plain Parquet."""
    meta = schema.metadata or {}
    if b"geo" not in meta:
        return None, None
    from pyproj import CRS

    geo = json.loads(meta[b"geo"])
    column = geo.get("primary_column", "geometry")
    info = geo.get("columns", {}).get(column, {})
    crs = info.get("crs", "OGC:CRS84")  # GeoParquet: absent crs means OGC:CRS84; null means unknown
    return column, (CRS.from_user_input(crs) if crs is not None else None)


def _frame(table: pa.Table, path: Path) -> tuple[pd.DataFrame, object]:
    column, crs = _geo_column(table.schema)
    if column is None or column not in table.column_names:
        return table.to_pandas(), None
    import geopandas as gpd
    import shapely

    geometry = shapely.from_wkb(table[column].to_numpy(zero_copy_only=False))
    frame = table.drop_columns([column]).to_pandas()
    frame["geometry"] = geometry
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=crs), crs


def read_part(part: Part) -> RawRecords:
    """Read one part: its records as stored, numbered ``offset + 1 …``."""
    try:
        table = pq.ParquetFile(part.path).read_row_groups(list(part.row_groups))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(f"cannot read row groups {list(part.row_groups)}: {exc}", where=part.path,
                             fix="re-write the file") from None
    frame, crs = _frame(table, part.path)
    rows = np.arange(part.offset + 1, part.offset + len(frame) + 1, dtype=np.int64)
    return RawRecords(frame=frame, rows=rows, read=len(frame), crs=crs)


def read_dataset(folder: Path) -> RawRecords:
    """Read a whole dataset into memory (the single-machine path), numbered as by :func:`read_part`."""
    raws = [read_part(p) for p in partitions(folder, max_rows=2**62)]
    frames = [r.frame for r in raws]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if raws[0].crs is not None:
        import geopandas as gpd

        frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=raws[0].crs)
    n = len(frame)
    return RawRecords(frame=frame, rows=np.arange(1, n + 1, dtype=np.int64), read=n, crs=raws[0].crs)
