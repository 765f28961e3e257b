"""Blend a heatmap over its image: the picture a radiologist sees in the viewer."""

from __future__ import annotations

import numpy as np

from medsight.errors import ShapeError
from medsight.io.image import Image

__all__ = ["overlay", "grayscale_uint8", "label_overlay", "LABEL_COLOURS"]


def grayscale_uint8(image: Image, *, slice_index: int | None = None) -> np.ndarray:
    """The image as ``(rows, cols)`` uint8 for display: the stored window when there is one,
    else the 0.5-99.5 percentile range; RGB is converted to luminance."""
    arr = np.asarray(image.array, dtype=np.float32)
    if image.n_spatial == 3:
        arr = arr[:, arr.shape[1] // 2 if slice_index is None else slice_index]
    arr = arr[0] if arr.shape[0] == 1 else np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), arr[:3], axes=1)
    window = image.meta.get("window")
    if window:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return (np.clip((arr - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def overlay(image: Image, heat: np.ndarray, *, alpha: float = 0.45, floor: float = 0.2,
            colormap: str = "jet") -> np.ndarray:
    """The image in gray with the heatmap in colour where it is above ``floor``.

    Args:
        image: a 2D image (a 3D one shows its middle slice).
        heat: ``(rows, cols)`` values in [0, 1] in the image's geometry (or the volume's).
        alpha: opacity of the colour at the hottest point.
        floor: heat below this is not coloured, so the anatomy stays readable.
        colormap: a matplotlib colormap name.

    Returns:
        ``(rows, cols, 3)`` uint8 RGB.

    Raises:
        ShapeError: the heatmap does not match the image.
    """
    from matplotlib import colormaps

    heat = np.asarray(heat, dtype=np.float32)
    if image.n_spatial == 3 and heat.ndim == 3:
        heat = heat[heat.shape[0] // 2]
    gray = grayscale_uint8(image)
    if heat.shape != gray.shape:
        raise ShapeError(f"expected a heatmap of shape {gray.shape} (the image's rows, cols); got {heat.shape}")
    colours = colormaps[colormap](np.clip(heat, 0, 1))[..., :3].astype(np.float32)
    weight = (alpha * np.clip((heat - floor) / max(1 - floor, 1e-6), 0, 1))[..., None]
    base = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=2)
    return (np.clip(base * (1 - weight) + colours * weight, 0, 1) * 255).round().astype(np.uint8)


#: Label colours (RGB 0-1) for values 1, 2, ...: colour-blind-safe (Okabe-Ito), repeating.
LABEL_COLOURS = np.array([(0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26),
                          (0.0, 0.45, 0.70), (0.84, 0.37, 0.0), (0.80, 0.47, 0.65)], np.float32)


def label_overlay(image: Image, labels: np.ndarray, *, alpha: float = 0.45,
                  slice_index: int | None = None) -> tuple[np.ndarray, int | None]:
    """The image in gray with each label value filled in its colour and outlined.

    Args:
        image: a 2D or 3D image.
        labels: integer labels on the image's grid, ``image.shape`` (0 is background).
        alpha: opacity of the fill; the one-pixel outline is opaque.
        slice_index: for 3D, the slice to show; default the slice with the most labelled voxels.

    Returns:
        ``(rows, cols, 3)`` uint8 RGB, and the slice shown (None for 2D).

    Raises:
        ShapeError: the labels are not on the image's grid.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise ShapeError(f"expected labels of shape {image.shape} (the image's grid); got {labels.shape}")
    shown = None
    if image.n_spatial == 3:
        shown = int(np.argmax((labels > 0).reshape(labels.shape[0], -1).sum(1))) if slice_index is None \
            else int(slice_index)
        labels = labels[shown]
    gray = grayscale_uint8(image, slice_index=shown)
    out = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=2)
    for value in (int(v) for v in np.unique(labels) if v > 0):
        colour = LABEL_COLOURS[(value - 1) % len(LABEL_COLOURS)]
        region = labels == value
        edge = region & ~ndimage.binary_erosion(region)
        out[region] = out[region] * (1 - alpha) + colour * alpha
        out[edge] = colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), shown
