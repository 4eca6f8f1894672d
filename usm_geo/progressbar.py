"""Progress bars inside long steps (reading, assignment, grids, permutations, writing).

Bars are drawn by tqdm on **stderr**, and only when all of these hold:

* the caller switched them on with :func:`showing` (the ``usm-geo`` commands do, unless ``--quiet``);
* stderr is a terminal (a pipe, a log file, a notebook cell or a CI job gets nothing);
* the step is still running after :data:`DELAY_S` seconds (short steps stay silent).

Library code only calls :func:`bar` around the chunks it already works in; it never prints, and
stdout (the ledger summary, JSON) is never touched. Nothing here changes a result.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator

#: seconds a step runs before its bar appears
DELAY_S = 2.0

_SHOW: contextvars.ContextVar[bool] = contextvars.ContextVar("usm_geo_progress", default=False)


@contextlib.contextmanager
def showing(on: bool = True) -> Iterator[None]:
    """Within this block, :func:`bar` draws on stderr when it is a terminal (``on=False``: never)."""
    token = _SHOW.set(bool(on))
    try:
        yield
    finally:
        _SHOW.reset(token)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


@contextlib.contextmanager
def bar(total: int | float | None, desc: str, unit: str = "it", stream=None):
    """A bar for ``total`` units of work named ``desc``; call ``.update(n)`` as chunks finish.

    ``stream`` defaults to ``sys.stderr`` (looked up at call time, so tests can replace it).
    """
    stream = sys.stderr if stream is None else stream
    if not _SHOW.get() or not _is_terminal(stream):
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=stream, delay=DELAY_S, leave=False,
              mininterval=0.5, dynamic_ncols=True, unit_scale=unit != "it") as t:
        yield t


class Steps:
    """A bar over the named phases of one step, for code that is a sequence of phases rather than a
    loop (reading a file: parse, locate, dates, duplicates). ``advance()`` after each phase; ``close()``
    at the end (a bar left open by an exception is closed when it is garbage-collected)."""

    def __init__(self, total: int, desc: str, stream=None):
        self._cm = bar(total, desc, unit="steps", stream=stream)
        self._bar = self._cm.__enter__()

    def advance(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def silence() -> None:
    """No bars from here to the end of the enclosing :func:`showing` block (``--quiet``)."""
    _SHOW.set(False)
