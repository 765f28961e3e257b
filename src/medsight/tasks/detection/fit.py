"""The detection task's training hooks for the run skeleton: read and prepare the scans,
choose the operating threshold on the validation scans, and build the saved model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsight.errors import DataError, MedSightError
from medsight.models.saved import SavedModel
from medsight.tasks.detection.config import DetectionRunConfig

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup
    from medsight.models.manifest import DetectionInference

log = logging.getLogger(__name__)


def inference_settings(cfg: DetectionRunConfig) -> DetectionInference:
    from medsight.models.manifest import DetectionInference

    d = cfg.detection
    return DetectionInference(patch_size=list(d.infer_patch_size), overlap=d.overlap, hu_window=list(d.hu_window),
                              lung_margin_mm=d.lung_margin_mm, candidate_threshold=d.candidate_threshold,
                              size_threshold=d.size_threshold, measure=d.measure,
                              grow_mm=d.grow_mm, max_findings=d.max_findings,
                              drop_outside_lungs=d.drop_outside_lungs, solid_hu=d.solid_hu, lung_rads=d.lung_rads,
                              precision=cfg.train.precision)


def operating_threshold(curve_fps: Any, curve_thresholds: Any, fp_per_scan: float) -> float:
    """The lowest score threshold whose FROC point has at most ``fp_per_scan`` FPs per scan (a
    FROC result's curve, or its ``to_dict()`` curve, whose infinite thresholds are None)."""
    best = 1.0
    for fps, t in zip(curve_fps, curve_thresholds):
        if fps <= fp_per_scan and t is not None and np.isfinite(t):
            best = min(best, float(t))
    return best  # not rounded: scores crowd near 1, and a threshold rounded up drops the findings at it


def threshold_rule(fp_per_scan: float, n_scans: int) -> str:
    """The manifest's ``threshold_rule`` for :func:`operating_threshold` on ``n_scans`` validation scans."""
    return f"lowest score at <= {fp_per_scan:g} false positives per scan on the {n_scans} validation scans"


def _prepare_one(case: Any, pre_spec: dict[str, Any], modalities: Any, margin_mm: float,
                 as_train: bool, ignore_radius_mm: float) -> tuple[str, Any, str | None]:
    """One scan read, checked and prepared (a worker process runs this): a ``TrainScan`` (training
    scans: the network grid in float16 and the targets, nothing else) or the ``PreparedScan``
    (validation: the lung mask is needed to drop findings outside it), or the error."""
    from medsight.tasks.detection.scan import check_ct, prepare_scan
    from medsight.tasks.detection.training import TrainScan
    from medsight.transforms.preprocess import SpacingPreprocessor

    try:
        image = case.image()
        check_ct(image, model="the detector", modalities=modalities)
        scan = prepare_scan(image, SpacingPreprocessor(pre_spec), lung_margin_mm=margin_mm)
    except MedSightError as exc:
        return case.id, None, str(exc)
    if as_train:
        return case.id, TrainScan.of(case.id, scan, case.covariates["nodules"], case.covariates["excluded"],
                                     ignore_radius_mm=ignore_radius_mm,
                                     negatives=case.covariates.get("negatives", ())), None
    return case.id, scan, None


def _prepare_cases(cases: list[Any], pre_spec: dict[str, Any], cfg: DetectionRunConfig, what: str, *,
                   as_train: bool) -> tuple[list, list]:
    """Every case of ``cases`` prepared (:func:`_prepare_one`), in ``train.threads`` worker
    processes (the lung mask is single-threaded SciPy: two cores prepare twice as fast)."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    workers = max(1, min(cfg.train.threads or os.cpu_count() or 1, len(cases)))
    args = [(c, pre_spec, cfg.modalities, cfg.detection.lung_margin_mm, as_train, cfg.detection.ignore_radius_mm)
            for c in cases]
    if workers == 1:
        done = [_prepare_one(*a) for a in args]
    else:  # spawn: a forked child of a process that has run torch's thread pool can hang
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_prepare_one, *zip(*args), chunksize=4))
    out, skipped = [], []
    for case, (uid, prepared, error) in zip(cases, done):
        if error is not None:
            skipped.append({"input": uid, "error": error})
            log.warning("skipped %s scan %s: %s", what, uid, error)
        elif as_train:
            out.append(prepared)
        else:
            out.append((uid, prepared, case.covariates["nodules"], case.covariates["excluded"]))
    log.info("prepared %d %s scans (%d skipped) in %d process(es)", len(out), what, len(skipped), workers)
    return out, skipped


def prepare(task: Any, cfg: DetectionRunConfig, *, run_dir: Path) -> TrainingSetup:
    from medsight.data.splits import assign_splits, split_ids
    from medsight.engine.run import TrainingSetup
    from medsight.tasks.detection.data import open_config_data
    from medsight.tasks.detection.scan import preprocessing_spec
    from medsight.tasks.detection.training import DetectionHooks, NodulePatches

    d = cfg.detection
    data = open_config_data(cfg.data)
    how = assign_splits(data.cases, split_file=cfg.data.split_file, val_fraction=cfg.data.val_fraction,
                        test_fraction=cfg.data.test_fraction, seed=cfg.data.split_seed, source=data.source)
    pre_spec = preprocessing_spec(d.spacing_mm, d.hu_window)
    scans, skipped_train = _prepare_cases(data.split("train"), pre_spec, cfg, "training", as_train=True)
    val, skipped_val = _prepare_cases(data.split("val"), pre_spec, cfg, "validation", as_train=False)
    if not scans:
        raise DataError(f"{data.source}: no training scan could be read")
    if not any(len(s.nodules) for s in scans):
        raise DataError(f"{data.source}: the training scans hold no annotated nodule")
    dataset = NodulePatches(scans, patch_size=d.patch_size, p_nodule=d.p_nodule, p_excluded=d.p_excluded,
                            jitter=d.jitter_voxels, p_slab=d.p_slab, seed=cfg.train.seed,
                            length=(cfg.train.steps_per_epoch or 100) * cfg.train.batch_size,
                            ref_radius=d.weight_ref_mm / 2 / d.spacing_mm, max_weight=d.max_voxel_weight,
                            nodule_sampling=d.nodule_sampling, p_hard=d.p_hard, p_negative=d.p_negative)
    settings = inference_settings(cfg)
    hooks = DetectionHooks(val_scans=val[: d.val_cases], settings=settings, label_smoothing=d.label_smoothing,
                           patches=dataset, mine_scans=d.mine_scans if d.p_hard > 0 else 0,
                           mine_threshold=d.mine_threshold, max_hard=d.max_hard)
    log.info("training %s on %d scans (%d nodules), validating on %d of %d", cfg.model.name, len(scans),
             sum(len(s.nodules) for s in scans), min(len(val), d.val_cases), len(val))
    return TrainingSetup(train=dataset, hooks=hooks, config=cfg,
                         splits=[s for s in ("val", "test") if data.split(s)],
                         state={"data": data, "pre_spec": pre_spec, "settings": settings, "val": val,
                                "split": split_ids(data.cases), "split_how": how,
                                "skipped": {"train": skipped_train[:50], "val": skipped_val[:50]}})


def finish(task: Any, cfg: DetectionRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
           results: list[Any]) -> Finished:
    from medsight.engine.run import Finished
    from medsight.tasks.detection.detect import detect
    from medsight.tasks.detection.training import froc_of

    st, net, result = prepared.state, networks[0], results[0]
    net.eval()
    settings = st["settings"]
    threshold, chosen = 0.5, "default (no validation scan with a nodule)"
    if st["val"]:
        detections = {uid: detect(net, scan, settings)[0] for uid, scan, _, _ in st["val"]}
        truth = {uid: n for uid, _, n, _ in st["val"]}
        excluded = {uid: e for uid, _, _, e in st["val"]}
        try:
            r = froc_of(detections, truth, excluded)
            threshold = operating_threshold(r.curve_fps, r.curve_thresholds, cfg.detection.operating_fp_per_scan)
            chosen = threshold_rule(cfg.detection.operating_fp_per_scan, len(detections))
        except DataError as exc:
            log.warning("operating threshold left at 0.5: %s", exc)
    data = st["data"]
    manifest: dict[str, Any] = {
        "name": cfg.name, "version": cfg.version, "task": "detection", "description": cfg.description,
        "architecture": {"name": cfg.model.name, "params": dict(cfg.model.params), "spatial_dims": 3,
                         "in_channels": 1, "num_classes": 2},
        "preprocessing": st["pre_spec"], "detection": settings.to_dict() | {"patch_size": settings.patch_size},
        "modalities": cfg.modalities, "labels": ["background", "nodule"],
        "threshold": threshold, "threshold_rule": chosen,
        "training": {"data": data.source, "scans": data.summary(), "split": st["split"], "split_how": st["split_how"],
                     "n_nodules": {s: sum(len(c.covariates["nodules"]) for c in data.split(s))
                                   for s in ("train", "val", "test")},
                     "config": cfg.model_dump(mode="json"), "best_epoch": result.best_epoch,
                     "best_val_cpm": round(result.best_metric, 6), "epochs_run": len(result.history),
                     "stopped_early": result.stopped_early, "trainer_seconds": round(result.seconds, 1),
                     "skipped_inputs": st["skipped"]},
    }
    return Finished(model=SavedModel(network=net, manifest=manifest),
                    summary={"threshold": threshold, "best_epoch": result.best_epoch})
