"""Indicator definitions: the shipped registry (``data/registry.toml``) plus the study's own.

A study's ``[indicators]`` section may pick indicators (``use``), add or override definitions
(``[[indicators.define]]``, same keys as the registry), name its category mapping (local offence
label → UNODC ICCS level-1 section) and harm-weight tables, and set targets. Definitions that
would misuse a data source are refused: a prevalence (a share of residents, e.g. SDG 5.2.2,
11.7.2, 16.1.3, 16.1.4) needs a survey — SDG metadata excludes administrative records for it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from usm_geo.errors import StudyError

KINDS = ("rate", "share")
SOURCES = ("police", "health", "survey")
THEMES = ("Crime", "Community", "Local Governance")
SURVEY_ONLY_SDG = ("5.2.2", "11.7.2", "16.1.3", "16.1.4")
_KEYS = {"id", "name", "theme", "kind", "source", "categories", "per", "lower_is_better", "sdg", "question", "yes",
         "exclude", "never_go_out", "never_go_out_rule"}


@dataclass(frozen=True)
class Indicator:
    """One indicator definition (see data/registry.toml for the meaning of each field)."""

    id: str
    name: str
    theme: str
    kind: str
    source: str
    lower_is_better: bool = True
    sdg: str | None = None
    categories: tuple[str, ...] = ("*",)
    per: float = 1000.0
    question: str | None = None
    yes: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    never_go_out: str | None = None
    never_go_out_rule: str = "unsafe"


@dataclass(frozen=True)
class Target:
    """Progress target: e.g. halve (``change = -0.5``) the baseline value by ``year``."""

    indicator: str
    year: int
    change: float | None = None  # relative change from the baseline, e.g. -0.5
    value: float | None = None  # or an absolute target value


@dataclass(frozen=True)
class IndicatorSettings:
    indicators: dict[str, Indicator]
    categories: pd.DataFrame  # label (casefolded), iccs, iccs_name
    harm: pd.DataFrame | None  # label (casefolded), harm
    targets: dict[str, Target] = field(default_factory=dict)
    min_n: int = 30
    min_eff_n: float = 30.0
    small_count: int = 10


def _data(name: str):
    return resources.files("usm_geo.indicators").joinpath("data", name)


def _definition(raw: dict, where: str, file) -> Indicator:
    if not isinstance(raw, dict):
        raise StudyError(f"'{where}' must be a table", where=file)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise StudyError(f"'{where}.{unknown[0]}' is not a known key", where=file, fix=f"known keys: {', '.join(sorted(_KEYS))}")
    for key in ("id", "name", "kind", "source"):
        if not isinstance(raw.get(key), str):
            raise StudyError(f"'{where}.{key}' is missing or not a string", where=file, fix=f'add {key} = "..."')
    if raw["kind"] not in KINDS:
        raise StudyError(f"'{where}.kind' must be one of {', '.join(KINDS)}, not {raw['kind']!r}", where=file, fix='use kind = "rate" or "share"')
    if raw["source"] not in SOURCES:
        raise StudyError(f"'{where}.source' must be one of {', '.join(SOURCES)}, not {raw['source']!r}", where=file, fix='e.g. source = "police"')
    theme = raw.get("theme", "Crime")
    if theme not in THEMES:
        raise StudyError(f"'{where}.theme' must be one of {', '.join(THEMES)}, not {theme!r}", where=file, fix='e.g. theme = "Crime"')
    ind = Indicator(
        id=raw["id"], name=raw["name"], theme=theme, kind=raw["kind"], source=raw["source"],
        lower_is_better=bool(raw.get("lower_is_better", True)), sdg=raw.get("sdg") or None,
        categories=tuple(str(c) for c in raw.get("categories", ["*"])), per=float(raw.get("per", 1000.0)),
        question=raw.get("question"), yes=tuple(raw.get("yes", ())), exclude=tuple(raw.get("exclude", ())),
        never_go_out=raw.get("never_go_out"), never_go_out_rule=raw.get("never_go_out_rule", "unsafe"),
    )
    if ind.source != "survey" and (ind.kind == "share" or ind.sdg in SURVEY_ONLY_SDG):
        raise StudyError(
            f"indicator '{ind.id}' asks for a prevalence{' (SDG ' + ind.sdg + ')' if ind.sdg else ''} from {ind.source} records",
            where=file,
            fix="a share of residents who experienced or feel something can only come from a representative survey: "
                "the SDG metadata excludes administrative (police or health) records for prevalence indicators because "
                "most incidents are never reported. Use source = \"survey\" with a survey question, or define a rate instead")
    if ind.kind == "share" and (not ind.question or not ind.yes):
        raise StudyError(f"indicator '{ind.id}' is a share but names no question or yes answers", where=file,
                         fix='add question = "<question id in inputs.survey.questions>" and yes = ["..."]')
    if ind.never_go_out_rule not in ("unsafe", "exclude"):
        raise StudyError(f"'{where}.never_go_out_rule' must be \"unsafe\" or \"exclude\"", where=file)
    if ind.per <= 0:
        raise StudyError(f"'{where}.per' must be positive", where=file, fix="e.g. per = 1000")
    return ind


def shipped_indicators() -> dict[str, Indicator]:
    raw = tomllib.loads(_data("registry.toml").read_text(encoding="utf-8"))
    return {d["id"]: _definition(d, f"registry indicator {d.get('id')}", "usm_geo/indicators/data/registry.toml")
            for d in raw["indicator"]}


def read_label_table(path, column: str, file) -> pd.DataFrame:
    """A CSV of ``label`` → ``column``; labels are matched ignoring case and surrounding spaces."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "label" not in table or column not in table:
        raise StudyError(f"the table {path} needs columns 'label' and '{column}'", where=file,
                         fix=f"see usm_geo/indicators/data/ for an example with label,{column}")
    table["label"] = table["label"].str.strip().str.casefold()
    dup = table["label"][table["label"].duplicated()]
    if len(dup):
        raise StudyError(f"label '{dup.iloc[0]}' appears twice in {path}", where=file, fix="keep one row per label")
    return table


