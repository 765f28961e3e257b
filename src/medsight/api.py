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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.models.saved import SavedModel, load_model
from medsight.tasks.classification.front import Classifier
from medsight.tasks.front import FrontDoor
from medsight.tasks.segmentation.front import Segmenter

__all__ = ["Classifier", "Segmenter", "FrontDoor", "load", "train"]


def load(name_or_path: str | Path) -> FrontDoor:
    """Load a shipped model by name or a saved model folder, as its task's front door
    (:class:`Classifier`, :class:`Segmenter`, or the generic :class:`FrontDoor`)."""
    from medsight.tasks.base import get_task

    model = load_model(name_or_path)
    door = (get_task(model.task).front_door or FrontDoor)._for_model(model)
    door.model_ = model
    return door


def train(config: str | Path, *, run_dir: str | Path, overrides: list[str] | None = None,
          observers: Sequence[Any] = (), resume: bool = False) -> SavedModel | None:
    """Train from a YAML config (what ``medsight train`` runs); returns the saved model (None in
    the training processes other than rank 0 of a distributed run: rank 0 saves it)."""
    from medsight.config import load_config
    from medsight.tasks.base import get_task

    cfg = load_config(config, overrides)
    return get_task(cfg.task).train(cfg, run_dir=Path(run_dir), observers=observers, resume=resume)
