"""From a nodule-probability map to measured candidates.

A candidate is a connected component (26-connectivity) of the probability above
``candidate_threshold``; its score is the component's highest probability. It is measured on
the voxels above ``size_threshold`` (those at the score's half when none is): volume, the
equivalent-sphere diameter, the probability-weighted centre and the extent along each axis.
Its type comes from the attenuation inside it: the solid part is the voxels at or above
``solid_hu`` after a 1-voxel opening (which removes vessels thinner than about 2 voxels running
through a ground-glass nodule); solid when the solid part's equivalent diameter is at least
80 % of the whole, ground-glass when it is under 2 mm, part-solid otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Candidate", "extract_candidates", "equivalent_diameter"]


def equivalent_diameter(volume_mm3: float) -> float:
    return float((6.0 * max(volume_mm3, 0.0) / np.pi) ** (1.0 / 3.0))


@dataclass
class Candidate:
    index: tuple[float, float, float]   # centre, network-grid indices (z, y, x)
    score: float
    volume_mm3: float
    diameter_mm: float
    extent_mm: tuple[float, float, float]  # along z, y, x
    type: str
    solid_diameter_mm: float


def _type(core_hu: np.ndarray, core: np.ndarray, voxel_mm3: float, diameter: float,
          solid_hu: float) -> tuple[str, float]:
    solid = core & (core_hu >= solid_hu)
    if solid.any():
        solid = ndimage.binary_opening(solid, structure=ndimage.generate_binary_structure(3, 1))
    if solid.any():
        lab, n = ndimage.label(solid, structure=np.ones((3, 3, 3), bool))
        biggest = int(np.bincount(lab.ravel())[1:].max()) if n else 0
    else:
        biggest = 0
    d_solid = equivalent_diameter(biggest * voxel_mm3)
    if d_solid >= 0.8 * diameter:
        return "solid", round(diameter, 2)
    if d_solid < 2.0:
        return "ground-glass", 0.0
    return "part-solid", round(d_solid, 2)


def extract_candidates(prob: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float], *,
                       candidate_threshold: float = 0.1, size_threshold: float = 0.5, max_candidates: int = 100,
                       solid_hu: float = -300.0) -> list[Candidate]:
    """Candidates of ``prob`` (``(z, y, x)`` nodule probability on a grid of ``spacing`` mm; ``hu``
    the same grid's attenuation), best first, at most ``max_candidates``."""
    above = prob > candidate_threshold
    if not above.any():
        return []
    labels, n = ndimage.label(above, structure=np.ones((3, 3, 3), bool))
    voxel_mm3 = float(np.prod(spacing))
    out: list[Candidate] = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        comp = labels[box] == k
        p = np.where(comp, prob[box], 0.0)
        score = float(p.max())
        core = p > size_threshold
        if not core.any():
            core = p >= 0.5 * score
        w = np.where(core, p, 0.0)
        idx = np.argwhere(core)
        centre = (idx * w[core][:, None]).sum(0) / w[core].sum() + np.array([s.start for s in box])
        volume = float(core.sum()) * voxel_mm3
        diameter = equivalent_diameter(volume)
        extent = tuple(float((idx[:, a].max() - idx[:, a].min() + 1) * spacing[a]) for a in range(3))
        ntype, d_solid = _type(hu[box], core, voxel_mm3, diameter, solid_hu)
        out.append(Candidate(index=tuple(float(v) for v in centre), score=score, volume_mm3=volume,
                             diameter_mm=diameter, extent_mm=extent, type=ntype,  # type: ignore[arg-type]
                             solid_diameter_mm=d_solid))
    out.sort(key=lambda c: -c.score)
    return out[:max_candidates]
