"""Patients over time: each patient's results in order, their trend, and the monitoring
policy's treatment suggestion with its reasons.

This is the reference design's monitoring loop (acquire → predict → adjust → log). Until a
treatment module exists the policy is a list of score thresholds; the reference default is
"probability > 0.5 → Intensify treatment, otherwise Maintain or reduce treatment". Every
suggestion is stored with its reasons and the policy that made it, so it can be audited.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medsight.service.config import TreatmentConfig
from medsight.service.db import Result, Series, Suggestion

__all__ = ["suggest", "trend", "previous_measurements", "patient_timeline"]


def suggest(policy: TreatmentConfig, score: float, *, label: str, model: str,
            history: list[float]) -> tuple[str, list[str]]:
    """The suggestion for a new score, and why.

    Args:
        policy: the ``treatment`` section.
        score: the new result's score (probability of the positive class).
        label: the positive class's name, for the reasons.
        model: the model's name, for the reasons.
        history: the patient's earlier scores of this model, oldest first.

    Returns:
        ``(suggestion, reasons)``.
    """
    reasons: list[str] = []
    chosen = None
    for rule in policy.rules:
        if score > rule.above:
            chosen = rule.suggestion
            reasons.append(f"P({label}) by {model} = {score:.3f} > {rule.above:.2f}: policy rule '{rule.suggestion}'")
            break
    if chosen is None:
        lowest = min((r.above for r in policy.rules), default=None)
        chosen = policy.default
        bound = f" ≤ {lowest:.2f}" if lowest is not None else ""
        reasons.append(f"P({label}) by {model} = {score:.3f}{bound}: policy default '{policy.default}'")
    t = trend(history + [score])
    if t["n"] >= 2:
        reasons.append(f"trend over {t['n']} results: {t['direction']} ({t['first']:.3f} → {t['last']:.3f}, "
                       f"change {t['delta']:+.3f})")
    else:
        reasons.append("first result for this patient and model: no trend yet")
    return chosen, reasons


def trend(values: list[float], *, tolerance: float = 0.05) -> dict[str, Any]:
    """Direction and size of the change across a series of values (oldest first)."""
    if not values:
        return {"n": 0, "direction": "none"}
    first, last = float(values[0]), float(values[-1])
    delta = last - first
    direction = "rising" if delta > tolerance else "falling" if delta < -tolerance else "stable"
    return {"n": len(values), "first": first, "last": last, "delta": delta, "direction": direction,
            "values": [round(float(v), 6) for v in values]}


def previous_measurements(session: Session, patient_id: str | None, model: str, before: float) -> list[Result]:
    """The patient's earlier ok results of ``model`` (oldest first)."""
    if not patient_id:
        return []
    q = (select(Result).where(Result.patient_id == patient_id, Result.model == model, Result.status == "ok",
                              Result.created_at < before).order_by(Result.created_at))
    return list(session.scalars(q))


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def patient_timeline(session: Session, patient_id: str) -> dict[str, Any]:
    """Every result of a patient in time order, with suggestions and a trend per model."""
    results = list(session.scalars(select(Result).where(Result.patient_id == patient_id)
                                   .order_by(Result.created_at)))
    suggestions = {s.result_id: s for s in session.scalars(select(Suggestion).where(
        Suggestion.patient_id == patient_id))}
    dates = {s.series_uid: s.study_date for s in session.scalars(select(Series).where(
        Series.patient_id == patient_id))}
    entries, by_model = [], {}
    for r in results:
        s = suggestions.get(r.id)
        entries.append({"result_id": r.id, "created_at": _iso(r.created_at), "study_date": dates.get(r.series_uid),
                        "study_uid": r.study_uid, "model": r.model, "model_version": r.model_version,
                        "status": r.status, "label": r.label, "score": r.score, "positive": r.positive,
                        "suggestion": s.suggestion if s else None, "reasons": s.reasons if s else []})
        if r.score is not None and r.status == "ok":
            by_model.setdefault(r.model, []).append(r.score)
    latest = next((e for e in reversed(entries) if e["suggestion"]), None)
    return {"patient_id": patient_id, "entries": entries,
            "trends": {m: trend(v) for m, v in by_model.items()},
            "current_suggestion": latest["suggestion"] if latest else None,
            "current_reasons": latest["reasons"] if latest else []}
