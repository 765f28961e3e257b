"""A CT scan as the detector sees it: checked, lung-masked, cropped to the lungs and put on the
network grid (isotropic, intensity-normalised), with the geometry to go back to patient mm.

The crop is the lungs' bounding box plus ``lung_margin_mm`` (the whole volume when no lung is
found, e.g. a thin slab through the apex). Resampling and normalisation are the model's
``preprocessing`` (:class:`~medsight.transforms.preprocess.SpacingPreprocessor`), so training
and inference prepare a scan the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.errors import InvalidValueError, ModalityError, ShapeError
from medsight.io.image import Image
from medsight.transforms.geometry import Grid
from medsight.transforms.lung import LungMask, lung_mask

__all__ = ["PreparedScan", "check_ct", "prepare_scan", "preprocessing_spec"]

log = logging.getLogger(__name__)

#: A detector needs this many slices at least (the LIDC slabs have 11-16).
MIN_SLICES = 4


def preprocessing_spec(spacing_mm: float, hu_window: tuple[float, float]) -> dict[str, Any]:
    """The manifest's ``preprocessing``: isotropic ``spacing_mm``; HU clipped to the window and
    mapped to [0, 1] (air 0, so the zero padding of windows at the scan's edges is air)."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    return {"kind": "spacing", "target_spacing": [float(spacing_mm)] * 3, "channels": 1,
            "normalization": [{"scheme": "ct", "lower": lo, "upper": hi, "mean": lo, "sd": hi - lo}]}


def check_ct(image: Image, *, model: str = "the detector", modalities: Any = ("CT",)) -> None:
    """Refuse what a CT nodule detector cannot measure: not 3D, a single channel, too few
    slices, no spacing, a modality other than ``modalities`` (``OT``, unknown, is accepted),
    NaN.

    Raises:
        ShapeError, ModalityError, InvalidValueError: one line saying what is wrong.
    """
    where = image.source
    if image.n_spatial != 3:
        raise ShapeError(f"{model} takes 3D CT volumes; got a {image.n_spatial}D image of shape {image.shape}",
                         path=where)
    if image.channels != 1:
        raise ShapeError(f"{model} takes single-channel CT; got {image.channels} channels", path=where)
    if image.shape[0] < MIN_SLICES:
        raise ShapeError(f"{model} needs at least {MIN_SLICES} slices; got {image.shape[0]}", path=where)
    if not image.spacing_known:
        raise InvalidValueError(f"{model} measures in mm and this volume has no voxel spacing "
                                "(a PNG stack, an array, a DICOM without PixelSpacing)", path=where)
    allowed = [m.upper() for m in (modalities or [])]
    if allowed and image.modality not in ("OT", "", None) and image.modality.upper() not in allowed:
        raise ModalityError(f"{model} takes {'/'.join(allowed)} images; this one is {image.modality}", path=where)
    if image.array.dtype.kind == "f" and not np.isfinite(image.array).all():
        raise InvalidValueError("the volume holds NaN or infinite values", path=where)


@dataclass
class PreparedScan:
    """A scan on the network grid.

    Attributes:
        x: ``(1, z, y, x)`` float32, the network input.
        grid: the network grid's geometry (index ↔ LPS mm).
        source: the original image's grid (for voxel centres in the input's own indices).
        lungs: the lung mask (on the original grid).
        crop: the crop's slices in the original volume.
    """

    x: np.ndarray
    grid: Grid
    source: Grid
    lungs: LungMask
    crop: tuple[slice, ...]

    def hu(self, window: tuple[float, float]) -> np.ndarray:
        """The grid's HU, clipped to ``window`` (the inverse of the normalisation)."""
        lo, hi = window
        return self.x[0] * (hi - lo) + lo

    def to_grid(self, points_mm: np.ndarray) -> np.ndarray:
        return self.grid.world_to_index(np.asarray(points_mm, float).reshape(-1, 3))


def prepare_scan(image: Image, preprocessor: Any, *, lung_margin_mm: float = 10.0) -> PreparedScan:
    """Lung mask, crop and network grid of a checked CT ``image`` (:func:`check_ct`)."""
    lungs = lung_mask(image)
    if not lungs.found:
        log.warning("no lungs found (%s): searching the whole volume", lungs.reason)
    crop = lungs.crop(margin_mm=lung_margin_mm)
    source = Grid.of(image)
    lo = [s.start for s in crop]
    cropped = image.with_array(np.ascontiguousarray(image.array[(slice(None), *crop)]),
                               origin=tuple(float(v) for v in source.index_to_world(lo)))
    prepared = preprocessor.apply(cropped)
    x = prepared.tensor.numpy().astype(np.float32, copy=False)
    return PreparedScan(x=x, grid=prepared.grid, source=source, lungs=lungs, crop=crop)
