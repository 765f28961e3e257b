"""Training a segmentation model from a config: data → fingerprint → plan → trainer → model.

The run folder gets what a classification run gets: ``config.yaml``, ``metrics.csv``,
checkpoints (resumable), ``learning_curves.png``, ``model/`` (manifest, safetensors weights,
model card), ``evaluation/`` (``val.json``, ``test.json``, per-case CSVs, ``report.html``) and
``summary.json``; plus ``plan.json`` (the fingerprint and the choices made from it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.config import Config, SegmentationRunConfig, save_config
from medsight.errors import ConfigError, DataError
from medsight.models.saved import SavedModel
from medsight.tasks.base import Task

__all__ = ["fit_segmentation", "train_settings", "reproduce_command"]

log = logging.getLogger(__name__)


def train_settings(cfg: Config, spatial_dims: int) -> Any:
    """The training settings with segmentation's batch size where the config left it unset:
    2 (3D) or 12 (2D). (The monitor defaults to ``val_dice`` in :class:`SegmentationTrainConfig`.)"""
    if "batch_size" in cfg.train.model_fields_set:
        return cfg.train
    return cfg.train.model_copy(update={"batch_size": 2 if spatial_dims == 3 else 12})


def reproduce_command(cfg: Config) -> str:
    """The command that retrains ``cfg``: the config file it was loaded from with its overrides
    (``configs/<name>.yaml`` for the shipped models), else a placeholder for the run's saved
    ``config.yaml``. Nothing is looked up in the working directory."""
    return cfg.train_command(f"runs/{cfg.name}") or (
        "medsight train CONFIG.yaml --out RUN   # CONFIG.yaml: this run's config.yaml")


def _headline(ev: dict[str, Any]) -> dict[str, Any]:
    return {"n": ev["n"], "mean_dice": round(float(np.mean(list(ev["dice"].values()))), 4), "dice": ev["dice"],
            "hd95_mm": ev["hd95_mm"], "surface_dice": ev["surface_dice"],
            "volume_error_ml": ev["volume_error_ml"], "summary": ev["summary"]}


def fit_segmentation(task: Task, cfg: Config, *, run_dir: Path, observers: Sequence[Any] = (),
                     resume: bool = False) -> SavedModel:
    """Train, evaluate on the validation and test splits, and save a segmentation model.

    Raises:
        ConfigError: the config is not a segmentation config, or names a non-segmentation model.
        DataError: no readable training case.
    """
    from medsight.data.fingerprint import collect_fingerprint, plan_segmentation
    from medsight.data.segmentation import check_cases, iter_cases, open_segmentation_data, read_case
    from medsight.data.streaming import PreparedCases
    from medsight.engine.trainer import Trainer, seed_everything
    from medsight.models.registry import create_model, get_spec
    from medsight.report.plots import plot_learning_curves
    from medsight.tasks.segmentation.preprocess import SegPreprocessor, label_lookup
    from medsight.tasks.segmentation.training import PatchDataset, SegmentationHooks
    from medsight.transforms.augment import build_augmentation

    t_start = time.perf_counter()
    if not isinstance(cfg, SegmentationRunConfig):
        raise ConfigError(f"the segmentation task needs task: segmentation; the config says {cfg.task!r}")
    if "segmentation" not in get_spec(cfg.model.name).tasks:
        raise ConfigError(f"model {cfg.model.name!r} is not a segmentation model; choose unet, dynunet or segresnet")
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seg = cfg.segmentation

    # data: every case is read and checked once; bad cases are listed, not fatal. With
    # data.cache memory the cases stay in memory; with disk or none only their paths do
    data = open_segmentation_data(cfg.data)
    monitors = ["val_dice", *(f"val_dice_{data.labels[v]}" for v in sorted(data.labels)[1:])]
    if cfg.train.monitor not in monitors:
        raise ConfigError(f"train.monitor must be one of {', '.join(monitors)} (this data's labels); "
                          f"got {cfg.train.monitor!r}")
    keep = cfg.data.cache == "memory"
    train_cases, skipped_train = check_cases(data.split("train"), data.labels, keep=keep)
    val_cases, skipped_val = check_cases(data.split("val"), data.labels, keep=keep)
    if not train_cases:
        raise DataError(f"{cfg.data.source}: no readable training case"
                        + (f"; first error: {skipped_train[0]['error']}" if skipped_train else ""))
    first = train_cases[0].image()
    dims = first.n_spatial
    modality = (cfg.modalities or [data.modality if data.modality != "OT" else first.modality])[0]

    # fingerprint (training cases only) → plan
    fp = collect_fingerprint(((im, mk.array) for im, mk in iter_cases(train_cases, data.labels)), modality=modality,
                             seed=cfg.train.seed)
    plan = plan_segmentation(fp, seg, model_name=cfg.model.name, model_params=dict(cfg.model.params))
    plan["fingerprint"] = fp.to_dict()
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    log.info("plan: spacing %s mm, patch %s, normalisation %s", plan["target_spacing"], plan["patch_size"],
             [n["scheme"] for n in plan["normalization"]])
    pre_spec = {"target_spacing": plan["target_spacing"], "normalization": plan["normalization"],
                "channels": fp.channels}
    pre = SegPreprocessor(pre_spec)
    label_values = sorted(data.labels)
    names = [data.labels[v] for v in label_values]
    lut = label_lookup(label_values)

    def prepare(case: Any) -> tuple[np.ndarray, np.ndarray]:
        im, mk = read_case(case, data.labels)
        return pre.image(im).numpy(), pre.mask(lut[mk.array[0]], im)

    cache_spec = {"preprocessing": pre_spec, "label_values": label_values, "step": "segmentation-train"}
    prepared = {s: PreparedCases(c, prepare, spec=cache_spec, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
                for s, c in (("train", train_cases), ("val", val_cases))}
    x_tr, y_tr = prepared["train"].images, prepared["train"].masks
    x_va, y_va = prepared["val"].images, prepared["val"].masks
    patch = plan["patch_size"]

    # network
    params = dict(plan["network"]["params"])
    if seg.deep_supervision:
        if cfg.model.name != "dynunet":
            raise ConfigError("segmentation.deep_supervision needs model dynunet")
        params.update(deep_supervision=True, deep_supr_num=max(1, min(2, len(params["strides"]) - 2)))
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    net = create_model(cfg.model.name, spatial_dims=dims, in_channels=fp.channels, num_classes=len(label_values),
                       **params)
    if dims == 3:
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    tcfg = train_settings(cfg, dims)
    cfg = cfg.model_copy(update={"train": tcfg})
    save_config(cfg, run_dir / "config.yaml")  # the settings really used, so the file retrains the same
    aug = build_augmentation(cfg.augmentation, spatial_dims=dims, spatial_size=patch, keys=("image", "label"),
                             label_keys=("label",), seed=cfg.train.seed)
    mirror = list(range(dims)) if seg.mirror_axes == "all" else [int(a) for a in seg.mirror_axes]
    if any(a < 0 or a >= dims for a in mirror):
        raise ConfigError(f"segmentation.mirror_axes must be spatial axes 0..{dims - 1}; got {seg.mirror_axes}")
    dataset = PatchDataset(x_tr, y_tr, patch_size=patch, foreground_ratio=seg.foreground_ratio,
                           samples_per_volume=seg.samples_per_volume, augmentation=aug, mirror_axes=mirror,
                           seed=cfg.train.seed)
    # flip TTA mirrors along the axes the network learnt mirrored (all axes if none: only sensible
    # for data whose orientation varies)
    tta = (mirror or True) if seg.tta_flips else False
    if seg.tta_flips and not mirror:
        log.warning("flip TTA on a network not trained with mirroring (segmentation.mirror_axes) usually hurts: "
                    "it sees mirrored anatomy it never learnt")
    inference = {"patch_size": patch, "overlap": seg.sw_overlap, "sw_batch_size": seg.sw_batch_size,
                 "tta_flips": tta, "mirror_axes": mirror, "precision": tcfg.precision,
                 "largest_component": list(range(1, len(label_values))) if seg.largest_component else [],
                 "max_voxels": seg.max_voxels, "surface_tolerance_mm": seg.surface_tolerance_mm}
    hooks = SegmentationHooks(n_classes=len(label_values), val_images=x_va, val_masks=y_va, names=names,
                              patch_size=patch, overlap=seg.sw_overlap, sw_batch_size=seg.sw_batch_size,
                              precision=tcfg.precision, deep_supervision=seg.deep_supervision)
    log.info("training %s on %d cases (%d validation), %d patches per epoch", cfg.model.name, len(x_tr), len(x_va),
             len(dataset))
    result = Trainer(net, hooks, tcfg, run_dir=run_dir, observers=list(observers)).fit(dataset, resume=resume)
    net.eval()  # a deep-supervised DynUNet returns its main head only in eval mode
    train_seconds = time.perf_counter() - t_start

    split_ids = {s: [c.id for c in data.split(s)] for s in ("train", "val", "test")}
    manifest: dict[str, Any] = {
        "name": cfg.name, "version": "1.0.0", "task": "segmentation", "description": cfg.description,
        "architecture": {"name": cfg.model.name, "params": params, "spatial_dims": dims, "in_channels": fp.channels,
                         "num_classes": len(label_values)},
        "preprocessing": pre_spec, "inference": inference, "modalities": cfg.modalities,
        "labels": names, "label_values": label_values, "augmentation": cfg.augmentation,
        "plan": {k: plan[k] for k in ("target_spacing", "patch_size", "median_shape", "rules", "fingerprint")},
        "training": {
            "data": data.fingerprint, "split_file": cfg.data.split_file, "split": split_ids,
            "config": cfg.model_dump(mode="json"), "best_epoch": result.best_epoch,
            "best_val_dice": round(result.best_metric, 6), "epochs_run": len(result.history),
            "stopped_early": result.stopped_early, "wall_time_s": round(train_seconds, 1),
            "trainer_seconds": round(result.seconds, 1),
            "skipped_inputs": {"train": skipped_train[:50], "val": skipped_val[:50]},
        },
    }
    model = SavedModel(network=net, manifest=manifest)
    evaluations: dict[str, dict[str, Any]] = {}
    eval_dir = run_dir / "evaluation"
    for split in ("val", "test"):
        if data.split(split):
            evaluations[split] = task.evaluate(model, cfg.data, split=split, csv_path=eval_dir / f"{split}_cases.csv")
    manifest["metrics"] = {k: _headline(v) for k, v in evaluations.items()}
    manifest["training"]["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    model.card = task.model_card(manifest, reproduce=reproduce_command(cfg))
    model.save(run_dir / "model")
    for split, ev in evaluations.items():
        (eval_dir / f"{split}.json").write_text(json.dumps(ev, indent=1))
    report_split = "test" if "test" in evaluations else ("val" if "val" in evaluations else None)
    if report_split:
        task.write_report(evaluations[report_split], eval_dir / "report.html", model=model)
    if result.history:
        plot_learning_curves(result.history, run_dir / "learning_curves.png", monitor=tcfg.monitor)
    (run_dir / "summary.json").write_text(json.dumps({
        "model": str(run_dir / "model"), "train_seconds": manifest["training"]["wall_time_s"],
        "trainer_seconds": manifest["training"]["trainer_seconds"], "best_epoch": result.best_epoch,
        "metrics": {k: {m: v[m] for m in ("n", "dice", "hd95_mm")} for k, v in manifest["metrics"].items()}},
        indent=1))
    return model
