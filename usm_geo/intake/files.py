"""Reading raw records from files: text tables (CSV/TSV, .gz) and spatial formats.

Readers return the records exactly as stored (text tables: every column as a string) with the
1-based data row number of each record, so every later check can name the row it rejects.
Nothing here interprets coordinates or dates.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from usm_geo.database import DatabaseSource
from usm_geo.errors import InputFileError, closest, where
from usm_geo.intake.ledger import Ledger
from usm_geo.intake.raw import RawRecords  # also imported from here (intake.records)

TEXT_FORMATS = ("csv", "tsv")
SPATIAL_FORMATS = ("gpkg", "shp", "geojson", "kml", "parquet")
_EXTENSIONS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".gpkg": "gpkg", ".shp": "shp", ".zip": "shp", ".geojson": "geojson", ".json": "geojson",
    ".kml": "kml", ".parquet": "parquet", ".geoparquet": "parquet", ".xlsx": "xlsx",
}
_DELIMITERS = (",", ";", "\t", "|")


def detect_format(path: Path, declared: str | None = None) -> str:
    """The format of ``path``: the declared one, else from the extension (``.csv.gz`` → csv)."""
    if declared:
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputFileError(
            f"cannot tell the file format from the name '{path.name}'",
            where=path,
            fix="add format = \"csv\" (or tsv, gpkg, shp, geojson, kml, parquet) to this input in the study",
        )
    return fmt


def read_records(path: Path, source: str, ledger: Ledger, *, fmt: str | None = None, layer: str | None = None,
                 delimiter: str | None = None, encoding: str | None = None) -> RawRecords:
    """Read every record of ``path``; malformed text rows go to the ledger as ``malformed_row``.

    ``path`` may be a :class:`~usm_geo.database.DatabaseSource` (a PostgreSQL table or query):
    its rows come back like a CSV file's (every column as text) plus its geometry, if any.
    """
    if isinstance(path, DatabaseSource):
        from usm_geo.database import read_rows

        got = read_rows(path)
        return RawRecords(frame=got.frame, rows=np.arange(1, got.read + 1, dtype=np.int64), read=got.read, crs=got.crs)
    path = Path(path)
    if not path.exists():
        raise InputFileError("file not found", where=path, fix="check the path in the study file")
    if path.is_dir():  # a partitioned Parquet/GeoParquet dataset, read whole (the Dask path reads it in parts)
        from usm_geo.intake.datasets import read_dataset

        if fmt not in (None, "parquet"):
            raise InputFileError(f"a folder is read as a Parquet dataset, not as {fmt}", where=path,
                                 fix='remove format from the study, or set format = "parquet"')
        return read_dataset(path)
    if path.suffix.lower() == ".zip" and fmt in (None, "csv", "tsv"):
        member = zipped_table(path, layer, declared=fmt)
        if member is not None:  # a CSV/TSV zipped by a portal: read from the archive, not as a shapefile
            data = zip_member_bytes(path, member)
            fmt = fmt or ("tsv" if PurePosixPath(member).suffix.lower() in (".tsv", ".tab") else "csv")
            return read_text_table(path, source, ledger, delimiter=delimiter or ("\t" if fmt == "tsv" else None),
                                   encoding=encoding, data=data)
    fmt = detect_format(path, fmt)
    if fmt in TEXT_FORMATS:
        return read_text_table(path, source, ledger, delimiter=delimiter or ("\t" if fmt == "tsv" else None), encoding=encoding)
    if fmt in SPATIAL_FORMATS:
        return read_spatial(path, fmt=fmt, layer=layer)
    if fmt == "xlsx":
        return read_excel(path, sheet=layer)
    raise InputFileError(f"format '{fmt}' cannot be read", where=path,
                         fix="use csv, tsv, gpkg, shp, geojson, kml, parquet or xlsx")


# --------------------------------------------------------------------------- text tables


#: the fast paths of read_text_table are used; tests set it False to check they give what the general route gives
FAST = True


def _plain_ascii(data: bytes, encoding: str | None) -> bool:
    """``data`` is read as it stands: no encoding named, and every byte ASCII without NUL bytes in
    the first 64 KiB (what :func:`_decode` would refuse as binary), so decoding it as UTF-8 and
    encoding it again gives the same bytes."""
    return encoding is None and data.isascii() and b"\x00" not in data[:65536]


def _decode(data: bytes, path: Path, source: str, ledger: Ledger, encoding: str | None) -> str:
    """Bytes → text. UTF-8 (BOM or not) first; UTF-16 with a BOM; else UTF-8 line by line with the
    lines that are not UTF-8 read as Windows-1252 (Latin-1), noted with their count."""
    if encoding:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise InputFileError(f"cannot decode the file as {encoding}: {exc}", where=path,
                                 fix="remove encoding from the study to let usm_geo detect it, or name the right one") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputFileError(f"starts like UTF-16 text but is not valid UTF-16 ({exc.reason} at byte {exc.start})",
                                 where=path, fix="re-export the file as UTF-8 CSV") from None
        ledger.note(source, "encoding", "UTF-16 text with a byte-order mark, converted to UTF-8")
        return text
    if b"\x00" in data[:65536]:
        raise InputFileError("looks like a binary file, not text (it contains NUL bytes)", where=path,
                             fix="export the table as CSV, or name the right format in the study; if it is UTF-16 text "
                                 "without a byte-order mark, add encoding = \"utf-16-le\" to this input")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
    text, counts, lines = _decode_per_line(data)
    fallbacks = [f"{n:,}" + (f" of {lines:,} lines" if i == 0 else "") + f" read as {enc}"
                 for i, (enc, n) in enumerate((e, n) for e, n in counts.items() if n)]
    ledger.note(source, "encoding", f"not valid UTF-8 (first bad byte on line {bad_line}); "
                + ", ".join(fallbacks) + ", the others as UTF-8")
    return text


# a line holding an undecodable byte: anchored at the line start, the possessive first part makes it one
# linear scan (no backtracking) however long the file
_UNDECODED_LINE = re.compile(r"(?m)^[^\n\udc80-\udcff]*+[\udc80-\udcff][^\n]*")


def _decode_per_line(data: bytes) -> tuple[str, dict[str, int], int]:
    """Decode as UTF-8 and only the lines that are not valid UTF-8 as Windows-1252 (Latin-1 when a
    line holds a byte cp1252 leaves undefined): a file appended to by two systems mixes them, and
    reading all of it as cp1252 garbles the UTF-8 names (and splits their categories in two).

    One UTF-8 pass with ``surrogateescape`` marks the undecodable bytes; a regular expression finds
    the lines holding them and only those are decoded again. Returns the text, the number of lines
    decoded with each fallback, and the number of lines."""
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    counts = {"cp1252": 0, "latin-1": 0}

    def redo(match: re.Match) -> str:
        raw = match.group(0).encode("utf-8", errors="surrogateescape")
        try:
            out = raw.decode("cp1252")
            counts["cp1252"] += 1
        except UnicodeDecodeError:
            out = raw.decode("latin-1")
            counts["latin-1"] += 1
        return out

    text = _UNDECODED_LINE.sub(redo, text)
    return text, counts, text.count("\n") + (not text.endswith("\n"))


def _sniff_delimiter(text: str) -> str:
    """The delimiter among , ; tab | that splits the first lines most consistently into >1 fields."""
    sample_lines = text[:65536].splitlines()[:50]
    if not sample_lines:
        return ","
    best, best_score = ",", (-1, 0)
    for d in _DELIMITERS:
        counts = [len(r) for r in csv.reader(sample_lines, delimiter=d)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(c == counts[0] for c in counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


def read_text_table(path: Path, source: str, ledger: Ledger, *, delimiter: str | None = None,
                    encoding: str | None = None, data: bytes | None = None) -> RawRecords:
    """Read a delimited text file (optionally gzip-compressed) with every column as a string.

    Rows with the wrong number of fields are not used; each goes to the ledger as
    ``malformed_row`` with its 1-based data row number and the field counts. ``data``: the file's
    bytes already read (a table inside a zip archive); ``path`` then names it in messages.
    """
    raw = path.read_bytes() if data is None else data
    if data is None and path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputFileError(f"the file ends with .gz but is not valid gzip ({exc})", where=path,
                                 fix="decompress or re-export it, or rename it without .gz") from None
    if not raw or raw.isspace():  # what strip() would leave empty, without copying the file
        raise InputFileError("the file is empty", where=path, fix="check that the export finished and wrote data")
    if FAST and _plain_ascii(raw, encoding):
        # ASCII is UTF-8 as it stands: parse the bytes read, with no decoded copy and no re-encoded
        # one (both were the same bytes); the text is decoded only if the quote check needs it
        data, text, head = raw, None, raw[: 1 << 20].decode("ascii")
    else:
        text = _decode(raw, path, source, ledger, encoding)
        data, head = text.encode("utf-8"), text[: 1 << 20]
    delimiter = delimiter or _sniff_delimiter(head)
    header = next(csv.reader(io.StringIO(head), delimiter=delimiter), [])
    names = [h.strip() for h in header]
    if not any(names):
        raise InputFileError("the first line (the header) is empty", where=path,
                             fix="the first line must name the columns")
    names = [n if n else f"column_{i + 1}" for i, n in enumerate(names)]
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise InputFileError(f"the header names column '{sorted(seen)[0]}' more than once", where=f"{path}:header",
                             fix="give every column a distinct name")

    bad: list[tuple[int, int, str]] = []

    def on_invalid(row) -> str:
        # pyarrow numbers records from 1 including the header, so data row = number - 1.
        bad.append((row.number - 1 if row.number is not None else -1, row.actual_columns, row.text[:120]))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                use_threads=False, skip_rows=1, column_names=names,
                # a block must hold the longest record (one 10 MB line is a valid, if odd, record)
                block_size=max(1 << 20, min(len(data) + 1, 1 << 30)),
            ),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputFileError(f"cannot parse as delimited text ({exc})", where=path,
                             fix="check quoting (an unclosed quote swallows the rest of the file) and the delimiter") from None
    frame = table.to_pandas()
    bad_rows = np.array([b[0] for b in bad], dtype=np.int64)
    read = len(frame) + len(bad)
    rows = np.setdiff1d(np.arange(1, read + 1, dtype=np.int64), bad_rows, assume_unique=True)
    if not FAST or b'"' in data:  # without a quote no value can hold a line break: nothing to check
        _check_unclosed_quote(table, rows, text if text is not None else data.decode("ascii"), delimiter, path)
    if bad:
        ledger.add(source, bad_rows, "dropped", "malformed_row",
                   [f"expected {len(names)} fields, found {n}: {t}" for _, n, t in bad])
    if read == 0:
        raise InputFileError("the file has a header but no data rows", where=path,
                             fix="check that the export finished and wrote data")
    if len(names) == 1 and read > 0:
        ledger.note(source, "single_column", f"only one column found with delimiter {delimiter!r}")
    return RawRecords(frame=frame, rows=rows, read=read)


def _check_unclosed_quote(table: pa.Table, rows: np.ndarray, text: str, delimiter: str, path: Path) -> None:
    """Refuse a file in which a quote that is never closed swallowed whole records.

    After an opening quote without its closing quote, the parser reads the following lines,
    delimiters and all, as one value, and those records vanish without a trace. Suspect: a value
    with a line break followed by a line holding as many delimiters as a record. Confirmed (so
    that free text with line breaks and commas passes) by a strict parse of the file, which fails
    at the end of the file inside the quote, or at a closing quote not followed by a delimiter.
    """
    import pyarrow.compute as pc

    if table.num_columns < 2 or table.num_rows == 0:
        return
    d = re.escape(delimiter)
    looks_like_record = re.compile(rf"\n(?:[^\n{d}]*{d}){{{table.num_columns - 1}}}")
    first: tuple[int, str] | None = None
    for name in table.column_names:
        multiline = np.flatnonzero(pc.fill_null(pc.match_substring(table[name], "\n"), False).to_numpy(zero_copy_only=False))
        if multiline.size == 0:
            continue
        values = pd.Series(table[name].take(pa.array(multiline)).to_pylist(), dtype=object)
        hit = multiline[values.str.contains(looks_like_record).to_numpy(dtype=bool)]
        if hit.size and (first is None or hit[0] < first[0]):
            first = (int(hit[0]), name)
    if first is None:
        return
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(max(limit, len(text) + 1))
        for _ in csv.reader(io.StringIO(text), delimiter=delimiter, strict=True):
            pass
        return  # a well-formed file: the value is just long text
    except csv.Error:
        i, name = first
        raise InputFileError(
            "a quoted value runs over several lines that look like whole records: a quote (\") opened here is "
            "probably never closed, so the records after it were read as part of this value",
            where=where(path, int(rows[i]), name),
            fix='close the quote, or write a quote inside a value as two quotes ("")',
        ) from None
    finally:
        csv.field_size_limit(limit)


def read_excel(path: Path, sheet: str | None = None) -> RawRecords:
    """Read one sheet of an .xlsx workbook (openpyxl); cells keep their types."""
    try:
        frame = pd.read_excel(path, sheet_name=sheet or 0)
    except ValueError as exc:
        raise InputFileError(f"cannot read the workbook: {exc}", where=path,
                             fix="name the sheet with sheet = \"...\" in the study") from None
    return RawRecords(frame=frame, rows=np.arange(1, len(frame) + 1, dtype=np.int64), read=len(frame))


# --------------------------------------------------------------------------- spatial files


def safe_zip_member(path: Path, suffix: str, member: str | None = None) -> str:
    """The name of the one ``suffix`` member of a zip archive, refusing unsafe archives.

    Entries with absolute paths or ``..`` (zip-slip) make the whole archive refused, even
    though usm_geo never extracts archives: such a file was not made by a GIS.
    """
    names = zip_names(path)
    candidates = sorted(n for n in names if n.lower().endswith(suffix) and not n.startswith("__MACOSX/")
                        and not PurePosixPath(n).name.startswith("._"))
    if member:
        matches = [n for n in candidates if PurePosixPath(n).stem == member or n == member]
        if not matches:
            stems = [PurePosixPath(n).stem for n in candidates]
            near = closest(member, stems)
            raise InputFileError(f"the archive has no layer '{member}'; its layers are: {', '.join(stems) or '(none)'}",
                                 where=path, fix=(f"did you mean '{near}'? " if near else "")
                                 + f"use one of: {', '.join(stems) or '(none)'}")
        return matches[0]
    if not candidates:
        held = ", ".join(sorted(n for n in names if _visible(n))[:10]) or "(nothing)"
        raise InputFileError(f"the archive holds no {suffix} file (it holds: {held})", where=path,
                             fix="zip the .shp with its .shx, .dbf and .prj; a zipped CSV needs its file name to end in .csv or .tsv")
    if len(candidates) > 1:
        raise InputFileError(f"the archive holds {len(candidates)} {suffix} files", where=path,
                             fix=f"name one with layer = \"...\": {', '.join(PurePosixPath(n).stem for n in candidates)}")
    return candidates[0]


_TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")


def zipped_table(path: Path, layer: str | None = None, declared: str | None = None) -> str | None:
    """The text table (CSV/TSV) inside a zip archive, or None when the archive holds a shapefile
    (read as before) and no format says otherwise.

    An archive with several tables needs ``layer`` naming one; an archive with neither a table nor
    a shapefile is refused with what it does hold."""
    names = zip_names(path)
    tables = sorted(n for n in names if PurePosixPath(n).suffix.lower() in _TABLE_SUFFIXES and _visible(n))
    shapes = [n for n in names if n.lower().endswith(".shp") and _visible(n)]
    if shapes and declared is None:
        return None
    if not tables:
        held = ", ".join(sorted(names)[:10]) or "(nothing)"
        if declared is None:
            return None  # no table and no shapefile: the shapefile reader says what is missing
        raise InputFileError(f"the archive holds no .csv or .tsv file (it holds: {held})", where=path,
                             fix="unzip it and name the table file in the study, or zip the table alone")
    if layer is not None:
        matches = [n for n in tables if PurePosixPath(n).stem == layer or PurePosixPath(n).name == layer or n == layer]
        if not matches:
            names = [PurePosixPath(n).name for n in tables]
            near = closest(layer, names + [PurePosixPath(n).stem for n in tables])
            raise InputFileError(f"the archive has no table '{layer}'; its tables are: {', '.join(names)}", where=path,
                                 fix=(f"did you mean '{near}'? " if near else "") + f"use one of: {', '.join(names)}")
        return matches[0]
    if len(tables) > 1:
        raise InputFileError(f"the archive holds {len(tables)} tables", where=path,
                             fix=f'name one with layer = "...": {", ".join(PurePosixPath(n).name for n in tables)}; '
                                 "or list each as its own file (path = [...]) after unzipping")
    return tables[0]


def _visible(name: str) -> bool:
    return not name.startswith("__MACOSX/") and not PurePosixPath(name).name.startswith("._")


def zip_names(path: Path) -> list[str]:
    """The entries of a zip archive, refusing a broken archive or one with unsafe entries."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        raise InputFileError("not a valid zip archive", where=path, fix="re-create the archive") from None
    for name in names:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":"):
            raise InputFileError(f"the archive holds an unsafe entry '{name}' (absolute path or '..')", where=path,
                                 fix="re-create the archive with relative paths only")
    return names


