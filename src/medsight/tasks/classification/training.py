"""Training pieces of classification: the trainer's hooks, the loss, and checks on the network.

The run itself is the engine's (:func:`medsight.engine.run.train_run`); the task's
``prepare`` / ``build_network`` / ``finish`` (``task.py``) use these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from medsight.config import ClassificationRunConfig
from medsight.engine.trainer import TrainingHooks
from medsight.errors import ConfigError, DataError

__all__ = ["ClassificationHooks", "build_loss", "round_to_float16", "check_fits", "headline"]


class ClassificationHooks(TrainingHooks):
    """The trainer's view of classification: the loss of a batch, validation AUC/accuracy/loss.

    ``probabilities(network, x, multilabel)`` gives the class probabilities of validation images.
    """

    def __init__(self, loss_fn: torch.nn.Module, x_val: torch.Tensor, y_val: np.ndarray, multilabel: bool,
                 pos: int | None, probabilities: Callable[[torch.nn.Module, torch.Tensor, bool], np.ndarray]) -> None:
        self.loss_fn, self.x_val, self.y_val, self.multilabel, self.pos = loss_fn, x_val, y_val, multilabel, pos
        self.probabilities = probabilities

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(outputs, targets.float() if self.multilabel else targets.long())

    def training_step(self, network: torch.nn.Module, batch: Any) -> torch.Tensor:
        return self.loss(network(batch[0]), batch[1])

    def validate(self, network: torch.nn.Module) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        p = self.probabilities(network, self.x_val, self.multilabel)
        y = self.y_val
        eps = 1e-7
        if self.multilabel:
            loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
            aucs = [roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
            return {"val_loss": loss, "val_auc": float(np.mean(aucs)) if aucs else 0.0,
                    "val_accuracy": float(np.mean((p >= 0.5) == (y > 0.5)))}
        loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + eps)))
        if self.pos is not None:
            auc = roc_auc_score(y == self.pos, p[:, self.pos]) if 0 < (y == self.pos).sum() < len(y) else 0.0
        else:
            present = np.unique(y)
            auc = (roc_auc_score(y, p, multi_class="ovr", labels=list(range(p.shape[1])))
                   if len(present) == p.shape[1] else 0.0)
        return {"val_loss": loss, "val_auc": float(auc), "val_accuracy": float(np.mean(p.argmax(1) == y))}


def build_loss(cfg: ClassificationRunConfig, y: np.ndarray, n_classes: int, multilabel: bool) -> torch.nn.Module:
    """Cross-entropy (balanced class weights, label smoothing) or, multi-label, BCE with positive weights."""
    if multilabel:
        pos = y.sum(0)
        weight = torch.tensor((len(y) - pos) / np.clip(pos, 1, None), dtype=torch.float32)
        return torch.nn.BCEWithLogitsLoss(pos_weight=weight if cfg.train.class_weights == "balanced" else None)
    weight = None
    if cfg.train.class_weights == "balanced":
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        if np.any(counts == 0):
            missing = [i for i, c in enumerate(counts) if c == 0]
            raise DataError(f"class(es) {missing} have no training images")
        weight = torch.tensor(len(y) / (n_classes * counts), dtype=torch.float32)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.train.label_smoothing)


def round_to_float16(network: torch.nn.Module) -> None:
    """Round floating-point weights through float16 in place (they stay float32 tensors)."""
    with torch.no_grad():
        for t in network.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def check_fits(net: torch.nn.Module, name: str, channels: int, size: Sequence[int]) -> None:
    """Run one dummy batch so that an input too small for the network is a config error, not a crash."""
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(2, channels, *size))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"model {name!r} cannot take {'x'.join(map(str, size))} inputs ({first}); "
                          "use a larger preprocessing.spatial_size or a model for small images (resnet-small)"
                          ) from None
    finally:
        net.train()


def headline(ev: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "auc", "auc_ci95", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "threshold", "ece",
            "ece_uncalibrated", "refer_rate")
    return {k: ev[k] for k in keys if k in ev}
