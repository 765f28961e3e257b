"""Queries over HTTP: worklist, studies, results, images, alerts, patient timelines, drift, audit.

Viewing a study, a result or a patient timeline is recorded in the audit trail with the
viewer's token name.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from medsight.service import audit
from medsight.service.api_deps import require
from medsight.service.auth import Principal
from medsight.service.db import (
    Alert,
    AuditEvent,
    DriftSnapshot,
    DriftState,
    Instance,
    Job,
    Result,
    ResultOutput,
    Series,
    Suggestion,
)
from medsight.service.queue import POISON, queue_counts

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


_MAX_ID = 2**31 - 1  # row ids are INTEGER columns (32 bits on PostgreSQL)


def _known_id(value: int, what: str) -> int:
    """``value`` if it can be a row id; 404 otherwise (a huge id is not found, not a database error)."""
    if not 0 < value <= _MAX_ID:
        raise HTTPException(404, f"no {what} {value}")
    return value


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def finding_dict(f: Any) -> dict[str, Any]:
    """One stored finding (a row of the findings table)."""
    return {"name": f.name, "title": f.title, "value": f.value, "unit": f.unit, "text": f.text,
            "lesion_id": f.lesion_id, "region": f.region}


def lesions(r: Result, crops: dict[str, Any]) -> list[dict[str, Any]]:
    """A result's lesions (a detector's nodules), in the order of its findings: each lesion's id,
    region (patient mm, LPS), findings and the URL of its crop picture."""
    items: dict[str, list[Any]] = {}
    for f in r.findings or []:
        if f.lesion_id is not None:
            items.setdefault(f.lesion_id, []).append(f)
    return [{"lesion_id": lid, "region": next((f.region for f in fs if f.region), None),
             "findings": [{k: v for k, v in finding_dict(f).items() if k not in ("lesion_id", "region")} for f in fs],
             "crop_url": f"/api/v1/results/{r.id}/lesions/{lid}/crop.png" if lid in crops else None}
            for lid, fs in items.items()]


def result_dict(r: Result, suggestion: Suggestion | None = None, alerts: list[Alert] | None = None,
                outputs: list[ResultOutput] | None = None) -> dict[str, Any]:
    """A result as the API shows it (files by URL, never by their path on the server), with its
    findings as stored and its lesions (a detector's nodules, each with its crop's URL)."""
    shown = dict(r.outputs or {})
    mask = shown.get("mask")
    if isinstance(mask, dict):
        shown["mask"] = {k: v for k, v in mask.items() if k != "path"}
    crops = shown.pop("crops", None) or {}
    return {"id": r.id, "status": r.status, "model": r.model, "model_version": r.model_version,
            "weights_sha256": r.weights_sha256, "input_sha256": r.input_sha256, "study_uid": r.study_uid,
            "series_uid": r.series_uid, "sop_uid": r.sop_uid, "patient_id": r.patient_id, "label": r.label,
            "score": r.score, "threshold": r.threshold, "positive": r.positive, "outputs": shown,
            "timings": r.timings, "error": r.error, "received_at": _iso(r.received_at),
            "created_at": _iso(r.created_at),
            "overlay_url": f"/api/v1/results/{r.id}/overlay.png" if r.overlay_path else None,
            "mask_url": f"/api/v1/results/{r.id}/mask.nii.gz" if isinstance(mask, dict) else None,
            "image_url": f"/api/v1/instances/{r.sop_uid}/image.png" if r.sop_uid else None,
            "findings": [finding_dict(f) for f in r.findings or []], "lesions": lesions(r, crops),
            "suggestion": None if suggestion is None else {"suggestion": suggestion.suggestion,
                                                           "reasons": suggestion.reasons},
            "alerts": [alert_dict(a) for a in alerts or []],
            # "sent": only what a destination confirmed; "deliveries": every object with its real status
            "sent": [{"kind": o.kind, "sop_uid": o.sop_uid, "destination": o.destination, "sent_at": _iso(o.sent_at)}
                     for o in outputs or [] if o.status == "sent"],
            "deliveries": [delivery_dict(o) for o in outputs or []]}


def delivery_dict(o: ResultOutput) -> dict[str, Any]:
    """One result object to one destination: ``pending``, ``retrying``, ``sent`` or ``failed``."""
    return {"kind": o.kind, "sop_uid": o.sop_uid, "destination": o.destination, "status": o.status,
            "attempts": o.attempts, "last_error": o.last_error, "sent_at": _iso(o.sent_at),
            "updated_at": _iso(o.updated_at)}


def alert_dict(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "rule": a.rule, "lesion_id": a.lesion_id, "priority": a.priority, "rank": a.rank,
            "message": a.message,
            "study_uid": a.study_uid, "patient_id": a.patient_id, "result_id": a.result_id,
            "webhook_status": a.webhook_status, "webhook_attempts": a.webhook_attempts,
            "webhook_error": a.webhook_error, "acknowledged_by": a.acknowledged_by, "created_at": _iso(a.created_at)}


@router.get("/whoami", tags=["query"])
def whoami(principal: Principal = Depends(require(None))) -> dict[str, str]:
    """The token's name and role."""
    return {"name": principal.name, "role": principal.role}


