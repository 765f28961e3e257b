"""Blend a heatmap over its image: the picture a radiologist sees in the viewer.

Every picture is rendered at most :data:`MAX_SIDE` pixels along its longest side (a larger
image is shrunk by a whole factor, averaging blocks of pixels, a band of rows at a time) and
in uint8, so a picture of any image costs a few tens of MB at most; the Secondary Capture
made from it is capped the same way (:func:`medsight.io.dicom_out.build_sc`).
"""

from __future__ import annotations

import numpy as np

from medsight.errors import ShapeError
from medsight.io.image import Image
from medsight.io.limits import MAX_SIDE, display_shape, shrink_factor
from medsight.palette import LABEL_COLOURS

__all__ = ["overlay", "grayscale_uint8", "label_overlay", "LABEL_COLOURS", "MAX_SIDE", "display_shape",
           "shrink_factor"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _shrink(plane: np.ndarray, f: int) -> np.ndarray:
    """``(channels, rows, cols)`` → ``(rows/f, cols/f)`` float32 block means (luminance for RGB).

    Works a band of rows at a time, so only the result and one band are ever in float32.
    """
    rows, cols = plane.shape[1:]
    out = np.empty((-(-rows // f), -(-cols // f)), np.float32)
    col_starts = np.arange(0, cols, f)
    col_counts = np.diff(np.append(col_starts, cols)).astype(np.float32)
    band = f * max(1, (2**24 // max(cols, 1)) // f)  # about 16 M values per band
    for r0 in range(0, rows, band):
        chunk = plane[:, r0:r0 + band].astype(np.float32)
        chunk = chunk[0] if chunk.shape[0] == 1 else np.tensordot(_LUMA, chunk[:3], axes=1)
        if f > 1:
            row_starts = np.arange(0, chunk.shape[0], f)
            counts = np.diff(np.append(row_starts, chunk.shape[0])).astype(np.float32)[:, None] * col_counts
            chunk = np.add.reduceat(np.add.reduceat(chunk, row_starts, axis=0), col_starts, axis=1) / counts
        out[r0 // f:r0 // f + chunk.shape[0]] = chunk
    return out


def grayscale_uint8(image: Image, *, slice_index: int | None = None, max_side: int = MAX_SIDE) -> np.ndarray:
    """The image as ``(rows, cols)`` uint8 for display: the stored window when there is one,
    else the 0.5-99.5 percentile range; RGB is converted to luminance. An image larger than
    ``max_side`` is shrunk to :func:`display_shape` (block means)."""
    arr = np.asarray(image.array)
    if image.n_spatial == 3:
        arr = arr[:, arr.shape[1] // 2 if slice_index is None else slice_index]
    arr = _shrink(arr, shrink_factor(*arr.shape[1:], max_side))
    window = image.meta.get("window")
    if window:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return (np.clip((arr - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def overlay(image: Image, heat: np.ndarray, *, alpha: float = 0.45, floor: float = 0.2,
            colormap: str = "jet", max_side: int = MAX_SIDE, slice_index: int | None = None) -> np.ndarray:
    """The image in gray with the heatmap in colour where it is above ``floor``.

    Args:
        image: a 2D image (a 3D one shows its middle slice).
        heat: ``(rows, cols)`` values in [0, 1] in the image's geometry (or the volume's), at
            the image's size or at its :func:`display_shape` (what :func:`~medsight.explain.heatmap` gives).
        alpha: opacity of the colour at the hottest point.
        floor: heat below this is not coloured, so the anatomy stays readable.
        colormap: a matplotlib colormap name (its 256-colour table, applied in uint8).
        max_side: longest side of the picture.
        slice_index: for a 3D image, the slice shown (default the middle one); a 3D ``heat`` is
            cut at the same slice, a 2D one is that slice's.

    Returns:
        ``(rows, cols, 3)`` uint8 RGB, ``(rows, cols)`` being the image's :func:`display_shape`.

    Raises:
        ShapeError: the heatmap does not match the image.
    """
    from matplotlib import colormaps

    heat = np.asarray(heat, dtype=np.float32)
    if image.n_spatial == 3 and heat.ndim == 3:
        heat = heat[heat.shape[0] // 2 if slice_index is None else slice_index]
    gray = grayscale_uint8(image, slice_index=slice_index, max_side=max_side)
    full = tuple(image.shape[-2:])
    if heat.shape == full and heat.shape != gray.shape:  # a full-size heatmap: shrink it like the image
        heat = _shrink(heat[None], shrink_factor(*full, max_side))
    if heat.shape != gray.shape:
        raise ShapeError(f"expected a heatmap of shape {gray.shape} or {full} (the image's rows, cols); "
                         f"got {heat.shape}")
    heat = np.clip(heat, 0, 1)
    lut = colormaps[colormap](np.arange(256))[:, :3].astype(np.float32) * 255  # what the colormap does to floats
    index = np.minimum((heat * 256).astype(np.uint16), 255)
    weight = alpha * np.clip((heat - floor) / max(1 - floor, 1e-6), 0, 1)
    base = gray.astype(np.float32) * (1 - weight)
    out = np.empty((*gray.shape, 3), np.uint8)
    for ch in range(3):  # one channel at a time: a few (rows, cols) float32 planes, no RGBA
        out[..., ch] = np.clip(base + lut[index, ch] * weight, 0, 255).round()
    return out




def label_overlay(image: Image, labels: np.ndarray, *, alpha: float = 0.45,
                  slice_index: int | None = None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, int | None]:
    """The image in gray with each label value filled in its colour and outlined.

    Args:
        image: a 2D or 3D image.
        labels: integer labels on the image's grid, ``image.shape`` (0 is background).
        alpha: opacity of the fill; the one-pixel outline is opaque.
        slice_index: for 3D, the slice to show; default the slice with the most labelled voxels.
        max_side: longest side of the picture (a larger slice is shrunk; labels by nearest neighbour).

    Returns:
        ``(rows, cols, 3)`` uint8 RGB at the slice's :func:`display_shape`, and the slice shown
        (None for 2D).

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
    gray = grayscale_uint8(image, slice_index=shown, max_side=max_side)
    f = shrink_factor(*labels.shape, max_side)
    labels = labels[::f, ::f]
    out = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=2)
    for value in (int(v) for v in np.unique(labels) if v > 0):
        colour = LABEL_COLOURS[(value - 1) % len(LABEL_COLOURS)]
        region = labels == value
        edge = region & ~ndimage.binary_erosion(region)
        out[region] = out[region] * (1 - alpha) + colour * alpha
        out[edge] = colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), shown
