"""Patients over time, from the database: each patient's results in order, their trend, and
the monitoring policy's treatment suggestions with their reasons.

The policy and the trend are library code (:mod:`medsight.response`); this module reads the
results they need and the suggestions stored with their reasons, so that each can be audited.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medsight.response import suggest, trend
from medsight.service.db import Result, Series, Suggestion

__all__ = ["suggest", "trend", "previous_measurements", "patient_timeline"]


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
