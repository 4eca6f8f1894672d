"""Atomic writers: every output is written beside its target and swapped in with ``os.replace``.

An interrupted run leaves the previous outputs intact. A run's output folder is built as a hidden
temporary sibling and swapped in whole (:func:`staged_folder`), so a folder never mixes two runs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from usm_geo.errors import OutputError

MARKER = "run.json"  # a folder holding this was written by usm_geo and may be replaced


def _os_error(exc: OSError, path: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError("the disk is full", where=path, fix="free some space or choose another --out on a larger disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError("permission denied: cannot write here", where=path, fix="choose an --out folder you can write to")
    return OutputError(f"cannot write: {exc.strerror or exc}", where=path, fix="check the path and free space")


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    # the suffix stays last so that GDAL still recognises the format (.x.tmp-ab12.gpkg)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.unlink()  # writers such as GDAL refuse an existing empty file
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(exc, target) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def fixed_gdal_date():
    """Set ``OGR_CURRENT_DATE`` while writing, so GeoPackages embed a fixed date (byte-identical files)."""
    old = os.environ.get("OGR_CURRENT_DATE")
    os.environ["OGR_CURRENT_DATE"] = "2000-01-01T00:00:00Z"
    try:
        yield
    finally:
        if old is None:
            del os.environ["OGR_CURRENT_DATE"]
        else:
            os.environ["OGR_CURRENT_DATE"] = old


def write_layers(target: Path, layers: dict) -> None:
    """Write GeoDataFrames as the layers of one GeoPackage, atomically and byte-reproducibly."""
    with atomic_path(target) as tmp, fixed_gdal_date(), warnings.catch_warnings():
        # a layer without a CRS is allowed (contiguity needs none) and the run's report says so
        warnings.filterwarnings("ignore", message=".*'crs' was not provided.*")
        for layer, frame in layers.items():
            frame.to_file(tmp, layer=layer, driver="GPKG", engine="pyogrio")


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, obj) -> None:
    """JSON with sorted keys and a final newline (byte-stable for the same content)."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")


def write_csv(target: Path, frame: pd.DataFrame) -> None:
    """UTF-8 CSV with ``\\n`` line ends and no index, written by pyarrow (~30× faster than pandas).

    Text values are always quoted, numbers use the shortest round-trip form (``73``, ``0.1``),
    missing values are empty: the same frame always gives the same bytes.
    """
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with atomic_path(target) as tmp:
        pacsv.write_csv(table, tmp)


def _remove_stale_stages(target: Path) -> None:
    """Remove hidden staging folders of ``target`` left by a run that was killed (its process is gone)."""
    for stale in target.parent.glob(f".{target.name}.tmp-*-*"):
        try:
            pid = int(stale.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)  # still running: leave it alone
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError, IndexError):
            continue


@contextmanager
def staged_folder(target: Path):
    """Build an output folder as a hidden sibling and swap it in whole when the block succeeds.

    Refuses to replace an existing non-empty folder that was not written by usm_geo (it has no
    ``run.json``), so a mistyped ``--out`` cannot delete someone's documents.
    """
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise OutputError("exists and is not a folder", where=target, fix="choose a folder name for --out")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).exists():
        raise OutputError("is a non-empty folder that usm_geo did not write, so it will not be replaced", where=target,
                          fix="choose a new or empty folder for --out")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_stages(target)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    except OSError as exc:
        raise _os_error(exc, target) from None
    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(stage, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, target)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise _os_error(exc, target) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
