"""The segmentation front door: ``medsight.Segmenter``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.config import Config, SegmentationRunConfig
from medsight.errors import ConfigError
from medsight.tasks.front import FrontDoor

__all__ = ["Segmenter"]


class Segmenter(FrontDoor):
    """Segmentation front door; trained from a config (see ``configs/hippocampus-mri.yaml``)."""

    def fit(self, config: str | Path | Config, *, run_dir: str | Path | None = None, overrides: list[str] | None = None,
            observers: Sequence[Any] = (), resume: bool = False) -> Segmenter:
        from medsight.config import load_config

        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        if not isinstance(cfg, SegmentationRunConfig):
            raise ConfigError(f"Segmenter.fit needs task: segmentation; the config says {cfg.task!r}")
        self._fit(cfg, run_dir, observers, resume)
        return self

    def evaluate(self, data: str | Path, *, split: str | None = None, **options: Any) -> dict[str, Any]:
        """Dice, HD95, surface Dice and volume error on every labelled case of ``data`` (a
        Decathlon folder, image/mask folder pairs or a CSV), or on one ``split``."""
        return super().evaluate(data, split=split, **options)