def zip_member_bytes(path: Path, member: str) -> bytes:
    """The bytes of one archive entry (read in memory, never extracted to disk)."""
    with zipfile.ZipFile(path) as zf:
        return zf.read(member)


def layer_named(path: Path, layer: str, layers: list[str]) -> str:
    """``layer`` as spelled in the file's list of ``layers`` (case-insensitively, as GeoPackage does),
    or an InputFileError listing the real layers and the nearest name."""
    if layer in layers:
        return layer
    folded = [n for n in layers if n.casefold() == layer.casefold()]
    if folded:
        return folded[0]
    near = closest(layer, layers)
    pick = near or (layers[0] if layers else "NAME")
    raise InputFileError(f"layer '{layer}' is not in {path}; its layers are: {', '.join(layers) or '(none)'}",
                         fix=(f"did you mean '{near}'? " if near else "")
                         + f'set layer = "{pick}" in the study, or --layer {pick} on the command line')


def read_spatial(path: Path, *, fmt: str, layer: str | None = None) -> RawRecords:
    """Read a spatial layer (GPKG, SHP or zipped SHP, GeoJSON, KML, GeoParquet) with pyogrio."""
    import geopandas as gpd
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    source = str(path)
    read_layer = layer
    if path.suffix.lower() == ".zip":
        member = safe_zip_member(path, ".shp", layer)
        source, read_layer = f"/vsizip/{path.resolve()}/{member}", None
    try:
        if fmt == "parquet":
            try:
                frame = gpd.read_parquet(path)
            except ValueError:
                # plain Parquet without 'geo' metadata: a table with coordinate columns
                frame = pd.read_parquet(path)
        else:
            if read_layer is None and fmt in ("gpkg", "kml"):
                layers = pyogrio.list_layers(source)
                if len(layers) > 1:
                    raise InputFileError(f"the file holds {len(layers)} layers", where=path,
                                         fix=f"name one with layer = \"...\" in the study or --layer NAME: "
                                             f"{', '.join(str(n) for n in layers[:, 0])}")
            elif read_layer is not None:
                read_layer = layer_named(path, read_layer, [str(n) for n in pyogrio.list_layers(source)[:, 0]])
            frame = pyogrio.read_dataframe(source, layer=read_layer)
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise InputFileError(f"cannot read as {fmt}: {str(exc).splitlines()[0]}", where=path,
                             fix="check that the file is complete and in the format its name says") from None
    n = len(frame)
    crs = frame.crs if isinstance(frame, gpd.GeoDataFrame) else None
    return RawRecords(frame=frame, rows=np.arange(1, n + 1, dtype=np.int64), read=n, crs=crs)
