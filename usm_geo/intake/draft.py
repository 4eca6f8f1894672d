"""``usm-geo init``: a first, commented ``study.toml`` written from the user's own files.

Floor 0 (in :mod:`usm_geo.intake`): files are read only through the intake readers, nothing
is computed beyond what the guesses need, and nothing below the CLI imports this module.

Each file is classified by its content (:func:`classify`):

``boundaries``  polygons (GeoPackage, shapefile, GeoJSON, KML …): id, name, and a population column
                when the layer carries one (Chicago's ``TOT_POP``)
``points``      a table or layer of points: lon/lat or bare x/y, a date column or date parts
                (``YEAR``/``MONTH``/``DAY``…), a category and an id column
``population``  a table (CSV/XLSX) with a column of unit codes that match a boundary level's ids
                and a numeric population column
``survey``      a table with a design-weight column (written commented out: its questions are the user's)
``table``       anything else (listed in a comment, not used)

Bare projected x/y without a CRS are placed by trying :data:`CRS_CANDIDATES` and the UTM zones
around the boundaries (:func:`candidate_crs`): the CRS that puts the most points inside the
boundary polygons wins, and the comment says how many did. Every key that was guessed carries a
``# guessed: …, check`` comment; a study is never overwritten without ``force``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from usm_geo.errors import InputFileError, UsmGeoError
from usm_geo.intake.columns import CANDIDATES
from usm_geo.intake.files import read_records
from usm_geo.intake.ledger import Ledger

#: National and regional grids tried for bare x/y, besides the UTM zones around the boundaries.
CRS_CANDIDATES = (
    "EPSG:27700",  # British National Grid
    "EPSG:2157",  # Irish Transverse Mercator
    "EPSG:29902",  # Irish Grid
    "EPSG:2154",  # France, Lambert-93
    "EPSG:25832",  # Germany, ETRS89 / UTM 32N
    "EPSG:3857",  # Web Mercator (some portals export it)
)
#: Columns of date parts, by role (compared like intake's column names: case and punctuation ignored).
DATE_PARTS = {"year": ("year", "yr"), "month": ("month", "mon"), "day": ("day",), "hour": ("hour", "hr"),
              "minute": ("minute", "min")}
WEIGHT_NAMES = ("weight", "designweight", "surveyweight", "finalweight", "wt", "wgt")
POPULATION_NAMES = ("population", "totpop", "totalpopulation", "pop", "residents", "usualresidents", "persons")
SAMPLE = 20_000  # points tried per candidate CRS (spread over the file)


@dataclass
class FileGuess:
    """What :func:`classify` found in one file; ``keys`` are the study keys with their guesses,
    ``why`` the comment of each guessed key, ``notes`` lines for the study's header comment."""

    path: Path
    kind: str  # boundaries, points, population, survey, table
    columns: list[str]
    keys: dict[str, object] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    frame: object = None  # the records read (for the CRS and key matching)
    crs: object = None
    features: int = 0


def _key(name: str) -> str:
    """A column name compared as intake compares it: case-folded, letters and digits only."""
    return "".join(ch for ch in str(name).casefold() if ch.isalnum())


def _find(columns: list[str], names) -> str | None:
    by_key = {}
    for c in columns:
        by_key.setdefault(_key(c), c)
    return next((by_key[n] for n in names if n in by_key), None)


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _ids(series: pd.Series) -> pd.Series:
    """Ids as intake makes them: text, ``35.0`` → ``"35"``."""
    text = series.astype(str).str.strip()
    return text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)


def _read(path: Path):
    try:
        return read_records(path, path.name, Ledger())
    except UsmGeoError:
        raise
    except Exception as exc:  # a reader's own error (corrupt file): say which file
        raise InputFileError(f"cannot be read ({type(exc).__name__}: {exc})", where=path,
                             fix="check the file, or leave it out of `usm-geo init`") from None


