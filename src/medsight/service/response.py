"""Response assessment in the service: a patient's stored serial studies, assessed by the code of
``medsight track`` once a new study has settled.

When a series of a patient who has lesion masks completes (its ``series`` job ran), a
``response`` job is queued for ``response.settle_s`` later. The job waits while any of the
patient's series is still receiving or has its series job to run (a study arriving series by
series is assessed once, after its last series), then gathers every study the service stored
for that PatientID, keeps those with a lesion mask, and hands them to
:func:`medsight.response.track_studies`: ordered by their DICOM dates (never by arrival),
each mask measured, each time point classified against the baseline and the nadir under
``response.criteria``, and the suggestion made by ``response.policy``. The time points are
stored as :class:`~medsight.service.db.ResponseAssessment` rows that supersede the patient's
previous ones, so a study that arrives after a later-dated one takes the place its date gives
it and every category is judged again. A latest time point whose category is in
``response.alert_on`` raises an alert (:func:`medsight.alerts.response_firing`), stored and
delivered to the webhook as every alert is.

Log lines and audit events name the patient by :func:`~medsight.service.audit.patient_ref`
only, never by an identifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from medsight.errors import MedSightError, MissingMaskError
from medsight.service import audit
from medsight.service.alerts import record_alerts
from medsight.service.config import ServiceConfig
from medsight.service.db import Alert, Database, Instance, Job, ResponseAssessment, Result, Series, now
from medsight.service.logs import safe_error
from medsight.service.queue import complete, enqueue

__all__ = ["ResponseAssessor", "current_assessment"]

log = logging.getLogger(__name__)

_SEG_MODALITY = "SEG"


def current_assessment(s: Session, patient_id: str) -> list[ResponseAssessment]:
    """The rows of the patient's current assessment, in date order (empty when none)."""
    return list(s.scalars(select(ResponseAssessment).where(ResponseAssessment.patient_id == patient_id,
                                                           ResponseAssessment.superseded_at.is_(None))
                          .order_by(ResponseAssessment.position, ResponseAssessment.id)))


