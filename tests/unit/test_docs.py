"""Relative links in the documentation, the README and the notebooks' README point to files that exist."""

import re

import pytest

from shared_data import REPO

PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "notebooks" / "README.md", REPO / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        if not path:  # an anchor in the same page: a heading must produce it (GitHub's rule)
            headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                        for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}
            assert anchor in headings, f"{page.name}: no heading for #{anchor}"
            continue
        assert (page.parent / path).exists(), f"{page.name}: broken link {target}"
