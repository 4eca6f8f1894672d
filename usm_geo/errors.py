"""Errors that users see.

Every error a user can cause is a :class:`UsmGeoError` whose message says *what* is wrong,
*where* (file, row, column or study key) and *how to fix it*. The CLI prints the message
without a traceback and exits with status 2.
"""

from __future__ import annotations

import difflib
from pathlib import Path


class UsmGeoError(Exception):
    """A problem with the user's input or settings, explained in one message.

    Parameters
    ----------
    what : str
        What is wrong, in plain words.
    where : str or Path, optional
        The file (optionally with ``:row`` / column) or study key concerned.
    fix : str, optional
        What the user can do about it.
    """

    def __init__(self, what: str, *, where: str | Path | None = None, fix: str | None = None):
        self.what = what
        self.where = str(where) if where is not None else None
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text

    def __str__(self) -> str:
        return self.message


class StudyError(UsmGeoError):
    """The study file is malformed: unknown key, wrong type, missing file."""


class InputFileError(UsmGeoError):
    """An input file cannot be read or does not have the expected structure."""


class CoordinateError(UsmGeoError):
    """Coordinates are unusable as a whole (e.g. projected metres declared as degrees)."""


class DateError(UsmGeoError):
    """Dates cannot be interpreted unambiguously."""


class BoundaryError(UsmGeoError):
    """A boundary layer is unusable: duplicate ids, empty or non-polygon geometry, bad parents."""


class CRSError(UsmGeoError):
    """A coordinate reference system is missing, unknown or unsuitable for the operation."""


class OutputError(UsmGeoError):
    """An output cannot be written (permissions, disk full, unsafe path)."""


def where(path: str | Path, row: int | None = None, column: str | None = None) -> str:
    """Format a location as ``file:row, column 'name'`` (row is the 1-based data row)."""
    text = str(path)
    if row is not None:
        text += f":{row}"
    if column is not None:
        text += f", column '{column}'"
    return text


def closest(name: str, choices, cutoff: float = 0.6) -> str | None:
    """The choice most like ``name``, compared case-insensitively (difflib ratio ≥ ``cutoff``), or None.

    For "did you mean …?" in messages: ``closest("longitud", ["Longitude", "Latitude"])`` is
    ``"Longitude"``; the choice is returned as spelled in ``choices``."""
    choices = [str(c) for c in choices]
    folded: dict[str, str] = {}
    for c in choices:
        folded.setdefault(c.casefold(), c)  # the first of two spellings that fold alike wins
    match = difflib.get_close_matches(str(name).casefold(), list(folded), n=1, cutoff=cutoff)
    return folded[match[0]] if match else None
