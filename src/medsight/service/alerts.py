"""Alerts: rules over results, records, and delivery to a webhook.

A rule fires on one result: the model's own positive decision, a score above a value, a
nodule of at least N mm (any of the result's nodules: a study may hold several, each its own
finding with a lesion id), or a measurement that grew by at least X % since the patient's
previous result of the same model. Rules read the result's findings
(:meth:`medsight.tasks.results.Result.findings`), never its type. Each firing creates one
:class:`~medsight.service.db.Alert` (unique per result and rule) and, when a webhook is
configured, a ``webhook`` job, so that delivery is retried until the receiver answers 2xx.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medsight.service.config import AlertRule, WebhookConfig
from medsight.tasks.results import Finding

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
                   label: str | None, threshold: float | None, findings: Sequence[Finding] | Mapping[str, float],
                   previous: dict[str, float] | None) -> list[Firing]:
    """The rules that fire on one result.

    Args:
        rules: the ``alerts.rules`` section.
        model: the config name of the model that made the result.
        positive, score, label, threshold: the result's decision.
        findings: the result's findings; several may share a name, one per lesion
            (``nodule_diameter_mm`` of each nodule). A mapping name → value is taken as one
            finding per name.
        previous: the same patient's previous measurements for this model by finding name
            (``score`` included), or None when this is the first.

    A ``growth_percent`` rule compares the first finding of its ``measurement`` name with the
    previous value of that name; a ``nodule_mm`` rule fires once per result, for every nodule
    of at least its size.
    """
    items = ([Finding(k, float(v)) for k, v in findings.items()] if isinstance(findings, Mapping)
             else list(findings))
    values: dict[str, float] = {}
    for f in items:
        if f.value is not None:
            values.setdefault(f.name, float(f.value))
    out: list[Firing] = []
    for r in rules:
        if r.model is not None and r.model != model:
            continue
        if r.kind == "above_threshold" and positive:
            out.append(Firing(r.name, r.priority, f"{model}: {label} (score {score:.3f} ≥ threshold {threshold:.3f})"))
        elif r.kind == "probability_above" and score is not None and r.value is not None and score > r.value:
            out.append(Firing(r.name, r.priority, f"{model}: score {score:.3f} > {r.value:.3f}"))
        elif r.kind == "nodule_mm" and r.value is not None:
            big = [f for f in items if f.name == "nodule_diameter_mm" and f.value is not None and f.value >= r.value]
            if len(big) == 1:
                out.append(Firing(r.name, r.priority, f"{model}: nodule of {big[0].value:.1f} mm (≥ {r.value:g} mm)"))
            elif big:
                largest = max(float(f.value) for f in big)  # type: ignore[arg-type]
                lesions = ", ".join(f.lesion_id or "?" for f in big)
                out.append(Firing(r.name, r.priority, f"{model}: {len(big)} nodules of ≥ {r.value:g} mm, the largest "
                                                      f"{largest:.1f} mm (lesions {lesions})"))
        elif r.kind == "growth_percent" and previous and r.value is not None:
            key = r.measurement or "score"
            now_v = score if key == "score" else values.get(key)
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
