"""Typed results: the same objects for the Python API, the CLI and the service."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["Provenance", "ClassificationResult", "SegmentationResult", "PredictionError", "Result", "utc_now",
           "array_sha256"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def array_sha256(arr: Any) -> str:
    """SHA-256 of an array's bytes (C order) and shape: the identity of an input image."""
    import numpy as np

    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(str((a.shape, str(a.dtype))).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


@dataclass
class Provenance:
    """Which model produced a result, from which input, when."""

    model: str
    model_version: str
    weights_sha256: str | None
    input_sha256: str | None
    created: str = field(default_factory=utc_now)
    seconds: float | None = None
    medsight_version: str | None = None
    series_uid: str | None = None
    sop_uids: list[str] = field(default_factory=list)


@dataclass
class ClassificationResult:
    """Per-class probabilities and the decision at the model's threshold.

    Attributes:
        probabilities: class name → probability.
        label: the decision (class name; for multi-label, the positive labels joined by ``|``).
        score: probability of the positive class (binary models), else None.
        threshold: the operating threshold the decision used (binary and multi-label).
        positive: whether the decision is the positive class (binary models).
    """

    input: str
    probabilities: dict[str, float]
    label: str
    score: float | None
    threshold: float | None
    positive: bool | None
    provenance: Provenance
    task: str = "classification"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SegmentationResult:
    """A label mask in the input's geometry and the volume of each structure."""

    input: str
    mask: Any  # medsight.io.Image with integer labels
    labels: dict[int, str]
    volumes_ml: dict[str, float]
    provenance: Provenance
    output: str | None = None
    task: str = "segmentation"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "mask"}
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        d["shape"] = list(self.mask.shape)
        d["spacing_mm"] = list(self.mask.spacing)
        return d


@dataclass
class PredictionError:
    """An input that could not be predicted, and why."""

    input: str
    error: str
    error_type: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Result = ClassificationResult | SegmentationResult
