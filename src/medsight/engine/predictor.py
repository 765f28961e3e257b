"""Prediction over many inputs, where one bad input never costs the others.

The predictor is handed a task (it never looks one up): folders are expanded by the task's
``expand_inputs``, inputs are read through :func:`medsight.io.read` and handed to the task's
``infer`` in chunks; an input that cannot be read or predicted becomes the task's
``error_result`` (a :class:`~medsight.tasks.results.PredictionError`) in its place in the output
list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from medsight.errors import MedSightError
from medsight.io.image import Image
from medsight.io.limits import ReadLimits
from medsight.models.saved import SavedModel

__all__ = ["Predictor", "PredictorTask", "EXPLAIN_METHODS"]

#: The heatmap methods a classifier's ``explain`` takes (:func:`medsight.explain.heatmap`); other
#: tasks name theirs (``Task.explain_methods``).
EXPLAIN_METHODS = ("gradcam", "gradcampp", "occlusion")

log = logging.getLogger(__name__)

class PredictorTask(Protocol):
    """What the predictor needs of a task (:class:`medsight.tasks.base.Task` provides it)."""

    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        ...

    def expand_inputs(self, model: SavedModel, inputs: Sequence[str | Path]) -> list[str]:
        ...

    def error_result(self, input: str, exc: Exception) -> Any:
        ...

    def explains(self, model: SavedModel) -> bool:
        ...

    def explain_methods(self, model: SavedModel) -> tuple[str, ...]:
        ...

    def explain(self, model: SavedModel, image: Image, result: Any, *, method: str = ...) -> Any:
        ...


class Predictor:
    """Runs a saved model over inputs of any supported format.

    Args:
        model: the saved model.
        task: the model's task (``medsight.tasks.get_task(model.task)``).
        chunk: how many images are read and inferred together.
        accept_modalities: modalities the model takes in this run on top of its own (``"any"``:
            every one), :meth:`SavedModel.accepting`; e.g. a CT exported with another modality code.
        limits: the read limits (default :meth:`ReadLimits.from_env`), e.g. a larger
            ``max_slice_gap`` to stack a series with missing slices.
    """

    def __init__(self, model: SavedModel, task: PredictorTask, *, chunk: int | None = None,
                 accept_modalities: Sequence[str] | None = None, limits: ReadLimits | None = None,
                 explain: str | None = None) -> None:
        if accept_modalities:
            model = model.accepting(accept_modalities)
        if explain is not None:
            from medsight.errors import ConfigError

            methods = task.explain_methods(model)
            if not methods:
                raise ConfigError(f"model {model.name} ({model.task}) has no explanations")
            if explain == "auto":
                explain = methods[0]
            if explain not in methods:
                raise ConfigError(f"model {model.name} ({model.task}) is explained by {' or '.join(methods)}; got "
                                  f"{explain!r}")
        self.explain = explain
        self.limits = limits
        self.model = model
        self.task = task
        self.chunk = chunk or (64 if model.spatial_dims == 2 else 1)

    def predict_images(self, images: Sequence[Image], names: Sequence[str] | None = None) -> list[Any]:
        """Results for images already in memory; a failing image becomes a PredictionError."""
        names = list(names) if names is not None else [im.source or f"image{i}" for i, im in enumerate(images)]
        try:
            return self._explained(images, list(self.task.infer(self.model, images, inputs=names)))
        except MedSightError:
            if len(images) == 1:
                raise
        out: list[Any] = []
        for im, name in zip(images, names):  # isolate the failing one(s)
            try:
                out.extend(self._explained([im], self.task.infer(self.model, [im], inputs=[name])))
            except MedSightError as exc:
                out.append(self.task.error_result(name, exc))
        return out

    def _explained(self, images: Sequence[Image], results: list[Any]) -> list[Any]:
        """With ``explain``, each result with its heatmap; one that cannot be made is logged and
        the result stands without it."""
        if self.explain is None:
            return results
        for im, r in zip(images, results):
            try:
                self.task.explain(self.model, im, r, method=self.explain)
            except MedSightError as exc:
                log.warning("no heatmap for %s: %s", r.input, exc)
        return results

    def predict(self, inputs: Sequence[str | Path], *, read_options: dict[str, Any] | None = None,
                on_result: Callable[[Any], None] | None = None) -> list[Any]:
        """Predict every input (files or folders); never raises for a bad input.

        Returns:
            One entry per expanded input, in order: a task result or a PredictionError.
        """
        from medsight.io import read

        names = self.task.expand_inputs(self.model, inputs)
        results: list[Any] = []
        for start in range(0, len(names), self.chunk):
            batch = names[start:start + self.chunk]
            slots: list[Any] = [None] * len(batch)
            images, where = [], []
            for i, name in enumerate(batch):
                try:
                    opts = dict(read_options or {})
                    if self.limits is not None:
                        opts.setdefault("limits", self.limits)
                    images.append(read(name, **opts))
                    where.append(i)
                except MedSightError as exc:
                    slots[i] = self.task.error_result(name, exc)
            if images:
                try:
                    done = self.predict_images(images, [batch[i] for i in where])
                except MedSightError as exc:
                    done = [self.task.error_result(batch[where[0]], exc)]
                for i, r in zip(where, done):
                    slots[i] = r
            for r in slots:
                if on_result is not None:
                    on_result(r)
            results.extend(slots)
        return results
