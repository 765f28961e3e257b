"""One training run, for every task: the skeleton ``medsight train`` runs.

The skeleton owns what every run shares: the run folder, the config saved into it, seeding and
threads, the trainer (one per ensemble member), evaluation on the validation and test splits,
the saved model with its card, the report, the learning curves and ``summary.json``. A task
supplies what differs through its hooks (:class:`medsight.tasks.base.Task`):

``prepare(cfg, run_dir)``
    reads the data, plans, and returns a :class:`TrainingSetup`: the training dataset, the trainer's
    :class:`~medsight.engine.trainer.TrainingHooks` (training step, validation, collate), the
    resolved config and how many networks to train;
``build_network(cfg, prepared, member)``
    one untrained network;
``finish(cfg, prepared, networks, results)``
    the trained model (e.g. an ensemble, thresholds chosen on validation) and its manifest;
``evaluation_options``, ``headline``, ``reproduce``, ``report_section``, ``card_section``
    how it is evaluated, summarised and documented.

Run folder::

    RUN/config.yaml            the config as run (with the task's resolved defaults)
    RUN/metrics.csv            one row per epoch (the trainer)
    RUN/model/                 manifest.json, weights.safetensors, MODEL_CARD.md
    RUN/evaluation/            val.json, test.json, report.html (+ what the task adds)
    RUN/learning_curves.png    (learning_curves_member<i>.png for an ensemble)
    RUN/summary.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from medsight.config import Config, save_config
from medsight.engine.distributed import init_from_env
from medsight.engine.sliding import native_bf16
from medsight.engine.trainer import Trainer, TrainingHooks, TrainResult, seed_everything
from medsight.errors import ConfigError
from medsight.models.saved import SavedModel

__all__ = ["TrainingSetup", "Finished", "RunTask", "train_run"]


@dataclass
class TrainingSetup:
    """What a task's ``prepare`` hands the skeleton.

    Attributes:
        train: the training dataset (samples the hooks' collate and ``training_step`` take).
        hooks: the trainer's view of the task.
        config: the config as it will run (the task's data-dependent defaults filled in).
        splits: the splits that hold cases and are evaluated after training (of val, test).
        members: how many networks are trained (an ensemble's size).
        state: anything the task's ``build_network`` and ``finish`` need (plan, labels...).
    """

    train: torch.utils.data.Dataset
    hooks: TrainingHooks
    config: Config
    splits: Sequence[str] = ("val", "test")
    members: int = 1
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finished:
    """What a task's ``finish`` returns: the trained model, and extra ``summary.json`` entries."""

    model: SavedModel
    summary: dict[str, Any] = field(default_factory=dict)


class RunTask(Protocol):
    """The hooks the skeleton calls (:class:`medsight.tasks.base.Task` declares them)."""

    name: str
    config_type: type[Config]

    def prepare(self, cfg: Any, *, run_dir: Path) -> TrainingSetup: ...

    def build_network(self, cfg: Any, prepared: TrainingSetup, member: int) -> torch.nn.Module: ...

    def finish(self, cfg: Any, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[TrainResult]) -> Finished: ...

    def evaluate(self, model: SavedModel, data: Any, *, split: str | None = ..., **options: Any) -> dict[str, Any]: ...

    def evaluation_options(self, cfg: Any, *, split: str, eval_dir: Path) -> dict[str, Any]: ...

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]: ...

    def reproduce(self, cfg: Any) -> str | None: ...

    def model_card(self, manifest: dict[str, Any], *, reproduce: str | None = None) -> str: ...

    def write_report(self, evaluation: dict[str, Any], path: Path, *, model: SavedModel | None = None) -> Path: ...


def train_run(task: RunTask, cfg: Config, *, run_dir: Path, observers: Sequence[Any] = (),
              resume: bool = False) -> SavedModel | None:
    """Train ``task`` from ``cfg`` into ``run_dir``; return the saved model.

    Under torchrun (``WORLD_SIZE`` > 1) every process trains its share of each batch
    (:mod:`medsight.engine.distributed`); rank 0 alone writes the run folder, evaluates and
    saves, and the others return None.

    Raises:
        ConfigError: the config is not this task's (or a task hook refuses it).
        DataError, TrainingError: from the task's data or from training (a user error each).
    """
    t_start = time.perf_counter()
    if not isinstance(cfg, task.config_type):
        raise ConfigError(f"the {task.name} task needs task: {task.name}; the config says {cfg.task!r}")
    if cfg.train.precision == "bf16" and not torch.cuda.is_available() and not native_bf16():
        raise ConfigError("train.precision: bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX), and this one has "
                          "none: emulated, bf16 trains about 10 times slower than fp32 (a detector step 7.4 s against "
                          "0.76 s on a 2-core AVX2 CPU); set train.precision: fp32")
    w = init_from_env()  # torchrun started several processes: they train together, rank 0 writes
    run_dir.mkdir(parents=True, exist_ok=True)
    if w.main:
        save_config(cfg, run_dir / "config.yaml")
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    prepared = task.prepare(cfg, run_dir=run_dir)
    if prepared.config is not cfg:
        cfg = prepared.config
        if w.main:
            save_config(cfg, run_dir / "config.yaml")  # the settings really used, so the file retrains the same
    networks: list[torch.nn.Module] = []
    results: list[TrainResult] = []
    for member in range(prepared.members):
        seed_everything(cfg.train.seed + 1000 * member, cfg.train.deterministic)
        network = task.build_network(cfg, prepared, member)
        results.append(Trainer(network, prepared.hooks, cfg.train, run_dir=run_dir, observers=list(observers),
                               member=member, members=prepared.members).fit(prepared.train, resume=resume))
        networks.append(network)
    if not w.main:  # the model, its evaluation and report are rank 0's
        w.barrier()
        return None  # type: ignore[return-value]
    finished = task.finish(cfg, prepared, networks, results)
    model = finished.model
    manifest = model.manifest

    eval_dir = run_dir / "evaluation"
    eval_dir.mkdir(exist_ok=True)
    evaluations = {split: task.evaluate(model, cfg.data, split=split,
                                        **task.evaluation_options(cfg, split=split, eval_dir=eval_dir))
                   for split in prepared.splits}
    manifest["metrics"] = {split: task.headline(ev) for split, ev in evaluations.items()}
    manifest.setdefault("training", {})["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    manifest["training"]["processes"] = w.size  # DDP: how many processes trained it
    for key in ("intended_use", "out_of_scope"):  # the card's statements, whatever the task
        if getattr(cfg, key):
            manifest[key] = list(getattr(cfg, key))
    model.card = task.model_card(manifest, reproduce=task.reproduce(cfg))
    model.save(run_dir / "model")
    for split, ev in evaluations.items():
        (eval_dir / f"{split}.json").write_text(json.dumps(ev, indent=1))
    report_split = "test" if "test" in evaluations else ("val" if "val" in evaluations else None)
    if report_split:
        task.write_report(evaluations[report_split], eval_dir / "report.html", model=model)
    _plot_curves([r.history for r in results], run_dir, monitor=cfg.train.monitor)
    (run_dir / "summary.json").write_text(json.dumps({
        "model": str(run_dir / "model"), "train_seconds": manifest["training"]["wall_time_s"],
        "trainer_seconds": round(sum(r.seconds for r in results), 1),
        "best_epochs": [r.best_epoch for r in results], "metrics": manifest["metrics"], **finished.summary},
        indent=1))
    w.barrier()  # the others wait for the saved model, so the run ends when it is written
    return model


def _plot_curves(histories: list[list[dict[str, Any]]], run_dir: Path, *, monitor: str) -> None:
    from medsight.report.plots import plot_learning_curves

    for member, history in enumerate(histories):
        if history:
            name = "learning_curves.png" if len(histories) == 1 else f"learning_curves_member{member}.png"
            plot_learning_curves(history, run_dir / name, monitor=monitor)
