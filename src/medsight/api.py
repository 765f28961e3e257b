"""The Python API's front doors: as simple as a Keras script.

Example:
    >>> import medsight
    >>> clf = medsight.Classifier("resnet-small", augmentation="xray")                 # doctest: +SKIP
    >>> clf.fit("../shared/data/pneumoniamnist/pneumoniamnist.npz", epochs=20)        # doctest: +SKIP
    >>> clf.evaluate("../shared/data/pneumoniamnist/pneumoniamnist.npz")["auc"]       # doctest: +SKIP
    >>> clf.save("runs/my-model")                                                     # doctest: +SKIP
    >>> medsight.load("pneumonia-xray").predict(["chest.png"])                        # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.config import Config, config_from_dict
from medsight.errors import ConfigError, DataError
from medsight.io.image import Image
from medsight.models.saved import SavedModel, load_model

__all__ = ["Classifier", "Segmenter", "load", "train"]


class _FrontDoor:
    """What every task's front door shares: predict, evaluate, save."""

    task_name = ""

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
        from medsight.engine.predictor import Predictor
        from medsight.tasks.base import get_task

        items = [inputs] if isinstance(inputs, (str, Path, Image)) else list(inputs)
        pred = Predictor(self.model, get_task(self.model.task))
        if all(isinstance(i, Image) for i in items):
            return pred.predict_images(items)  # type: ignore[arg-type]
        if any(isinstance(i, Image) for i in items):
            raise ConfigError("predict() takes either paths or Images, not a mix")
        return pred.predict(items)  # type: ignore[arg-type]

    def evaluate(self, data: str | Path, *, split: str | None = "test", **options: Any) -> dict[str, Any]:
        """Metrics on ``data`` at the model's stored operating point."""
        from medsight.tasks.base import get_task

        return get_task(self.model.task).evaluate(self.model, str(data), split=split, **options)

    def save(self, path: str | Path) -> Path:
        """Save as a model folder (manifest.json + weights.safetensors + MODEL_CARD.md)."""
        return self.model.save(path)

    @classmethod
    def _for_model(cls, model: SavedModel) -> _FrontDoor:
        return cls()

    def _fit(self, cfg: Config, run_dir: str | Path | None, observers: Sequence[Any], resume: bool) -> None:
        from medsight.tasks.base import get_task

        out = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="medsight-run-"))
        self.model_ = get_task(cfg.task).train(cfg, run_dir=out, observers=observers, resume=resume)
        self.run_dir_ = out


class Classifier(_FrontDoor):
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

    task_name = "classification"

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
        from medsight.tasks.classification import ClassificationTask

        return ClassificationTask().probabilities(self.model, images)


class Segmenter(_FrontDoor):
    """Segmentation front door; trained from a config (see ``configs/hippocampus-mri.yaml``)."""

    task_name = "segmentation"

    def fit(self, config: str | Path | Config, *, run_dir: str | Path | None = None, overrides: list[str] | None = None,
            observers: Sequence[Any] = (), resume: bool = False) -> Segmenter:
        from medsight.config import load_config

        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        if cfg.task != "segmentation":
            raise ConfigError(f"Segmenter.fit needs task: segmentation; the config says {cfg.task!r}")
        self._fit(cfg, run_dir, observers, resume)
        return self

    def evaluate(self, data: str | Path, *, split: str | None = None, **options: Any) -> dict[str, Any]:
        """Dice, HD95, surface Dice and volume error on every labelled case of ``data`` (a
        Decathlon folder, image/mask folder pairs or a CSV), or on one ``split``."""
        return super().evaluate(data, split=split, **options)


#: Each task's front door, by task name.
_FRONT_DOORS: dict[str, type[_FrontDoor]] = {door.task_name: door for door in (Classifier, Segmenter)}


def load(name_or_path: str | Path) -> Classifier | Segmenter:
    """Load a shipped model by name or a saved model folder, as its task's front door.

    Raises:
        ConfigError: the model's task has no front door.
    """
    model = load_model(name_or_path)
    cls = _FRONT_DOORS.get(model.task)
    if cls is None:
        raise ConfigError(f"model {model.name} is a {model.task!r} model; front doors exist for "
                          f"{', '.join(sorted(_FRONT_DOORS))}")
    door = cls._for_model(model)
    door.model_ = model
    return door  # type: ignore[return-value]


def train(config: str | Path, *, run_dir: str | Path, overrides: list[str] | None = None,
          observers: Sequence[Any] = (), resume: bool = False) -> SavedModel:
    """Train from a YAML config (what ``medsight train`` runs); returns the saved model."""
    from medsight.config import load_config
    from medsight.tasks.base import get_task

    cfg = load_config(config, overrides)
    return get_task(cfg.task).train(cfg, run_dir=Path(run_dir), observers=observers, resume=resume)
