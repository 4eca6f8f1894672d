"""The scripts and stylesheets a map needs, written into the page: every map opens with no network.

Leaflet comes from a Python dependency, the ``django-js-lib-leaflet`` wheel (Leaflet 1.9.4's own
``leaflet.js`` and ``leaflet.css`` as package data; BSD-2-Clause; its files are read with
:mod:`importlib.resources` and nothing of Django is imported). The page links nothing: the builders
give folium placeholder addresses (:data:`LEAFLET_JS`, :data:`LEAFLET_CSS`) and :func:`inline_assets`
replaces each tag with the file's text, the images the stylesheet refers to as ``data:`` URIs. The
side-by-side view is kept in step by the page's own script (``usmGeo.sync`` in
:mod:`usm_geo.maps.runtime`), so no other library is needed. Basemap tiles are the only requests a
map can make, and only when the user asks for them (``tiles``).
"""

from __future__ import annotations

import base64
import importlib.resources
import mimetypes
import re
from functools import lru_cache

from usm_geo.errors import UsmGeoError

LEAFLET_VERSION = "1.9.4"
LEAFLET_PACKAGE = "js_lib_leaflet"  # import name of the django-js-lib-leaflet wheel

# Placeholders folium writes as <script src>/<link href>; never left in a finished page.
LEAFLET_JS = "usm-geo-asset:leaflet.js"
LEAFLET_CSS = "usm-geo-asset:leaflet.css"

#: placeholder → file inside the wheel's static folder
ASSETS = {LEAFLET_JS: "leaflet.js", LEAFLET_CSS: "leaflet.css"}

_CSS_URL = re.compile(r"url\((['\"]?)([^)'\"]+)\1\)")


def _static():
    try:
        root = importlib.resources.files(LEAFLET_PACKAGE)
    except ModuleNotFoundError:
        raise UsmGeoError("Leaflet is not installed (the django-js-lib-leaflet package is missing)",
                          fix="pip install django-js-lib-leaflet==1.9.4.1 (a dependency of usm_geo)") from None
    return root / "static" / LEAFLET_PACKAGE


def _inline_css(text: str, base) -> str:
    """``url(images/x.png)`` → ``url("data:image/png;base64,…")`` for files beside the stylesheet."""

    def repl(m):
        ref = m.group(2)
        if ref.startswith(("data:", "#", "http:", "https:", "//")):
            return m.group(0)
        f = base.joinpath(*ref.split("?")[0].split("#")[0].split("/"))
        if not f.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        return f'url("data:{mime};base64,{base64.b64encode(f.read_bytes()).decode()}")'

    return _CSS_URL.sub(repl, text)


@lru_cache(maxsize=None)
def asset_text(placeholder: str) -> str:
    """The text of a pinned asset, ready to sit inside ``<script>`` or ``<style>``."""
    static = _static()
    f = static / ASSETS[placeholder]
    if not f.is_file():
        raise UsmGeoError(f"Leaflet's {ASSETS[placeholder]} is missing from the installed {LEAFLET_PACKAGE} package",
                          fix="pip install --force-reinstall django-js-lib-leaflet==1.9.4.1")
    text = f.read_text(encoding="utf-8")
    if placeholder == LEAFLET_CSS:
        return _inline_css(text, static).replace("</style", "<\\/style")
    if "<!--" in text:  # would change how the HTML parser ends the script element
        raise UsmGeoError(f"{f} holds '<!--' and cannot be written into a page safely")
    return text.replace("</script", "<\\/script")


def inline_assets(html: str) -> str:
    """Replace the page's ``<script src>``/``<link rel=stylesheet>`` tags for :data:`ASSETS` with the
    files' contents. A page that would still link a script or stylesheet anywhere is an error: it
    would not open offline."""
    for placeholder in ASSETS:
        script_tag = f'<script src="{placeholder}"></script>'
        css_tag = f'<link rel="stylesheet" href="{placeholder}"/>'
        label = f"Leaflet {LEAFLET_VERSION} ({ASSETS[placeholder]}, BSD-2-Clause, from {LEAFLET_PACKAGE})"
        if script_tag in html:
            html = html.replace(script_tag, f"<script>/* {label} */\n{asset_text(placeholder)}\n</script>")
        if css_tag in html:
            html = html.replace(css_tag, f"<style>/* {label} */\n{asset_text(placeholder)}\n</style>")
    left = re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', html)
    if left:
        raise UsmGeoError(f"the map page would load {left[0]} from elsewhere, so it would not open offline",
                          fix="report this as a bug in usm_geo.maps")
    return html