def classify(path: Path) -> FileGuess:
    """Read ``path`` through intake and say what it is (see the module's docstring)."""
    path = Path(path)
    raw = _read(path)
    frame = raw.frame
    columns = [str(c) for c in frame.columns if c != "geometry"]
    if raw.spatial:
        kinds = set(shapely.get_type_id(frame.geometry.dropna().to_numpy()))
        if kinds and kinds <= {3, 6}:  # Polygon, MultiPolygon
            return _boundaries(FileGuess(path, "boundaries", columns, frame=frame, crs=raw.crs, features=len(frame)))
        if kinds and kinds <= {0, 4}:
            return _points(FileGuess(path, "points", columns, frame=frame, crs=raw.crs, features=len(frame)))
    guess = FileGuess(path, "table", columns, frame=frame, features=len(frame))
    weight = _find(columns, WEIGHT_NAMES)
    if weight is not None and _numeric(frame[weight]).notna().mean() > 0.9:
        guess.kind = "survey"  # design weights: respondents, not incidents
        guess = _points(guess)
        guess.keys["weight"] = weight
        guess.why["weight"] = "numeric, named like a design weight"
        return guess
    if (_find(columns, CANDIDATES["lon"]) and _find(columns, CANDIDATES["lat"])) or (
            _find(columns, CANDIDATES["x"]) and _find(columns, CANDIDATES["y"])):
        guess.kind = "points"
        return _points(guess)
    if _population_column(frame, columns) is not None:
        guess.kind = "population"
    return guess


def _population_column(frame: pd.DataFrame, columns: list[str]) -> str | None:
    """The numeric column of people: ``population``, ``TOT_POP`` …, else the first numeric column
    whose name holds ``pop`` and no digit (``2010_POP`` is an older count)."""
    numeric = [c for c in columns if _numeric(frame[c]).notna().mean() > 0.9]
    exact = _find(numeric, POPULATION_NAMES)
    if exact:
        return exact
    loose = [c for c in numeric if "pop" in _key(c) and not re.search(r"\d", c)]
    return loose[0] if loose else None


def _boundaries(g: FileGuess) -> FileGuess:
    frame = g.frame
    unique = [c for c in g.columns if frame[c].notna().all() and _ids(frame[c]).is_unique]
    code_like = [c for c in unique if re.search(r"(code|id|num|number|geoid|gss)\d*$", _key(c)) or _key(c).startswith("gss")]
    names = [c for c in g.columns if _key(c).endswith("name") or _key(c) in ("community", "neighbourhood", "neighborhood")]
    ident = code_like[0] if code_like else (next((c for c in names if c in unique), None) or (unique[0] if unique else None))
    if ident is None:
        raise InputFileError("no column with one distinct value per polygon, so the units have no id", where=g.path,
                             fix="add an id column to the layer")
    g.keys["id"] = ident
    g.why["id"] = (f"one distinct value per polygon ({len(frame)}), named like a code" if ident in code_like
                   else f"one distinct value per polygon ({len(frame)}); no code column")
    name = next((c for c in names if c != ident), None)
    if name:
        g.keys["name"] = name
        g.why["name"] = "named like a unit name"
    pop = _population_column(frame, g.columns)
    if pop:
        g.keys["population"] = pop
        g.why["population"] = f"numeric, named like a population count (total {_numeric(frame[pop]).sum():,.0f})"
    if g.crs is None:
        g.notes.append(f"{g.path.name} has no CRS: add crs = \"EPSG:…\" to its [[inputs.boundaries]]")
    return g


def _lonlat_ok(frame, lon: str, lat: str) -> bool:
    x, y = _numeric(frame[lon]), _numeric(frame[lat])
    ok = x.notna() & y.notna() & ~((x == 0) & (y == 0))
    return bool(ok.any()) and bool(((x[ok].abs() <= 180) & (y[ok].abs() <= 90)).mean() > 0.95)


def _points(g: FileGuess) -> FileGuess:
    frame, cols = g.frame, g.columns
    if g.crs is None:
        lon, lat = _find(cols, CANDIDATES["lon"]), _find(cols, CANDIDATES["lat"])
        x, y = _find(cols, CANDIDATES["x"]), _find(cols, CANDIDATES["y"])
        if lon and lat and _lonlat_ok(frame, lon, lat):
            g.keys.update(lon=lon, lat=lat)
            g.why["lon"] = g.why["lat"] = "named like longitude/latitude, values in degrees"
        elif x and y:
            g.keys.update(x=x, y=y)
            g.why["x"] = g.why["y"] = "named like projected x/y"
            if _lonlat_ok(frame, x, y):
                g.keys.update(crs="EPSG:4326")
                g.why["crs"] = "the x/y values are all within ±180/±90: degrees"
    _dates(g)
    cat = _find(cols, CANDIDATES["category"])
    if cat:
        g.keys["category"] = cat
        n = frame[cat].nunique()
        g.why["category"] = f"named like a category; {n} distinct values"
    ident = next((c for c in cols if re.fullmatch(r"(id|.*(id|number|no|ref))", _key(c)) and frame[c].notna().all()
                  and frame[c].is_unique), None)
    if ident:
        g.keys["id"] = ident
        g.why["id"] = "named like a record id, one distinct value per row"
    codes = [c for c in cols if re.search(r"(code|cd)$", _key(c))]
    if codes:
        g.notes.append(f"{g.path.name}: column(s) {', '.join(codes)} look like area codes (not used: the points are placed by coordinates)")
    return g