@router.get("/worklist", tags=["query"])
def worklist(request: Request, limit: int = Query(100, ge=1, le=1000),
             _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Studies ranked by their most urgent alert, then highest score, then most recent."""
    with _ctx(request).db.read() as s:
        series = list(s.scalars(select(Series).order_by(Series.last_at.desc()).limit(limit * 20)))
        studies: dict[str, dict[str, Any]] = {}
        for se in series:
            st = studies.setdefault(se.study_uid, {
                "study_uid": se.study_uid, "patient_id": se.patient_id, "patient_name": se.patient_name,
                "study_date": se.study_date, "modalities": [], "n_series": 0, "n_instances": 0,
                "last_received": se.last_at, "status": "complete", "outcomes": []})
            st["n_series"] += 1
            st["n_instances"] += se.n_instances
            st["last_received"] = max(st["last_received"], se.last_at)
            if se.modality not in st["modalities"]:
                st["modalities"].append(se.modality)
            if se.status != "complete":
                st["status"] = "receiving"
            if se.outcome and se.outcome not in st["outcomes"]:
                st["outcomes"].append(se.outcome)
        uids = list(studies)
        ranks = dict(s.execute(select(Alert.study_uid, func.max(Alert.rank)).where(Alert.study_uid.in_(uids))
                               .group_by(Alert.study_uid)).all())
        n_alerts = dict(s.execute(select(Alert.study_uid, func.count()).where(Alert.study_uid.in_(uids))
                                  .group_by(Alert.study_uid)).all())
        for r in s.scalars(select(Result).where(Result.study_uid.in_(uids), Result.status == "ok")):
            st = studies[r.study_uid]
            if st.get("top_score") is None or (r.score or 0) > st["top_score"]:
                st.update(top_score=r.score, top_label=r.label, top_model=r.model, positive=r.positive)
            st["n_results"] = st.get("n_results", 0) + 1
            for lesion in lesions(r, (r.outputs or {}).get("crops") or {}):  # a finding per nodule
                st.setdefault("lesions", []).append({"result_id": r.id, "model": r.model, **lesion})
    from medsight.alerts import PRIORITY_RANK

    names = {v: k for k, v in PRIORITY_RANK.items()}
    out = []
    for uid, st in studies.items():
        rank = int(ranks.get(uid) or 0)
        st.update(priority=names.get(rank, "routine"), priority_rank=rank, n_alerts=int(n_alerts.get(uid, 0)))
        st.setdefault("lesions", [])
        out.append(st)
    out.sort(key=lambda st: (-st["priority_rank"], -(st.get("top_score") or 0.0), -st["last_received"]))
    from medsight.service.viewer import viewer_url

    cfg = _ctx(request).cfg
    for st in out:
        st["last_received"] = _iso(st["last_received"])
        st["viewer_url"] = viewer_url(cfg, st["study_uid"])
    return out[:limit]


@router.get("/studies/{study_uid}", tags=["query"])
def study(request: Request, study_uid: str, principal: Principal = Depends(require("read"))) -> dict[str, Any]:
    """One study: its series (with completion and outcome), results, alerts and suggestions, and
    the viewer's page for the study and for each result (``viewer_url``; null without a viewer)."""
    from medsight.service.viewer import viewer_url

    cfg = _ctx(request).cfg
    with _ctx(request).db.session() as s:
        series = list(s.scalars(select(Series).where(Series.study_uid == study_uid)))
        if not series:
            raise HTTPException(404, f"no study {study_uid} has been received")
        results = _results(s, select(Result).where(Result.study_uid == study_uid).order_by(Result.created_at))
        for r in results:
            r["viewer_url"] = viewer_url(cfg, study_uid, r["series_uid"])
        audit.record(s, principal.actor, "viewed", "study", study_uid)
        first = series[0]
        return {"study_uid": study_uid, "patient_id": first.patient_id, "patient_name": first.patient_name,
                "study_date": first.study_date, "viewer_url": viewer_url(cfg, study_uid),
                "series": [{"series_uid": x.series_uid, "modality": x.modality, "body_part": x.body_part,
                            "description": x.description, "n_instances": x.n_instances, "status": x.status,
                            "outcome": x.outcome, "first_received": _iso(x.first_at), "last_received": _iso(x.last_at),
                            "completed_at": _iso(x.completed_at)} for x in series],
                "results": results}


def _results(s: Any, query: Any) -> list[dict[str, Any]]:
    rows = list(s.scalars(query))
    ids = [r.id for r in rows]
    sugg = {x.result_id: x for x in s.scalars(select(Suggestion).where(Suggestion.result_id.in_(ids)))}
    alerts: dict[int, list[Alert]] = {}
    for a in s.scalars(select(Alert).where(Alert.result_id.in_(ids))):
        alerts.setdefault(a.result_id, []).append(a)
    outs: dict[int, list[ResultOutput]] = {}
    for o in s.scalars(select(ResultOutput).where(ResultOutput.result_id.in_(ids)).order_by(ResultOutput.id)):
        outs.setdefault(o.result_id, []).append(o)
    return [result_dict(r, sugg.get(r.id), alerts.get(r.id), outs.get(r.id)) for r in rows]


@router.get("/results", tags=["query"])
def results(request: Request, study_uid: str | None = None, patient_id: str | None = None,
            model: str | None = None, sop_uid: str | None = None, limit: int = Query(100, ge=1, le=5000),
            _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Results, newest first, filtered by study, patient, model or instance."""
    q = select(Result)
    for col, val in ((Result.study_uid, study_uid), (Result.patient_id, patient_id), (Result.model, model),
                     (Result.sop_uid, sop_uid)):
        if val is not None:
            q = q.where(col == val)
    with _ctx(request).db.read() as s:
        return _results(s, q.order_by(Result.created_at.desc()).limit(limit))


@router.get("/results/{result_id}", tags=["query"])
def result(request: Request, result_id: int, principal: Principal = Depends(require("read"))) -> dict[str, Any]:
    """One result with its provenance, suggestion, alerts and the objects sent to the PACS."""
    _known_id(result_id, "result")
    with _ctx(request).db.session() as s:
        found = _results(s, select(Result).where(Result.id == result_id))
        if not found:
            raise HTTPException(404, f"no result {result_id}")
        audit.record(s, principal.actor, "viewed", "result", str(result_id))
        return found[0]


def _png(path: str | None) -> Response:
    if not path or not Path(path).is_file():
        raise HTTPException(404, "no image for this item")
    return Response(Path(path).read_bytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/results/{result_id}/overlay.png", tags=["query"])
def overlay(request: Request, result_id: int, _: Principal = Depends(require("read"))) -> Response:
    """The heatmap overlay of a result (PNG, the source image's rows x cols)."""
    _known_id(result_id, "result")
    with _ctx(request).db.read() as s:
        r = s.get(Result, result_id)
        return _png(r.overlay_path if r else None)


@router.get("/results/{result_id}/lesions/{lesion_id}/crop.png", tags=["query"])
def lesion_crop(request: Request, result_id: int, lesion_id: str, _: Principal = Depends(require("read"))) -> Response:
    """A lesion's crop picture (a nodule: the axial slice through its centre, 64 mm across, in the lung window)."""
    _known_id(result_id, "result")
    with _ctx(request).db.read() as s:
        r = s.get(Result, result_id)
        path = ((r.outputs or {}).get("crops") or {}).get(lesion_id) if r else None
    return _png(path)


@router.get("/results/{result_id}/mask.nii.gz", tags=["query"])
def mask_file(request: Request, result_id: int, _: Principal = Depends(require("read"))) -> Response:
    """The label mask of a segmentation result: NIfTI (gzip) on the source's voxel grid."""
    _known_id(result_id, "result")
    with _ctx(request).db.read() as s:
        r = s.get(Result, result_id)
        path = ((r.outputs or {}).get("mask") or {}).get("path") if r else None
    if not path or not Path(path).is_file():
        raise HTTPException(404, "no mask for this result")
    return Response(Path(path).read_bytes(), media_type="application/gzip",
                    headers={"Cache-Control": "private, max-age=60",
                             "Content-Disposition": f'attachment; filename="result-{result_id}-mask.nii.gz"'})


@router.get("/instances/{sop_uid}/image.png", tags=["query"])
def instance_image(request: Request, sop_uid: str, _: Principal = Depends(require("read"))) -> Response:
    """A received instance rendered as 8-bit grayscale PNG (its window, else percentiles)."""
    from PIL import Image as PILImage

    from medsight.errors import MedSightError
    from medsight.explain.overlay import grayscale_uint8
    from medsight.service.inference import read_stored, stored_limits

    with _ctx(request).db.read() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_uid == sop_uid))
    if inst is None:
        raise HTTPException(404, f"no instance {sop_uid}")
    try:
        gray = grayscale_uint8(read_stored(inst.path, sop_uid, limits=stored_limits(_ctx(request).cfg)))
    except MedSightError as exc:
        raise HTTPException(422, f"cannot render this instance: {exc}") from None
    buf = io.BytesIO()
    PILImage.fromarray(gray).save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/alerts", tags=["query"])
def alerts(request: Request, unacknowledged: bool = False, limit: int = Query(200, ge=1, le=5000),
           _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Alerts, most urgent then newest first."""
    q = select(Alert)
    if unacknowledged:
        q = q.where(Alert.acknowledged_by.is_(None))
    with _ctx(request).db.read() as s:
        return [alert_dict(a) for a in s.scalars(q.order_by(Alert.rank.desc(), Alert.created_at.desc()).limit(limit))]


@router.post("/alerts/{alert_id}/ack", tags=["query"])
def acknowledge(request: Request, alert_id: int, principal: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Acknowledge an alert (recorded with the token's name)."""
    _known_id(alert_id, "alert")
    with _ctx(request).db.session() as s:
        a = s.get(Alert, alert_id)
        if a is None:
            raise HTTPException(404, f"no alert {alert_id}")
        a.acknowledged_by = principal.name
        audit.record(s, principal.actor, "acknowledged", "alert", str(alert_id))
        return alert_dict(a)


@router.get("/patients/{patient_id}/timeline", tags=["query"])
def timeline(request: Request, patient_id: str, principal: Principal = Depends(require("read"))) -> dict[str, Any]:
    """A patient's results over time, trend per model, the current treatment suggestion, the
    response assessment of the patient's serial studies (``response``: time points in date order
    with their sizes, categories, suggestions and reasons) and the patient's alerts."""
    from medsight.service.timeline import patient_timeline

    with _ctx(request).db.session() as s:
        t = patient_timeline(s, patient_id)
        if not t["entries"] and t["response"] is None:
            raise HTTPException(404, "no results for this patient")
        audit.record(s, principal.actor, "viewed", "patient", audit.patient_ref(patient_id))
        return t


@router.get("/patients/{patient_id}/response.png", tags=["query"])
def response_plot(request: Request, patient_id: str, _: Principal = Depends(require("read"))) -> Response:
    """The size over time of the patient's current response assessment, with its thresholds
    (:func:`medsight.report.plots.response_png`, drawn when the assessment was made)."""
    from medsight.service.response import current_assessment

    with _ctx(request).db.read() as s:
        rows = current_assessment(s, patient_id)
    return _png(rows[-1].plot_path if rows else None)


@router.get("/drift", tags=["query"])
def drift(request: Request, history: int = Query(100, ge=0, le=5000),
          _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """The drift monitor per model and sender: its state (``ok`` or ``drift``, since when, how
    many episodes and checks), the last check's tests, and the last ``history`` snapshots,
    oldest first (the trend)."""
    with _ctx(request).db.read() as s:
        out = []
        for st in s.scalars(select(DriftState).order_by(DriftState.model, DriftState.source)):
            snaps = list(s.scalars(select(DriftSnapshot).where(DriftSnapshot.model == st.model,
                                                               DriftSnapshot.source == st.source)
                                   .order_by(DriftSnapshot.id.desc()).limit(history)))
            out.append({"model": st.model, "model_version": st.model_version, "source": st.source,
                        "status": st.status, "since": _iso(st.since), "episodes": st.episodes, "checks": st.checks,
                        "updated_at": _iso(st.updated_at), "last": st.last,
                        "history": [{"at": _iso(x.at), "drift": x.drift, "n": x.n, "result_id": x.result_id,
                                     "stats": x.stats} for x in reversed(snaps)]})
        return out


@router.get("/audit", tags=["admin"])
def audit_log(request: Request, action: str | None = None, object_id: str | None = None, actor: str | None = None,
              limit: int = Query(500, ge=1, le=10000),
              _: Principal = Depends(require("admin"))) -> list[dict[str, Any]]:
    """The audit trail, newest first (admin only)."""
    q = select(AuditEvent)
    for col, val in ((AuditEvent.action, action), (AuditEvent.object_id, object_id), (AuditEvent.actor, actor)):
        if val is not None:
            q = q.where(col == val)
    with _ctx(request).db.read() as s:
        return [{"at": _iso(e.at), "actor": e.actor, "action": e.action, "object_type": e.object_type,
                 "object_id": e.object_id, "details": e.details}
                for e in s.scalars(q.order_by(AuditEvent.id.desc()).limit(limit))]


@router.get("/queue", tags=["query"])
def queue(request: Request, _: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Jobs by kind and status."""
    with _ctx(request).db.read() as s:
        return queue_counts(s)


@router.get("/queue/failed", tags=["query"])
def failed_jobs(request: Request, kind: str | None = None, limit: int = Query(100, ge=1, le=1000),
                _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Jobs that failed for good, newest first, with the reason; ``poison`` when their worker
    died running them until they had used their attempts."""
    q = select(Job).where(Job.status == "failed")
    if kind is not None:
        q = q.where(Job.kind == kind)
    with _ctx(request).db.read() as s:
        return [{"id": j.id, "kind": j.kind, "key": j.key, "attempts": j.attempts, "crashes": j.crashes,
                 "poison": (j.error or "").startswith(POISON), "error": j.error, "created_at": _iso(j.created_at),
                 "finished_at": _iso(j.finished_at)}
                for j in s.scalars(q.order_by(Job.finished_at.desc(), Job.id.desc()).limit(limit))]


@router.post("/catchup", tags=["admin"])
def catchup(request: Request, _: Principal = Depends(require("admin"))) -> dict[str, Any]:
    """Reconcile with the PACS now (admin only)."""
    ctx = _ctx(request)
    if ctx.catchup is None:
        raise HTTPException(409, "catch-up is not configured (catchup.source is 'none')")
    return ctx.catchup()
