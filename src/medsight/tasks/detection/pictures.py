"""Pictures of detections: an axial crop per nodule and an overlay of the top finding's slice,
in the lung window (-1350..150 HU), with each nodule circled at its diameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.io.image import Image

__all__ = ["nodule_crop", "overlay", "slice_index"]

LUNG_WINDOW = (-1350.0, 150.0)
CROP_MM = 64.0
_COLOURS = [(255, 64, 64), (255, 200, 0), (0, 200, 255), (160, 255, 90), (255, 120, 255)]


def _gray(plane: np.ndarray) -> np.ndarray:
    lo, hi = LUNG_WINDOW
    g = np.clip((plane.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255
    return np.repeat(g.astype(np.uint8)[..., None], 3, axis=2)


def _circle(rgb: np.ndarray, row: float, col: float, radius_rows: float, radius_cols: float,
            colour: tuple[int, int, int]) -> None:
    h, w = rgb.shape[:2]
    rr, cc = np.ogrid[:h, :w]
    d = np.sqrt(((rr - row) / max(radius_rows, 1.0)) ** 2 + ((cc - col) / max(radius_cols, 1.0)) ** 2)
    ring = np.abs(d - 1.0) <= 1.5 / max(min(radius_rows, radius_cols), 1.0)
    rgb[ring] = colour


def slice_index(image: Image, voxel: Sequence[float]) -> int:
    """The axial slice (array index) through a voxel centre ``[slice, row, column]``: the slice
    a crop or the overlay of that finding is drawn on."""
    return int(np.clip(round(voxel[0]), 0, image.shape[0] - 1))


def _slice_of(image: Image, voxel: Sequence[float]) -> tuple[np.ndarray, float, float]:
    return image.array[0, slice_index(image, voxel)], float(voxel[1]), float(voxel[2])


def nodule_crop(image: Image, d: Any) -> np.ndarray:
    """An axial ``CROP_MM`` crop through ``d``'s centre, the nodule circled, ``(H, W, 3)`` uint8."""
    plane, row, col = _slice_of(image, d.center_voxel)
    sy, sx = float(image.spacing[1]), float(image.spacing[2])
    hy, hx = int(CROP_MM / 2 / sy), int(CROP_MM / 2 / sx)
    r0, c0 = int(round(row)) - hy, int(round(col)) - hx
    out = np.full((2 * hy, 2 * hx), LUNG_WINDOW[0], np.float32)
    a, b = max(r0, 0), min(r0 + 2 * hy, plane.shape[0])
    c, e = max(c0, 0), min(c0 + 2 * hx, plane.shape[1])
    if b > a and e > c:
        out[a - r0:b - r0, c - c0:e - c0] = plane[a:b, c:e]
    rgb = _gray(out)
    r = d.diameter_mm / 2 + 2.0
    _circle(rgb, row - r0, col - c0, r / sy, r / sx, _COLOURS[0])
    return rgb


def overlay(image: Image, found: Sequence[Any]) -> np.ndarray | None:
    """The axial slice through the top finding, every finding within its radius of that slice
    circled (numbered by colour); None without findings."""
    if not found:
        return None
    plane, _, _ = _slice_of(image, found[0].center_voxel)
    rgb = _gray(plane)
    z0 = round(found[0].center_voxel[0])
    sz, sy, sx = (float(s) for s in image.spacing)
    for i, d in enumerate(found):
        r = d.diameter_mm / 2 + 2.0
        if abs(d.center_voxel[0] - z0) * sz <= r:
            _circle(rgb, d.center_voxel[1], d.center_voxel[2], r / sy, r / sx, _COLOURS[i % len(_COLOURS)])
    return rgb