class ResponseAssessor:
    """Schedules and runs the ``response`` jobs (the service's ``response`` section).

    Args:
        cfg: the service config.
        actor: who assesses (``worker:<name>``), for the audit.
    """

    def __init__(self, cfg: ServiceConfig, actor: str) -> None:
        from medsight.response.masks import MASK_DESCRIPTION

        self.cfg = cfg
        self.actor = actor
        self.mask_rx = re.compile(cfg.response.mask_series or MASK_DESCRIPTION, re.IGNORECASE)

    # -- scheduling (in the series job's transaction) ----------------------------------------
    def schedule(self, s: Session, series_uid: str) -> bool:
        """Queue the assessment of the series' patient ``response.settle_s`` from now, when
        assessment is enabled and the patient has a lesion mask (a mask series, or a result of
        ``response.segmentation_model``). Returns whether a job was queued."""
        r = self.cfg.response
        if not r.enabled:
            return False
        series = s.get(Series, series_uid)
        if series is None or not series.patient_id or not self._has_masks(s, series.patient_id):
            return False
        return enqueue(s, "response", f"response:{series_uid}:{series.n_instances}", {"series_uid": series_uid},
                       priority=1, delay_s=r.settle_s)

    def _has_masks(self, s: Session, patient_id: str) -> bool:
        if self.cfg.response.segmentation_model:
            return bool(self._segmented(s, patient_id))
        return any(x.modality == _SEG_MODALITY or self.mask_rx.search(x.description or "")
                   for x in s.scalars(select(Series).where(Series.patient_id == patient_id)))

    def _segmented(self, s: Session, patient_id: str) -> dict[str, list[dict[str, Any]]]:
        """The masks ``response.segmentation_model`` stored for the patient, by study."""
        out: dict[str, list[dict[str, Any]]] = {}
        for res in s.scalars(select(Result).where(Result.patient_id == patient_id, Result.status == "ok",
                                                  Result.sop_uid.is_(None)).order_by(Result.created_at)):
            outputs = res.outputs or {}
            mask = outputs.get("mask")
            if outputs.get("config_model") == self.cfg.response.segmentation_model and isinstance(mask, dict):
                out.setdefault(res.study_uid, []).append({"series_uid": res.series_uid, "path": mask.get("path"),
                                                          "model": res.model, "version": res.model_version})
        return out

    # -- the job -----------------------------------------------------------------------------
    def run(self, db: Database, job: Job) -> str:
        """Assess the patient of the job's series; completes the job. Returns what happened (for the log)."""
        r, t = self.cfg.response, now()
        uid = job.payload["series_uid"]
        with db.read() as s:
            anchor = s.get(Series, uid)
            patient_id = anchor.patient_id if anchor is not None else None
            if not patient_id:
                return self._done(db, job, "no patient")
            series = list(s.scalars(select(Series).where(Series.patient_id == patient_id)))
            busy = [x for x in series if x.status != "complete" or (x.completed_at or 0) > t - r.settle_s]
            keys = [f"series:{x.series_uid}:{x.n_instances}" for x in series]
            busy += list(s.scalars(select(Job.id).where(Job.key.in_(keys), Job.status.in_(("pending", "running")))))
            if busy:  # the last of them to complete queues the assessment again
                return self._done(db, job, "waiting for the patient's other series")
            instances = list(s.execute(select(Instance.study_uid, Instance.series_uid, Instance.path)
                                       .where(Instance.patient_id == patient_id)))
            segmented = self._segmented(s, patient_id) if r.segmentation_model else {}
        ref = audit.patient_ref(patient_id)
        studies, inputs = self._gather(instances, segmented)
        run = hashlib.sha256(json.dumps({"inputs": inputs, "response": r.model_dump(mode="json"),
                                         "versions": self._versions(segmented)}, sort_keys=True).encode()).hexdigest()
        with db.read() as s:
            if s.scalar(select(ResponseAssessment.id).where(ResponseAssessment.run == run).limit(1)) is not None:
                return self._done(db, job, "unchanged")
        if not studies:
            return self._done(db, job, "no study with a lesion mask")
        rows, assessment = self._assess(studies, inputs, segmented, run=run, patient_id=patient_id, ref=ref)
        with db.session() as s:
            if s.get_bind().dialect.name == "postgresql":  # one assessment of a patient at a time
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(ref[7:22], 16)})
            current = current_assessment(s, patient_id)
            if current and max(int((c.inputs or {}).get("n_instances", 0)) for c in current) > inputs["n_instances"]:
                complete(s, job)  # a newer assessment (more instances) was stored meanwhile
                return "superseded by a newer assessment"
            for c in current:
                c.superseded_at = t
            s.add_all(rows)
            s.flush()
            latest = rows[-1]
            if assessment is not None:
                self._alert(s, assessment, latest, patient_id, ref)
            audit.record(s, self.actor, "assessed", "patient", ref, run=run[:16], criteria=r.criteria,
                         policy=r.policy, status=latest.status, category=latest.category,
                         n_timepoints=latest.n_timepoints, study_uid=latest.study_uid)
            complete(s, job)
        what = latest.category or ("error" if latest.status == "error" else "no category")
        log.info("response of patient %s assessed: %d time point(s), %s", ref, latest.n_timepoints, what)
        return what

    def _done(self, db: Database, job: Job, why: str) -> str:
        with db.session() as s:
            complete(s, job)
        return why

    def _gather(self, instances: list[Any], segmented: dict[str, list[dict[str, Any]]]) -> tuple[list[Any], dict]:
        """The patient's stored studies (those with a lesion mask), and what they are made of."""
        from medsight.io.studies import scan_studies
        from medsight.response.masks import mask_series
        from medsight.service.inference import stored_limits

        known: dict[str, dict[str, int]] = {}
        folders: dict[str, Path] = {}
        for study_uid, series_uid, path in instances:
            known.setdefault(study_uid, {}).setdefault(series_uid, 0)
            known[study_uid][series_uid] += 1
            folders.setdefault(study_uid, Path(path).parent.parent)  # storage/dicom/<study>/<series>/<sop>.dcm
        limits = stored_limits(self.cfg)
        studies, excluded = [], []
        for study_uid in sorted(known):
            for study in scan_studies(folders[study_uid], limits=limits).studies:
                if study.uid != study_uid:
                    continue
                study.series = [x for x in study.series if x.uid in known[study_uid]]  # only what the service stored
                has_mask = (study_uid in segmented if self.cfg.response.segmentation_model
                            else bool(mask_series(study, self.cfg.response.mask_series)))
                (studies if has_mask else excluded).append(study)
        inputs = {"studies": [{"study_uid": st, "series": [{"series_uid": se, "n_instances": n}
                                                            for se, n in sorted(known[st].items())]}
                              for st in sorted(known)],
                  "n_instances": sum(sum(v.values()) for v in known.values()),
                  "assessed": sorted(x.uid for x in studies), "without_mask": sorted(x.uid for x in excluded)}
        return studies, inputs

    def _versions(self, segmented: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        import medsight

        models = sorted({(m["model"], m["version"]) for ms in segmented.values() for m in ms})
        return {"medsight": medsight.__version__, "segmentation_model": [{"model": m, "version": v}
                                                                         for m, v in models] or None}

    def _segmenter(self, segmented: dict[str, list[dict[str, Any]]]) -> Any:
        """The ``segment=`` hook of :func:`track_studies` reading ``response.segmentation_model``'s stored mask."""
        if not self.cfg.response.segmentation_model:
            return None
        from medsight.io import read

        def segment(study: Any) -> Any:
            masks = segmented.get(study.uid, [])
            if len(masks) != 1 or not masks[0]["path"]:
                raise MissingMaskError(f"the study of {study.date or 'unknown date'} has {len(masks)} stored "
                                       f"{self.cfg.response.segmentation_model} masks; route one series of a study "
                                       "to the segmentation model")
            return read(masks[0]["path"])
        return segment

    def _assess(self, studies: list[Any], inputs: dict[str, Any], segmented: dict[str, list[dict[str, Any]]], *,
                run: str, patient_id: str, ref: str) -> tuple[list[ResponseAssessment], Any]:
        """The rows of one assessment (one per time point, or one error row) and the latest
        time point's :class:`~medsight.response.criteria.Assessment` (None for an error)."""
        from medsight.response import track_studies
        from medsight.service.inference import stored_limits

        r, t = self.cfg.response, now()
        versions = self._versions(segmented)
        common = dict(run=run, patient_id=patient_id, criteria=r.criteria, policy=r.policy, inputs=inputs,
                      versions=versions, created_at=t)
        storage = str(self.cfg.storage_path / "dicom") + "/"
        try:
            result = track_studies(studies, source="the service's stored studies", criteria=r.criteria,
                                   policy=r.policy, mask=r.mask_series, segment=self._segmenter(segmented),
                                   connectivity=r.connectivity, limits=stored_limits(self.cfg))
        except MedSightError as exc:  # no assessment: say why, on the latest-received study
            error = safe_error(exc).replace(storage, "")  # studies are named by date and UID, not storage paths
            latest = max(studies, key=lambda st: st.acquired.isoformat() if st.acquired else "")
            log.warning("response of patient %s not assessed: %s", ref, type(exc).__name__)
            return [ResponseAssessment(key=f"{run}|{latest.uid}", study_uid=latest.uid, status="error",
                                       study_date=latest.date, n_timepoints=0, error=error,
                                       reasons=[f"not assessed: {error}"], **common)], None
        plot = self.cfg.storage_path / "response" / ref.split(":", 1)[1] / f"{run[:16]}.png"
        try:
            result.plot(plot)
        except (OSError, ValueError) as exc:
            log.warning("response plot of patient %s not drawn: %s", ref, type(exc).__name__)
            plot = None
        n = len(result.timepoints)
        rows = []
        for k, tp in enumerate(result.timepoints):
            d = tp.to_dict()
            last = k == n - 1
            reasons = list(result.reasons) if last else list(tp.reasons)
            if inputs["without_mask"]:
                reasons.insert(0, f"{len(inputs['without_mask'])} stored stud"
                                  f"{'y' if len(inputs['without_mask']) == 1 else 'ies'} of this patient without a "
                                  "lesion mask left out")
            details = {key: d[key] for key in ("date_source", "lesions_used", "lesions", "connectivity",
                                                "mask_series_uid", "mask_series_description")}
            details["image_series"] = [{k2: v for k2, v in x.items() if k2 != "folder"} for x in d["image_series"]]
            rows.append(ResponseAssessment(
                key=f"{run}|{tp.study.uid}", study_uid=tp.study.uid, status="ok", study_date=tp.study.date,
                acquired=d["datetime"], position=k, n_timepoints=n, volume_ml=d["volume_ml"],
                longest_diameter_mm=d["longest_diameter_mm"], perpendicular_diameter_mm=d["perpendicular_diameter_mm"],
                criteria_value=d["criteria_value"], n_lesions=d["n_lesions"], category=tp.response,
                suggestion=(tp.suggestion or "")[:160] or None, reasons=reasons,
                assessment=tp.assessment.to_dict() if tp.assessment else {},
                details={**details, "by_criteria": result.by_criteria} if last else details,
                plot_path=str(plot) if plot else None, **common))
        return rows, result.assessment

    def _alert(self, s: Session, assessment: Any, latest: ResponseAssessment, patient_id: str, ref: str) -> None:
        """Alert once per time point and category (a re-assessment that says the same raises none)."""
        from medsight.alerts import response_firing

        r = self.cfg.response
        firing = response_firing(assessment, date=latest.study_date, suggestion=latest.suggestion or "",
                                 alert_on=r.alert_on, priority=r.alert_priority)
        if firing is None:
            return
        key = f"response:{ref}:{latest.study_uid}:{r.criteria}:{latest.category}"
        if s.scalar(select(Alert.id).where(Alert.key.startswith(key, autoescape=True))) is not None:
            return
        record_alerts(s, [firing], actor=self.actor, result_key=key, result_id=None, study_uid=latest.study_uid,
                      patient_id=patient_id, webhook=self.cfg.alerts.webhook is not None, assessment_id=latest.id)