def _dates(g: FileGuess) -> None:
    """A date column that parses, or date parts (``YEAR``, ``MONTH`` … integers): an integer
    ``MONTH`` is a part, never the date column."""
    frame, cols = g.frame, g.columns
    parts = {role: _find(cols, names) for role, names in DATE_PARTS.items()}
    parts = {r: c for r, c in parts.items() if c is not None and _numeric(frame[c]).notna().mean() > 0.9}
    if "year" in parts and "month" in parts:
        for role in ("year", "month", "day", "hour", "minute"):
            if role in parts:
                g.keys[role] = parts[role]
                g.why[role] = "integer date part"
        y = _numeric(frame[parts["year"]])
        m = _numeric(frame[parts["month"]])
        d = _numeric(frame[parts["day"]]) if "day" in parts else pd.Series(1, index=frame.index)
        when = pd.to_datetime(pd.DataFrame({"year": y, "month": m, "day": d}), errors="coerce")
        _span(g, when)
        return
    for name in CANDIDATES["datetime"]:
        col = _find(cols, [name])
        if col is None or _numeric(frame[col]).notna().mean() > 0.5:
            continue  # numbers are not dates (a MONTH of 1…12)
        sample = frame[col].dropna().astype(str).head(5000)
        when = pd.to_datetime(sample, errors="coerce", format="mixed")
        if len(sample) and when.notna().mean() > 0.9:
            g.keys["datetime"] = col
            g.why["datetime"] = f"{when.notna().mean():.0%} of the first {len(sample):,} values read as dates"
            _span(g, pd.to_datetime(frame[col].astype(str), errors="coerce", format="mixed"))
            return
    g.notes.append(f"{g.path.name}: no date column found; add datetime = \"COLUMN\" (or date/time) to [inputs.incidents]")


def _span(g: FileGuess, when: pd.Series) -> None:
    when = when.dropna()
    if len(when):
        end = when.max()
        if (when.dt.day == 1).all() and (when.dt.normalize() == when).all():
            end = end + pd.offsets.MonthEnd(0)  # month-only dates (police.uk): the last month is covered whole
        g.keys["_start"], g.keys["_end"] = when.min().date(), end.date()


# --------------------------------------------------------------------------- CRS of bare x/y


