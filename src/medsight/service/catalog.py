"""The models the service runs: their manifests (cheap, for routing) and, in workers, the
loaded networks.

A model named in the config that cannot be found is *missing*, not an error: routes to it
record "no model routed" until it is installed (a CT nodule detector that does not exist
yet, for example).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from medsight.errors import MedSightError
from medsight.service.config import ModelEntry

__all__ = ["ModelInfo", "ModelCatalog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What routing needs to know about an available model."""

    name: str  # the name in the service config
    model_name: str  # the manifest's name
    version: str
    task: str
    spatial_dims: int
    path: str
    drift: dict[str, Any] | None = field(default=None, hash=False, compare=False)  # manifest.drift


class ModelCatalog:
    """Configured models: manifests at start, networks loaded on first use (one per process).

    Args:
        entries: the ``models`` section.
    """

    def __init__(self, entries: dict[str, ModelEntry]) -> None:
        from medsight.models.saved import MANIFEST, resolve_model_path

        self.entries = entries
        self.available: dict[str, ModelInfo] = {}
        self.missing: dict[str, str] = {}
        for name, entry in entries.items():
            try:
                folder = resolve_model_path(entry.path)
                m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
                if entry.backend == "onnxruntime" and not (m.get("exports") or {}).get("onnx"):
                    raise ValueError("backend onnxruntime, but the model has no ONNX export (medsight export "
                                     "--format onnx)")
                self.available[name] = ModelInfo(name=name, model_name=str(m.get("name", name)),
                                                 version=str(m.get("version", "0")), task=str(m["task"]),
                                                 spatial_dims=int(m["architecture"]["spatial_dims"]), path=str(folder),
                                                 drift=m.get("drift"))
            except (MedSightError, OSError, ValueError, KeyError) as exc:
                self.missing[name] = str(exc)
                log.warning("model %s (%s) is configured but not available; its routes record 'no model routed': %s",
                            name, entry.path, exc)
        self._loaded: dict[str, Any] = {}
        self._predictors: dict[str, Any] = {}
        self._lock = threading.Lock()

    def dims(self) -> dict[str, int]:
        """Spatial dims of every available model (what :class:`~medsight.service.routing.Router` takes)."""
        return {n: i.spatial_dims for n, i in self.available.items()}

    def load(self, name: str) -> Any:
        """The loaded :class:`~medsight.models.saved.SavedModel` (cached), with the config's
        threshold override applied."""
        from medsight.models.saved import load_model

        with self._lock:
            if name not in self._loaded:
                info = self.available[name]
                model = load_model(info.path, backend=self.entries[name].backend)
                thr = self.entries[name].threshold
                if thr is not None:
                    model.manifest["threshold"] = float(thr)
                for p in model.network.parameters():
                    p.requires_grad_(False)
                self._loaded[name] = model
            return self._loaded[name]

    def warm_up(self, name: str, *, explain: str = "none") -> None:
        """Load a model and run it (and its heatmap) once, so the first real image is not slow."""
        import numpy as np

        from medsight.io.image import Image
        from medsight.tasks.base import get_task

        model = self.load(name)
        size = model.manifest.get("preprocessing", {}).get("spatial_size") or [32] * model.spatial_dims
        image = Image(array=np.zeros((1, *size), np.float32), spacing=(1.0,) * len(size))
        try:
            self.predictor(name).predict_images([image], ["warm-up"])
            if model.spatial_dims == 2 and explain in get_task(model.task).explain_methods(model):
                from medsight.explain import heatmap

                heatmap(model, image, method=explain)
        except MedSightError as exc:
            log.info("warm-up of %s skipped: %s", name, exc)

    def predictor(self, name: str) -> Any:
        """A cached :class:`~medsight.engine.predictor.Predictor` for the model."""
        from medsight.engine.predictor import Predictor
        from medsight.tasks.base import get_task

        model = self.load(name)
        with self._lock:
            if name not in self._predictors:
                self._predictors[name] = Predictor(model, get_task(model.task))
            return self._predictors[name]
