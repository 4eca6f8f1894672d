"""Ground floor: atomic writing, and reading a run folder's files back as written.

Every writer in usm_geo goes through this module. A file is written beside its target and swapped
in with ``os.replace`` (an interrupted run leaves the previous file intact); a run's output folder
is built as a hidden temporary sibling and swapped in whole (:func:`staged_folder`), so a folder
never mixes two runs. Reading applies no profile: :func:`usm_geo.disclosure.read_run` does that.
Paths are file-system paths; no CRS is changed here (layers keep the CRS they were written with).
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
from usm_geo.progressbar import bar

MARKER = "run.json"  # a folder holding this was written by usm_geo and may be replaced


_DISK_FULL = ("no space left on device", "disk is full", "disk full")


def _os_error(exc: OSError, path: Path) -> OutputError:
    if exc.errno == errno.ENOSPC or any(t in str(exc).lower() for t in _DISK_FULL):
        return OutputError("the disk is full", where=path, fix="free some space or choose another --out on a larger disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError("permission denied: cannot write here", where=path, fix="choose an --out folder you can write to")
    return OutputError(f"cannot write: {exc.strerror or exc}", where=path, fix="check the path and free space")


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    # the suffix stays last so that GDAL still recognises the format (.x.tmp-ab12.gpkg)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix, dir=target.parent)
    except OSError as exc:
        raise _os_error(exc, target) from None
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
    except OutputError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        # GDAL (pyogrio, rasterio) reports a full disk as its own error types, not OSError
        if any(t in str(exc).lower() for t in _DISK_FULL):
            raise _os_error(OSError(errno.ENOSPC, str(exc)), target) from None
        raise
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
        with bar(sum(len(f) for f in layers.values()), f"writing {target.name}", unit="rows") as progress:
            for layer, frame in layers.items():
                frame.to_file(tmp, layer=layer, driver="GPKG", engine="pyogrio")
                progress.update(len(frame))


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
    except OutputError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        # name the file as the user will know it (out/measures.csv), not the hidden staging folder
        if exc.where and exc.where.startswith(str(stage)):
            raise OutputError(exc.what, where=str(target) + exc.where[len(str(stage)):], fix=exc.fix) from None
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- reading a run folder

_STRING_COLUMNS = ("level", "unit_id", "period", "category", "measure", "flags", "to_level", "to_unit_id",
                   "indicator", "baseline", "current", "status", "status_reason", "trend_flags", "change_flags",
                   "pattern", "month", "source", "reason", "detail", "record_id")


def read_table(path: Path) -> pd.DataFrame:
    """A CSV written by :func:`write_csv`, with ids and labels kept as text (``"035"``, ``"2019"``)."""
    import pyarrow.csv as pcsv

    with open(path, "rb") as f:
        header = f.readline().decode("utf-8").strip()
    names = [h.strip('"') for h in header.split(",")]
    types = {c: pa.string() for c in names if c in _STRING_COLUMNS}
    table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False))
    frame = table.to_pandas()
    for c in types:
        frame[c] = frame[c].astype(object)
    return frame


def read_layers(path: Path) -> dict:
    """Every layer of a GeoPackage, by name, in its stored CRS."""
    import pyogrio

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GeoPackage.*")
        return {str(name): pyogrio.read_dataframe(path, layer=str(name)) for name, _ in pyogrio.list_layers(path)}


def check_run_folder(run_dir) -> Path:
    """``run_dir`` resolved, refusing a folder without ``run.json``."""
    from usm_geo.errors import OutputError

    run_dir = Path(run_dir).resolve()
    if not (run_dir / MARKER).is_file():
        raise OutputError("is not a usm_geo run folder (it has no run.json)", where=run_dir,
                          fix="give the --out folder of `usm-geo run` or `usm-geo demo`")
    return run_dir
