"""Indicator registry: shipped definitions, study overrides, refusals, category and harm tables."""

import numpy as np
import pytest

from usm_geo.errors import StudyError
from usm_geo.indicators.registry import harm_weights, load_settings, map_categories, shipped_indicators


def test_shipped_registry_has_the_sdg_indicators():
    reg = shipped_indicators()
    assert reg["homicide_rate"].sdg == "16.1.1" and reg["homicide_rate"].per == 100_000
    assert reg["homicide_rate_health"].source == "health"  # police and health series kept apart
    assert reg["safe_after_dark_share"].sdg == "16.1.4" and reg["safe_after_dark_share"].yes == ("very safe", "safe")
    assert reg["safe_after_dark_share"].never_go_out_rule == "unsafe"
    assert reg["harassment_share"].sdg == "11.7.2" and reg["violent_victimisation_share"].sdg == "16.1.3"
    assert not reg["safe_after_dark_share"].lower_is_better


@pytest.mark.parametrize("definition", [
    {"id": "ipv", "name": "Intimate partner violence", "kind": "share", "source": "police", "question": "q", "yes": ["yes"], "sdg": "5.2.2"},
    {"id": "ipv_rate", "name": "Intimate partner violence", "kind": "rate", "source": "police", "sdg": "5.2.2"},
    {"id": "fear", "name": "Fear", "kind": "share", "source": "health", "question": "q", "yes": ["yes"]},
])
def test_prevalence_from_administrative_records_is_refused(tmp_path, definition):
    with pytest.raises(StudyError, match="prevalence") as err:
        load_settings({"define": [definition]}, tmp_path / "study.toml")
    assert "SDG metadata excludes administrative" in str(err.value)


def test_study_overrides_and_picks(tmp_path):
    s = load_settings({"use": ["homicide_rate", "my_rate"],
                       "define": [{"id": "my_rate", "name": "Thefts per 1,000", "kind": "rate", "source": "police",
                                   "categories": ["05"], "per": 1000}],
                       "targets": {"homicide_rate": {"year": 2030, "change": -0.5}}}, tmp_path / "study.toml")
    assert list(s.indicators) == ["homicide_rate", "my_rate"]
    assert s.targets["homicide_rate"].change == -0.5
    with pytest.raises(StudyError, match="unknown indicator 'nope'"):
        load_settings({"use": ["nope"]}, tmp_path / "study.toml")
    with pytest.raises(StudyError, match="'indicators.colour' is not a known key"):
        load_settings({"colour": "red"}, tmp_path / "study.toml")


def test_category_mapping_lists_unmapped_labels_and_never_guesses(tmp_path):
    s = load_settings({}, tmp_path / "study.toml")
    codes, unmapped = map_categories(np.array(["Theft", " homicide", "assault", "Rowdiness", "theft"], dtype=object), s.categories)
    assert codes.tolist() == ["05", "01", "02", None, "05"]
    assert unmapped == ["Rowdiness"]


def test_harm_table(tmp_path):
    (tmp_path / "harm.csv").write_text("label,harm_days\ntheft,2\nhomicide,5475\n")
    s = load_settings({"harm": "harm.csv"}, tmp_path / "study.toml")
    w, missing = harm_weights(np.array(["THEFT", "homicide", "arson"], dtype=object), s.harm)
    assert w[:2].tolist() == [2.0, 5475.0] and np.isnan(w[2]) and missing == ["arson"]
    (tmp_path / "bad.csv").write_text("label,harm_days\ntheft,lots\n")
    with pytest.raises(StudyError, match="not a number"):
        load_settings({"harm": "bad.csv"}, tmp_path / "study.toml")
