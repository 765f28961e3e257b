"""The classification front door: ``medsight.Classifier``, as simple as a Keras script."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.config import config_from_dict
from medsight.errors import DataError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.tasks.front import FrontDoor

__all__ = ["Classifier"]


class Classifier(FrontDoor):
    """Build, train, evaluate and use an image classifier.

    Args:
        model: a registered classification architecture (``medsight models list``).
        labels: class names (default: from the data).
        positive_label: the class whose probability is thresholded (binary problems).
        input_size: spatial size images are resized to (default: the data's own for
            MedMNIST, else 224×224).
        augmentation: preset name (``none``, ``classic``, ``xray``, ``ultrasound``).
        threshold_rule: ``youden``, ``sensitivity:X``, ``specificity:X`` or ``fixed:T``.
        name: model name written into the manifest.
        **model_params: architecture parameters (e.g. ``width=48``).
    """

    def __init__(self, model: str = "resnet-small", *, labels: list[str] | None = None,
                 positive_label: str | None = None, input_size: Sequence[int] | None = None,
                 augmentation: str = "xray", threshold_rule: str = "youden", name: str = "classifier",
                 **model_params: Any) -> None:
        super().__init__()
        self.model_name = model
        self.labels = labels
        self.positive_label = positive_label
        self.input_size = input_size
        self.augmentation = augmentation
        self.threshold_rule = threshold_rule
        self.name = name
        self.model_params = model_params

    def fit(self, data: str | Path | np.ndarray, y: np.ndarray | None = None, *,
            validation_data: tuple[np.ndarray, np.ndarray] | None = None, epochs: int = 20, batch_size: int = 64,
            run_dir: str | Path | None = None, observers: Sequence[Any] = (), resume: bool = False,
            **train: Any) -> Classifier:
        """Train on a data source (npz, class folder, CSV) or on arrays.

        Args:
            data: a path, or images as an array ``(N, H, W)`` / ``(N, C, H, W)``.
            y: labels ``(N,)`` when ``data`` is an array.
            validation_data: ``(x_val, y_val)`` when ``data`` is an array (else the
                source's val split is used).
            epochs, batch_size: as in Keras.
            run_dir: where the run is written (default: a temporary folder).
            **train: any other ``train.*`` setting (``lr``, ``optimizer``, ``ensemble``...).

        Returns:
            self, trained, with ``model_`` and ``run_dir_`` set.
        """
        source = str(data) if isinstance(data, (str, Path)) else self._arrays_to_npz(data, y, validation_data, run_dir)
        cfg = config_from_dict({
            "task": "classification", "name": self.name,
            "data": {"source": source, "labels": self.labels, "positive_label": self.positive_label},
            "preprocessing": {"spatial_size": list(self.input_size) if self.input_size else None},
            "augmentation": self.augmentation,
            "model": {"name": self.model_name, "params": self.model_params},
            "train": {"epochs": epochs, "batch_size": batch_size, **train},
            "evaluation": {"threshold_rule": self.threshold_rule},
        }, source="Classifier.fit")
        self._fit(cfg, run_dir, observers, resume)
        return self

    @staticmethod
    def _arrays_to_npz(x: np.ndarray, y: np.ndarray | None, val: tuple[np.ndarray, np.ndarray] | None,
                       run_dir: str | Path | None) -> str:
        if y is None or val is None:
            raise DataError("fit(x, y, validation_data=(x_val, y_val)) needs labels and validation data with arrays")
        x, y = np.asarray(x), np.asarray(y).reshape(len(x), -1).squeeze(-1)
        if len(x) != len(y):
            raise DataError(f"fit: {len(x)} images but {len(y)} labels")
        out = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="medsight-run-"))
        out.mkdir(parents=True, exist_ok=True)
        path = out / "arrays.npz"
        np.savez(path, train_images=x, train_labels=y, val_images=np.asarray(val[0]),
                 val_labels=np.asarray(val[1]).reshape(len(val[0]), -1).squeeze(-1))
        return str(path)

    @classmethod
    def _for_model(cls, model: SavedModel) -> Classifier:
        return cls(name=model.name)

    def predict_proba(self, images: Sequence[Image]) -> np.ndarray:
        """Class probabilities for Images, shape (N, n_classes)."""
        from medsight.tasks.base import get_task

        return get_task("classification").probabilities(self.model, images)  # type: ignore[attr-defined]
