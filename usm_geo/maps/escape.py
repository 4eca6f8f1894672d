"""Escaping for maps: every string from data or the study is escaped before it reaches the page.

folium's own ``GeoJsonTooltip`` and ``GeoJsonPopup`` put field values into ``innerHTML`` raw, and
plain ``Tooltip``/``Popup`` text is pasted into a JavaScript template literal, so a neighbourhood
named ``<img src=x onerror=alert(1)>`` runs code on hover (measured; ../shared/BROWSER-TESTS.md).
The map builders therefore never hand user strings to those classes. Instead:

* :func:`esc` HTML-escapes a string for text or attribute context (``& < > " '``) and also turns the
  backtick and ``$`` into character references, so the result is inert even inside a JavaScript
  template literal. The browser still *shows* the literal text.
* :func:`script_json` serialises data for a ``<script type="application/json">`` block: compact,
  UTF-8, and with ``< > &`` and U+2028/U+2029 written as ``\\uXXXX`` escapes, so no value can close
  the script element. The page's own code reads these blocks with ``JSON.parse``; no user string
  is ever part of JavaScript source.
* :func:`plain_text` is for the rare place where text must go into folium's own ``Tooltip`` or
  ``Popup``: it refuses backticks and ``${`` and returns the escaped text.
"""

from __future__ import annotations

import html
import json
import math
import re

from usm_geo.errors import UsmGeoError

_JS_SCRIPT = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_CLASS_BAD = re.compile(r"[^a-z0-9_-]+")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def esc(value) -> str:
    """HTML-escape ``value`` (``str()`` of it) for text and attribute context.

    ``& < > " '`` become entities, and ```` ` ```` and ``$`` become ``&#96;`` and ``&#36;``, so the
    text stays inert even if a later change pastes it into a JavaScript template literal. ``None``
    gives an empty string.
    """
    if value is None:
        return ""
    return html.escape(str(value), quote=True).replace("`", "&#96;").replace("$", "&#36;")


def plain_text(value) -> str:
    """Escaped text for folium's own ``Tooltip``/``Popup``; refuses backticks and ``${``.

    folium pastes that text into a JavaScript template literal (``${alert(1)}`` runs at page load),
    so such text is rejected instead of being guessed at.
    """
    text = "" if value is None else str(value)
    if "`" in text or "${" in text:
        raise UsmGeoError(f"text for a map tooltip or popup holds a backtick or '${{': {text[:60]!r}",
                          fix="remove the backtick or '${' from the name or label")
    return esc(text)


def _clean(obj):
    """Replace NaN/inf with None (JSON has no NaN) throughout lists and dicts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def script_json(obj) -> str:
    """Compact JSON that is safe inside ``<script type="application/json">`` (and in JS source)."""
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: JSON has none, write null
        text = json.dumps(_clean(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JS_SCRIPT)


def css_class(text: str) -> str:
    """A CSS class fragment from a level name or id: lower case ``[a-z0-9_-]`` only."""
    out = _CLASS_BAD.sub("-", str(text).lower()).strip("-")
    return out or "x"


def check_colour(colour: str) -> str:
    """A ``#rrggbb`` colour, or :class:`UsmGeoError` (colours are written into CSS as they are)."""
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        raise UsmGeoError(f"not a colour: {colour!r}", fix="give colours as '#rrggbb'")
    return colour.lower()
