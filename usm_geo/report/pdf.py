"""Print ``report.html`` to PDF through headless Chromium (the flags tests/browser uses).

Chromium is found on PATH (``chromium``, ``chromium-browser``, ``google-chrome``); without it the
error says how to install it or to print from a browser instead. The page size comes from the
report's print CSS (``@page``), headers and footers are off.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from usm_geo.errors import OutputError

#: The flags of tests/browser/conftest.py (running as root needs --no-sandbox).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in BROWSERS:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def print_pdf(html: Path, target: Path, *, timeout: float = 120.0) -> Path:
    """``html`` printed to ``target`` (written atomically); returns ``target``."""
    from usm_geo.io import atomic_path

    exe = find_chromium()
    if exe is None:
        raise OutputError("cannot write the PDF: no Chromium was found (chromium, chromium-browser or google-chrome "
                          "on PATH)", where=target,
                          fix="install it (Debian/Ubuntu: apt-get install chromium), or open the HTML report in a "
                              "browser and print it to PDF")
    target = Path(target)
    with atomic_path(target) as tmp, tempfile.TemporaryDirectory(prefix="usm-geo-chromium-") as profile:
        cmd = [exe, "--headless", *ARGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               "--print-to-pdf-no-header", f"--print-to-pdf={tmp}", Path(html).resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise OutputError(f"Chromium did not finish printing the PDF in {timeout:.0f} s", where=target,
                              fix="retry, or open the HTML report in a browser and print it") from None
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise OutputError(f"Chromium could not print the PDF (exit {done.returncode}: {tail[0][:200]})",
                              where=target, fix="open the HTML report in a browser and print it to PDF")
    return target
