"""A rich progress bar that follows training (the trainer's observer)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """Shows one bar per epoch with the live loss, and a line per finished epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.task_id: Any = None
        self.epoch = 0
        self.epochs = 0
        self.steps = 0
        self.tag = ""

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_train_start(self, *, epochs: int, steps_per_epoch: int, member: int, members: int) -> None:
        self.epochs, self.steps, self.epoch = epochs, steps_per_epoch, 0
        self.tag = f"[member {member + 1}/{members}] " if members > 1 else ""
        self._new_bar()

    def _new_bar(self) -> None:
        if self.task_id is not None:
            self.progress.remove_task(self.task_id)
        self.epoch += 1
        self.task_id = self.progress.add_task(f"{self.tag}epoch {self.epoch}/{self.epochs}", total=self.steps, loss=0.0)

    def on_step(self, *, step: int, loss: float) -> None:
        self.progress.update(self.task_id, completed=step, loss=loss)

    def on_epoch_end(self, record: dict[str, Any], *, improved: bool) -> None:
        self.epoch = record["epoch"] - 1
        parts = [f"{k} {v:.4f}" for k, v in record.items()
                 if k not in ("epoch", "lr", "seconds") and isinstance(v, float)]
        star = " [green]*best*[/green]" if improved else ""
        self.console.print(f"{self.tag}epoch {record['epoch']:>3}/{self.epochs}  " + "  ".join(parts)
                           + f"  ({record['seconds']:.1f}s){star}")
        if record["epoch"] < self.epochs:
            self._new_bar()

    def on_train_end(self, result: Any) -> None:
        if self.task_id is not None:
            self.progress.remove_task(self.task_id)
            self.task_id = None
