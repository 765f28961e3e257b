"""Prediction over many inputs, where one bad input never costs the others.

Inputs are read through :func:`medsight.io.read` and handed to the task's ``infer`` in
chunks; an input that cannot be read or predicted becomes a
:class:`~medsight.tasks.results.PredictionError` in its place in the output list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medsight.errors import MedSightError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.tasks.results import PredictionError

__all__ = ["Predictor", "expand_inputs"]

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", ".npy", ".npz",
                   ".bmp")


def _holds_dicom(folder: Path) -> bool:
    from medsight.io.sniff import sniff_format

    for p in sorted(folder.rglob("*"))[:200]:
        if p.is_file():
            try:
                if sniff_format(p) == "dicom":
                    return True
            except OSError:
                continue
    return False


def expand_inputs(inputs: Sequence[str | Path], *, spatial_dims: int = 2) -> list[str]:
    """Expand folders: for a 2D model, every image file inside (sorted, recursive); for a 3D
    model, a folder of DICOM is one series and other volumes inside are listed one by one.
    Files and missing paths are kept as they are (a missing path is reported later)."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            out.append(str(item))
            continue
        if spatial_dims == 3 and _holds_dicom(p):
            out.append(str(p))
            continue
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".")
                 and (f.name.lower().endswith(_IMAGE_SUFFIXES) or "." not in f.name)]
        if spatial_dims == 3:
            files = [f for f in files if f.name.lower().endswith((".nii", ".nii.gz", ".npy", ".npz"))]
        out.extend(str(f) for f in files) if files else out.append(str(p))
    return out


class Predictor:
    """Runs a saved model over inputs of any supported format.

    Args:
        model: the saved model.
        chunk: how many images are read and inferred together.
    """

    def __init__(self, model: SavedModel, *, chunk: int | None = None) -> None:
        from medsight.tasks.base import get_task

        self.model = model
        self.task = get_task(model.task)
        self.chunk = chunk or (64 if model.spatial_dims == 2 else 1)

    def predict_images(self, images: Sequence[Image], names: Sequence[str] | None = None) -> list[Any]:
        """Results for images already in memory; a failing image becomes a PredictionError."""
        names = list(names) if names is not None else [im.source or f"image{i}" for i, im in enumerate(images)]
        try:
            return list(self.task.infer(self.model, images, inputs=names))
        except MedSightError:
            if len(images) == 1:
                raise
        out: list[Any] = []
        for im, name in zip(images, names):  # isolate the failing one(s)
            try:
                out.extend(self.task.infer(self.model, [im], inputs=[name]))
            except MedSightError as exc:
                out.append(PredictionError(input=name, error=str(exc), error_type=type(exc).__name__))
        return out

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
                    images.append(read(name, **(read_options or {})))
                    where.append(i)
                except MedSightError as exc:
                    slots[i] = PredictionError(input=name, error=str(exc), error_type=type(exc).__name__)
            if images:
                try:
                    done = self.predict_images(images, [batch[i] for i in where])
                except MedSightError as exc:
                    done = [PredictionError(input=batch[where[0]], error=str(exc), error_type=type(exc).__name__)]
                for i, r in zip(where, done):
                    slots[i] = r
            for r in slots:
                if on_result is not None:
                    on_result(r)
            results.extend(slots)
        return results
