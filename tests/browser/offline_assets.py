"""Serve the CDN URLs a map links from tests/browser_assets/node_modules (../shared/BROWSER-TESTS.md).

Every request a page makes goes through :func:`install_routes`: a pinned asset is answered from the
local file, a map tile with a blank PNG (and recorded), and anything else is recorded as
unexpected and answered empty, so a test can assert that the page asked for nothing else.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

import folium

NM = Path(__file__).resolve().parents[1] / "browser_assets" / "node_modules"
JD, CF = "https://cdn.jsdelivr.net/", "https://cdnjs.cloudflare.com/ajax/libs/"
PREFIXES = {  # prefix match so that relative fonts/images resolve too
    JD + "npm/leaflet@1.9.3/": NM / "leaflet",
    JD + "npm/leaflet.sync@0.2.4/": NM / "leaflet.sync",
    JD + "npm/bootstrap@5.2.2/": NM / "bootstrap",
    JD + "npm/@fortawesome/fontawesome-free@6.2.0/": NM / "@fortawesome/fontawesome-free",
    CF + "leaflet.markercluster/1.1.0/": NM / "leaflet.markercluster/dist",
    JD + "gh/python-visualization/folium@main/folium/templates/": Path(folium.__file__).parent / "templates",
}
AM = CF + "Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers"
FILES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": NM / "jquery/dist/jquery.min.js",
    AM + ".js": NM / "drmonty-leaflet-awesome-markers/js/leaflet.awesome-markers.js",
    AM + ".css": NM / "drmonty-leaflet-awesome-markers/css/leaflet.awesome-markers.css",
    CF + "d3/3.5.5/d3.min.js": NM / "d3/d3.min.js",
}
EMPTY_OK = ("https://netdna.bootstrapcdn.com/bootstrap/3.0.0/css/bootstrap-glyphicons.css",
            JD + "gh/python-visualization/folium/folium/templates/leaflet.awesome.rotate.min.css")
TILE_RE = re.compile(r"^https?://[^?]+/\d+/\d+/\d+(@2x)?\.(png|jpg|jpeg|webp)")
BLANK_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


def local_file(url: str) -> Path | None:
    url = url.split("?")[0]
    if url in FILES:
        return FILES[url]
    for prefix, root in PREFIXES.items():
        if url.startswith(prefix):
            return root / url[len(prefix):]
    return None


def install_routes(page, requested: list, unexpected: list, tiles: list) -> None:
    """Route every request of ``page``: local files for pinned assets, blank tiles, nothing else."""

    def handler(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            return route.continue_()
        requested.append(url)
        f = local_file(url)
        if f and f.is_file():
            return route.fulfill(status=200, body=f.read_bytes(),
                                 content_type=mimetypes.guess_type(str(f))[0] or "application/octet-stream")
        if TILE_RE.match(url):
            tiles.append(url)
            return route.fulfill(status=200, body=BLANK_PNG, content_type="image/png")
        if url.split("?")[0] not in EMPTY_OK:
            unexpected.append(url)
        return route.fulfill(status=200, body=b"")

    page.route("**/*", handler)
