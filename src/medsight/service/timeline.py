"""Patients over time, from the database: each patient's results in order, their trend, the
monitoring policy's treatment suggestions with their reasons, and the response assessment of
their serial studies (its time points in date order, category, suggestion and reasons).

The policy, the trend and the response criteria are library code (:mod:`medsight.response`);
this module reads the results they need and what was stored with its reasons, so that each
can be audited.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medsight.response import suggest, trend
from medsight.service.db import Alert, ResponseAssessment, Result, Series, Suggestion

__all__ = ["suggest", "trend", "previous_measurements", "patient_timeline", "response_timeline"]


def previous_measurements(session: Session, patient_id: str | None, model: str, before: float) -> list[Result]:
    """The patient's earlier ok results of ``model`` (oldest first)."""
    if not patient_id:
        return []
    q = (select(Result).where(Result.patient_id == patient_id, Result.model == model, Result.status == "ok",
                              Result.created_at < before).order_by(Result.created_at))
    return list(session.scalars(q))


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def timepoint_dict(row: ResponseAssessment) -> dict[str, Any]:
    """One stored time point of a response assessment, as the timeline shows it."""
    return {"date": row.study_date, "datetime": row.acquired, "study_uid": row.study_uid, "position": row.position,
            "volume_ml": row.volume_ml, "longest_diameter_mm": row.longest_diameter_mm,
            "perpendicular_diameter_mm": row.perpendicular_diameter_mm, "criteria_value": row.criteria_value,
            "unit": (row.assessment or {}).get("unit"), "n_lesions": row.n_lesions, "category": row.category,
            "suggestion": row.suggestion, "reasons": row.reasons or [], "criteria": row.criteria}


def response_timeline(session: Session, patient_id: str) -> dict[str, Any] | None:
    """The patient's current response assessment (None when there is none): its time points in
    date order, the latest category and suggestion with their reasons, the criteria and policy,
    and the plot's URL."""
    from urllib.parse import quote

    from medsight.service.response import current_assessment

    rows = current_assessment(session, patient_id)
    if not rows:
        return None
    latest = rows[-1]
    n_runs = len(set(session.scalars(select(ResponseAssessment.run).where(
        ResponseAssessment.patient_id == patient_id))))
    return {"status": latest.status, "error": latest.error, "criteria": latest.criteria, "policy": latest.policy,
            "category": latest.category, "suggestion": latest.suggestion, "reasons": latest.reasons or [],
            "assessed_at": _iso(latest.created_at), "n_assessments": n_runs, "inputs": latest.inputs,
            "versions": latest.versions,
            "plot_url": (f"/api/v1/patients/{quote(patient_id, safe='')}/response.png?run={latest.run[:16]}"
                         if latest.plot_path else None),
            "timepoints": [timepoint_dict(r) for r in rows if r.status == "ok"]}


def patient_timeline(session: Session, patient_id: str) -> dict[str, Any]:
    """Every result of a patient in time order, with suggestions and a trend per model, the
    response assessment of the patient's serial studies (``response``) and the patient's alerts."""
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
    alerts = list(session.scalars(select(Alert).where(Alert.patient_id == patient_id)
                                  .order_by(Alert.created_at)))
    return {"patient_id": patient_id, "entries": entries,
            "trends": {m: trend(v) for m, v in by_model.items()},
            "current_suggestion": latest["suggestion"] if latest else None,
            "current_reasons": latest["reasons"] if latest else [],
            "response": response_timeline(session, patient_id),
            "alerts": [{"id": a.id, "rule": a.rule, "priority": a.priority, "message": a.message,
                        "study_uid": a.study_uid, "result_id": a.result_id, "assessment_id": a.assessment_id,
                        "acknowledged_by": a.acknowledged_by, "created_at": _iso(a.created_at)} for a in alerts]}
