"""The training loop, shared by every task.

The trainer knows nothing task-specific: a task hands it :class:`TrainingHooks` (a training
step that returns the loss of a batch, a validation function returning named metrics, and
optionally a collate function). The trainer
runs epochs, validates after each, keeps the best weights by the monitored metric, stops
early, writes a metrics log and a resumable state, and reports progress to observers (the
CLI's progress bar is one).
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from medsight.config import TrainConfig
from medsight.engine.distributed import World, world
from medsight.engine.state import load_training_state, save_training_state
from medsight.errors import ConfigError, TrainingError
from medsight.models.weights import save_weights

__all__ = ["Trainer", "TrainResult", "TrainingObserver", "TrainingHooks", "seed_everything"]

log = logging.getLogger(__name__)


class TrainingHooks:
    """What the trainer needs from a task: one training step, validation, and (optionally) how
    samples are collated into batches.

    ``training_step`` returns the batch's loss: a classifier compares logits with labels, a
    detector computes its loss inside its own ``forward``; the trainer only back-propagates it.
    """

    #: How samples are collated into a batch (None: PyTorch's default collate).
    collate: Callable[[list[Any]], Any] | None = None

    def training_step(self, network: torch.nn.Module, batch: Any) -> torch.Tensor:
        """The loss of ``network`` on one training batch (the trainer runs it under autocast)."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        """How many samples ``batch`` holds (the training loss is averaged per sample)."""
        return len(batch[0])

    def validate(self, network: torch.nn.Module) -> dict[str, float]:
        """Named validation metrics (the monitored one picks the best epoch)."""
        raise NotImplementedError


class TrainingObserver(Protocol):
    """Receives progress; every method is optional."""

    def on_train_start(self, *, epochs: int, steps_per_epoch: int, member: int, members: int) -> None: ...

    def on_step(self, *, step: int, loss: float) -> None: ...

    def on_epoch_end(self, record: dict[str, Any], *, improved: bool) -> None: ...

    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, torch and MONAI; make torch's algorithms deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


def _notify(observers: list[Any], name: str, *args: Any, **kwargs: Any) -> None:
    for o in observers:
        fn = getattr(o, name, None)
        if fn is not None:
            fn(*args, **kwargs)


def _channels_last(network: torch.nn.Module) -> None:
    """Put the convolution weights of ``network`` in channels-last order (3D ones for a 3D
    network); the activations follow them, so the batches need no change."""
    ndim = max((p.ndim for p in network.parameters()), default=0)
    if ndim in (4, 5):
        network.to(memory_format=torch.channels_last if ndim == 4 else torch.channels_last_3d)


class Trainer:
    """Train one network.

    Args:
        network: the model to train (modified in place; best weights are returned).
        task: the task's TrainingHooks (training_step, validate, collate).
        cfg: optimiser, schedule, epochs, early stopping, monitor, seed.
        run_dir: where the metrics log and resumable state go (None: nowhere).
        observers: progress receivers.
        member: index of this network in an ensemble (for progress and file names).
    """

    def __init__(self, network: torch.nn.Module, task: TrainingHooks, cfg: TrainConfig, *, run_dir: Path | None = None,
                 observers: list[Any] | None = None, member: int = 0, members: int = 1) -> None:
        self.network = network
        self.task = task
        self.cfg = cfg
        self.run_dir = run_dir
        self.observers = observers or []
        self.member = member
        self.members = members

    # -- building blocks ---------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        params = [p for p in self.network.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, nesterov=True, weight_decay=c.weight_decay)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def _scheduler(self, opt: torch.optim.Optimizer, steps_per_epoch: int):
        c = self.cfg
        total = c.epochs * steps_per_epoch
        if c.schedule_by == "time" and c.schedule in ("onecycle", "cosine"):
            if not c.max_minutes:
                raise ConfigError("train.schedule_by: time needs train.max_minutes (the budget the schedule spans)")
            return torch.optim.lr_scheduler.LambdaLR(opt, _time_factor(c, self._clock))
        if c.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=total,
                                                       pct_start=max(c.warmup_fraction, 1e-3))
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=c.monitor_mode, factor=0.5, patience=3)
        return None

    def _state_dir(self) -> Path | None:
        if self.run_dir is None:
            return None
        return self.run_dir / "checkpoints" / (f"member{self.member}" if self.members > 1 else ".")

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train_dataset: torch.utils.data.Dataset, *, resume: bool = False,
            collate_fn: Callable | None = None) -> TrainResult:
        """Train, validating after every epoch.

        Args:
            train_dataset: yields samples the hooks collate and step on; may define ``reseed(seed)``
                to make augmentation a function of the epoch.
            resume: continue from the state saved in ``run_dir`` when there is one.
        """
        c = self.cfg
        w = world()
        if c.threads:  # the machine's threads, shared by its training processes
            torch.set_num_threads(max(1, c.threads // w.local_size))
        if w.distributed and c.batch_size % w.size:
            raise ConfigError(f"train.batch_size ({c.batch_size}) is the batch over all {w.size} training processes; "
                              f"it must be a multiple of {w.size}")
        seed = c.seed + 1000 * self.member
        seed_everything(seed, c.deterministic)
        n = len(train_dataset)  # type: ignore[arg-type]
        device = next(self.network.parameters()).device.type
        if c.channels_last:
            _channels_last(self.network)
        stepper = self.network  # what training steps run: the network, or its DDP wrapper
        if w.distributed:
            from torch.nn.parallel import DistributedDataParallel

            stepper = DistributedDataParallel(self.network)  # rank 0's weights broadcast, gradients averaged
        steps_per_epoch = c.steps_per_epoch or max(1, math.ceil(n / c.batch_size))
        passes = max(1, n // c.batch_size if n > c.batch_size else 1)  # batches in one pass (drop_last)
        if c.steps_per_epoch and c.sampler != "balanced" and steps_per_epoch > passes:
            log.warning("train.steps_per_epoch is %d but one pass over the %d training samples is %d batches of %d: "
                        "an epoch ends after one pass (%d steps)", steps_per_epoch, n, passes, c.batch_size, passes)
        opt = self._optimizer()
        clock_base = [0.0, time.perf_counter()]  # seconds spent before this process, and when it started
        self._clock = lambda: clock_base[0] + time.perf_counter() - clock_base[1]
        sched = self._scheduler(opt, steps_per_epoch)
        per_step = sched is not None and c.schedule in ("onecycle", "cosine")
        sign = 1.0 if c.monitor_mode == "max" else -1.0
        best = -math.inf
        best_tie_loss = math.inf
        best_state = copy.deepcopy(self.network.state_dict())
        best_epoch, start_epoch, bad_epochs = -1, 0, 0
        history: list[dict[str, Any]] = []
        elapsed_before = 0.0
        state_dir = self._state_dir()
        if resume and state_dir is not None and (state_dir / "state.json").is_file():
            self._check_resumable(state_dir)
            try:
                info = load_training_state(state_dir, network=self.network, optimizer=opt, scheduler=sched)
            except (RuntimeError, KeyError, ValueError) as exc:  # another network, optimiser or schedule
                detail = str(exc).strip().splitlines()[0].rstrip(":") if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"--resume: the training state in {state_dir} does not fit this config ({detail}); "
                                  "resume with the config the run started with, or train into a new --out") from None
            start_epoch, best, best_epoch = info["epoch"] + 1, info["best"], info["best_epoch"]
            best_tie_loss = info.get("best_tie_loss") or math.inf
            bad_epochs, history, elapsed_before = info["bad_epochs"], info["history"], info.get("seconds", 0.0)
            from medsight.models.weights import load_weights

            best_path = state_dir / "best.safetensors"
            if best_path.is_file():
                best_state = load_weights(best_path)
            log.info("resuming at epoch %d (best %s %.4f at epoch %d)", start_epoch + 1, c.monitor, sign * best,
                     best_epoch + 1)
        observers = self.observers if w.main else []  # one process reports, logs and checkpoints
        _notify(observers, "on_train_start", epochs=c.epochs, steps_per_epoch=steps_per_epoch,
                member=self.member, members=self.members)
        started = time.perf_counter()
        clock_base[:] = [elapsed_before, started]
        stopped_early = False
        for epoch in range(start_epoch, c.epochs):
            t0 = time.perf_counter()
            epoch_seed = seed * 7919 + epoch
            if hasattr(train_dataset, "reseed"):  # each process its own augmentation draws
                train_dataset.reseed(epoch_seed + 104729 * w.rank)
            gen = torch.Generator().manual_seed(epoch_seed)
            sampler = _sampler(train_dataset, c, gen, steps_per_epoch)
            if w.distributed:  # each process its share of the epoch, every share the same length
                sampler = (_Shard(sampler, w) if sampler is not None else torch.utils.data.DistributedSampler(
                    train_dataset, num_replicas=w.size, rank=w.rank, shuffle=True, seed=epoch_seed, drop_last=True))
            batch = c.batch_size // w.size
            loader = torch.utils.data.DataLoader(
                train_dataset, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                generator=gen if not w.distributed else None, num_workers=c.num_workers,
                drop_last=w.distributed or (n > c.batch_size and sampler is None),
                collate_fn=collate_fn or self.task.collate, persistent_workers=False,
            )
            self.network.train()
            total, count = 0.0, 0
            for step, batch in enumerate(loader):
                if step >= steps_per_epoch:
                    break
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=c.precision == "bf16"):
                    loss = self.task.training_step(stepper, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(f"the training loss became {loss.item()} at epoch {epoch + 1}, step "
                                        f"{step + 1}; expected a finite loss: lower train.lr (now {c.lr:g}) or set "
                                        "train.grad_clip")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.network.parameters(), c.grad_clip)
                opt.step()
                if per_step:
                    sched.step()
                bs = self.task.batch_size(batch)
                total += float(loss.item()) * bs
                count += bs
                _notify(observers, "on_step", step=step + 1, loss=total / count)
                if c.schedule_by == "time" and w.share(self._clock() >= c.max_minutes * 60):
                    break  # the budget is spent (rank 0's clock): validate this epoch and stop
            # one process validates (every rank holds the same weights) and tells the others
            metrics = w.share(self.task.validate(self.network) if w.main else None)
            train_loss = w.mean(total / max(count, 1), count)
            if c.monitor not in metrics:
                raise ConfigError(f"train.monitor must be one of the validation metrics {', '.join(sorted(metrics))}; "
                                  f"got {c.monitor!r}")
            value = sign * float(metrics[c.monitor])
            if sched is not None and not per_step:
                sched.step(metrics[c.monitor])
            # a tie on a saturated metric (validation AUC 1.0) is broken by the validation loss
            tie_loss = metrics.get("val_loss") if c.monitor != "val_loss" else None
            improved = value > best + c.early_stopping.min_delta or (
                value == best and tie_loss is not None and tie_loss < best_tie_loss)
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                best_tie_loss = tie_loss if tie_loss is not None else math.inf
                best_state = copy.deepcopy(self.network.state_dict())
            else:
                bad_epochs += 1
            record = {"epoch": epoch + 1, "train_loss": round(train_loss, 6),
                      **{k: round(float(v), 6) for k, v in metrics.items()},
                      "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)}
            history.append(record)
            if w.main:
                self._write_epoch(record, history, opt, sched, epoch, best, best_epoch, bad_epochs,
                                  elapsed_before + time.perf_counter() - started, best_state if improved else None,
                                  best_tie_loss)
            _notify(observers, "on_epoch_end", record, improved=improved)
            if c.early_stopping.patience and bad_epochs >= c.early_stopping.patience:
                stopped_early = True
                log.info("early stop after epoch %d: no gain in %s for %d epochs", epoch + 1, c.monitor, bad_epochs)
                break
            if c.max_minutes and w.share((elapsed_before + time.perf_counter() - started) / 60 > c.max_minutes):
                stopped_early = True
                log.info("stopping after epoch %d: time budget of %.1f min spent", epoch + 1, c.max_minutes)
                break
        if c.checkpoint == "last":
            best_state = copy.deepcopy(self.network.state_dict())
            best_epoch = len(history) - 1
        result = TrainResult(best_state=best_state, best_epoch=best_epoch + 1, best_metric=sign * best,
                             history=history, stopped_early=stopped_early,
                             seconds=elapsed_before + time.perf_counter() - started)
        self.network.load_state_dict(best_state)
        _notify(observers, "on_train_end", result)
        return result

    def _write_epoch(self, record, history, opt, sched, epoch, best, best_epoch, bad_epochs, seconds, best_state,
                     best_tie_loss) -> None:
        state_dir = self._state_dir()
        if state_dir is None or self.run_dir is None:
            return
        log_path = self.run_dir / ("metrics.csv" if self.members == 1 else f"metrics_member{self.member}.csv")
        new = not log_path.exists() or epoch == 0
        keys = list(record)
        with open(log_path, "w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(record)
        if best_state is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            save_weights(best_state, state_dir / "best.safetensors")
        save_training_state(state_dir, network=self.network, optimizer=opt, scheduler=sched,
                            info={"epoch": epoch, "best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                                  "history": history, "seconds": seconds, "monitor": self.cfg.monitor,
                                  "best_tie_loss": best_tie_loss if math.isfinite(best_tie_loss) else None,
                                  "train": self.cfg.model_dump(mode="json")})

    def _check_resumable(self, state_dir: Path) -> None:
        """Refuse to resume a run with other training settings than it started with (the
        schedule, optimiser state and epoch count would not fit). Threads, workers, early stopping
        and the time budget (unless the schedule spans it) may change."""
        try:
            saved = json.loads((state_dir / "state.json").read_text()).get("train")
        except (OSError, ValueError):
            return  # load_training_state says what is wrong with the state
        free = {"threads", "num_workers", "early_stopping"}
        if self.cfg.schedule_by != "time":
            free.add("max_minutes")
        now = self.cfg.model_dump(mode="json")
        changed = [k for k in now if k not in free and saved and saved.get(k) != now[k]]
        if changed:
            k = changed[0]
            raise ConfigError(f"--resume: train.{k} is {now[k]!r} here but {saved.get(k)!r} in the run being resumed "
                              f"({state_dir}); resume with the config the run started with, or train into a new --out")


def _sampler(dataset: Any, c: TrainConfig, gen: torch.Generator, steps: int):
    """A class-balanced sampler when asked for (single-label classification only)."""
    if c.sampler != "balanced":
        return None
    targets = getattr(dataset, "targets", None)
    if targets is None or targets.ndim != 1:
        return None
    counts = torch.bincount(targets)
    weights = (1.0 / counts.clamp_min(1).float())[targets]
    return torch.utils.data.WeightedRandomSampler(weights, num_samples=steps * c.batch_size, replacement=True,
                                                  generator=gen)


class _Shard(torch.utils.data.Sampler):
    """Every ``world.size``-th index of ``sampler`` from ``world.rank``: the same draw on every
    process (same generator seed), split between them (the balanced sampler under DDP)."""

    def __init__(self, sampler: torch.utils.data.Sampler, w: World) -> None:
        self.sampler, self.rank, self.size = sampler, w.rank, w.size

    def __iter__(self):
        return iter(list(self.sampler)[self.rank::self.size])

    def __len__(self) -> int:
        return len(range(self.rank, len(self.sampler), self.size))  # type: ignore[arg-type]


def _time_factor(c: TrainConfig, clock: Callable[[], float]) -> Callable[[int], float]:
    """LR multiplier as a function of the share of ``c.max_minutes`` spent (``schedule_by:
    time``): one-cycle (cosine warm-up from lr/25 over ``warmup_fraction``, cosine decay to
    lr/250000, as torch's OneCycleLR) or cosine, so a run ends its schedule within its wall-time
    budget however busy the machine is."""
    budget = float(c.max_minutes or 1) * 60.0
    warm = max(c.warmup_fraction, 1e-3)

    def factor(_step: int) -> float:
        p = min(1.0, clock() / budget)
        if c.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * p))
        if p < warm:
            return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * p / warm))
        low = 1 / 25 / 1e4
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * (p - warm) / (1 - warm)))

    return factor
