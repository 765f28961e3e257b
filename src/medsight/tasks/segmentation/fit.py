"""Segmentation's hooks of the run skeleton (:func:`medsight.engine.run.train_run`):
data → fingerprint → plan (``prepare``) → network (``build_network``) → model (``finish``).

The run folder gets what every run gets (``config.yaml``, ``metrics.csv``, checkpoints,
``learning_curves.png``, ``model/``, ``evaluation/`` with ``val.json``, ``test.json`` and
``report.html``, ``summary.json``), plus ``plan.json`` (the fingerprint and the choices made
from it) and per-case CSVs in ``evaluation/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsight.config import Config, SegmentationRunConfig
from medsight.errors import ConfigError, DataError
from medsight.models.saved import SavedModel

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup

__all__ = ["prepare", "build_network", "finish", "headline", "train_settings"]

log = logging.getLogger(__name__)


def train_settings(cfg: Config, spatial_dims: int) -> Any:
    """The training settings with segmentation's batch size where the config left it unset:
    2 (3D) or 12 (2D). (The monitor defaults to ``val_dice`` in :class:`SegmentationTrainConfig`.)"""
    if "batch_size" in cfg.train.model_fields_set:
        return cfg.train
    return cfg.train.model_copy(update={"batch_size": 2 if spatial_dims == 3 else 12})


def headline(ev: dict[str, Any]) -> dict[str, Any]:
    return {"n": ev["n"], "mean_dice": round(float(np.mean(list(ev["dice"].values()))), 4), "dice": ev["dice"],
            "hd95_mm": ev["hd95_mm"], "surface_dice": ev["surface_dice"],
            "volume_error_ml": ev["volume_error_ml"], "summary": ev["summary"]}


def prepare(cfg: SegmentationRunConfig, *, run_dir: Path) -> TrainingSetup:
    """Read and check every case (bad cases are listed, not fatal), fingerprint the training
    cases, plan spacing, patch and normalisation (``plan.json``), and build the patch dataset
    and the validation hooks.

    Raises:
        ConfigError: a non-segmentation model, a monitor that is not one of the data's labels,
            deep supervision without dynunet, bad mirror axes.
        DataError: no readable training case.
    """
    from medsight.data.fingerprint import collect_fingerprint, plan_segmentation
    from medsight.data.segmentation import check_cases, iter_cases, open_segmentation_data, read_case
    from medsight.data.streaming import PreparedCases
    from medsight.engine.run import TrainingSetup
    from medsight.models.registry import get_spec
    from medsight.tasks.segmentation.preprocess import SegPreprocessor, label_lookup
    from medsight.tasks.segmentation.training import PatchDataset, SegmentationHooks
    from medsight.transforms.augment import build_augmentation

    if "segmentation" not in get_spec(cfg.model.name).tasks:
        raise ConfigError(f"model {cfg.model.name!r} is not a segmentation model; choose unet, dynunet or segresnet")
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

    def to_grid(case: Any) -> tuple[np.ndarray, np.ndarray]:
        im, mk = read_case(case, data.labels)
        return pre.image(im).numpy(), pre.mask(lut[mk.array[0]], im)

    cache_spec = {"preprocessing": pre_spec, "label_values": label_values, "step": "segmentation-train"}
    prepared = {s: PreparedCases(c, to_grid, spec=cache_spec, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
                for s, c in (("train", train_cases), ("val", val_cases))}
    x_tr, y_tr = prepared["train"].images, prepared["train"].masks
    x_va, y_va = prepared["val"].images, prepared["val"].masks
    patch = plan["patch_size"]

    params = dict(plan["network"]["params"])
    if seg.deep_supervision:
        if cfg.model.name != "dynunet":
            raise ConfigError("segmentation.deep_supervision needs model dynunet")
        params.update(deep_supervision=True, deep_supr_num=max(1, min(2, len(params["strides"]) - 2)))
    tcfg = train_settings(cfg, dims)
    cfg = cfg.model_copy(update={"train": tcfg})
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
    return TrainingSetup(train=dataset, hooks=hooks, config=cfg, splits=[s for s in ("val", "test") if data.split(s)],
                    state={"data": data, "dims": dims, "channels": fp.channels, "params": params, "plan": plan,
                           "pre_spec": pre_spec, "inference": inference, "label_values": label_values,
                           "names": names, "skipped": {"train": skipped_train[:50], "val": skipped_val[:50]}})


def build_network(cfg: SegmentationRunConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
    from medsight.models.registry import create_model

    st = prepared.state
    net = create_model(cfg.model.name, spatial_dims=st["dims"], in_channels=st["channels"],
                       num_classes=len(st["label_values"]), **st["params"])
    if st["dims"] == 3:
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    return net


def finish(cfg: SegmentationRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
           results: list[Any]) -> Finished:
    from medsight.engine.run import Finished

    st, net, result = prepared.state, networks[0], results[0]
    net.eval()  # a deep-supervised DynUNet returns its main head only in eval mode
    data, plan = st["data"], st["plan"]
    split_ids = {s: [c.id for c in data.split(s)] for s in ("train", "val", "test")}
    manifest: dict[str, Any] = {
        "name": cfg.name, "version": cfg.version, "task": "segmentation", "description": cfg.description,
        "architecture": {"name": cfg.model.name, "params": st["params"], "spatial_dims": st["dims"],
                         "in_channels": st["channels"], "num_classes": len(st["label_values"])},
        "preprocessing": st["pre_spec"], "inference": st["inference"], "modalities": cfg.modalities,
        "labels": st["names"], "label_values": st["label_values"], "augmentation": cfg.augmentation,
        "plan": {k: plan[k] for k in ("target_spacing", "patch_size", "median_shape", "rules", "fingerprint")},
        "training": {
            "data": data.fingerprint, "split_file": cfg.data.split_file, "split": split_ids,
            "config": cfg.model_dump(mode="json"), "best_epoch": result.best_epoch,
            "best_val_dice": round(result.best_metric, 6), "epochs_run": len(result.history),
            "stopped_early": result.stopped_early, "trainer_seconds": round(result.seconds, 1),
            "skipped_inputs": st["skipped"],
        },
    }
    return Finished(model=SavedModel(network=net, manifest=manifest), summary={"best_epoch": result.best_epoch})
