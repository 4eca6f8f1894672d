"""PostgreSQL/PostGIS as a place to read inputs from and write results to: the database source a
study names, connections, and the translation of driver errors into :class:`UsmGeoError`.

A study names a database input with ``source = "postgresql://USER@HOST:PORT/DB"`` and either
``table = "schema.name"`` or ``query = "SELECT …"`` (docs/postgis.md). The password never comes
from the study or the command line: libpq reads ``PGPASSWORD`` or ``~/.pgpass``. A URL holding a
password is refused. Identifiers (schema, table, column names) are always passed to the server as
quoted identifiers (``psycopg.sql.Identifier``), never pasted into SQL text.

psycopg is imported only when a database is used, so file-only studies do not need a server.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from usm_geo.errors import UsmGeoError

SCHEMES = ("postgresql://", "postgres://")
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL cuts longer names silently (NAMEDATALEN - 1)
PASSWORD_FIX = ("set PGPASSWORD in the environment, or add the line HOST:PORT:DB:USER:PASSWORD to ~/.pgpass "
                "(chmod 600); never write the password in the study file or on the command line")
_IDENT = re.compile(r'"((?:[^"]|"")+)"|([^."]+)')


def is_database_url(text: str) -> bool:
    """True when ``text`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(text, str) and text.strip().lower().startswith(SCHEMES)


def checked_url(url: str, where: str) -> str:
    """``url`` after refusing one that holds a password (in ``USER:PASSWORD@`` or ``?password=``).

    Raises :class:`UsmGeoError` naming ``where`` (a study key or ``--to``). The error never repeats
    the password: only the part after ``@`` is shown.
    """
    url = url.strip()
    if not is_database_url(url):
        raise UsmGeoError(f"'{url.split('@')[-1]}' is not a PostgreSQL URL", where=where,
                          fix="write it as postgresql://USER@HOST:PORT/DATABASE")
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo or any(k.lower() == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise UsmGeoError(f"the database URL holds a password ({parts.scheme}://…@{parts.netloc.rpartition('@')[2]}{parts.path})",
                          where=where, fix=f"remove it from the URL and {PASSWORD_FIX}")
    return url


def split_table_name(text: str, where: str) -> tuple[str, ...]:
    """``"schema.name"`` → ``("schema", "name")``; ``"name"`` → ``("name",)``.

    A part written in double quotes keeps dots and case (``'"my.schema"."Wards 2022"'``), with
    ``""`` for a quote inside it, as in SQL. Anything else is refused.
    """
    parts, pos, ok = [], 0, False
    text = text.strip()
    while True:
        m = _IDENT.match(text, pos)
        if m is None:
            ok = False  # nothing (or a stray quote) where a name should be
            break
        ok = True
        parts.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2).strip())
        pos = m.end()
        if pos == len(text) or text[pos] != ".":
            break
        pos += 1
    if not ok or pos != len(text) or not 1 <= len(parts) <= 2 or not all(parts):
        raise UsmGeoError(f"'{text}' is not a table name", where=where,
                          fix='write table = "schema.name" (double-quote a part holding a dot: \'"my.schema".wards\')')
    for part in parts:
        check_identifier(part, where)
    return tuple(parts)


def check_identifier(name: str, where: str, what: str = "name") -> str:
    """Refuse a name PostgreSQL would cut (over 63 bytes) or cannot hold (a NUL character)."""
    if "\x00" in name or not name:
        raise UsmGeoError(f"the {what} {name!r} is empty or holds a NUL character", where=where, fix="choose another name")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise UsmGeoError(f"the {what} '{name[:40]}…' is {len(name.encode('utf-8'))} bytes long; PostgreSQL names hold "
                          f"at most {MAX_IDENTIFIER_BYTES}", where=where, fix="choose a shorter name")
    return name


@dataclass(frozen=True)
class DatabaseSource:
    """A table (``table``, as ``(schema, name)`` or ``(name,)``) or a ``query`` of a PostgreSQL database.

    ``url`` never holds a password. ``geometry`` names the geometry column when the result has more
    than one. ``key`` is the study key (``inputs.incidents``) and ``study_file`` the study, for messages.
    Rows are numbered 1, 2, … in the order the server returns them: a table's primary key order when
    it has one, else the query's ``ORDER BY`` (docs/postgis.md).
    """

    url: str
    table: tuple[str, ...] | None = None
    query: str | None = None
    geometry: str | None = None
    key: str = "source"
    study_file: Path | None = None

    @property
    def what(self) -> str:
        if self.table is not None:
            return "table " + ".".join(self.table)
        return "query"

    @property
    def where(self) -> str:
        """``study.toml: inputs.incidents (postgresql://…, table x.y)``: the key and the source."""
        return f"{self.study_file}: {self}" if self.study_file else str(self)

    def __str__(self) -> str:
        return f"{self.key} ({self.url}, {self.what})"

    def provenance(self) -> dict:
        """What run.json records about this input (no password: the URL never holds one)."""
        out = {"database": self.url}
        if self.table is not None:
            out["table"] = ".".join(self.table)
        else:
            out["query"] = self.query
        return out


def _scrub(text: str) -> str:
    password = os.environ.get("PGPASSWORD")
    return text.replace(password, "***") if password else text


def driver_error(exc: Exception, where: str, action: str) -> UsmGeoError:
    """A psycopg error → :class:`UsmGeoError` with the server's first line and a fix for the usual causes."""
    diag = getattr(exc, "diag", None)
    state = getattr(exc, "sqlstate", None) or ""
    text = (getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__).strip()
    first = _scrub(text.splitlines()[0] if text else type(exc).__name__)
    low = text.lower()
    if state == "28P01" or "password authentication failed" in low or "no password supplied" in low:
        fix = PASSWORD_FIX
    elif state == "3D000" or ("database" in low and "does not exist" in low):
        fix = "check the database name at the end of the URL"
    elif "role" in low and "does not exist" in low:
        fix = "check the user name before @ in the URL"
    elif any(s in low for s in ("connection refused", "could not connect", "could not translate host", "timeout",
                                 "no route", "server closed", "is the server running")):
        fix = "check that the server is running and that HOST:PORT in the URL are right"
    elif state == "42P01":
        fix = "check the schema and table name, and that this user may see them"
    elif state == "42501":
        fix = "ask the database owner for the permission (docs/postgis.md lists what is needed)"
    elif state == "25006":
        fix = "a database input is read in a read-only transaction: the query may only read (SELECT …)"
    elif state.startswith("42"):
        fix = "check the SQL of the query (run it in psql first)"
    elif state == "2BP01":
        fix = "drop or change the views that use these tables, or export into another --schema"
    else:
        fix = "check the URL, the server and the permissions (docs/postgis.md)"
    return UsmGeoError(f"{action}: {first}", where=where, fix=fix)


def connect(url: str, where: str, *, read_only: bool = False):
    """A psycopg connection to ``url`` (no autocommit; ``read_only`` for inputs).

    The password comes from ``PGPASSWORD`` or ``~/.pgpass``, as for ``psql``. Connection problems
    (server down, wrong password, unknown database) raise :class:`UsmGeoError` naming ``where``.
    """
    try:
        import psycopg
    except ModuleNotFoundError:  # pragma: no cover - a dependency
        raise UsmGeoError("reading or writing a database needs psycopg", where=where,
                          fix="pip install 'psycopg[binary]'") from None
    kwargs = {} if "connect_timeout" in url else {"connect_timeout": 15}
    try:
        conn = psycopg.connect(checked_url(url, where), application_name="usm_geo", **kwargs)
    except psycopg.Error as exc:
        raise driver_error(exc, where, f"cannot connect to {url}") from None
    conn.read_only = read_only
    with conn.cursor() as cur:
        # text output that reads back exactly: ISO dates in UTC, shortest exact doubles
        cur.execute("SET TIME ZONE 'UTC'; SET datestyle = 'ISO, YMD'; SET extra_float_digits = 1")
    conn.commit()
    return conn


def postgis_version(conn) -> str | None:
    """The installed PostGIS extension's version in the connected database, or None."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
    return row[0] if row else None