def candidate_crs(bounds_lonlat) -> list[str]:
    """CRSs tried for bare x/y: NAD83 (North America) and ETRS89 (Europe) UTM zones, then WGS 84 UTM
    zones, of the boundaries' zone and its two neighbours, then :data:`CRS_CANDIDATES`."""
    lon0, lat0, lon1, lat1 = bounds_lonlat
    lon, lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    zone = int((lon + 180) // 6) % 60 + 1
    zones = [((zone + d - 1) % 60) + 1 for d in (0, -1, 1)]
    out = []
    for z in zones:
        if lat >= 0 and -170 <= lon <= -50 and 1 <= z <= 23:
            out.append(f"EPSG:{26900 + z}")
        if lat >= 0 and -30 <= lon <= 45 and 28 <= z <= 38:
            out.append(f"EPSG:{25800 + z}")
        out.append(f"EPSG:{(32600 if lat >= 0 else 32700) + z}")
    return out + [c for c in CRS_CANDIDATES if c not in out]


def guess_crs(x: np.ndarray, y: np.ndarray, polygons, polygons_crs) -> tuple[str | None, int, int, list]:
    """The candidate CRS putting the most of the points (x, y) inside ``polygons`` (in
    ``polygons_crs``). Returns (CRS, points inside, points tried, [(crs, inside)…]); ties keep the
    first candidate. Points at (0, 0) or not finite are left out."""
    ok = np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0))
    x, y = x[ok], y[ok]
    if len(x) > SAMPLE:
        pick = np.linspace(0, len(x) - 1, SAMPLE).astype(int)
        x, y = x[pick], y[pick]
    area = shapely.union_all(shapely.make_valid(np.asarray(polygons)))
    to_lonlat = Transformer.from_crs(polygons_crs, "EPSG:4326", always_xy=True)
    b = area.bounds
    lo = to_lonlat.transform([b[0], b[2]], [b[1], b[3]])
    tried = []
    for code in candidate_crs((min(lo[0]), min(lo[1]), max(lo[0]), max(lo[1]))):
        to_candidate = Transformer.from_crs(polygons_crs, code, always_xy=True)
        moved = shapely.transform(area, lambda xy, t=to_candidate: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        shapely.prepare(moved)
        tried.append((code, int(shapely.contains_xy(moved, x, y).sum())))
    best = max(tried, key=lambda t: t[1]) if tried else (None, 0)
    return (best[0] if best[1] > 0 else None), best[1], int(len(x)), tried


# --------------------------------------------------------------------------- the study text


def _q(value) -> str:
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to the study's folder when it lies inside it, else absolute."""
    path, base = Path(path).resolve(), Path(base).resolve()
    return path.relative_to(base).as_posix() if base in path.parents else path.as_posix()


def _line(key: str, value, why: str | None) -> str:
    text = f"{key} = {value if isinstance(value, (int, float)) or key in ('start', 'end') else _q(value)}"
    return text + (f"  # guessed: {why}, check" if why else "")


def _match_population(table: FileGuess, levels: list[FileGuess]):
    """(level guess, key column, overlap) of a population table: the column whose values match the
    most ids of a boundary level."""
    best = (None, None, 0)
    for b in levels:
        ids = set(_ids(b.frame[b.keys["id"]]))
        for c in table.columns:
            n = len(ids & set(_ids(table.frame[c].dropna())))
            if n > best[2]:
                best = (b, c, n)
    return best


def study_text(files, out: Path) -> tuple[str, list[FileGuess]]:
    """The commented study.toml for ``files`` (written beside ``out``: paths are relative to it)."""
    guesses = [classify(Path(f)) for f in files]
    base = Path(out).resolve().parent
    bounds = sorted((g for g in guesses if g.kind == "boundaries"), key=lambda g: -g.features)  # finest first
    points = [g for g in guesses if g.kind == "points"]
    tables = [g for g in guesses if g.kind in ("population", "table")]
    lines = ["# study.toml written by `usm-geo init` from:"]
    lines += [f"#   {_rel(g.path, base)}: {g.kind} ({g.features:,} {'features' if g.kind == 'boundaries' else 'rows'})"
              for g in guesses]
    lines += ["# Every key marked `# guessed` was detected from the files: check it, then run",
              f"#   usm-geo validate {Path(out).name}", "# (docs/study.md lists every key)."]
    for g in guesses:
        lines += [f"# note: {n}" for n in g.notes]
    inc = points[0] if points else None
    for extra in points[1:]:
        lines.append(f"# note: {extra.path.name} also holds points; only {inc.path.name} is used as the incidents")
    name = (bounds[0].path.stem if bounds else inc.path.stem if inc else "study").split(".")[0]
    lines += ["", "[study]", _line("name", name, "from the first file's name"),
              _line("timezone", "UTC", "not detected (usm_geo has no map of time zones): set the IANA zone of the "
                                       "local times, e.g. America/Chicago")]
    if inc is not None:
        lines += ["", "[inputs.incidents]", f"path = {_q(_rel(inc.path, base))}"]
        if {"x", "y"} <= set(inc.keys) and "crs" not in inc.keys and inc.crs is None:
            if bounds:
                b = bounds[0]
                x = _numeric(inc.frame[inc.keys["x"]]).to_numpy(float)
                y = _numeric(inc.frame[inc.keys["y"]]).to_numpy(float)
                code, inside, tried, _ = guess_crs(x, y, b.frame.geometry.to_numpy(), b.crs or "EPSG:4326")
                if code:
                    inc.keys["crs"] = code
                    inc.why["crs"] = (f"bare x/y: {CRS(code).name} puts {inside:,} of {tried:,} points tried "
                                      f"inside {b.path.name}, more than any other candidate")
            if "crs" not in inc.keys:
                lines.append("# crs = \"EPSG:…\"  # the x/y have no CRS and none of the candidates placed them: set it")
        for key in ("lon", "lat", "x", "y", "crs", "datetime", "year", "month", "day", "hour", "minute", "category", "id"):
            if key in inc.keys:
                lines.append(_line(key, inc.keys[key], inc.why.get(key)))
    for i, b in enumerate(bounds):
        level = re.sub(r"[^a-z0-9]+", "_", b.path.stem.split(".")[0].lower()).strip("_") or f"level{i + 1}"
        b.keys["_level"] = level if level not in ("city",) and not level.startswith("h3_") else f"{level}_areas"
        lines += ["", "[[inputs.boundaries]]", _line("level", b.keys["_level"], "from the file name"),
                  f"path = {_q(_rel(b.path, base))}", _line("id", b.keys["id"], b.why["id"])]
        if "name" in b.keys:
            lines.append(_line("name", b.keys["name"], b.why["name"]))
    pop_written = False
    for t in tables:
        if t.kind != "population" or not bounds or pop_written:
            continue
        level, key, n = _match_population(t, bounds)
        if level is None:
            lines.append(f"# note: {t.path.name} looks like a population table but no column matches a boundary id")
            continue
        col = _population_column(t.frame, t.columns)
        lines += ["", "[inputs.population]", f"path = {_q(_rel(t.path, base))}", f"level = {_q(level.keys['_level'])}",
                  _line("id", key, f"{n:,} of its values are ids of {level.keys['_level']} ({len(level.frame):,} units)"),
                  _line("column", col, "numeric, named like a population count")]
        pop_written = True
    if not pop_written:
        with_pop = next((b for b in bounds if "population" in b.keys), None)
        if with_pop is not None:
            lines += ["", "[inputs.population]", f"path = {_q(_rel(with_pop.path, base))}",
                      f"level = {_q(with_pop.keys['_level'])}", f"id = {_q(with_pop.keys['id'])}",
                      _line("column", with_pop.keys["population"], with_pop.why["population"])]
        else:
            lines += ["", "# no population found: the run computes counts, concentration and hot spots, no rates"]
    for sv in (g for g in guesses if g.kind == "survey"):
        # a survey needs its questions and answers, which only the user knows: written commented out
        lines += ["", f"# {sv.path.name} looks like a survey (design weights): complete the questions, then uncomment",
                  "# [inputs.survey]", f"# path = {_q(_rel(sv.path, base))}"]
        lines += [f"# {_line(k, sv.keys[k], sv.why.get(k))}" for k in ("lon", "lat", "x", "y", "crs", "datetime", "weight")
                  if k in sv.keys]
        lines += ["# [inputs.survey.questions.safe_after_dark]", "# column = \"COLUMN\"",
                  "# answers = [\"very safe\", \"fairly safe\", \"a bit unsafe\", \"very unsafe\"]",
                  f"# (columns: {', '.join(sv.columns[:20])})"]
    for t in tables:
        if t.kind == "table":
            lines.append(f"# note: {t.path.name} was not recognised (columns: {', '.join(t.columns[:12])}) and is not used")
    if inc is not None and "_start" in inc.keys:
        start, end = inc.keys["_start"], inc.keys["_end"]
        freq = "year" if end.year - start.year >= 2 else "month"
        lines += ["", "[periods]", _line("frequency", freq, f"the data span {start} … {end}"),
                  _line("start", start.isoformat(), "the first date in the incidents"),
                  _line("end", end.isoformat(), "the last date in the incidents")]
    return "\n".join(lines) + "\n", guesses


def write_study(files, out: Path, *, force: bool = False) -> tuple[Path, list[FileGuess]]:
    """Write :func:`study_text` to ``out`` (atomically); an existing file is kept unless ``force``."""
    import tempfile

    from usm_geo.errors import OutputError

    out = Path(out)
    if not files:
        raise UsmGeoError("no files given", where="usm-geo init", fix="name your data files: usm-geo init incidents.csv areas.gpkg --out study.toml")
    if out.exists() and not force:
        raise OutputError("exists; `usm-geo init` does not overwrite a study", where=out,
                          fix="choose another --out, or add --force to replace it")
    for f in files:
        if not Path(f).exists():
            raise InputFileError("file not found", where=f, fix="check the path given to `usm-geo init`")
    text, guesses = study_text(files, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)  # atomic: beside, then replace
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write: {exc.strerror or exc}", where=out, fix="choose a folder you can write to") from None
    return out, guesses
