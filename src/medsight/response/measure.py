"""Lesion size from a mask: volume, longest in-plane diameter and the diameter perpendicular to it.

RECIST and RANO measure a lesion on the image it was acquired in, so the diameters here are
measured in the plane of the mask's slices (the array's last two axes, with their pixel
spacing), whatever the stack's orientation in the patient: an oblique stack is measured in its
own oblique plane. Conventions, chosen so that a rasterised shape is measured without bias:

* A pixel is an ellipse the size of its spacing, centred on the pixel centre. The longest
  diameter is the largest distance across the union of those ellipses on one slice: the
  distance between the two farthest pixel centres plus the pixel's size along that line (edge
  to edge, as calipers are placed). A disc of diameter D rasterised on pixels of size p comes
  out between D and D + p; centre to centre it would come out between D - p and D.
* The perpendicular diameter is the greatest width perpendicular to the longest diameter, on
  the same slice, measured along lines one pixel wide (plus the pixel's size, as above).
* A lesion is a 3D connected component of the mask (26-connected by default: slices are thick,
  and a lesion drawn on neighbouring slices can touch only diagonally). Its diameters are
  those of the slice where its longest diameter is largest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medsight.errors import GeometryError, ShapeError
from medsight.io.image import Image

__all__ = ["LesionMeasure", "MaskMeasure", "in_plane_diameters", "measure_mask"]


@dataclass(frozen=True)
class LesionMeasure:
    """The size of one lesion (or of the whole mask taken as one object).

    Attributes:
        voxels: number of lesion voxels.
        volume_ml: voxels x voxel volume, in mL.
        longest_diameter_mm: longest in-plane diameter over the lesion's slices, in mm.
        perpendicular_diameter_mm: longest diameter perpendicular to it on the same slice, in mm.
        slice_index: the mask slice (array axis 0) where the longest diameter lies.
        centroid_lps: the centre of mass of the lesion's voxels in patient LPS mm.
    """

    voxels: int
    volume_ml: float
    longest_diameter_mm: float
    perpendicular_diameter_mm: float
    slice_index: int | None
    centroid_lps: tuple[float, float, float] | None

    @property
    def product_mm2(self) -> float:
        """The bidimensional product (RANO): longest x perpendicular diameter, in mm²."""
        return self.longest_diameter_mm * self.perpendicular_diameter_mm

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["product_mm2"] = self.product_mm2
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()} | {
            "centroid_lps": None if self.centroid_lps is None else [round(c, 2) for c in self.centroid_lps]}


@dataclass(frozen=True)
class MaskMeasure:
    """The size of every lesion in a mask, and of the whole.

    Attributes:
        whole: the whole mask measured as one object (for a single lesion, that lesion).
        lesions: each 3D connected component, largest volume first.
        connectivity: 26 or 6, the neighbourhood that made the components.
    """

    whole: LesionMeasure
    lesions: tuple[LesionMeasure, ...]
    connectivity: int = 26

    def to_dict(self) -> dict[str, Any]:
        return {**self.whole.to_dict(), "connectivity": self.connectivity,
                "lesions": [lesion.to_dict() for lesion in self.lesions]}


def _footprint(u: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Size along unit direction(s) ``u`` (..., 2) of a pixel seen as an ellipse of its spacing."""
    return np.sqrt(((u * spacing) ** 2).sum(axis=-1))


