"""docs/outputs.md lists every abbreviation the shapefile writer uses (usm_geo/export/shapefiles.py),
so that the documented table cannot drift from the code."""

from __future__ import annotations

import re

from shared_data import REPO

from usm_geo.export import shapefiles


def _section() -> str:
    text = (REPO / "docs" / "outputs.md").read_text(encoding="utf-8")
    start = text.index("## Shapefiles (`shapefiles.zip`)")
    return text[start:text.index("\n## ", start + 1)]


def test_every_stem_measure_word_and_fixed_field_is_documented():
    doc = _section()
    pairs = re.findall(r"`([^`]+)` \| `([^`]+)`", doc)  # word | stem and column | field cells
    documented = set(pairs)
    missing = [(w, s) for w, s in {**shapefiles.STEMS, **shapefiles.FIXED}.items() if (w, s) not in documented]
    assert not missing, f"add to docs/outputs.md: {missing}"
    for word, token in shapefiles.MEASURES.items():
        assert f"`{word}` → `{token}`" in doc, word


def test_every_part_token_is_documented():
    doc = _section()
    rows = {"_lower": "lower bound", "_upper": "upper bound", "_n": "count / respondents", "_flags": "flags"}
    cols = {"": 0, "_eb": 1, "_seb": 2, "_fh": 3}
    for smooth, tokens in shapefiles.PART_TOKENS.items():
        for part, token in tokens.items():
            line = next(l for l in doc.splitlines() if l.startswith(f"| {rows[part]}" if part else "| value"))
            cells = [c.strip() for c in line.strip("|").split("|")][1:]
            assert cells[cols[smooth]] == f"`{token}`", (smooth, part, line)


def test_documented_examples_are_what_the_code_writes():
    names = shapefiles.field_names(
        ["homicide_rate", "homicide_rate_lower", "homicide_rate_upper", "homicide_rate_n", "homicide_rate_flags",
         "homicide_rate_eb", "homicide_rate_eb_lower", "homicide_rate_eb_upper", "harassment_share",
         "violent_crime_rate", "safe_after_dark_share_fh", "safe_after_dark_share_fh_lower",
         "safe_after_dark_share_fh_upper"],
        ["homicide_rate", "homicide_rate_eb", "harassment_share", "violent_crime_rate", "safe_after_dark_share_fh"])
    assert list(names.values()) == ["hom_rate", "hom_lo", "hom_hi", "hom_n", "hom_fl", "hom_eb", "hom_elo", "hom_ehi",
                                    "har_shr", "vioc_rate", "dark_fh", "dark_flo", "dark_fhi"]
    doc = _section()
    for short in names.values():
        assert f"`{short}`" in doc
    assert [shapefiles.period_code(i) for i in (0, 1, 25, 26)] == ["a", "b", "z", "aa"]
