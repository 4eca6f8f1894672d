"""The scripts and stylesheets a map links, and inlining them from a local ``node_modules``.

Every asset is an exact-pinned npm package (DESIGN.md, "Map assets"): Leaflet 1.9.3 (folium
0.20's own version) and leaflet.sync 0.2.4 for the side-by-side view. The maps link nothing else
(no jQuery, Bootstrap or icon fonts: they draw polygons, an image and HTML controls only).

``offline_assets=DIR`` takes a ``node_modules`` folder (``npm ci --prefix tests/browser_assets``
gives one) and writes each script and stylesheet into the page, with the images a stylesheet
refers to as ``data:`` URIs, so the map opens with no network at all.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

from usm_geo.errors import UsmGeoError

LEAFLET_JS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"
LEAFLET_CSS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"
SYNC_JS = "https://cdn.jsdelivr.net/npm/leaflet.sync@0.2.4/L.Map.Sync.js"

#: CDN URL → (npm package, version, file inside the package).
ASSETS = {
    LEAFLET_JS: ("leaflet", "1.9.3", "dist/leaflet.js"),
    LEAFLET_CSS: ("leaflet", "1.9.3", "dist/leaflet.css"),
    SYNC_JS: ("leaflet.sync", "0.2.4", "L.Map.Sync.js"),
}

_CSS_URL = re.compile(r"url\((['\"]?)([^)'\"]+)\1\)")


def _package_version(root: Path, package: str) -> str | None:
    import json

    try:
        return json.loads((root / package / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


def local_asset(url: str, node_modules: Path) -> Path:
    """The file for a CDN ``url`` inside ``node_modules``; :class:`UsmGeoError` when missing or a
    different version (an inlined map must hold exactly the pinned code)."""
    package, version, inner = ASSETS[url]
    root = Path(node_modules)
    path = root / package / inner
    if not path.is_file():
        raise UsmGeoError(f"offline assets: {package} is missing ({path} not found)", where=root,
                          fix="run `npm ci --prefix tests/browser_assets` and pass its node_modules folder")
    found = _package_version(root, package)
    if found != version:
        raise UsmGeoError(f"offline assets: {package} is version {found}, the maps need {version}", where=root,
                          fix="run `npm ci --prefix tests/browser_assets` (exact-pinned versions)")
    return path


def _inline_css(text: str, base: Path) -> str:
    def repl(m):
        ref = m.group(2)
        if ref.startswith(("data:", "#", "http:", "https:", "//")):
            return m.group(0)
        f = (base / ref.split("?")[0].split("#")[0]).resolve()
        if not f.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        return f'url("data:{mime};base64,{base64.b64encode(f.read_bytes()).decode()}")'

    return _CSS_URL.sub(repl, text)


def inline_assets(html: str, node_modules) -> str:
    """Replace the page's ``<script src>``/``<link rel=stylesheet>`` tags for :data:`ASSETS` with
    the files' contents from ``node_modules``. A link to anything else is an error (the page
    would not open offline)."""
    root = Path(node_modules)
    if not root.is_dir():
        raise UsmGeoError("offline assets folder not found", where=root,
                          fix="run `npm ci --prefix tests/browser_assets` and pass tests/browser_assets/node_modules")
    for url in ASSETS:
        script_tag, css_tag = f'<script src="{url}"></script>', f'<link rel="stylesheet" href="{url}"/>'
        if script_tag not in html and css_tag not in html:
            continue
        path = local_asset(url, root)
        text = path.read_text(encoding="utf-8")
        if script_tag in html:
            if "<!--" in text:  # would change how the HTML parser ends the script element
                raise UsmGeoError(f"offline assets: {path} holds '<!--' and cannot be inlined safely")
            body = text.replace("</script", "<\\/script")
            html = html.replace(script_tag, f"<script>/* {ASSETS[url][0]}@{ASSETS[url][1]} */\n{body}\n</script>")
        if css_tag in html:
            body = _inline_css(text, path.parent).replace("</style", "<\\/style")
            html = html.replace(css_tag, f"<style>/* {ASSETS[url][0]}@{ASSETS[url][1]} */\n{body}\n</style>")
    left = re.findall(r'<(?:script src|link rel="stylesheet" href)="(https?://[^"]+)"', html)
    if left:
        raise UsmGeoError(f"offline assets: the page also links {left[0]}, which is not a pinned asset",
                          fix="report this as a bug in usm_geo.maps")
    return html

