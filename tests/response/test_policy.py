"""The monitoring policy (the reference design's 0.5 rule) as library code, with its reasons."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from medsight.response import TreatmentPolicy, suggest


def test_reference_policy_and_reasons():
    policy = TreatmentPolicy()
    s, reasons = suggest(policy, 0.83, label="pneumonia", model="m", history=[0.41])
    assert s == "Intensify treatment"
    assert reasons[0].startswith("P(pneumonia) by m = 0.830 > 0.50") and "rising" in reasons[1]
    s, reasons = suggest(policy, 0.5, label="pneumonia", model="m", history=[])
    assert s == "Maintain or reduce treatment" and "≤ 0.50" in reasons[0] and "no trend" in reasons[1]


def test_configurable_thresholds_first_match_wins():
    policy = TreatmentPolicy.model_validate({"rules": [{"above": 0.8, "suggestion": "Escalate"},
                                                       {"above": 0.3, "suggestion": "Review"}],
                                             "default": "Continue"})
    assert suggest(policy, 0.9, label="x", model="m", history=[])[0] == "Escalate"
    assert suggest(policy, 0.5, label="x", model="m", history=[])[0] == "Review"
    assert suggest(policy, 0.1, label="x", model="m", history=[])[0] == "Continue"


def test_a_policy_without_rules_always_gives_its_default():
    s, reasons = suggest(TreatmentPolicy(rules=[], default="Continue"), 0.99, label="x", model="m", history=[0.2])
    assert s == "Continue" and reasons[0] == "P(x) by m = 0.990: policy default 'Continue'"


def test_a_policy_refuses_unknown_keys():
    with pytest.raises(ValidationError, match="treshold"):
        TreatmentPolicy.model_validate({"rules": [{"above": 0.5, "suggestion": "s", "treshold": 1}]})


def test_the_service_treatment_section_is_the_library_policy():
    from medsight.service.config import service_config_from_dict

    cfg = service_config_from_dict({"treatment": {"rules": [{"above": 0.7, "suggestion": "Escalate"}]}})
    assert isinstance(cfg.treatment, TreatmentPolicy)
    assert suggest(cfg.treatment, 0.75, label="x", model="m", history=[])[0] == "Escalate"


def test_the_library_needs_neither_the_service_nor_a_database():
    code = ("import sys, medsight.response as r; r.suggest(r.TreatmentPolicy(), 0.6, label='x', model='m', history=[]);"
            "print(sorted(m for m in sys.modules if m.startswith(('medsight.service', 'sqlalchemy', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
