"""Storing what a worker found: each result's row, its findings rows, its alerts, the
treatment suggestion, the drift check of its model's window, its audit events and its outgoing
jobs, in the transaction that also completes the job.

Idempotence: a result is keyed by its input, model and version
(:func:`~medsight.service.outcome.result_key`). A job delivered twice (its worker was killed
after storing, before acknowledging) finds its results and stores nothing new.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from medsight.alerts import evaluate_rules
from medsight.service import audit
from medsight.service.alerts import record_alerts
from medsight.service.config import ServiceConfig
from medsight.service.db import Result, ResultFinding, Suggestion, now
from medsight.service.drift import DriftMonitor
from medsight.service.outcome import Outcome
from medsight.service.queue import enqueue
from medsight.service.timeline import previous_measurements, suggest
from medsight.tasks.writers import write

__all__ = ["ResultStore", "measurements", "stored_measurements"]


def stored_measurements(result: Result) -> dict[str, float]:
    """A stored result's numeric findings by name (the first of each name), as growth rules
    compare them: its ``findings`` rows, or for a result stored by a MedSight older than the
    findings table, what :func:`measurements` reads from its outputs."""
    if not result.findings:
        return measurements(result.outputs)
    out: dict[str, float] = {}
    for f in result.findings:
        if f.value is not None:
            out.setdefault(f.name, float(f.value))
    return out


def measurements(outputs: dict[str, Any] | None) -> dict[str, float]:
    """The numeric findings of a result stored before the findings table existed, read from
    its outputs: ``findings`` (e.g. ``nodule_diameter_mm``) as they are, and each structure
    volume (``volumes_ml``) as ``volume_ml_<structure>`` (mL), the names
    :meth:`medsight.tasks.results.Result.findings` gives them now.
    """
    old = (outputs or {}).get("findings")  # a mapping then (a detector's outputs list its nodules here now)
    out = {k: float(v) for k, v in (old if isinstance(old, dict) else {}).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, v in ((outputs or {}).get("volumes_ml") or {}).items():
        if isinstance(v, (int, float)):
            out[f"volume_ml_{name}"] = float(v)
    return out


class ResultStore:
    """Inserts outcomes as results with everything that follows from them.

    Args:
        cfg: the service config (alert rules, webhook, treatment policy, outputs).
        actor: who stores them (``worker:<name>``), for the audit.
    """

    def __init__(self, cfg: ServiceConfig, actor: str) -> None:
        self.cfg = cfg
        self.actor = actor
        self.drift = DriftMonitor(cfg, actor)

    def store(self, s: Session, outcomes: list[Outcome]) -> list[int]:
        """Insert results with their findings, alerts, suggestions, audit and outgoing jobs.

        Returns:
            Ids of the results inserted now (not those that already existed).
        """
        dialect = s.get_bind().dialect.name
        new_ids = []
        for o in outcomes:
            values = self._row(o)
            ins = pg_insert(Result) if dialect == "postgresql" else sqlite_insert(Result)
            rid = s.execute(ins.values(**values).on_conflict_do_nothing(index_elements=["key"])
                            .returning(Result.id)).scalar()
            if rid is None:
                continue  # stored by an earlier delivery of this job
            new_ids.append(rid)
            target = o.sop_uid or o.series_uid
            if o.status != "ok":
                audit.record(s, self.actor, "failed", "result", str(rid), input=target, model=o.info.model_name,
                             model_version=o.info.version, error=(o.error or "")[:300])
                continue
            audit.record(s, self.actor, "processed", "result", str(rid), input=target, model=o.info.model_name,
                         model_version=o.info.version, weights_sha256=values["weights_sha256"],
                         input_sha256=values["input_sha256"])
            findings = o.result.findings()
            s.add_all([ResultFinding.of(rid, f) for f in findings])
            self._alerts_and_policy(s, o, rid, values, findings)
            self.drift.observe(s, o, rid)
            if self.cfg.outputs.dicom or self.cfg.outputs.stow_rs:
                enqueue(s, "send", f"send:{rid}", {"result_id": rid}, priority=5)
        return new_ids

    def _row(self, o: Outcome) -> dict[str, Any]:
        r, t = o.result, now()
        row: dict[str, Any] = dict(key=o.key, status=o.status, model=o.info.model_name, model_version=o.info.version,
                                   study_uid=o.study_uid, series_uid=o.series_uid, sop_uid=o.sop_uid,
                                   patient_id=o.patient_id, received_at=o.received_at, created_at=t,
                                   overlay_path=o.overlay_path, error=o.error, weights_sha256=None,
                                   input_sha256=None, label=None, score=None, threshold=None, positive=None,
                                   outputs={"config_model": o.model}, timings=dict(o.timings), source=o.source)
        if r is not None:
            prov = r.provenance
            row.update(weights_sha256=prov.weights_sha256, input_sha256=prov.input_sha256)
            db = write(r, "db")  # the result's columns and outputs, by its type's writer
            row.update(label=db["label"], score=db["score"], threshold=db["threshold"], positive=db["positive"])
            row["outputs"].update(db["outputs"])
            row["outputs"]["heatmap"] = o.heatmap
            if o.mask is not None:
                row["outputs"]["mask"] = o.mask
            if o.overlay_sop_uid is not None:
                row["outputs"]["overlay_sop_uid"] = o.overlay_sop_uid
            if o.crops:
                row["outputs"]["crops"] = dict(o.crops)
        if o.received_at is not None:
            row["timings"]["total_ms"] = round((t - o.received_at) * 1000, 2)
        return row

    def _alerts_and_policy(self, s: Session, o: Outcome, rid: int, row: dict[str, Any], findings: list[Any]) -> None:
        prev = previous_measurements(s, o.patient_id, o.info.model_name, row["created_at"])
        previous = None
        if prev:
            last = prev[-1]
            previous = {"score": last.score, **stored_measurements(last)}
        firings = evaluate_rules(self.cfg.alerts.rules, model=o.model, positive=row["positive"], score=row["score"],
                                 label=row["label"], threshold=row["threshold"], findings=findings, previous=previous)
        record_alerts(s, firings, actor=self.actor, result_key=o.key, result_id=rid, study_uid=o.study_uid,
                      patient_id=o.patient_id, webhook=self.cfg.alerts.webhook is not None)
        if row["score"] is not None and row["positive"] is not None:
            labels = list((row["outputs"].get("probabilities") or {}).keys())
            pos_label = row["label"] if row["positive"] else next((x for x in labels if x != row["label"]), "positive")
            suggestion, reasons = suggest(self.cfg.treatment, float(row["score"]), label=pos_label, model=o.model,
                                          history=[p.score for p in prev if p.score is not None])
            s.add(Suggestion(result_id=rid, patient_id=o.patient_id, suggestion=suggestion, reasons=reasons,
                             policy=self.cfg.treatment.model_dump(), trend={"n_previous": len(prev)}, created_at=now()))
            audit.record(s, self.actor, "suggested", "result", str(rid), suggestion=suggestion)
