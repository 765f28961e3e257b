"""Lung nodule detection on CT (``task: detection``): lung crop → 3D nodule-probability network
→ candidates measured in mm → findings with a Lung-RADS size category (docs/detection.md)."""

from medsight.tasks.detection import writers as _writers  # noqa: F401  (registers the db writer)
from medsight.tasks.detection.result import DetectionResult, NoduleFinding
from medsight.tasks.detection.task import DetectionTask

__all__ = ["DetectionTask", "DetectionResult", "NoduleFinding"]
