"""Alert rules as library code: pure functions of a result's decision and findings, with no
service, database or network behind them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from medsight.alerts import PRIORITY_RANK, AlertRule, evaluate_rules
from medsight.tasks.results import Finding, Region

RULES = [AlertRule(name="pos", kind="above_threshold", priority="high"),
         AlertRule(name="very", kind="probability_above", value=0.9, priority="critical"),
         AlertRule(name="nodule", kind="nodule_mm", value=8, priority="high"),
         AlertRule(name="growth", kind="growth_percent", value=20, measurement="volume_ml", priority="medium"),
         AlertRule(name="other-model", kind="above_threshold", model="someone-else")]


def _fire(rules=RULES, **kw):
    base = dict(model="m", positive=False, score=0.1, label="normal", threshold=0.5, findings={}, previous=None)
    base.update(kw)
    return {f.rule: f for f in evaluate_rules(rules, **base)}


def _nodule(lesion: str, mm: float) -> Finding:
    return Finding("nodule_diameter_mm", mm, "mm", title="Nodule diameter", lesion_id=lesion,
                   region=Region((10.0 * int(lesion), -40.0, -115.0), (mm, mm, mm)))


def test_threshold_and_probability_rules():
    assert _fire() == {}
    fired = _fire(positive=True, score=0.95, label="pneumonia")
    assert set(fired) == {"pos", "very"} and fired["very"].priority == "critical"
    assert "0.950" in fired["pos"].message and "0.500" in fired["pos"].message


def test_a_rule_for_another_model_does_not_fire():
    only_other = [AlertRule(name="other", kind="above_threshold", model="someone-else")]
    assert _fire(only_other, positive=True) == {}
    assert set(_fire(only_other, model="someone-else", positive=True)) == {"other"}


def test_nodule_size_and_growth_rules():
    assert "nodule" in _fire(findings={"nodule_diameter_mm": 8.0})
    assert "nodule" not in _fire(findings={"nodule_diameter_mm": 7.9})
    grew = _fire(findings={"volume_ml": 20.92}, previous={"volume_ml": 8.11})  # PGBM-001's tumour, 158 %
    assert "growth" in grew and "158%" in grew["growth"].message
    assert "growth" not in _fire(findings={"volume_ml": 9.0}, previous={"volume_ml": 8.11})
    assert "growth" not in _fire(findings={"volume_ml": 9.0}, previous=None)


def test_several_nodules_of_one_result_fire_the_rule_once_naming_only_those_over_its_size():
    findings = [_nodule("1", 6.0), _nodule("2", 9.5), _nodule("3", 12.0)]
    (fired,) = evaluate_rules(RULES[2:3], model="m", positive=None, score=None, label=None, threshold=None,
                              findings=findings, previous=None)
    assert fired.rule == "nodule" and "2 nodules" in fired.message and "12.0 mm" in fired.message
    assert "lesions 2, 3" in fired.message and "lesions 1" not in fired.message
    (one,) = evaluate_rules(RULES[2:3], model="m", positive=None, score=None, label=None, threshold=None,
                            findings=[_nodule("1", 6.0), _nodule("2", 9.5)], previous=None)
    assert "nodule of 9.5 mm" in one.message
    assert evaluate_rules(RULES[2:3], model="m", positive=None, score=None, label=None, threshold=None,
                          findings=[_nodule("1", 6.0), _nodule("2", 7.9)], previous=None) == []


def test_findings_as_a_mapping_fire_like_the_same_findings_as_a_list():
    as_map = _fire(findings={"nodule_diameter_mm": 9.0, "volume_ml": 12.0}, previous={"volume_ml": 8.0})
    as_list = _fire(findings=[Finding("nodule_diameter_mm", 9.0, "mm"), Finding("volume_ml", 12.0, "mL")],
                    previous={"volume_ml": 8.0})
    assert as_map == as_list and set(as_map) == {"nodule", "growth"}


def test_a_growth_rule_compares_the_first_finding_of_its_name():
    now = [Finding("volume_ml_Anterior", 2.6, "mL"), Finding("volume_ml_Anterior", 1.0, "mL")]
    rule = [AlertRule(name="g", kind="growth_percent", value=20, measurement="volume_ml_Anterior")]
    assert set(_fire(rule, findings=now, previous={"volume_ml_Anterior": 2.0})) == {"g"}  # 2.6 vs 2.0: +30 %
    assert _fire(rule, findings=now[::-1], previous={"volume_ml_Anterior": 2.0}) == {}


def test_a_growth_rule_without_a_measurement_compares_the_score():
    rule = [AlertRule(name="g", kind="growth_percent", value=50)]
    assert set(_fire(rule, score=0.6, previous={"score": 0.3})) == {"g"}
    assert _fire(rule, score=0.4, previous={"score": 0.3}) == {}


def test_a_rule_that_needs_a_value_and_an_unknown_key_are_refused():
    with pytest.raises(ValidationError, match="needs a value"):
        AlertRule(name="n", kind="nodule_mm")
    with pytest.raises(ValidationError, match="treshold"):
        AlertRule.model_validate({"name": "n", "kind": "above_threshold", "treshold": 1})


def test_every_priority_has_a_worklist_rank():
    priorities = AlertRule.model_fields["priority"].annotation.__args__
    assert set(PRIORITY_RANK) == set(priorities)
    assert sorted(PRIORITY_RANK, key=PRIORITY_RANK.get, reverse=True) == ["critical", "high", "medium", "low"]


def test_the_service_alert_rules_section_is_the_library_rule():
    from medsight.service.config import service_config_from_dict

    cfg = service_config_from_dict({"alerts": {"rules": [{"name": "n", "kind": "nodule_mm", "value": 8}]}})
    assert isinstance(cfg.alerts.rules[0], AlertRule)
    assert set(_fire(cfg.alerts.rules, findings={"nodule_diameter_mm": 8.5})) == {"n"}


def test_the_library_needs_neither_the_service_nor_a_database():
    code = ("import sys; from medsight.alerts import AlertRule, evaluate_rules; "
            "evaluate_rules([AlertRule(name='n', kind='nodule_mm', value=8)], model='m', positive=None, score=None, "
            "label=None, threshold=None, findings={'nodule_diameter_mm': 9.0}, previous=None); "
            "print(sorted(m for m in sys.modules if m.startswith(('medsight.service', 'sqlalchemy', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _lesion(lesion: str, mm: float, kind: str, category: str) -> list[Finding]:
    """The findings a detector gives for one nodule (its diameter, type and Lung-RADS category)."""
    at = {"lesion_id": lesion, "region": Region((10.0 * int(lesion), -40.0, -115.0), (mm, mm, mm))}
    return [Finding("nodule_diameter_mm", mm, "mm", title="Nodule diameter", **at),
            Finding("nodule_score", 0.9, "1", **at), Finding("nodule_type", text=kind, **at),
            Finding("nodule_category", text=category, **at)]


SUSPICIOUS = AlertRule(name="suspicious-nodule", kind="nodule", value=8, category="4A", priority="high")


def test_a_nodule_rule_fires_once_per_nodule_of_its_size_or_category_naming_the_lesion():
    findings = [Finding("nodule_count", 4.0), *_lesion("1", 23.1, "solid", "4B"), *_lesion("2", 5.2, "solid", "2"),
                *_lesion("3", 7.0, "part-solid", "4A"),  # under 8 mm, but its solid component makes it 4A
                *_lesion("4", 9.0, "ground-glass", "2")]  # 9 mm, though only category 2
    fired = evaluate_rules([SUSPICIOUS], model="lung-nodule-ct", positive=None, score=0.9, label="4 nodules",
                           threshold=0.5, findings=findings, previous=None)
    assert [(f.rule, f.lesion_id) for f in fired] == [("suspicious-nodule", "1"), ("suspicious-nodule", "3"),
                                                      ("suspicious-nodule", "4")]
    assert fired[0].message == "lung-nodule-ct: nodule 1: 23.1 mm, solid, Lung-RADS 4B (≥ 8 mm or ≥ 4A)"
    assert "7.0 mm, part-solid, Lung-RADS 4A" in fired[1].message and fired[0].priority == "high"
    by_size = AlertRule(name="big", kind="nodule", value=8)
    by_category = AlertRule(name="cat", kind="nodule", category="4B")
    fired = evaluate_rules([by_size, by_category], model="m", positive=None, score=None, label=None,
                           threshold=None, findings=findings, previous=None)
    assert [(f.rule, f.lesion_id) for f in fired] == [("big", "1"), ("big", "4"), ("cat", "1")]
    assert evaluate_rules([SUSPICIOUS], model="m", positive=None, score=None, label=None, threshold=None,
                          findings=[Finding("nodule_count", 0.0)], previous=None) == []  # no nodule, no alert


def test_a_nodule_rule_reads_a_nodule_without_a_lesion_id_and_a_category_it_cannot_order():
    (one,) = evaluate_rules([SUSPICIOUS], model="m", positive=None, score=None, label=None, threshold=None,
                            findings={"nodule_diameter_mm": 9.0}, previous=None)
    assert one.lesion_id is None and one.message == "m: nodule: 9.0 mm (≥ 8 mm or ≥ 4A)"
    odd = [Finding("nodule_diameter_mm", 5.0, "mm", lesion_id="1"), Finding("nodule_category", text="C", lesion_id="1")]
    assert evaluate_rules([SUSPICIOUS], model="m", positive=None, score=None, label=None, threshold=None,
                          findings=odd, previous=None) == []  # "C" is not a Lung-RADS category: not comparable


def test_a_nodule_rule_needs_a_size_or_a_category_and_a_category_is_checked():
    with pytest.raises(ValidationError, match="needs a value .mm., a category, or both"):
        AlertRule(name="n", kind="nodule")
    with pytest.raises(ValidationError, match="category must be one of"):
        AlertRule(name="n", kind="nodule", category="5")
    with pytest.raises(ValidationError, match="read by kind nodule only"):
        AlertRule(name="n", kind="nodule_mm", value=8, category="4A")
