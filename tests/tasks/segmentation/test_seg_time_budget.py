"""``train.schedule_by: time``: the one-cycle schedule spans the wall-time budget, and training
stops when it is spent, whatever the number of epochs."""

from __future__ import annotations

import time

import pytest
import torch

from medsight.config import TrainConfig
from medsight.engine.trainer import Trainer, TrainingHooks
from medsight.errors import ConfigError


class _Hooks(TrainingHooks):
    def training_step(self, network, batch):
        return torch.nn.functional.mse_loss(network(batch[0]), batch[1])

    def validate(self, network):
        return {"val_score": 0.0}


def _data(n=64):
    x = torch.randn(n, 4)
    return torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def test_time_budget_ends_training_and_the_schedule_together():
    cfg = TrainConfig(epochs=100_000, batch_size=8, lr=0.01, schedule="onecycle", schedule_by="time",
                      max_minutes=0.03, monitor="val_score", threads=1)
    t = time.perf_counter()
    result = Trainer(torch.nn.Linear(4, 1), _Hooks(), cfg).fit(_data())
    spent = time.perf_counter() - t
    assert 1.8 <= spent < 6.0  # 1.8 s budget, plus at most one step and one validation
    assert result.stopped_early and len(result.history) < 100_000
    lrs = [h["lr"] for h in result.history]
    assert max(lrs) > 0.5 * cfg.lr  # the warm-up reached the peak ...
    assert lrs[-1] < 0.01 * cfg.lr  # ... and the decay ended at the budget


def test_time_schedule_needs_a_budget():
    cfg = TrainConfig(epochs=2, batch_size=8, schedule="onecycle", schedule_by="time", monitor="val_score")
    with pytest.raises(ConfigError, match="schedule_by: time needs train.max_minutes"):
        Trainer(torch.nn.Linear(4, 1), _Hooks(), cfg).fit(_data())
