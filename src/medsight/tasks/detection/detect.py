"""One scan through the detector: network probabilities → candidates → nodules in patient mm.

:func:`detect` is what inference, evaluation and training validation share: the network step
(:func:`nodule_probability`), then :func:`findings`. It returns every candidate (the FROC needs
those below the operating threshold too), each with its centre in patient mm and in the input's
voxels, its size, type and Lung-RADS category.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medsight.engine.sliding import predict_probabilities
from medsight.metrics.lungrads import LungRadsTable
from medsight.models.manifest import DetectionInference
from medsight.tasks.detection.candidates import extract_candidates
from medsight.tasks.detection.scan import PreparedScan

__all__ = ["Detected", "detect", "findings", "nodule_probability", "settings_of"]


@dataclass
class Detected:
    """A candidate in patient terms."""

    center_mm: list[float]
    center_voxel: list[float]
    grid_index: tuple[float, float, float]
    score: float
    diameter_mm: float
    volume_ml: float
    type: str
    solid_diameter_mm: float
    category: str
    size_mm: list[float]
    inside_lungs: bool


def nodule_probability(forward: Callable[[torch.Tensor], torch.Tensor], scan: PreparedScan,
                       settings: DetectionInference) -> np.ndarray:
    """``(z, y, x)`` nodule probability on the scan's network grid."""
    x = torch.from_numpy(scan.x)
    probs = predict_probabilities(forward, x, patch_size=settings.patch_size, overlap=settings.overlap,
                                  sw_batch_size=settings.sw_batch_size, precision=settings.precision,
                                  tta_flips=settings.tta_flips)
    return probs[1].numpy()


def _table(settings: DetectionInference) -> LungRadsTable:
    return LungRadsTable.from_dict(settings.lung_rads) if settings.lung_rads else LungRadsTable()


def findings(prob: np.ndarray, scan: PreparedScan, settings: DetectionInference, *,
             limit: int | None = None) -> list[Detected]:
    """The candidates of ``prob`` (``scan``'s nodule probability on its network grid) in patient
    terms, best first: those outside the lungs dropped where ``settings`` say so, at most ``limit``
    (``settings.max_findings`` unless given). A benchmark that ranks by its own scores asks for
    more than it keeps."""
    limit = settings.max_findings if limit is None else limit
    lo, hi = settings.hu_window
    cands = extract_candidates(prob, scan.hu((lo, hi)), scan.grid.spacing,  # type: ignore[arg-type]
                               candidate_threshold=settings.candidate_threshold,
                               size_threshold=settings.size_threshold, measure=settings.measure,
                               grow_mm=settings.grow_mm,
                               max_candidates=4 * settings.max_findings, solid_hu=settings.solid_hu)
    table = _table(settings)
    out: list[Detected] = []
    if not cands:
        return out
    index = np.array([c.index for c in cands], float)
    world = scan.grid.index_to_world(index)
    voxel = scan.source.world_to_index(world)
    inside = (scan.lungs.inside(world) if scan.lungs.found else np.ones(len(cands), bool))
    for c, w, v, ok in zip(cands, world, voxel, np.atleast_1d(inside)):
        if len(out) >= limit:
            break
        if settings.drop_outside_lungs and scan.lungs.found and not bool(ok):
            continue
        d = round(float(c.diameter_mm), 2)
        solid = c.solid_diameter_mm if c.type == "part-solid" else None
        category = table.category(c.type, d, solid_component_mm=solid)  # type: ignore[arg-type]
        ez, ey, ex = c.extent_mm
        out.append(Detected(center_mm=[round(float(t), 3) for t in w], center_voxel=[round(float(t), 2) for t in v],
                            grid_index=c.index, score=round(c.score, 5), diameter_mm=d,
                            volume_ml=round(c.volume_mm3 / 1000.0, 5), type=c.type,
                            solid_diameter_mm=float(c.solid_diameter_mm), category=category,
                            size_mm=[round(ex, 2), round(ey, 2), round(ez, 2)], inside_lungs=bool(ok)))
    return out


def detect(forward: Callable[[torch.Tensor], torch.Tensor], scan: PreparedScan, settings: DetectionInference,
           ) -> tuple[list[Detected], np.ndarray]:
    """Every candidate of ``scan`` (best first) and the probability map it came from."""
    prob = nodule_probability(forward, scan, settings)
    return findings(prob, scan, settings), prob


def settings_of(manifest_detection: Any) -> DetectionInference:
    if isinstance(manifest_detection, DetectionInference):
        return manifest_detection
    return DetectionInference.model_validate(dict(manifest_detection))

