"""folium/branca elements for usm_geo's maps, and deterministic element ids.

branca gives every element a random id (``urandom``), so two builds of the same map differ.
:func:`deterministic_ids` swaps that for a counter while a map is built (DESIGN.md: "folium
element ids come from a counter"), so the same inputs give byte-identical HTML. It patches a
class attribute, so map builds in one process take turns (a lock); other folium code running in
another thread meanwhile would get counter ids too, which is harmless.
"""

from __future__ import annotations

import itertools
import re
import threading
from contextlib import contextmanager
from unittest import mock

from branca.element import Element, MacroElement
from jinja2 import Template

from usm_geo.maps.runtime import CSS, JS

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_LOCK = threading.RLock()


@contextmanager
def deterministic_ids():
    """Element ids ``u1``, ``u2``, … while the block runs (restored afterwards)."""
    counter = itertools.count(1)
    with _LOCK, mock.patch.object(Element, "_generate_id", classmethod(lambda cls: f"u{next(counter)}")):
        yield


def _check(name: str) -> str:
    # only our own identifiers go into script source; never data
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe identifier for page script: {name!r}")
    return name


class _Text(Element):
    """Fixed text for the page, written as it is.

    branca's ``Element(template)`` would *parse* its argument as a Jinja template, so text holding
    ``{{ … }}`` or ``{% … %}`` (a unit name, say) would be evaluated in Python — template
    injection. Here the text is a template *variable*, never template source.
    """

    _template = Template("{{ this.text }}")

    def __init__(self, text: str):
        super().__init__()
        self.text = text


class Runtime(_Text):
    """The page's styles and ``window.usmGeo`` code (static), for ``figure.header``."""

    def __init__(self):
        super().__init__(f"<style>{CSS}</style>\n<script>{JS}</script>\n")


class Html(_Text):
    """A piece of body HTML built by the map builder from escaped strings (or a JSON block)."""


class Call(MacroElement):
    """One ``usmGeo.<fn>(<map>, "<id>"[, "<arg>"])`` statement in the map's script.

    ``fn``, the data id and the argument are identifiers made by the builder (checked against
    ``[A-Za-z0-9_.-]``); every data value stays in the JSON blocks.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        usmGeo.{{ this.fn }}({{ this._parent.get_name() }}{% for a in this.args %}, "{{ a }}"{% endfor %});
        {% endmacro %}
    """)

    def __init__(self, fn: str, *args: str):
        super().__init__()
        self._name = "UsmCall"
        self.fn = _check(fn)
        self.args = [_check(a) for a in args]


class Statement(MacroElement):
    """A fixed script statement (our own code, no data), e.g. ``usmGeo.sync("before", "after")``."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this.code }}
        {% endmacro %}
    """)

    def __init__(self, code: str):
        super().__init__()
        self._name = "UsmStatement"
        self.code = code
