"""Alert rules, and the service's use of the monitoring policy (tested itself in tests/response)."""

from __future__ import annotations

from medsight.service.alerts import evaluate_rules
from medsight.service.config import AlertRule, TreatmentConfig
from medsight.service.timeline import suggest, trend

RULES = [AlertRule(name="pos", kind="above_threshold", priority="high"),
         AlertRule(name="very", kind="probability_above", value=0.9, priority="critical"),
         AlertRule(name="nodule", kind="nodule_mm", value=8, priority="high"),
         AlertRule(name="growth", kind="growth_percent", value=20, measurement="volume_ml", priority="medium"),
         AlertRule(name="other-model", kind="above_threshold", model="someone-else")]


def _fire(**kw):
    base = dict(model="m", positive=False, score=0.1, label="normal", threshold=0.5, findings={}, previous=None)
    base.update(kw)
    return {f.rule: f for f in evaluate_rules(RULES, **base)}


def test_threshold_and_probability_rules():
    assert _fire() == {}
    fired = _fire(positive=True, score=0.95, label="pneumonia")
    assert set(fired) == {"pos", "very"} and fired["very"].priority == "critical"
    assert "0.950" in fired["pos"].message and "0.500" in fired["pos"].message


def test_nodule_size_and_growth_rules():
    assert "nodule" in _fire(findings={"nodule_diameter_mm": 8.0})
    assert "nodule" not in _fire(findings={"nodule_diameter_mm": 7.9})
    grew = _fire(findings={"volume_ml": 20.92}, previous={"volume_ml": 8.11})  # PGBM-001's tumour, 158 %
    assert "growth" in grew and "158%" in grew["growth"].message
    assert "growth" not in _fire(findings={"volume_ml": 9.0}, previous={"volume_ml": 8.11})
    assert "growth" not in _fire(findings={"volume_ml": 9.0}, previous=None)


def test_the_service_uses_the_library_policy_and_trend():
    """The policy and the trend are library code (tests/response); the service re-exports them."""
    import medsight.response as response

    assert (suggest, trend, TreatmentConfig) == (response.suggest, response.trend, response.TreatmentPolicy)
    assert suggest(TreatmentConfig(), 0.83, label="pneumonia", model="m", history=[0.41])[0] == "Intensify treatment"
