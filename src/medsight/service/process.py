"""What a worker does with ``instance`` and ``series`` jobs: read, predict, explain, and
store each result with its alerts, treatment suggestion, audit event and outgoing jobs in
the same transaction as the job's completion.

Idempotence: a result is keyed by its input, model and version. A job delivered twice (its
worker was killed after storing, before acknowledging) finds its results and stores
nothing new.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from medsight.alerts import PRIORITY_RANK, evaluate_rules
from medsight.errors import MedSightError
from medsight.service import audit
from medsight.service.catalog import ModelCatalog
from medsight.service.config import ServiceConfig
from medsight.service.db import Alert, Instance, Result, ResultFinding, Series, Suggestion, now
from medsight.service.logs import safe_error
from medsight.service.queue import enqueue
from medsight.service.timeline import previous_measurements, suggest
from medsight.tasks.results import PredictionError
from medsight.tasks.writers import write

__all__ = ["Outcome", "Processor", "result_key", "measurements", "stored_measurements"]

log = logging.getLogger(__name__)


def result_key(input_id: str, model_name: str, version: str) -> str:
    """The idempotency key of a result."""
    return f"{input_id}|{model_name}|{version}"


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
    out = {k: float(v) for k, v in ((outputs or {}).get("findings") or {}).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, v in ((outputs or {}).get("volumes_ml") or {}).items():
        if isinstance(v, (int, float)):
            out[f"volume_ml_{name}"] = float(v)
    return out


@dataclass
class Outcome:
    """One model output ready to be stored."""

    key: str
    model: str  # config name
    info: Any  # ModelInfo
    status: str  # ok | error
    study_uid: str
    series_uid: str
    sop_uid: str | None
    patient_id: str | None
    received_at: float | None
    result: Any = None  # ClassificationResult / SegmentationResult
    error: str | None = None
    overlay_path: str | None = None
    heatmap: str | None = None
    mask: dict[str, Any] | None = None  # where a segmentation's mask file is, and its source instances
    timings: dict[str, float] = field(default_factory=dict)


class Processor:
    """Runs models for jobs and stores what they find.

    Args:
        cfg: the service config.
        catalog: the configured models.
        worker_id: this worker's name (audit actor).
    """

    def __init__(self, cfg: ServiceConfig, catalog: ModelCatalog, worker_id: str) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.actor = f"worker:{worker_id}"
        self.overlays = cfg.storage_path / "overlays"
        self.masks = cfg.storage_path / "masks"

    # -- instance jobs ---------------------------------------------------------------------
    def run_instances(self, session_factory: Any, jobs: list[Any]) -> list[Outcome]:  # session_factory: Database.read
        """Predict every routed model on the instances of ``jobs`` (batched per model).

        The decoded images held at once stay within one image budget
        (:attr:`~medsight.io.limits.ReadLimits.max_decoded_bytes`): a batch of big images is
        predicted in parts, so the batch size does not multiply the worker's memory.
        """
        from medsight.io.dicom import dataset_to_image, read_dataset
        from medsight.io.limits import ReadLimits

        budget, held = ReadLimits.from_env().max_decoded_bytes, 0

        t_claim = time.time()
        with session_factory() as s:
            sops = [j.payload["sop_uid"] for j in jobs]
            insts = {i.sop_uid: i for i in s.scalars(select(Instance).where(Instance.sop_uid.in_(sops)))}
            done = set(s.scalars(select(Result.key).where(Result.sop_uid.in_(sops))))
            s.expunge_all()
        outcomes: list[Outcome] = []
        per_model: dict[str, list[tuple[Any, Any, float]]] = {}
        for job in jobs:
            inst = insts.get(job.payload["sop_uid"])
            if inst is None:
                continue
            models = [m for m in job.payload.get("models", []) if m in self.catalog.available]
            todo = [m for m in models if result_key(inst.sop_uid, self.catalog.available[m].model_name,
                                                    self.catalog.available[m].version) not in done]
            if not todo:
                continue
            t0 = time.perf_counter()
            try:
                image = dataset_to_image(read_dataset(Path(inst.path)), path=inst.sop_uid)
            except MedSightError as exc:
                for m in todo:
                    outcomes.append(self._error(inst, m, f"cannot read the stored instance: {safe_error(exc)}"))
                continue
            read_ms = (time.perf_counter() - t0) * 1000
            if per_model and held + image.array.nbytes > budget:  # predict what is held before holding more
                for m, items in per_model.items():
                    outcomes.extend(self._predict(m, items, t_claim))
                per_model, held = {}, 0
            held += image.array.nbytes
            for m in todo:
                per_model.setdefault(m, []).append((inst, image, read_ms))
        for m, items in per_model.items():
            outcomes.extend(self._predict(m, items, t_claim))
        return outcomes

    def _error(self, inst: Any, model: str, message: str) -> Outcome:
        info = self.catalog.available[model]
        return Outcome(key=result_key(inst.sop_uid, info.model_name, info.version), model=model, info=info,
                       status="error", study_uid=inst.study_uid, series_uid=inst.series_uid, sop_uid=inst.sop_uid,
                       patient_id=inst.patient_id, received_at=inst.received_at, error=message)

    def _predict(self, model_name: str, items: list[tuple[Any, Any, float]], t_claim: float) -> list[Outcome]:
        info = self.catalog.available[model_name]
        predictor = self.catalog.predictor(model_name)
        t0 = time.perf_counter()
        try:
            preds = predictor.predict_images([im for _, im, _ in items], [inst.sop_uid for inst, _, _ in items])
        except MedSightError as exc:
            preds = [PredictionError(input=inst.sop_uid, error=safe_error(exc), error_type=type(exc).__name__)
                     for inst, _, _ in items]
        infer_ms = (time.perf_counter() - t0) * 1000 / max(len(items), 1)
        out = []
        for (inst, image, read_ms), pred in zip(items, preds):
            if isinstance(pred, PredictionError):
                out.append(self._error(inst, model_name, f"{pred.error_type}: {pred.error}"))
                continue
            o = Outcome(key=result_key(inst.sop_uid, info.model_name, info.version), model=model_name, info=info,
                        status="ok", study_uid=inst.study_uid, series_uid=inst.series_uid, sop_uid=inst.sop_uid,
                        patient_id=inst.patient_id, received_at=inst.received_at, result=pred)
            o.timings = {"queue_ms": round((t_claim - inst.received_at) * 1000, 2), "read_ms": round(read_ms, 2),
                         "inference_ms": round(infer_ms, 2)}
            try:
                self._artifacts(o, image, pred)
            except MedSightError as exc:
                out.append(self._error(inst, model_name, safe_error(exc)))
                continue
            self._explain(o, image)
            out.append(o)
        return out

    def _explain(self, o: Outcome, image: Any) -> None:
        method = self.cfg.models[o.model].explain
        if method == "none" or o.info.task != "classification" or image.n_spatial != 2:
            return
        from medsight.explain import heatmap, overlay

        t0 = time.perf_counter()
        try:
            h = heatmap(self.catalog.load(o.model), image, method=method)
            rgb = overlay(image, h.values)
        except MedSightError as exc:
            log.warning("no heatmap for %s: %s", o.sop_uid, safe_error(exc))
            return
        self._write_overlay(o, rgb)
        o.timings["explain_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        o.heatmap = h.method

    # -- series jobs -----------------------------------------------------------------------
    def run_series(self, session_factory: Any, job: Any, router: Any) -> tuple[str, list[Outcome]]:
        """Run 3D models on a complete series; returns its outcome text and results."""
        from medsight.io.series import read_series, scan_folder
        from medsight.service.routing import InstanceFacts

        uid = job.payload["series_uid"]
        with session_factory() as s:
            series = s.get(Series, uid)
            if series is None:
                return "unknown series", []
            s.expunge(series)
            first = s.scalar(select(Instance).where(Instance.series_uid == uid).limit(1))
            folder = Path(first.path).parent if first is not None else None
        match = router.match(InstanceFacts(series.modality, series.body_part, series.description))
        if not match.series_models:
            if match.instance_models:
                return f"instances processed by {', '.join(match.instance_models)}", []
            missing = f" ({', '.join(match.missing_models)} not installed)" if match.missing_models else ""
            return f"no model routed{missing}", []
        outcomes = []
        image, read_error = None, None
        try:  # read once, whatever the number of models routed
            image = read_series(scan_folder(folder).choose(uid))
        except MedSightError as exc:
            read_error = safe_error(exc)
        for m in match.series_models:
            info = self.catalog.available[m]
            key = result_key(f"series:{uid}:{series.n_instances}", info.model_name, info.version)
            base = dict(key=key, model=m, info=info, study_uid=series.study_uid, series_uid=uid, sop_uid=None,
                        patient_id=series.patient_id, received_at=series.last_at)
            if image is None:
                outcomes.append(Outcome(status="error", error=read_error, **base))
                continue
            try:
                t0 = time.perf_counter()
                pred = self.catalog.predictor(m).predict_images([image], [uid])[0]
                if isinstance(pred, PredictionError):
                    outcomes.append(Outcome(status="error", error=f"{pred.error_type}: {pred.error}", **base))
                    continue
                o = Outcome(status="ok", result=pred, **base)
                o.timings = {"inference_ms": round((time.perf_counter() - t0) * 1000, 2)}
                self._artifacts(o, image, pred)
                outcomes.append(o)
            except MedSightError as exc:
                outcomes.append(Outcome(status="error", error=safe_error(exc), **base))
        return f"processed by {', '.join(match.series_models)}", outcomes

    def _artifacts(self, o: Outcome, image: Any, result: Any) -> None:
        """Store a result's artifacts: a mask as a NIfTI file with its picture over the image.

        Raises:
            WriteError: the mask file cannot be written.
        """
        for artifact in result.artifacts():
            if artifact.kind == "mask":
                o.mask = self._save_mask(o, result, artifact.value)
                self._mask_overlay(o, image, artifact.value)

    def _mask_overlay(self, o: Outcome, image: Any, mask: Any) -> None:
        """A picture of the mask over its image for the dashboard: the slice with the most
        labelled voxels, each label filled in its colour and outlined."""
        import numpy as np

        from medsight.explain.overlay import label_overlay

        try:
            rgb, shown = label_overlay(image, np.asarray(mask.array)[0])
        except MedSightError as exc:
            log.warning("no mask overlay for %s: %s", o.sop_uid or o.series_uid, safe_error(exc))
            return
        self._write_overlay(o, rgb)
        if o.mask is not None:
            o.mask["overlay_slice"] = shown

    def _write_overlay(self, o: Outcome, rgb: Any) -> None:
        """Store an overlay picture (heatmap or mask) as the result's PNG under ``storage/overlays/<study>/``."""
        from PIL import Image as PILImage

        path = self.overlays / o.study_uid / f"{o.sop_uid or o.series_uid}.{o.info.model_name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rgb).save(path)
        o.overlay_path = str(path)

    def _save_mask(self, o: Outcome, result: Any, mask: Any) -> dict[str, Any]:
        """Write a result's label mask as NIfTI in the input's geometry (its ``nifti`` writer),
        under ``storage/masks/<study>/``, named after the result's key (a re-run writes the same file).

        Returns:
            What the result's outputs record: the path, the format, and the SOPInstanceUIDs of
            the source instances in mask slice order (what a SEG references).

        Raises:
            WriteError: the file cannot be written.
        """
        import hashlib

        name = hashlib.sha256(o.key.encode()).hexdigest()[:24]
        path = self.masks / o.study_uid / f"{o.series_uid}.{o.info.model_name}.{name}.nii.gz"
        write(result, "nifti", path)
        return {"path": str(path), "format": "nifti", "sop_uids": list(mask.sop_uids)}

    # -- storing ---------------------------------------------------------------------------
    def store(self, s: Session, outcomes: list[Outcome]) -> list[int]:
        """Insert results with their alerts, suggestions, audit and outgoing jobs.

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
                                   outputs={"config_model": o.model}, timings=dict(o.timings))
        if r is not None:
            prov = r.provenance
            row.update(weights_sha256=prov.weights_sha256, input_sha256=prov.input_sha256)
            db = write(r, "db")  # the result's columns and outputs, by its type's writer
            row.update(label=db["label"], score=db["score"], threshold=db["threshold"], positive=db["positive"])
            row["outputs"].update(db["outputs"])
            row["outputs"]["heatmap"] = o.heatmap
            if o.mask is not None:
                row["outputs"]["mask"] = o.mask
        if o.received_at is not None:
            row["timings"]["total_ms"] = round((t - o.received_at) * 1000, 2)
        return row

    def _alerts_and_policy(self, s: Session, o: Outcome, rid: int, row: dict[str, Any], findings: list[Any]) -> None:
        prev = previous_measurements(s, o.patient_id, o.info.model_name, row["created_at"])
        previous = None
        if prev:
            last = prev[-1]
            previous = {"score": last.score, **stored_measurements(last)}
        for f in evaluate_rules(self.cfg.alerts.rules, model=o.model, positive=row["positive"], score=row["score"],
                                label=row["label"], threshold=row["threshold"], findings=findings, previous=previous):
            webhook = self.cfg.alerts.webhook is not None
            alert = Alert(key=f"{o.key}|{f.rule}", result_id=rid, rule=f.rule, priority=f.priority,
                          rank=PRIORITY_RANK[f.priority], message=f.message, study_uid=o.study_uid,
                          patient_id=o.patient_id, webhook_status="pending" if webhook else "none", created_at=now())
            s.add(alert)
            s.flush()
            audit.record(s, self.actor, "alert", "alert", str(alert.id), result_id=rid, rule=f.rule,
                         priority=f.priority)
            if webhook:
                enqueue(s, "webhook", f"webhook:{alert.id}", {"alert_id": alert.id}, priority=8)
        if row["score"] is not None and row["positive"] is not None:
            labels = list((row["outputs"].get("probabilities") or {}).keys())
            pos_label = row["label"] if row["positive"] else next((x for x in labels if x != row["label"]), "positive")
            suggestion, reasons = suggest(self.cfg.treatment, float(row["score"]), label=pos_label, model=o.model,
                                          history=[p.score for p in prev if p.score is not None])
            s.add(Suggestion(result_id=rid, patient_id=o.patient_id, suggestion=suggestion, reasons=reasons,
                             policy=self.cfg.treatment.model_dump(), trend={"n_previous": len(prev)}, created_at=now()))
            audit.record(s, self.actor, "suggested", "result", str(rid), suggestion=suggestion)
