"""Browser tests: generated maps opened in Debian's headless Chromium through Playwright.

Recipe and pitfalls: ../shared/BROWSER-TESTS.md. Skipped when Playwright, chromium or
tests/browser_assets/node_modules is missing — unless CI=true, where that is a failure (.ci/run
installs all three). Never run ``playwright install``: the tests drive the system chromium.
"""

from __future__ import annotations

import shutil

import pytest

from offline_assets import NM, install_routes
from shared_data import IN_CI

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]


def _missing(what: str):
    if IN_CI:
        pytest.fail(f"{what} (CI=true: .ci/run must install it)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def node_modules():
    if not (NM / "leaflet" / "dist" / "leaflet.js").is_file() or not (NM / "leaflet.sync").is_dir():
        _missing(f"no pinned map assets in {NM}: run `npm ci --prefix tests/browser_assets`")
    return NM


@pytest.fixture(scope="session")
def browser(node_modules):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright==1.65.2; no `playwright install`)")
    exe = shutil.which("chromium")
    if not exe:
        _missing("no Debian chromium (apt-get install chromium chromium-driver)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


class MapPage:
    """A page that records console errors, dialogs (alert/confirm/prompt) and network requests."""

    def __init__(self, page):
        self.page = page
        self.errors, self.dialogs, self.requested, self.unexpected, self.tiles = [], [], [], [], []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append((d.type, d.message)), d.dismiss()))
        install_routes(page, self.requested, self.unexpected, self.tiles)

    def open(self, path, timeout: float = 30.0):
        """Open a map file and wait until its script has run (fails early on a script error)."""
        import time

        self.page.goto(path.resolve().as_uri())
        end = time.monotonic() + timeout
        while not self.page.evaluate("() => !!(window.usmGeo && window.usmGeo.ready === true)"):
            assert not self.errors, f"script errors while opening {path.name}: {self.errors}"
            assert time.monotonic() < end, f"{path.name} did not finish drawing in {timeout} s"
            self.page.wait_for_timeout(20)
        return self.page

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def count(self, key: str) -> int:
        return self.js("k => usmGeo.count(k)", key)

    def drawn(self, key: str) -> int:
        return self.js("k => usmGeo.drawn(k)", key)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.unexpected == [], self.unexpected


@pytest.fixture
def map_page(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 800}, service_workers="block")
    yield MapPage(ctx.new_page())
    ctx.close()


@pytest.fixture(scope="session")
def demo_run(demo):
    """The session's Demo City run folder (tests/conftest.py), shared by the browser tests."""
    return demo[0]
