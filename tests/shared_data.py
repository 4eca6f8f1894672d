"""Where the real data lives (../shared/data, never copied into the repository) and how tests
ask for it: skipped when absent, a failure under CI=true."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_shared(*parts: str) -> Path:
    """Path under ../shared/data; skip the test if missing (fail under CI=true)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"real data not found: {path}"
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run must provide ../shared)")
        pytest.skip(message)
    return path


CHICAGO_ASSAULTS = ("chicago-aggravated-assaults-2010-2019", "chicago_aggravated_assaults.csv.gz")
CHICAGO_AREAS = ("chicago-community-areas-population-geoda", "Chi-CCA.zip")


def chicago_study_text(*, study: str = "", inputs: str | None = None) -> str:
    """A study file for the Chicago assaults and the 77 community areas, 2010–2019: ``study`` adds
    lines to [study]; ``inputs`` replaces the default tables, which read both from ../shared/data."""
    if inputs is None:
        inputs = (f'[inputs.incidents]\npath = "{need_shared(*CHICAGO_ASSAULTS)}"\ncategory = "loc_cat"\n\n'
                  f'[[inputs.boundaries]]\nlevel = "community_area"\npath = "{need_shared(*CHICAGO_AREAS)}"\n'
                  'id = "area_num_1"\nname = "community"\n')
    return (f'[study]\nname = "Chicago"\ntimezone = "America/Chicago"\n{study}\n\n{inputs}\n'
            "[periods]\nstart = 2010-01-01\nend = 2019-12-31\n")


def chicago_rate_inputs(*, category: bool = False) -> str:
    """[study] (EPSG:32616) and the inputs of the Chicago assault-rate study: the assaults (lon/lat,
    ``date``; ``category`` counts per ``loc_cat``), the 77 community areas and their TOT_POP."""
    import textwrap

    cca = need_shared(*CHICAGO_AREAS)
    return textwrap.dedent(f"""
        [study]
        name = "Chicago"
        timezone = "America/Chicago"
        working_crs = "EPSG:32616"

        [inputs.incidents]
        path = "{need_shared(*CHICAGO_ASSAULTS)}"
        datetime = "date"
        lon = "longitude"
        lat = "latitude"
        {'category = "loc_cat"' if category else ""}

        [[inputs.boundaries]]
        level = "community_area"
        path = "{cca}"
        id = "area_num_1"
        name = "community"

        [inputs.population]
        path = "{cca}"
        level = "community_area"
        id = "area_num_1"
        column = "TOT_POP"
    """)


def chicago_rate_run(folder: Path, first_year: int, *, category: bool = False, h3_resolution: int | None = None,
                     extra_inputs: str = "") -> Path:
    """Run the Chicago assault-rate study (incident_rate per community area, population from the
    areas' TOT_POP, EPSG:32616, yearly from ``first_year`` to 2019, baseline ``first_year``) into
    ``folder/out`` and return that folder. ``category`` counts per ``loc_cat``; ``h3_resolution`` adds
    an H3 level; ``extra_inputs`` adds study tables (e.g. [inputs.perception])."""
    import textwrap

    from usm_geo.pipeline import run
    from usm_geo.study import load_study

    text = chicago_rate_inputs(category=category) + textwrap.dedent(extra_inputs) + textwrap.dedent(f"""
        {f"[units]{chr(10)}h3_resolution = [{h3_resolution}]" if h3_resolution else ""}

        [periods]
        frequency = "year"
        start = {first_year}-01-01
        end = 2019-12-31
        baseline = "{first_year}"
        current = "2019"

        [indicators]
        use = ["incident_rate"]
    """)
    (folder / "study.toml").write_text(text, encoding="utf-8")
    run(load_study(folder / "study.toml"), folder / "out")
    return folder / "out"
