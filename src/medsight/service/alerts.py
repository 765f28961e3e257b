"""Alerts: rules over results, records, and delivery to a webhook.

A rule fires on one result: the model's own positive decision, a score above a value, a
nodule of at least N mm, or a measurement that grew by at least X % since the patient's
previous result of the same model. Each firing creates one :class:`~medsight.service.db.Alert`
(unique per result and rule) and, when a webhook is configured, a ``webhook`` job, so that
delivery is retried until the receiver answers 2xx.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from medsight.service.config import AlertRule, WebhookConfig

__all__ = ["PRIORITY_RANK", "Firing", "evaluate_rules", "webhook_payload", "post_webhook"]

log = logging.getLogger(__name__)

#: Worklist rank of each priority (higher first).
PRIORITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}


@dataclass(frozen=True)
class Firing:
    rule: str
    priority: str
    message: str


def evaluate_rules(rules: list[AlertRule], *, model: str, positive: bool | None, score: float | None,
                   label: str | None, threshold: float | None, findings: dict[str, float],
                   previous: dict[str, float] | None) -> list[Firing]:
    """The rules that fire on one result.

    Args:
        rules: the ``alerts.rules`` section.
        model: the config name of the model that made the result.
        positive, score, label, threshold: the result's decision.
        findings: numeric measurements by name (``nodule_diameter_mm``, ``volume_ml``, ...).
        previous: the same patient's previous measurements for this model (``score`` included),
            or None when this is the first.
    """
    out: list[Firing] = []
    for r in rules:
        if r.model is not None and r.model != model:
            continue
        if r.kind == "above_threshold" and positive:
            out.append(Firing(r.name, r.priority, f"{model}: {label} (score {score:.3f} ≥ threshold {threshold:.3f})"))
        elif r.kind == "probability_above" and score is not None and r.value is not None and score > r.value:
            out.append(Firing(r.name, r.priority, f"{model}: score {score:.3f} > {r.value:.3f}"))
        elif r.kind == "nodule_mm" and r.value is not None:
            d = findings.get("nodule_diameter_mm")
            if d is not None and d >= r.value:
                out.append(Firing(r.name, r.priority, f"{model}: nodule of {d:.1f} mm (≥ {r.value:g} mm)"))
        elif r.kind == "growth_percent" and previous and r.value is not None:
            key = r.measurement or "score"
            now_v = score if key == "score" else findings.get(key)
            before = previous.get(key)
            if now_v is not None and before not in (None, 0):
                growth = 100.0 * (now_v - before) / abs(before)  # type: ignore[operator]
                if growth >= r.value:
                    out.append(Firing(r.name, r.priority, f"{model}: {key} grew {growth:.0f}% "
                                                          f"({before:.3g} → {now_v:.3g}; rule ≥ {r.value:g}%)"))
    return out


def webhook_payload(alert: Any, result: Any, *, include_patient_id: bool, public_url: str | None) -> dict[str, Any]:
    """The JSON posted for one alert (no patient identifiers unless configured)."""
    body = {"alert_id": alert.id, "rule": alert.rule, "priority": alert.priority, "message": alert.message,
            "study_uid": alert.study_uid, "series_uid": result.series_uid, "sop_uid": result.sop_uid,
            "model": result.model, "model_version": result.model_version, "score": result.score,
            "label": result.label, "created_at": alert.created_at}
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