def _extreme_points(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices (the farthest pair is among them), or all points when degenerate."""
    if len(points) < 4:
        return points
    from scipy.spatial import ConvexHull, QhullError

    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # collinear: a lesion one pixel wide
        return points


def in_plane_diameters(plane: np.ndarray, pixel_spacing: tuple[float, float]) -> tuple[float, float]:
    """The longest diameter of a 2D mask and the longest diameter perpendicular to it, in mm.

    Args:
        plane: 2D array (rows, cols); nonzero pixels are the lesion.
        pixel_spacing: (row spacing, column spacing) in mm.

    Returns:
        ``(longest_mm, perpendicular_mm)``; ``(0.0, 0.0)`` for an empty plane.
    """
    spacing = np.asarray(pixel_spacing, float)
    points = np.argwhere(plane) * spacing
    if len(points) == 0:
        return 0.0, 0.0
    if len(points) == 1:
        return float(spacing.max()), float(spacing.min())
    ends = _extreme_points(points)
    i, j = np.triu_indices(len(ends), k=1)
    delta = ends[j] - ends[i]
    dist = np.hypot(delta[:, 0], delta[:, 1])
    unit = delta / dist[:, None]
    best = int(np.argmax(dist + _footprint(unit, spacing)))
    u = unit[best]
    longest = float(dist[best] + _footprint(u, spacing))
    v = np.array([-u[1], u[0]])
    along, across = points @ u, points @ v
    step = float(_footprint(u, spacing))
    width = 0.0
    for offset in (0.0, 0.5):  # two sets of one-pixel bands, half a band apart
        band = np.floor((along - along.min()) / step + offset).astype(np.int64)
        order = np.argsort(band, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(band[order]) != 0])
        sorted_across = across[order]
        extent = np.maximum.reduceat(sorted_across, starts) - np.minimum.reduceat(sorted_across, starts)
        width = max(width, float(extent.max()))
    perpendicular = min(width + float(_footprint(v, spacing)), longest)
    return longest, perpendicular


def _measure_object(obj: np.ndarray, image: Image, offset: tuple[int, ...] = (0, 0, 0)) -> LesionMeasure:
    """Measure one boolean object (a crop of the mask starting at ``offset``)."""
    voxels = int(obj.sum())
    if voxels == 0:
        return LesionMeasure(0, 0.0, 0.0, 0.0, None, None)
    pixel_spacing = (image.spacing[1], image.spacing[2])
    best = (-1.0, -1.0, 0)
    for z in range(obj.shape[0]):
        if obj[z].any():
            ld, pd = in_plane_diameters(obj[z], pixel_spacing)
            if (ld, pd) > best[:2]:
                best = (ld, pd, z)
    centre = np.argwhere(obj).mean(axis=0) + np.asarray(offset)
    lps = image.affine @ np.r_[centre, 1.0]
    return LesionMeasure(voxels=voxels, volume_ml=voxels * image.voxel_volume_mm3 / 1000.0,
                         longest_diameter_mm=best[0], perpendicular_diameter_mm=best[1],
                         slice_index=best[2] + offset[0], centroid_lps=tuple(float(c) for c in lps[:3]))


def measure_mask(mask: Image, *, connectivity: int = 26) -> MaskMeasure:
    """Volume and in-plane diameters of each lesion in a mask, and of the whole.

    Args:
        mask: a 3D single-channel Image, ``(1, slices, rows, cols)``; voxels > 0 are lesion
            (every label of a label map counts). Its spacing must be known.
        connectivity: 26 (faces, edges and corners touch) or 6 (faces only).

    Returns:
        The whole mask's measure and each lesion's, largest volume first.

    Raises:
        ShapeError: the mask is not one 3D channel.
        GeometryError: the mask's spacing is unknown (a 1 mm stand-in would give wrong mm).
        ValueError: ``connectivity`` is neither 6 nor 26.
    """
    from scipy import ndimage

    if mask.n_spatial != 3 or mask.channels != 1:
        raise ShapeError(f"a lesion mask must be one 3D channel (1, slices, rows, cols); got shape "
                         f"{mask.array.shape}", path=mask.source)
    if not mask.spacing_known:
        raise GeometryError("the mask's voxel spacing is unknown (the reader used a 1 mm stand-in), so sizes in mm "
                            "and mL cannot be measured", path=mask.source)
    if connectivity not in (6, 26):
        raise ValueError(f"The 'connectivity' parameter of measure_mask must be 6 or 26. Got {connectivity!r} instead.")
    lesion = np.asarray(mask.array[0]) > 0
    structure = ndimage.generate_binary_structure(3, 3 if connectivity == 26 else 1)
    labels, n = ndimage.label(lesion, structure=structure)
    measures = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            measures.append(_measure_object(labels[box] == k, mask, tuple(s.start for s in box)))
    measures.sort(key=lambda m: (-m.voxels, -m.longest_diameter_mm))
    return MaskMeasure(whole=_measure_object(lesion, mask), lesions=tuple(measures), connectivity=connectivity)
