"""Lung nodule detection on CT: ``task: detection``.

CT (DICOM series, NIfTI, MetaImage) → checks (:func:`scan.check_ct`) → lung mask and crop →
isotropic network grid → 3D U-Net nodule probability by sliding window → candidates measured in
mm (:mod:`candidates`) → findings inside the lungs with a Lung-RADS size category → a
:class:`DetectionResult` at the model's operating threshold, chosen on the validation scans at
``operating_fp_per_scan``. Evaluation is LUNA16's FROC / CPM (:mod:`medsight.metrics.froc`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsight.config import DataConfig
from medsight.errors import DataError, MedSightError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.tasks.base import Task, register_task
from medsight.tasks.detection.config import DetectionRunConfig
from medsight.tasks.detection.result import DetectionResult, NoduleFinding
from medsight.tasks.results import Provenance, array_sha256

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup
    from medsight.models.manifest import DetectionInference
    from medsight.report import Section
    from medsight.tasks.detection.detect import Detected
    from medsight.tasks.detection.scan import PreparedScan

__all__ = ["DetectionTask"]

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"


def _settings(model: SavedModel) -> DetectionInference:
    det = model.spec.detection
    if det is None:
        raise DataError(f"model {model.name} is a detection model without a detection section in its manifest")
    return det


def _inference_settings(cfg: DetectionRunConfig) -> DetectionInference:
    from medsight.models.manifest import DetectionInference

    d = cfg.detection
    return DetectionInference(patch_size=list(d.infer_patch_size), overlap=d.overlap, hu_window=list(d.hu_window),
                              lung_margin_mm=d.lung_margin_mm, candidate_threshold=d.candidate_threshold,
                              size_threshold=d.size_threshold, max_findings=d.max_findings,
                              drop_outside_lungs=d.drop_outside_lungs, solid_hu=d.solid_hu, lung_rads=d.lung_rads,
                              precision=cfg.train.precision)


def operating_threshold(r: Any, fp_per_scan: float) -> float:
    """The lowest score threshold whose FROC point has at most ``fp_per_scan`` FPs per scan."""
    best = 1.0
    for fps, t in zip(r.curve_fps, r.curve_thresholds):
        if fps <= fp_per_scan and np.isfinite(t):
            best = min(best, float(t))
    return best  # not rounded: scores crowd near 1, and a threshold rounded up drops the findings at it


@register_task
class DetectionTask(Task):
    """Lung nodules in chest CT."""

    name = "detection"
    config_type = DetectionRunConfig
    result_type = DetectionResult
    default_split: str | None = "test"

    # -- one scan -----------------------------------------------------------------------------
    def prepare_image(self, model: SavedModel, image: Image) -> PreparedScan:
        from medsight.tasks.detection.scan import check_ct, prepare_scan

        check_ct(image, model=f"model {model.name}", modalities=model.spec.modalities)
        return prepare_scan(image, model.preprocessor, lung_margin_mm=_settings(model).lung_margin_mm)

    def detect(self, model: SavedModel, image: Image) -> tuple[list[Detected], PreparedScan, float]:
        """Every candidate of ``image`` (no threshold), its prepared scan and the seconds taken."""
        from medsight.tasks.detection.detect import detect

        t0 = time.perf_counter()
        scan = self.prepare_image(model, image)
        found, _ = detect(model.run, scan, _settings(model))
        return found, scan, time.perf_counter() - t0

    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        from medsight.tasks.detection.pictures import nodule_crop, overlay, slice_index

        threshold = float(model.spec.threshold)
        out = []
        for name, image in zip(self.input_names(images, inputs), images):
            found, scan, seconds = self.detect(model, image)
            kept = [d for d in found if d.score >= threshold]
            nodules = [NoduleFinding(lesion_id=str(i + 1), center_mm=d.center_mm, center_voxel=d.center_voxel,
                                     diameter_mm=d.diameter_mm, volume_ml=d.volume_ml, score=d.score, type=d.type,
                                     solid_diameter_mm=d.solid_diameter_mm, category=d.category, size_mm=d.size_mm,
                                     inside_lungs=d.inside_lungs, crop=nodule_crop(image, d))
                       for i, d in enumerate(kept)]
            spec = model.spec
            prov = Provenance(model=model.name, model_version=model.version, weights_sha256=spec.weights_sha256,
                              input_sha256=array_sha256(image.array), seconds=round(seconds, 3),
                              medsight_version=spec.versions.get("medsight"), series_uid=image.series_uid,
                              sop_uids=list(image.sop_uids))
            lungs = {"found": bool(scan.lungs.found), "volumes_ml": scan.lungs.volumes_ml, "reason": scan.lungs.reason}
            z = slice_index(image, kept[0].center_voxel) if kept else None
            files = image.meta.get("source_files") or []
            source = files[z] if z is not None and len(files) == image.shape[0] and files[z] else None
            out.append(DetectionResult(input=name, nodules=nodules, threshold=threshold, n_candidates=len(found),
                                       lungs=lungs, provenance=prov, overlay=overlay(image, kept), overlay_slice=z,
                                       overlay_source=source))
        return out

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model: SavedModel, data: str | DataConfig, *, split: str | None = "test",
                 n_boot: int = 1000, seed: int = 0, threshold: float | None = None,
                 findings_csv: str | Path | None = None, min_diameter_mm: float = 6.0, **_: Any) -> dict[str, Any]:
        """LUNA16 FROC of ``model`` on the scans of ``split`` (None/``all``: every scan).

        Returns two analyses, ``all nodules`` and ``nodules >= 6 mm`` (``min_diameter_mm``), each
        :meth:`FROCResult.to_dict` (sensitivity at 1/8..8 FPs per scan, CPM, bootstrap CIs over
        scans, the operating point at ``threshold``, default the model's), the headline numbers,
        per-scan findings and timing, and the scans that could not be read.

        Raises:
            DataError: unreadable data, no scan in the split, or none could be scored.
        """
        from medsight.data.splits import assign_splits
        from medsight.metrics.luna16_csv import Finding as FrocFinding
        from medsight.metrics.luna16_csv import write_findings
        from medsight.tasks.detection.data import open_detection_data
        from medsight.tasks.detection.training import froc_of

        own = isinstance(data, DataConfig)
        cfg = data if own else DataConfig(source=str(data))
        ds = open_detection_data(cfg.source, max_cases=getattr(cfg, "max_cases", None))
        if split not in (None, "all"):
            recorded = (model.spec.training.get("split") or {}).get(split)
            if own or recorded is None:
                assign_splits(ds.cases, split_file=cfg.split_file, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, seed=cfg.split_seed, source=ds.source)
            else:
                wanted = set(recorded)
                for c in ds.cases:
                    c.split = split if c.id in wanted else None
        cases = ds.split(split)
        if not cases:
            raise DataError(f"{ds.source}: no scan in split {split or 'all'}")
        threshold = float(model.spec.threshold if threshold is None else threshold)
        detections, truth, excluded, rows, skipped = {}, {}, {}, [], []
        for case in cases:
            try:
                found, _, seconds = self.detect(model, case.image())
            except MedSightError as exc:
                skipped.append({"input": case.id, "error": str(exc)})
                log.warning("skipped %s: %s", case.id, exc)
                continue
            detections[case.id] = found
            truth[case.id], excluded[case.id] = case.covariates["nodules"], case.covariates["excluded"]
            rows.append({"seriesuid": case.id, "image": case.path(), "seconds": round(seconds, 3),
                         "n_candidates": len(found), "n_findings": sum(d.score >= threshold for d in found),
                         "n_nodules": len(truth[case.id])})
        if not detections:
            raise DataError(f"{ds.source}: none of the {len(cases)} scan(s) could be read; first error: "
                            f"{skipped[0]['error'] if skipped else '?'}")
        analyses = {}
        for name, mind in (("all nodules", None), (f"nodules >= {min_diameter_mm:g} mm", min_diameter_mm)):
            try:
                analyses[name] = froc_of(detections, truth, excluded, min_diameter_mm=mind, threshold=threshold,
                                         n_boot=n_boot, seed=seed).to_dict()
            except DataError as exc:
                analyses[name] = {"error": str(exc)}
        if findings_csv is not None:
            write_findings(findings_csv, [FrocFinding(u, tuple(d.center_mm), float(d.score), float(d.diameter_mm))
                                          for u, ds_ in detections.items() for d in ds_])
        ev: dict[str, Any] = {"task": self.name, "model": model.name, "model_version": model.version,
                              "data": ds.source, "split": split or "all", "n": len(rows), "threshold": threshold,
                              "analyses": analyses, "scans": rows, "skipped": skipped,
                              "seconds_per_scan": round(float(np.mean([r["seconds"] for r in rows])), 3)}
        ev.update(self.headline(ev))
        return ev

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"n": evaluation.get("n")}
        for key, name in (("", "all nodules"), ("_6mm", next((k for k in evaluation.get("analyses", {})
                                                               if k != "all nodules"), None))):
            r = evaluation.get("analyses", {}).get(name) if name else None
            if not r or "cpm" not in r:
                continue
            out[f"cpm{key}"] = r["cpm"]
            if r.get("ci"):
                out[f"cpm{key}_ci95"] = r["ci"]["cpm"]
            curve = r.get("curve") or {}
            if curve:
                out[f"sensitivity_at_1fp{key}"] = round(float(np.interp(1.0, curve["fps"], curve["sensitivity"])), 4)
            if r.get("operating_point"):
                op = r["operating_point"]
                out[f"operating_sensitivity{key}"] = op.get("sensitivity")
                out[f"operating_fps_per_scan{key}"] = op.get("fps_per_scan")
        return out

    def evaluation_options(self, cfg: DetectionRunConfig, *, split: str, eval_dir: Path) -> dict[str, Any]:
        return {"seed": cfg.train.seed, "findings_csv": eval_dir / f"{split}_findings.csv"}

    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None) -> Section:
        from medsight.report.detection import detection_report_section

        results = {k: v for k, v in evaluation.get("analyses", {}).items() if "cpm" in v}
        prov = {"weights sha256": model.spec.weights_sha256} if model is not None else {}
        return detection_report_section(results, model=evaluation.get("model"),
                                        version=evaluation.get("model_version"), data=evaluation.get("data"),
                                        provenance=prov)

    def card_section(self, manifest: dict[str, Any]) -> Section:
        from medsight.report import Section

        return Section("detection_card.md.j2", folder=TEMPLATES, context={"m": manifest})

    # -- training: hooks of the run skeleton (engine/run.py) -----------------------------------
    def prepare(self, cfg: DetectionRunConfig, *, run_dir: Path) -> TrainingSetup:
        from medsight.tasks.detection.fit import prepare

        return prepare(self, cfg, run_dir=run_dir)

    def build_network(self, cfg: DetectionRunConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        from medsight.models.registry import create_model

        return create_model(cfg.model.name, spatial_dims=3, in_channels=1, num_classes=2, **cfg.model.params)

    def finish(self, cfg: DetectionRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[Any]) -> Finished:
        from medsight.tasks.detection.fit import finish

        return finish(self, cfg, prepared, networks, results)
