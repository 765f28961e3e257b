"""The Python front door every task's model is used through: predict, evaluate, save.

:func:`medsight.load` returns a model as its task's front door (``Task.front_door``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsight.config import Config
from medsight.errors import ConfigError
from medsight.io.image import Image
from medsight.models.saved import SavedModel

__all__ = ["FrontDoor"]


class FrontDoor:
    """What every task's front door shares: predict, evaluate, save. A task's own front door
    (``Classifier``, ``Segmenter``) subclasses it and adds ``fit`` and what is particular to
    the task; a task without one is loaded as this class."""

    def __init__(self) -> None:
        self.model_: SavedModel | None = None
        self.run_dir_: Path | None = None

    @property
    def model(self) -> SavedModel:
        if self.model_ is None:
            raise ConfigError(f"this {type(self).__name__} has no trained model yet; call fit() or medsight.load()")
        return self.model_

    @property
    def manifest(self) -> dict[str, Any]:
        return self.model.manifest

    def predict(self, inputs: str | Path | Image | Sequence[str | Path | Image]) -> list[Any]:
        """Predict files, folders or Images; bad inputs come back as PredictionError entries."""
        return self._predict(inputs, "predict", explain=None)

    def _predict(self, inputs: str | Path | Image | Sequence[str | Path | Image], caller: str, *,
                 explain: str | None) -> list[Any]:
        from medsight.engine.predictor import Predictor
        from medsight.tasks.base import get_task

        items = [inputs] if isinstance(inputs, (str, Path, Image)) else list(inputs)
        pred = Predictor(self.model, get_task(self.model.task), explain=explain)
        if all(isinstance(i, Image) for i in items):
            return pred.predict_images(items)  # type: ignore[arg-type]
        if any(isinstance(i, Image) for i in items):
            raise ConfigError(f"{caller}() takes either paths or Images, not a mix")
        return pred.predict(items)  # type: ignore[arg-type]

    def explain(self, inputs: str | Path | Image | Sequence[str | Path | Image], *,
                method: str = "auto") -> list[Any]:
        """Predict as :meth:`predict` does, each result with its explanation: ``result.heatmap``
        (how it was made: a classifier's method, layer, class and peak; a segmentation's
        probability map slice) and ``result.overlay`` (the RGB picture), which
        ``medsight.tasks.writers.OutputFolder`` writes as PNG and Secondary Capture.

        Args:
            method: one of the task's (``Task.explain_methods``); ``auto``: its default
                (Grad-CAM for a classifier, the probability map for a segmentation, the finding
                overlay for a detector).

        Raises:
            ConfigError: the model's task has no explanations, or not this ``method``.
        """
        return self._predict(inputs, "explain", explain=method)

    def recommend(self, image: str | Path | Image, covariates: Mapping[str, Any] | None = None, *,
                  case_id: str | None = None) -> Any:
        """The recommendation for one patient: ``image`` (a path or an Image) with its clinical
        ``covariates`` (``{"age": 61, "sex": "F"}``; a ``treatment`` key, the one received, is
        recorded). What ``medsight recommend`` runs; only models whose task recommends
        (``Task.recommends``, e.g. ``response``).

        Raises:
            ConfigError: the model's task makes no recommendations.
            MedSightError: the image cannot be read or taken, or a covariate is missing or unknown.
        """
        from medsight.data.case import Case
        from medsight.tasks.base import get_task

        task = get_task(self.model.task)
        if not task.recommends:
            raise ConfigError(f"model {self.model.name} ({task.name}) makes no recommendations; recommend takes a "
                              f"model of a task that does (response)")
        name = case_id or (image.source if isinstance(image, Image) else Path(image).name) or "case"
        return task.infer_cases(self.model, [Case(str(name), {"image": image}, covariates=dict(covariates or {}))])[0]

    def evaluate(self, data: str | Path, *, split: str | None = "test", **options: Any) -> dict[str, Any]:
        """Metrics on ``data`` at the model's stored operating point."""
        from medsight.tasks.base import get_task

        return get_task(self.model.task).evaluate(self.model, str(data), split=split, **options)

    def save(self, path: str | Path) -> Path:
        """Save as a model folder (manifest.json + weights.safetensors + MODEL_CARD.md)."""
        return self.model.save(path)

    @classmethod
    def _for_model(cls, model: SavedModel) -> FrontDoor:
        return cls()

    def _fit(self, cfg: Config, run_dir: str | Path | None, observers: Sequence[Any], resume: bool) -> None:
        from medsight.tasks.base import get_task

        out = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="medsight-run-"))
        self.model_ = get_task(cfg.task).train(cfg, run_dir=out, observers=observers, resume=resume)
        self.run_dir_ = out
