"""One model output on its way from inference to the database, and its idempotency key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outcome", "result_key"]


def result_key(input_id: str, model_name: str, version: str) -> str:
    """The idempotency key of a result: its input, model and version."""
    return f"{input_id}|{model_name}|{version}"


@dataclass
class Outcome:
    """One model output ready to be stored (:mod:`medsight.service.result_store`).

    Made by :mod:`medsight.service.inference`; its artifacts (overlay, mask file, heatmap
    method) are filled in by :mod:`medsight.service.artifacts`.
    """

    key: str
    model: str  # config name
    info: Any  # ModelInfo
    status: str  # ok | error
    study_uid: str
    series_uid: str
    sop_uid: str | None
    patient_id: str | None
    received_at: float | None
    result: Any = None  # a task's Result (ClassificationResult, SegmentationResult, DetectionResult...)
    error: str | None = None
    overlay_path: str | None = None
    overlay_sop_uid: str | None = None  # the slice of a series the overlay shows (its SC references it)
    heatmap: str | None = None
    mask: dict[str, Any] | None = None  # where a segmentation's mask file is, and its source instances
    crops: dict[str, str] = field(default_factory=dict)  # lesion id → its crop's PNG file
    timings: dict[str, float] = field(default_factory=dict)
    source: str | None = None  # who sent its input ("dicom:AET", "http:user"): the drift monitor's window
