"""Segmentation's own preprocessing glue: label maps to and from the network grid.

Resampling to the target spacing and the intensity normalisation are shared
(:class:`medsight.transforms.preprocess.SpacingPreprocessor`, what ``SavedModel.preprocessor``
gives a segmentation model); what is left here is about label maps: label values to class
indices, a class-index mask onto the network grid, and a class map back to the input's grid,
by nearest neighbour (values are kept exactly).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medsight.io.image import Image
from medsight.transforms.preprocess import SpacingPreprocessor
from medsight.transforms.spacing import resize

__all__ = ["SegPreprocessor", "label_lookup", "classes_to_shape"]


def label_lookup(values: Sequence[int]) -> np.ndarray:
    """A table mapping label values to class indices 0..K-1 (undeclared values → 0)."""
    lut = np.zeros(max(values) + 1, dtype=np.uint8 if len(values) <= 256 else np.int64)
    for i, v in enumerate(values):
        lut[v] = i
    return lut


def classes_to_shape(classes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A class-index map ``(*spatial)`` resampled by nearest neighbour to ``shape``."""
    if tuple(classes.shape) == tuple(shape):
        return classes
    t = torch.from_numpy(np.ascontiguousarray(classes)[None].astype(np.float32))
    return resize(t, shape, "nearest")[0].numpy().astype(classes.dtype)


class SegPreprocessor(SpacingPreprocessor):
    """:class:`~medsight.transforms.preprocess.SpacingPreprocessor` plus the label maps a
    segmentation trainer needs.

    Args:
        spec: the ``preprocessing`` mapping of a segmentation manifest (``target_spacing``,
            ``normalization``, ``channels``).
    """

    def mask(self, classes: np.ndarray, image: Image) -> np.ndarray:
        """A class-index mask ``(*spatial)`` of ``image`` on the network grid (nearest)."""
        return classes_to_shape(classes, self.grid_shape(image))

    def classes_back(self, classes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """A class-index map ``(*grid)`` resampled by nearest neighbour to ``shape``."""
        return classes_to_shape(classes, shape)
