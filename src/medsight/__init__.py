"""MedSight: deep-learning diagnosis on medical images.

The public API (everything else is reachable through the subpackages):

* :func:`load` – a shipped model by name, or a saved model folder;
* :class:`Classifier`, :class:`Segmenter` – train, evaluate, predict, save;
* :func:`train` – train from a YAML config;
* :func:`read` – read any supported image (DICOM file or series, NIfTI, PNG/JPEG/TIFF, NumPy);
* :func:`create_model`, :func:`list_models` – the architecture registry;
* :func:`track` – response assessment across one patient's serial DICOM studies.

Importing ``medsight`` is cheap: torch, MONAI and the DICOM stack load on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("medsight")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load", "train", "Classifier", "Segmenter", "read", "create_model", "list_models",
           "track", "Image", "MedSightError"]

_LAZY = {
    "load": ("medsight.api", "load"),
    "train": ("medsight.api", "train"),
    "Classifier": ("medsight.api", "Classifier"),
    "Segmenter": ("medsight.api", "Segmenter"),
    "read": ("medsight.io.registry", "read"),
    "Image": ("medsight.io.image", "Image"),
    "create_model": ("medsight.models.registry", "create_model"),
    "list_models": ("medsight.models.registry", "list_models"),
    "track": ("medsight.response.longitudinal", "track"),
    "MedSightError": ("medsight.errors", "MedSightError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'medsight' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
