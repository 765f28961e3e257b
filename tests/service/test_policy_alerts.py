"""The service's use of the library's alert rules (tested themselves in tests/alerts) and of the
monitoring policy (tests/response)."""

from __future__ import annotations

from sqlalchemy import select
from tests.service.conftest import drain

from medsight.service.config import TreatmentConfig
from medsight.service.db import Alert, Job
from medsight.service.timeline import suggest, trend


def test_the_service_uses_the_library_policy_and_trend():
    """The policy and the trend are library code (tests/response); the service re-exports them."""
    import medsight.response as response

    assert (suggest, trend, TreatmentConfig) == (response.suggest, response.trend, response.TreatmentPolicy)
    assert suggest(TreatmentConfig(), 0.83, label="pneumonia", model="m", history=[0.41])[0] == "Intensify treatment"


def test_each_rule_that_fires_becomes_one_alert_with_its_webhook_job(make_cfg, xray):
    from medsight.service.context import build_context

    rules = [{"name": "positive", "kind": "above_threshold", "priority": "high"},
             {"name": "likely", "kind": "probability_above", "value": 0.0, "priority": "critical"},
             {"name": "never", "kind": "probability_above", "value": 1.0, "priority": "low"}]
    ctx = build_context(make_cfg(alerts={"rules": rules, "webhook": {"url": "http://127.0.0.1:9/hook"}}))
    try:
        ctx.ingestor.ingest(xray()[1], actor="http:test")
        drain(ctx)
        with ctx.db.read() as s:
            alerts = {a.rule: a for a in s.scalars(select(Alert))}
            hooks = list(s.scalars(select(Job).where(Job.kind == "webhook")))
        assert set(alerts) == {"positive", "likely"}  # the tiny model's threshold 0: positive, score > 0
        assert (alerts["likely"].priority, alerts["likely"].rank) == ("critical", 4)
        assert sorted(j.payload["alert_id"] for j in hooks) == sorted(a.id for a in alerts.values())
    finally:
        ctx.db.dispose()
