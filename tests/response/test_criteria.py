"""Response criteria presets: their thresholds met exactly, nadir against baseline, complete response."""

from __future__ import annotations

import pytest

from medsight.errors import ConfigError
from medsight.response.criteria import (
    COMPLETE,
    PARTIAL,
    PROGRESSIVE,
    STABLE,
    ResponseCriteria,
    assess,
    get_criteria,
    list_criteria,
    register_criteria,
)
from medsight.response.measure import LesionMeasure, MaskMeasure


def _category(name: str, *values: float, any_lesion=None) -> str | None:
    flags = any_lesion if any_lesion is not None else [v > 0 for v in values]
    return assess(get_criteria(name), values, any_lesion=flags).category


@pytest.mark.parametrize("name, values, expected", [
    # RECIST-like: progression needs +20 % AND +5 mm from the nadir; partial response -30 % from baseline
    ("recist-like", (25.0, 30.0), PROGRESSIVE),       # +20 %, +5 mm exactly
    ("recist-like", (25.0, 29.99), STABLE),
    ("recist-like", (24.0, 28.8), STABLE),            # +20 % but only +4.8 mm
    ("recist-like", (10.0, 16.0), PROGRESSIVE),
    ("recist-like", (50.0, 35.0), PARTIAL),           # -30 % exactly
    ("recist-like", (50.0, 35.01), STABLE),
    # RANO-like: +25 % on the sum of products from the nadir; -50 % from baseline
    ("rano-like", (1.3, 1.625), PROGRESSIVE),         # +25 %, which floats compute as 24.999999999999993
    ("rano-like", (400.0, 499.9), STABLE),
    ("rano-like", (400.0, 200.0), PARTIAL),
    ("rano-like", (400.0, 200.1), STABLE),
    # volumetric: +40 % from the nadir; -65 % from baseline
    ("volumetric", (10.0, 14.0), PROGRESSIVE),
    ("volumetric", (10.0, 13.99), STABLE),
    ("volumetric", (10.0, 3.5), PARTIAL),
    ("volumetric", (10.0, 3.51), STABLE),
])
def test_each_preset_classifies_exactly_at_its_thresholds(name, values, expected):
    assert _category(name, *values) == expected


def test_progression_is_measured_from_the_nadir_and_response_from_baseline():
    a = assess(get_criteria("recist-like"), [50.0, 30.0, 37.0], any_lesion=[True] * 3)
    assert a.category == PROGRESSIVE and a.nadir == 30.0 and a.nadir_index == 1  # -26 % from baseline, +23 % from nadir
    assert a.change_from_nadir == pytest.approx(7.0) and a.change_from_baseline_pct == pytest.approx(-26.0)
    assert _category("recist-like", 50.0, 30.0, 35.0) == PARTIAL  # +16.7 % from the nadir is no progression


def test_no_lesion_left_is_complete_response_and_one_coming_back_is_progression():
    assert _category("recist-like", 40.0, 0.0) == COMPLETE
    assert _category("volumetric", 8.0, 0.0) == COMPLETE
    assert _category("recist-like", 40.0, 0.0, 12.0) == PROGRESSIVE
    # lesions too small to measure remain: the sum is 0 but it is not complete response
    assert _category("recist-like", 40.0, 0.0, any_lesion=[True, True]) == PARTIAL


def test_one_time_point_is_the_baseline_only_and_says_so():
    a = assess(get_criteria("rano-like"), [300.0], any_lesion=[True], dates=["2024-01-01"])
    assert a.category is None and a.rule == "baseline only"
    assert any("baseline" in r and "follow-up" in r for r in a.reasons)


def test_no_measurable_lesion_at_baseline_is_not_evaluable_unless_disease_grows():
    assert assess(get_criteria("recist-like"), [0.0, 3.0], any_lesion=[True, True]).rule == "not evaluable"
    assert _category("recist-like", 0.0, 12.0, any_lesion=[True, True]) == PROGRESSIVE


def test_the_assessment_says_which_numbers_decided():
    a = assess(get_criteria("recist-like"), [33.1, 46.9], any_lesion=[True, True], dates=["d0", "d1"])
    d = a.to_dict()
    assert d["criteria"] == "recist-like" and d["rule"] == "progression" and d["unit"] == "mm"
    assert d["thresholds"] == {"progression_pct": 20.0, "progression_min_increase": 5.0, "partial_pct": 30.0}
    assert d["change_from_nadir_pct"] == pytest.approx(41.69, abs=0.01)
    assert any("≥ +20 %" in r and "met" in r for r in a.reasons) and a.reasons[-1].endswith(PROGRESSIVE)


def _measure(*diameters: tuple[float, float]) -> MaskMeasure:
    lesions = tuple(LesionMeasure(100, 0.1, ld, pd, 0, (0.0, 0.0, 0.0)) for ld, pd in diameters)
    return MaskMeasure(whole=LesionMeasure(100 * len(lesions), 0.1 * len(lesions), 0, 0, 0, None), lesions=lesions)


def test_only_measurable_lesions_count_up_to_the_preset_number():
    m = _measure((30, 25), (20, 8), (15, 12), (12, 11), (11, 11), (10.5, 10), (5, 4))
    assert get_criteria("recist-like").value(m) == (88.0, [0, 1, 2, 3, 4])  # 5 largest of those >= 10 mm
    value, used = get_criteria("rano-like").value(m)  # both diameters >= 10 mm
    assert used == [0, 2, 3, 4, 5] and value == pytest.approx(750 + 180 + 132 + 121 + 105)
    assert get_criteria("volumetric").value(m) == (pytest.approx(0.7), list(range(7)))


def test_presets_are_found_by_name_and_new_ones_are_validated():
    assert {"recist-like", "rano-like", "volumetric"} <= set(list_criteria())
    with pytest.raises(ConfigError, match="recist-like"):
        get_criteria("recist")
    custom = get_criteria({"name": "strict", "title": "Strict", "quantity": "volume", "progression_pct": 10,
                           "partial_pct": 20})
    assert isinstance(custom, ResponseCriteria) and custom.unit == "mL"
    with pytest.raises(ConfigError, match="progresion_pct"):
        get_criteria({"name": "x", "title": "x", "quantity": "volume", "progresion_pct": 10, "partial_pct": 20})
    with pytest.raises(ConfigError, match="already registered"):
        register_criteria(get_criteria("volumetric"))


def test_the_volumetric_preset_states_the_3d_equivalents_of_ranos_thresholds():
    v, r = get_criteria("volumetric"), get_criteria("rano-like")
    assert round(100 * ((1 + r.progression_pct / 100) ** 1.5 - 1)) == v.progression_pct
    assert round(100 * (1 - (1 - r.partial_pct / 100) ** 1.5)) == v.partial_pct
