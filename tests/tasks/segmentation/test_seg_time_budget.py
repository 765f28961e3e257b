"""``train.schedule_by: time``: the one-cycle schedule spans the wall-time budget, and training
stops when it is spent, whatever the number of epochs."""

from __future__ import annotations

import math
import time

import pytest
import torch

from medsight.config import TrainConfig
from medsight.engine.trainer import Trainer, TrainingHooks
from medsight.errors import ConfigError


class _Clock:
    """A stand-in for the trainer's clock: time passes only when a training step computes its loss
    (``step_s`` per step), so the budget is spent after a known number of steps, however busy the
    machine is."""

    def __init__(self, step_s: float) -> None:
        self.now, self.step_s = 1000.0, step_s

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name):  # everything else the trainer asks of ``time``
        return getattr(time, name)


class _Hooks(TrainingHooks):
    def __init__(self, clock: _Clock | None = None) -> None:
        self.clock, self.steps = clock, 0

    def training_step(self, network, batch):
        self.steps += 1
        if self.clock is not None:
            self.clock.now += self.clock.step_s
        return torch.nn.functional.mse_loss(network(batch[0]), batch[1])

    def validate(self, network):
        return {"val_score": 0.0}


def _data(n=64):
    x = torch.randn(n, 4)
    return torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def test_time_budget_ends_training_and_the_schedule_together(monkeypatch):
    from medsight.engine import trainer

    clock = _Clock(step_s=0.125)  # a power of two: the sums of steps are exact
    monkeypatch.setattr(trainer, "time", clock)
    cfg = TrainConfig(epochs=100_000, batch_size=8, lr=0.01, schedule="onecycle", schedule_by="time",
                      max_minutes=0.03, monitor="val_score", threads=1)
    hooks = _Hooks(clock)
    result = Trainer(torch.nn.Linear(4, 1), hooks, cfg).fit(_data(8))  # one step per epoch
    budget_s = cfg.max_minutes * 60
    # training ends at the first step that spends the budget: not before, and not one step later
    assert hooks.steps == math.ceil(budget_s / clock.step_s) == len(result.history)
    assert result.stopped_early
    lrs = [h["lr"] for h in result.history]
    peak = lrs.index(max(lrs))
    assert max(lrs) > 0.9 * cfg.lr and 0 < peak < len(lrs) // 2  # the warm-up reached the peak early ...
    assert lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    assert lrs[-1] < 0.01 * cfg.lr  # ... and the decay ended with the budget


def test_time_schedule_needs_a_budget():
    cfg = TrainConfig(epochs=2, batch_size=8, schedule="onecycle", schedule_by="time", monitor="val_score")
    with pytest.raises(ConfigError, match="schedule_by: time needs train.max_minutes"):
        Trainer(torch.nn.Linear(4, 1), _Hooks(), cfg).fit(_data())


def test_more_steps_per_epoch_than_one_pass_is_said_not_silently_cut(caplog):
    """An epoch is one pass over the data at most: a larger ``steps_per_epoch`` is logged, with the
    number of steps an epoch really takes."""
    cfg = TrainConfig(epochs=1, batch_size=8, steps_per_epoch=20, monitor="val_score", threads=1)
    hooks = _Hooks()
    with caplog.at_level("WARNING", logger="medsight.engine.trainer"):
        Trainer(torch.nn.Linear(4, 1), hooks, cfg).fit(_data(64))
    assert hooks.steps == 8
    (msg,) = [r.getMessage() for r in caplog.records if "steps_per_epoch" in r.getMessage()]
    assert "is 20" in msg and "64 training samples" in msg and "(8 steps)" in msg
