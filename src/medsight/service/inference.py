"""Running models on the jobs a worker claims: ``instance`` jobs (2D models, batched per model
within one image budget) and ``series`` jobs (3D models on a complete series).

Images are read through :func:`medsight.io.read`, the one reader path, so an image the
service predicts on is the image ``medsight predict`` reads from the same file:
``meta["source_files"]`` holds the stored files' paths (what
:func:`medsight.io.dicom_out.source_datasets` re-reads), and ``source`` names the input as the
service does (its SOP or series instance UID), so that errors never show storage paths.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medsight.errors import ImageReadError, MedSightError
from medsight.io import Image, ReadLimits, read
from medsight.service.artifacts import Artifacts
from medsight.service.catalog import ModelCatalog
from medsight.service.config import ServiceConfig
from medsight.service.db import Instance, Result, Series
from medsight.service.logs import safe_error
from medsight.service.outcome import Outcome, result_key
from medsight.tasks.results import PredictionError

__all__ = ["Inference", "read_stored", "stored_limits"]


def read_stored(path: str | Path, name: str, *, limits: ReadLimits | None = None, **options: Any) -> Image:
    """Read a stored instance (a file) or series (its folder) with :func:`medsight.io.read`,
    named ``name`` (its UID) in the image's ``source`` and in errors.

    Args:
        path: the stored file or folder.
        name: what the service calls the input (a SOPInstanceUID or SeriesInstanceUID).
        limits: the read limits (the environment's by default).
        **options: passed to the reader (``series=`` for a folder).

    Raises:
        ImageReadError: (a subclass of it) the stored input cannot be read.
    """
    try:
        image = read(path, limits=limits, **options)
    except MedSightError as exc:
        exc.path = name  # the storage path is the service's business, not the reader of the error's
        raise
    image.source = name
    return image


def stored_limits(cfg: ServiceConfig) -> ReadLimits:
    """The environment's read limits (:meth:`ReadLimits.from_env`), read now, with at least the
    file size the receiver accepts (``storage.max_instance_mb``): a stored file is never
    refused for its size."""
    limits = ReadLimits.from_env()
    return replace(limits, max_file_bytes=max(limits.max_file_bytes, int(cfg.storage.max_instance_mb * 1e6)))


class Inference:
    """Runs the routed models on the images of jobs and hands each output to its artifacts.

    Args:
        cfg: the service config.
        catalog: the configured models.
        artifacts: stores each result's mask, overlay and heatmap.
    """

    def __init__(self, cfg: ServiceConfig, catalog: ModelCatalog, artifacts: Artifacts) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.artifacts = artifacts

    # -- instance jobs ---------------------------------------------------------------------
    def run_instances(self, session_factory: Any, jobs: list[Any]) -> list[Outcome]:  # session_factory: Database.read
        """Predict every routed model on the instances of ``jobs`` (batched per model).

        The decoded images held at once stay within one image budget
        (:attr:`~medsight.io.limits.ReadLimits.max_decoded_bytes`): a batch of big images is
        predicted in parts, so the batch size does not multiply the worker's memory.
        """
        limits = stored_limits(self.cfg)
        budget, held = limits.max_decoded_bytes, 0

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
                image = read_stored(inst.path, inst.sop_uid, limits=limits)
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
                       patient_id=inst.patient_id, received_at=inst.received_at, error=message, source=inst.source)

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
                        patient_id=inst.patient_id, received_at=inst.received_at, result=pred, source=inst.source)
            o.timings = {"queue_ms": round((t_claim - inst.received_at) * 1000, 2), "read_ms": round(read_ms, 2),
                         "inference_ms": round(infer_ms, 2)}
            try:
                self.artifacts.add(o, image, pred)
            except MedSightError as exc:
                out.append(self._error(inst, model_name, safe_error(exc)))
                continue
            self.artifacts.explain(o, image)
            out.append(o)
        return out

    # -- series jobs -----------------------------------------------------------------------
    def run_series(self, session_factory: Any, job: Any, router: Any) -> tuple[str, list[Outcome]]:
        """Run 3D models on a complete series; returns its outcome text and results."""
        from medsight.service.routing import InstanceFacts

        uid = job.payload["series_uid"]
        with session_factory() as s:
            series = s.get(Series, uid)
            if series is None:
                return "unknown series", []
            s.expunge(series)
            first = s.scalar(select(Instance).where(Instance.series_uid == uid).limit(1))
            folder = Path(first.path).parent if first is not None else None
            source = first.source if first is not None else None
        match = router.match(InstanceFacts(series.modality, series.body_part, series.description))
        if not match.series_models:
            if match.instance_models:
                return f"instances processed by {', '.join(match.instance_models)}", []
            missing = f" ({', '.join(match.missing_models)} not installed)" if match.missing_models else ""
            return f"no model routed{missing}", []
        outcomes = []
        image, read_error = None, None
        try:  # read once, whatever the number of models routed
            if folder is None:
                raise ImageReadError("no stored instance of this series")
            image = read_stored(folder, uid, limits=stored_limits(self.cfg), series=uid)
        except MedSightError as exc:
            read_error = safe_error(exc)
        for m in match.series_models:
            info = self.catalog.available[m]
            key = result_key(f"series:{uid}:{series.n_instances}", info.model_name, info.version)
            base = dict(key=key, model=m, info=info, study_uid=series.study_uid, series_uid=uid, sop_uid=None,
                        patient_id=series.patient_id, received_at=series.last_at, source=source)
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
                self.artifacts.add(o, image, pred)
                outcomes.append(o)
            except MedSightError as exc:
                outcomes.append(Outcome(status="error", error=safe_error(exc), **base))
        return f"processed by {', '.join(match.series_models)}", outcomes