def load_settings(section: dict, study_file: Path, base: Path | None = None) -> IndicatorSettings:
    """Validate a study's ``[indicators]`` section against the shipped registry."""
    section = dict(section or {})
    base = base or Path(study_file).parent
    allowed = {"use", "define", "categories", "harm", "targets", "min_n", "min_eff_n", "small_count"}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise StudyError(f"'indicators.{unknown[0]}' is not a known key", where=study_file, fix=f"known keys: {', '.join(sorted(allowed))}")
    indicators = shipped_indicators()
    for i, raw in enumerate(section.get("define", [])):
        ind = _definition(raw, f"indicators.define[{i}]", study_file)
        indicators[ind.id] = ind
    use = section.get("use")
    if use is not None:
        missing = [u for u in use if u not in indicators]
        if missing:
            raise StudyError(f"'indicators.use' names unknown indicator '{missing[0]}'", where=study_file,
                             fix=f"known: {', '.join(sorted(indicators))}, or define it in [[indicators.define]]")
        indicators = {k: indicators[k] for k in use}
    cat_path = section.get("categories")
    categories = read_label_table(base / cat_path if cat_path else _data("iccs_categories.csv"), "iccs", study_file)
    harm_path = section.get("harm")
    harm = read_label_table(base / harm_path, "harm_days", study_file) if harm_path else None
    if harm is not None:
        harm["harm"] = pd.to_numeric(harm["harm_days"], errors="coerce")
        if harm["harm"].isna().any() or (harm["harm"] < 0).any():
            raise StudyError(f"the harm table {harm_path} has a weight that is not a number ≥ 0", where=study_file)
    targets = {}
    for ind_id, raw in (section.get("targets") or {}).items():
        if ind_id not in indicators:
            raise StudyError(f"'indicators.targets.{ind_id}' names an indicator not in use", where=study_file)
        if not isinstance(raw, dict) or "year" not in raw or ("change" in raw) == ("value" in raw):
            raise StudyError(f"'indicators.targets.{ind_id}' needs year and either change (e.g. -0.5 to halve) or value",
                             where=study_file, fix=f"[indicators.targets.{ind_id}]\nyear = 2030\nchange = -0.5")
        targets[ind_id] = Target(ind_id, int(raw["year"]), raw.get("change"), raw.get("value"))
    return IndicatorSettings(indicators=indicators, categories=categories, harm=harm, targets=targets,
                             min_n=int(section.get("min_n", 30)), min_eff_n=float(section.get("min_eff_n", 30)),
                             small_count=int(section.get("small_count", 10)))


def map_categories(labels, table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Local offence labels → ICCS section codes (object array, None where unmapped) and the
    sorted list of labels that the table does not map (listed, never guessed)."""
    labels = np.asarray(labels, dtype=object)
    folded = pd.Series(labels, dtype=object).astype(str).str.strip().str.casefold()
    lookup = dict(zip(table["label"], table["iccs"]))
    codes = folded.map(lookup).to_numpy(dtype=object)
    unmapped = sorted(set(labels[pd.isna(codes)].astype(str)))
    return np.where(pd.isna(codes), None, codes), unmapped


def harm_weights(labels, table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Harm weight per label (NaN where the table has none) and the labels without a weight."""
    labels = np.asarray(labels, dtype=object)
    folded = pd.Series(labels, dtype=object).astype(str).str.strip().str.casefold()
    w = folded.map(dict(zip(table["label"], table["harm"]))).to_numpy(dtype=float)
    return w, sorted(set(labels[np.isnan(w)].astype(str)))


#: The definition of ``count`` when a run has no indicator at all (a study without population or
#: survey): its area tables and map then show the incident counts themselves (docs/outputs.md).
COUNT_DEFINITION = {
    "id": "count", "name": "Incidents (count)", "kind": "count", "unit": "incidents",
    "description": "incidents counted in the unit in the period; a count, not a rate: the study has no "
                   "population, so no rate was computed",
    "lower_is_better": True,
}


def incident_harm(incidents: pd.DataFrame, table: pd.DataFrame | None) -> tuple[np.ndarray | None, list[str]]:
    """(harm weight per incident, categories the table does not weigh); see :func:`harm_weights`."""
    if table is not None:
        w, missing = harm_weights(incidents["category"].to_numpy(dtype=object), table)
        return np.nan_to_num(w, nan=0.0), missing
    return (incidents["weight"].to_numpy() if "weight" in incidents else None), []
