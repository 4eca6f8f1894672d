"""Zipped shapefiles a GIS user accepts: readable short field names, one feature per unit.

A shapefile's DBF holds field names of at most 10 characters. GDAL's own shortening gives
``harassmen1`` and ``homicide_1``; here every name is built from the abbreviation table below
(docs/outputs.md lists it) and no field name ends in a digit:

``<stem>_<token>`` — the stem names the indicator (``homicide_rate`` → ``hom``), the token the part:

=============  ==============  ==========  ===========  ===========
part           plain           global EB   spatial EB   Fay–Herriot
=============  ==============  ==========  ===========  ===========
value          measure word    ``eb``      ``seb``      ``fh``
lower bound    ``lo``          ``elo``     ``slo``      ``flo``
upper bound    ``hi``          ``ehi``     ``shi``      ``fhi``
count / n      ``n``           ``en``      ``sn``       ``fn``
flags          ``fl``          ``efl``     ``sfl``      ``ffl``
=============  ==============  ==========  ===========  ===========

Measure words: rate → ``rate``, share → ``shr``, score → ``scr``, count → ``cnt``, index → ``idx``,
ratio → ``rat``. Stems come from :data:`STEMS` (else the first three letters of the first word and
the first letter of each further word), at most 4 characters (3 in a wide layer). Two indicators
with the same stem: the later one (in the run's order) ends its stem in the first free letter
``a`` … ``z`` instead — deterministic, never a digit.

Layouts (``shape``):

* ``long`` (default): one shapefile per level *and period* (``neighbourhood_2019.shp``), one
  feature per unit — what a choropleth in QGIS/ArcGIS needs without a definition query, with the
  same field names in every period.
* ``wide``: one shapefile per level, one feature per unit, a column per indicator part *and* period:
  ``hom_rate_a``, ``hom_rate_b`` … The period is a letter code (``a`` = first period, ``z``, then
  ``aa`` …) because labels such as ``2019`` would end the name in a digit; ``fields.csv`` lists
  each code's period.

Hot spot layers (``hotspots_<level>``) and impact areas are their own shapefiles. ``fields.csv``
(``layer, short_name, name, period, description, unit``) maps every field of every layer.
Everything is in the layers' CRS (the working CRS unless ``--crs``): each ``.shp`` has its
``.prj`` and a ``.cpg`` saying UTF-8.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from usm_geo.errors import UsmGeoError

SHAPES = ("long", "wide")
DEFAULT_SHAPE = "long"
NAME_WIDTH, TEXT_BYTES, REAL_WIDTH, INT_WIDTH, MAX_FIELDS = 10, 254, 24, 18, 255
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

#: indicator words → stems (the first word of an id, or the whole id without its measure word)
STEMS = {
    "homicide": "hom", "harassment": "har", "incident": "inc", "assault": "asl", "burglary": "bur",
    "robbery": "rob", "theft": "thf", "vehicle": "veh", "violence": "vio", "violent": "vio",
    "sexual": "sex", "battery": "bat", "drugs": "drg", "drug": "drg", "weapons": "wpn", "weapon": "wpn",
    "damage": "dmg", "arson": "ars", "fraud": "frd", "victimisation": "vic", "victimization": "vic",
    "perceived_safety": "psaf", "safe_after_dark": "dark", "safe_day": "day", "fear": "fear",
    "trust": "trst", "harm": "harm", "population": "pop", "count": "cnt",
}
#: measure words (the last word of an indicator id) → the value field's token
MEASURES = {"rate": "rate", "share": "shr", "score": "scr", "count": "cnt", "index": "idx", "ratio": "rat"}
#: part suffix → token, per estimate ("" plain, "_eb" global EB, "_seb" spatial EB, "_fh" Fay–Herriot)
PART_TOKENS = {
    "": {"_lower": "lo", "_upper": "hi", "_n": "n", "_flags": "fl"},
    "_eb": {"": "eb", "_lower": "elo", "_upper": "ehi", "_n": "en", "_flags": "efl"},
    "_seb": {"": "seb", "_lower": "slo", "_upper": "shi", "_n": "sn", "_flags": "sfl"},
    "_fh": {"": "fh", "_lower": "flo", "_upper": "fhi", "_n": "fn", "_flags": "ffl"},
}
#: fixed columns of area, hot spot and impact layers → field names
FIXED = {
    "level": "level", "unit_id": "unit_id", "name": "name", "period": "period", "count": "count",
    "analysed_value": "anl_value", "gistar_z": "gi_z", "gistar_p": "gi_p", "gistar_p_fdr": "gi_p_fdr",
    "gistar_bin": "gi_bin", "lisa_i": "lisa_i", "lisa_z": "lisa_z", "lisa_p_sim": "lisa_p_sim",
    "lisa_p_fdr": "lisa_p_fdr", "lisa_quadrant": "lisa_quad", "lisa_scatter_quadrant": "lisa_scat",
    "n_neighbours": "n_nbrs", "flags": "flags", "hotspot_value": "hs_value", "significance": "signif",
    "area": "area", "before": "before", "after": "after", "area_km2": "area_km",
}
_PARTS = ("_lower", "_upper", "_n", "_flags")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def period_code(i: int) -> str:
    """0 → ``a`` … 25 → ``z``, 26 → ``aa`` (bijective base 26: letters only, so no name ends in a digit)."""
    code = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        code = _LETTERS[r] + code
    return code


def _base(ind: str) -> tuple[str, str]:
    for suffix in ("_seb", "_eb", "_fh"):
        if ind.endswith(suffix):
            return ind[: -len(suffix)], suffix
    return ind, ""


def _split_measure(base: str) -> tuple[str, str]:
    """``homicide_rate`` → (``homicide``, ``rate``); an id without a measure word gets ``val``."""
    words = base.split("_")
    if words[-1] in MEASURES:
        return "_".join(words[:-1]), MEASURES[words[-1]]
    return base, "val"


def _natural_stem(words: str) -> str:
    if not words:
        return ""
    if words in STEMS:
        return STEMS[words]
    parts = [w for w in re.sub(r"[^0-9a-z_]", "_", words.lower()).split("_") if w]
    if not parts:
        return "x"
    first = STEMS.get(parts[0], parts[0][:3])
    return (first + "".join(p[0] for p in parts[1:])) or "x"


def indicator_stems(ids, cap: int = 4) -> dict[str, str]:
    """Base indicator id → a stem of at most ``cap`` characters, unique case-insensitively
    (a collision ends the later stem in the first free letter; never a digit)."""
    stems, used = {}, set()
    for ind in ids:
        base, _ = _base(ind)
        if base in stems:
            continue
        words, meas = _split_measure(base)
        stem = (_natural_stem(words) or meas)[:cap]
        if stem[0].isdigit():  # a DBF name must start with a letter
            stem = ("i" + stem)[:cap]
        if stem.casefold() in used:
            head = stem[: cap - 1] if len(stem) >= cap else stem
            stem = next((head + c for c in _LETTERS if (head + c).casefold() not in used), None)
            if stem is None:
                raise UsmGeoError(f"too many indicators share the short name '{head}'", where="shapefiles.zip",
                                  fix="export fewer indicators (--indicators) or use GeoPackage")
        stems[base] = stem
        used.add(stem.casefold())
    return stems


def _fallback(col: str) -> str:
    words = [w for w in re.sub(r"[^0-9A-Za-z_]", "_", col).split("_") if w] or ["field"]
    name = words[0][:6] + "".join("_" + w[:3] for w in words[1:])
    name = name[:NAME_WIDTH].rstrip("_0123456789") or "field"
    return ("f" + name)[:NAME_WIDTH] if name[0].isdigit() else name


def field_names(columns, ids, *, cap: int = 4) -> dict[str, str]:
    """Long column name → short field name (≤ 10 characters, not ending in a digit, unique
    case-insensitively) for the columns of one layer. ``ids``: the indicator ids of the export."""
    ids = list(ids)
    stems = indicator_stems(ids, cap=cap)
    owner = {}
    for ind in ids:
        base, smooth = _base(ind)
        owner[ind] = (base, smooth, "")
        for p in _PARTS:
            owner[ind + p] = (base, smooth, p)
    out, used = {}, set()
    for col in columns:
        if col in FIXED:
            name = FIXED[col]
        elif col in owner:
            base, smooth, part = owner[col]
            token = PART_TOKENS[smooth].get(part) if (smooth or part) else _split_measure(base)[1]
            stem = stems[base]
            if stem == _split_measure(base)[1] and not (smooth or part):
                name = stem  # "count": cnt, cnt_lo, cnt_hi …
            else:
                name = f"{stem}_{token}"
        else:
            name = _fallback(col)
        if name.casefold() in used:
            head = name[: NAME_WIDTH - 1] if len(name) >= NAME_WIDTH else name
            name = next(head + c for c in _LETTERS if (head + c).casefold() not in used)
        out[col] = name
        used.add(name.casefold())
    return out


def check_dbf_values(frame, short: dict[str, str], where: str) -> None:
    """Refuse (:class:`~usm_geo.errors.UsmGeoError`, naming the field and unit) values a DBF field cannot
    hold: text over 254 UTF-8 bytes, integers over 18 characters, reals wider than 24 characters or not
    finite. GDAL would otherwise truncate them, or write garbage with only a warning."""
    fix = "export this table as GeoPackage, GeoParquet or GeoJSON (no such limits), or shorten the value"
    ids = frame["unit_id"].to_numpy(dtype=object) if "unit_id" in frame else None

    def fail(col, pos, what):
        unit = f", unit {ids[pos]}" if ids is not None else ""
        raise UsmGeoError(f"field '{col}' (shapefile field '{short.get(col, col)}'){unit}: {what}", where=where, fix=fix)

    geom = frame.geometry.name
    for col in frame.columns:
        if col == geom:
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_integer_dtype(s):
            v = pd.to_numeric(s).astype("float64").to_numpy()
            bad = np.flatnonzero((v >= 10.0 ** INT_WIDTH) | (v <= -(10.0 ** (INT_WIDTH - 1))))
            if len(bad):
                fail(col, bad[0], f"{s.iloc[bad[0]]} needs more than {INT_WIDTH} characters")
        elif pd.api.types.is_float_dtype(s):
            v = s.to_numpy(dtype=float, na_value=np.nan)
            inf = np.flatnonzero(np.isinf(v))
            if len(inf):
                fail(col, inf[0], f"{v[inf[0]]} is not a finite number")
            for pos in np.flatnonzero(np.abs(np.nan_to_num(v)) >= 1e22):
                if len(f"{v[pos]:.0f}") > REAL_WIDTH:
                    fail(col, pos, f"{v[pos]!r} needs more than the {REAL_WIDTH} characters of a DBF number")
        else:
            text = s.dropna().astype(str)
            text = text[text.str.len() > TEXT_BYTES // 4]  # only these can exceed 254 UTF-8 bytes
            size = text.str.encode("utf-8").str.len()
            if len(size) and size.max() > TEXT_BYTES:
                pos = frame.index.get_loc(size.idxmax())
                fail(col, pos, f"a text of {int(size.max())} bytes; a DBF text field holds at most {TEXT_BYTES} "
                               "bytes and would be cut silently")


def safe_name(text: str) -> str:
    """A file-name-safe layer stem (letters, digits, ``_ . -``)."""
    return re.sub(r"[^\w.-]", "_", str(text)) or "layer"


def _wide(frame, periods: list[str]):
    """One row per unit, ``<column>`` → one column per period (``(column, period)`` keys), unit order kept."""
    import geopandas as gpd

    geom = frame.geometry.name
    keep = [c for c in ("level", "unit_id", "name") if c in frame.columns]
    values = [c for c in frame.columns if c not in keep and c not in ("period", geom)]
    units = frame.drop_duplicates("unit_id")[keep + [geom]].set_index("unit_id", drop=False)
    piv = frame.set_index(["unit_id", "period"])[values].unstack("period")
    cols = {c: units[c].to_numpy() for c in keep}
    for col in values:
        for p in periods:
            s = piv[(col, p)] if (col, p) in piv.columns else pd.Series(index=piv.index, dtype=frame[col].dtype)
            cols[(col, p)] = s.reindex(units.index).astype(frame[col].dtype).reset_index(drop=True)
    out = pd.concat([pd.Series(v, name=k) if not isinstance(v, pd.Series) else v.rename(k) for k, v in cols.items()],
                    axis=1)
    out.columns = list(cols)
    return gpd.GeoDataFrame(out, geometry=units[geom].to_numpy(), crs=frame.crs)


def shapefile_layers(layers: dict, extra: dict, ids, *, shape: str = DEFAULT_SHAPE, periods=None):
    """The shapefiles to write: ``{stem: (frame with short field names, fields rows)}``.

    ``layers``: level → area table (one row per unit and period); ``extra``: hot spot and impact
    layers, already in the export's profile. ``fields rows``: ``(layer, short, long, period)``.
    """
    if shape not in SHAPES:
        raise UsmGeoError(f"unknown shape '{shape}'", where="--shape", fix="use long or wide")
    out = {}
    all_periods = list(periods or [])
    for frame in list(layers.values()) + list(extra.values()):
        if "period" in frame:
            all_periods += [p for p in pd.unique(frame["period"]) if p not in all_periods]
    codes = {p: period_code(i) for i, p in enumerate(sorted(all_periods))}
    for name, frame in {**layers, **extra}.items():
        geom = frame.geometry.name
        frame = frame.reset_index(drop=True)
        has_period = "period" in frame.columns and frame["period"].nunique() >= 1 and "unit_id" in frame.columns
        if shape == "long" or not has_period:
            names = field_names([c for c in frame.columns if c != geom], ids, cap=4)
            if has_period:
                for period in sorted(pd.unique(frame["period"])):
                    part = frame[frame["period"] == period].sort_values("unit_id", kind="stable")
                    rows = [(f"{safe_name(name)}_{safe_name(period)}", s, c, "") for c, s in names.items()]
                    out[f"{safe_name(name)}_{safe_name(period)}"] = (part.rename(columns=names), rows, names)
            else:
                out[safe_name(name)] = (frame.rename(columns=names), [(safe_name(name), s, c, "") for c, s in names.items()], names)
            continue
        ps = sorted(pd.unique(frame["period"]))
        wide = _wide(frame.sort_values("unit_id", kind="stable"), ps)
        longest = max(len(codes[p]) for p in ps)
        fixed = [c for c in wide.columns if not isinstance(c, tuple) and c != wide.geometry.name]
        value_cols = list(dict.fromkeys(c[0] for c in wide.columns if isinstance(c, tuple)))
        base = field_names(fixed + value_cols, ids, cap=max(1, NAME_WIDTH - 6 - longest))
        names, rows = {}, []
        for c in fixed:
            names[c] = base[c]
            rows.append((safe_name(name), base[c], c, ""))
        used = {n.casefold() for n in names.values()}
        for c in wide.columns:
            if not isinstance(c, tuple):
                continue
            short = f"{base[c[0]]}_{codes[c[1]]}"
            if len(short) > NAME_WIDTH:  # a fixed column (gi_p_fdr): drop the separator, then cut
                short = (base[c[0]][: NAME_WIDTH - len(codes[c[1]])].rstrip("_") + codes[c[1]])
            if short.casefold() in used:
                raise UsmGeoError(f"shapefile field '{short}' would repeat", where=f"shapefiles.zip: {name}",
                                  fix="export with --shape long")
            used.add(short.casefold())
            names[c] = short
            rows.append((safe_name(name), short, c[0], c[1]))
        out[safe_name(name)] = (wide.rename(columns=names), rows, {(k if isinstance(k, str) else k[0]): v
                                                              for k, v in names.items()})
    return out, codes


def shapefile_zip_bytes(layers: dict, extra: dict, ids, dictionary: pd.DataFrame | None = None, *,
                        shape: str = DEFAULT_SHAPE, where: str = "shapefiles.zip", workdir=None) -> tuple[bytes, pd.DataFrame]:
    """The zip's bytes (one ``.shp .shx .dbf .prj .cpg`` set per layer and ``fields.csv``) and the
    field table. Entries are sorted and dated 1980-01-01, DBF headers carry the same date: the same
    tables give the same bytes. ``dictionary``: ``name, description, unit`` of long column names."""
    planned, codes = shapefile_layers(layers, extra, ids, shape=shape)
    info = dictionary.drop_duplicates("name").set_index("name") if dictionary is not None else None
    records, entries = [], {}
    with tempfile.TemporaryDirectory(prefix=".shp-", dir=workdir) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*'crs' was not provided.*")
        for stem, (frame, rows, short) in planned.items():
            fields = [c for c in frame.columns if c != frame.geometry.name]
            if len(fields) > MAX_FIELDS:
                raise UsmGeoError(f"layer {stem} has {len(fields)} fields; a shapefile holds at most {MAX_FIELDS}",
                                  where=where, fix="export with --shape long, fewer indicators (--indicators) or periods "
                                                   "(--periods), or use GeoPackage")
            check_dbf_values(frame, {s: s for s in fields}, f"{where}: layer {stem}")
            frame.to_file(Path(tmp) / f"{stem}.shp", driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8",
                          layer_options={"DBF_DATE_LAST_UPDATE": "1980-01-01"})
            for part in sorted(Path(tmp).glob(f"{stem}.*")):
                entries[part.name] = part.read_bytes()
            for layer, s, col, period in rows:
                desc = info.at[col, "description"] if info is not None and col in info.index else ""
                unit = info.at[col, "unit"] if info is not None and col in info.index else ""
                records.append((layer, s, col, period, desc, unit))
    fields = pd.DataFrame(records, columns=["layer", "short_name", "name", "period", "description", "unit"])
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields.columns)
    w.writerows(fields.itertuples(index=False))
    entries["fields.csv"] = buf.getvalue().encode("utf-8")
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        for name in sorted(entries):
            zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = 0o100644 << 16
            z.writestr(zi, entries[name], compresslevel=6)
    return data.getvalue(), fields


def write_shapefiles(target: Path, tables, extra: dict, dictionary: pd.DataFrame | None = None, *,
                     shape: str = DEFAULT_SHAPE) -> pd.DataFrame:
    """Write ``shapefiles.zip`` for an export's area tables (``tables.layers``, ``tables.ids``) and its
    hot spot and impact layers (``extra``, already in the profile), atomically (a temporary file beside
    ``target``, then ``os.replace``). Returns the ``fields.csv`` table."""
    from usm_geo.io import write_bytes

    target = Path(target)
    data, fields = shapefile_zip_bytes(tables.layers, extra, tables.ids, dictionary, shape=shape,
                                       where=target.name, workdir=target.parent)
    write_bytes(target, data)
    return fields
