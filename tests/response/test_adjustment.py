"""Treatment-adjustment suggestions from a response category, by named policy."""

from __future__ import annotations

import pytest

from medsight.errors import ConfigError
from medsight.response import TreatmentPolicy
from medsight.response.adjustment import get_policy, list_policies, suggest_adjustment
from medsight.response.criteria import CATEGORIES, COMPLETE, PARTIAL, PROGRESSIVE, STABLE, assess, get_criteria


def _assessment(values, any_lesion=None):
    return assess(get_criteria("recist-like"), values, any_lesion=any_lesion or [v > 0 for v in values])


def test_the_default_policy_escalates_on_progression_and_maintains_otherwise():
    policy = get_policy("default")
    assert suggest_adjustment(policy, _assessment([30.0, 40.0]))[0] == "escalate or review treatment"
    assert suggest_adjustment(policy, _assessment([30.0, 31.0]))[0] == "maintain treatment"
    for values in ([30.0, 20.0], [30.0, 0.0]):
        assert suggest_adjustment(policy, _assessment(values))[0] == ("maintain treatment; consider de-escalation "
                                                                      "per protocol")


def test_the_reference_policy_keeps_the_reference_designs_wording():
    reference, score_policy = get_policy("reference"), TreatmentPolicy()
    assert reference.suggestions[PROGRESSIVE] == score_policy.rules[0].suggestion == "Intensify treatment"
    assert {reference.suggestions[c] for c in (STABLE, PARTIAL, COMPLETE)} == {score_policy.default}


def test_a_suggestion_gives_its_reasons_and_handles_a_baseline_only():
    text, reasons = suggest_adjustment(get_policy("default"), _assessment([30.0, 40.0]))
    assert "policy default" in reasons[0] and PROGRESSIVE in reasons[0] and "recist-like" in reasons[0]
    text, reasons = suggest_adjustment(get_policy("default"), _assessment([30.0]))
    assert "baseline only" in text and "baseline only" in reasons[0]


def test_a_policy_must_name_every_category_and_unknown_presets_are_listed():
    assert {"default", "reference"} <= set(list_policies())
    with pytest.raises(ConfigError, match="missing"):
        get_policy({"name": "p", "suggestions": {PROGRESSIVE: "stop"}})
    full = get_policy({"name": "p", "suggestions": {c: c.upper() for c in CATEGORIES}})
    assert suggest_adjustment(full, _assessment([30.0, 40.0]))[0] == "PROGRESSIVE DISEASE"
    with pytest.raises(ConfigError, match="default, reference"):
        get_policy("aggressive")
