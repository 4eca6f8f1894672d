"""Deterministic, seeded Demo City: boundaries, population, incidents, a survey and planted truths.

``build_boundaries(seed)`` returns the neighbourhood and district GeoDataFrames (EPSG:32633, metres);
``generate_demo_inputs(folder, seed)`` writes every input file, ``study.toml`` and
``planted_truths.json`` into ``folder``. Same seed, byte-identical files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["DEMO_SEED", "build_boundaries", "generate_demo_inputs"]

if TYPE_CHECKING:  # pragma: no cover
    from usm_geo.demo.city import DEMO_SEED, build_boundaries
    from usm_geo.demo.inputs import generate_demo_inputs


def __getattr__(name: str):
    # Imported lazily so that ``python -m usm_geo.demo.city`` does not import the module twice
    # (runpy warns when the package has already imported the module it is asked to run).
    if name in ("DEMO_SEED", "build_boundaries"):
        from usm_geo.demo import city

        return getattr(city, name)
    if name == "generate_demo_inputs":
        from usm_geo.demo.inputs import generate_demo_inputs

        return generate_demo_inputs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
