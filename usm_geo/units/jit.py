"""numba kernels compiled on first use: ``import numba`` is paid only by a process that runs one.

Importing numba costs ~0.3 s and its first compiled call another ~1 s (numba sets up its CPU
target, which imports scipy.linalg among others), whether the kernel then comes from the cache or
not. A command that never runs a kernel (``usm-geo aggregate`` with a small polygon layer uses the
numpy route of :mod:`usm_geo.units.assign`) should not pay that, so every usm_geo kernel is
declared with :func:`njit` from here instead of ``numba.njit``:

    from usm_geo.units import jit

    @jit.njit(cache=True, nogil=True)
    def _kernel(a, out): ...

The decorator returns a :class:`Kernel` and does not import numba. The first call of any kernel of
a module imports numba and turns *every* kernel of that module into a real ``numba.njit``
dispatcher, rebinding the module's global names to them before anything is compiled. That is what
lets kernels call each other (also with ``inline="always"``): numba resolves a called kernel by
its global name when it compiles the caller, and finds a dispatcher there. ``cache=True`` works
as with the decorator (numba caches by the function's source file and qualified name; the cache
folder is chosen in ``usm_geo/__init__.py`` before numba is ever imported, docs/scale.md
"Compiled kernels").

Thread limits without numba: :func:`max_threads` is numba's per-thread limit
(``numba.get_num_threads()``) when numba is loaded, else ``NUMBA_NUM_THREADS`` when set, further
capped by :func:`limit_threads` (what a Dask worker thread sets, instead of importing numba to
call ``numba.set_num_threads(1)``).
"""

from __future__ import annotations

import functools
import os
import sys
import threading

__all__ = ["Kernel", "compiled", "limit_threads", "loaded", "max_threads", "njit", "numba"]

_LOCK = threading.RLock()
#: module name → its kernels not yet turned into dispatchers (definition order)
_PENDING: dict[str, list[Kernel]] = {}
_LIMIT = threading.local()


def numba():
    """The numba module, imported on the first call (the one place usm_geo imports it)."""
    import numba as nb

    return nb


class Kernel:
    """A function to be compiled by ``numba.njit(**options)`` when first called.

    Calling it calls the dispatcher (compiled or loaded from the cache on the first call, as numba
    does). ``dispatcher`` gives the ``numba`` dispatcher itself; other attributes (``py_func``,
    ``signatures``, ...) are the dispatcher's.
    """

    def __init__(self, func, options: dict):
        self.py_func = func
        self.options = dict(options)
        self._dispatcher = None
        functools.update_wrapper(self, func)
        with _LOCK:
            _PENDING.setdefault(func.__module__, []).append(self)

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            _materialise(self.py_func.__module__)
        return self._dispatcher

    def __call__(self, *args):
        return self.dispatcher(*args)

    def __getattr__(self, name):
        # only reached for names the Kernel itself lacks (signatures, overloads, ...); private
        # names never reach the dispatcher (and cannot recurse while the Kernel is half made)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.dispatcher, name)

    def __repr__(self) -> str:
        state = "pending" if self._dispatcher is None else "dispatcher"
        return f"<usm_geo kernel {self.py_func.__module__}.{self.py_func.__qualname__} ({state})>"


def njit(**options):
    """Decorator: like ``numba.njit(**options)``, but numba is imported and the kernel made on the
    first call (see the module docstring). Options only (``@njit(cache=True)``), no signatures."""

    def wrap(func):
        return Kernel(func, options)

    return wrap


def _materialise(module_name: str) -> None:
    """Make a dispatcher for every pending kernel of ``module_name`` and rebind the module's
    globals to them (kernels imported from other modules are rebound too)."""
    with _LOCK:
        kernels = _PENDING.pop(module_name, [])
        if not kernels:
            return
        nb = numba()
        namespace = sys.modules[module_name].__dict__
        for k in kernels:
            k._dispatcher = nb.njit(**k.options)(k.py_func)
        for name, value in list(namespace.items()):
            if isinstance(value, Kernel):
                namespace[name] = value.dispatcher


def compiled(kernel) -> bool:
    """True when ``kernel`` (a :class:`Kernel`, or the dispatcher its module's name now holds) has
    been compiled or loaded from the cache in this process. Never imports numba."""
    if isinstance(kernel, Kernel):
        kernel = kernel._dispatcher
        if kernel is None:
            return False
    return bool(kernel.signatures)


def loaded() -> bool:
    """True when numba has been imported in this process (by usm_geo or anyone else)."""
    return "numba" in sys.modules


def limit_threads(n: int | None) -> None:
    """Cap :func:`max_threads` at ``n`` for the calling thread (``None`` removes the cap)."""
    _LIMIT.value = None if n is None else int(n)


def max_threads() -> int | None:
    """How many threads the calling thread may use for kernels: numba's per-thread limit when numba
    is loaded, else ``NUMBA_NUM_THREADS`` if set, capped by :func:`limit_threads`; None = no cap."""
    caps = []
    if loaded():
        caps.append(int(sys.modules["numba"].get_num_threads()))
    else:
        raw = os.environ.get("NUMBA_NUM_THREADS", "").strip()
        if raw.isdigit() and int(raw) > 0:
            caps.append(int(raw))
    own = getattr(_LIMIT, "value", None)
    if own is not None:
        caps.append(own)
    return min(caps) if caps else None
