"""Alerts in the service: their records and their delivery to a webhook.

Which rules fire on a result, and whether a response assessment alerts, is library code
(:mod:`medsight.alerts`). Each firing creates one :class:`~medsight.service.db.Alert` (unique
per result and rule, or per assessed time point) and, when a webhook is configured, a
``webhook`` job, so that delivery is retried until the receiver answers 2xx.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from medsight.alerts import PRIORITY_RANK, Firing
from medsight.service import audit
from medsight.service.config import WebhookConfig
from medsight.service.db import Alert, now
from medsight.service.queue import enqueue

__all__ = ["record_alerts", "webhook_payload", "post_webhook"]

log = logging.getLogger(__name__)

def record_alerts(s: Session, firings: Sequence[Firing], *, actor: str, result_key: str, result_id: int | None,
                  study_uid: str, patient_id: str | None, webhook: bool,
                  assessment_id: int | None = None) -> list[Alert]:
    """Store one :class:`~medsight.service.db.Alert` per firing, audited, and a ``webhook``
    job for each when a webhook is configured.

    Args:
        s: the session of the transaction that stores the result.
        firings: what :func:`medsight.alerts.evaluate_rules` returned for the result.
        actor: who raised them (the worker), for the audit.
        result_key, result_id: the result's key and id; an alert's key is the result's key, its
            rule and, for a rule that fires per lesion, the lesion id, so a re-run raises nothing twice.
            A response assessment's alert has no result: its key is the assessed time point's key.
        assessment_id: the assessed time point's row, for a response assessment's alert.
        study_uid, patient_id: copied onto the alert for the worklist.
        webhook: whether ``alerts.webhook`` is configured.
    """
    out = []
    for f in firings:
        key = f"{result_key}|{f.rule}" + ("" if f.lesion_id is None else f"|{f.lesion_id}")
        alert = Alert(key=key[:200], result_id=result_id, assessment_id=assessment_id, rule=f.rule,
                      lesion_id=f.lesion_id, priority=f.priority, rank=PRIORITY_RANK[f.priority], message=f.message,
                      study_uid=study_uid, patient_id=patient_id,
                      webhook_status="pending" if webhook else "none", created_at=now())
        s.add(alert)
        s.flush()
        source = {"result_id": result_id} if result_id is not None else {"assessment_id": assessment_id}
        audit.record(s, actor, "alert", "alert", str(alert.id), **source, rule=f.rule, priority=f.priority,
                     **({} if f.lesion_id is None else {"lesion_id": f.lesion_id}))
        if webhook:
            enqueue(s, "webhook", f"webhook:{alert.id}", {"alert_id": alert.id}, priority=8)
        out.append(alert)
    return out


def webhook_payload(alert: Any, result: Any, *, include_patient_id: bool, public_url: str | None,
                    assessment: Any = None) -> dict[str, Any]:
    """The JSON posted for one alert (no patient identifiers unless configured): a result's
    alert names its series, instance and model; a response assessment's (``result`` None) its
    ``response``: criteria, policy, category, suggestion and study date."""
    stored: dict[str, Any] = dict.fromkeys(("series_uid", "sop_uid", "model", "model_version", "score", "label"))
    if result is not None:  # the stored result row the alert was raised on
        stored.update(series_uid=result.series_uid, sop_uid=result.sop_uid, model=result.model,
                      model_version=result.model_version, score=result.score, label=result.label)
    body = {"alert_id": alert.id, "rule": alert.rule, "priority": alert.priority, "message": alert.message,
            "lesion_id": alert.lesion_id, "study_uid": alert.study_uid, **stored, "created_at": alert.created_at}
    if assessment is not None:
        body["label"] = assessment.category
        body["response"] = {"criteria": assessment.criteria, "policy": assessment.policy,
                            "category": assessment.category, "suggestion": assessment.suggestion,
                            "study_date": assessment.study_date, "n_timepoints": assessment.n_timepoints}
    if include_patient_id:
        body["patient_id"] = alert.patient_id
    if public_url:
        body["url"] = f"{public_url.rstrip('/')}/ui/#/study/{alert.study_uid}"
    return body


def post_webhook(cfg: WebhookConfig, body: dict[str, Any]) -> int:
    """POST ``body`` as JSON; returns the HTTP status. Raises on network errors."""
    import httpx

    headers = {"Content-Type": "application/json"}
    if cfg.token_env and os.environ.get(cfg.token_env):
        headers["Authorization"] = f"Bearer {os.environ[cfg.token_env]}"
    r = httpx.post(cfg.url, json=body, headers=headers, timeout=cfg.timeout_s)
    return int(r.status_code)
