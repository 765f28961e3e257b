"""Torch datasets over prepared samples: preprocessing once (cached), augmentation per draw."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from medsight.data.case import Case
from medsight.errors import MedSightError
from medsight.transforms.preprocess import Preprocessor

__all__ = ["prepare_samples", "ArrayDataset"]

log = logging.getLogger(__name__)


def prepare_samples(samples: Sequence[Case], preprocessor: Preprocessor,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    """Read and preprocess every sample once.

    Returns:
        ``(arrays, kept, errors)``: a float32 array ``(N_ok, C, *spatial)``, the indices of the
        samples that were read, and one ``{"input", "error"}`` entry per sample that was not.
    """
    arrays: list[np.ndarray] = []
    kept: list[int] = []
    errors: list[dict[str, str]] = []
    for i, s in enumerate(samples):
        try:
            arrays.append(preprocessor.array(s.image()))
            kept.append(i)
        except MedSightError as exc:
            errors.append({"input": s.id, "error": str(exc)})
        if progress is not None and (i % 256 == 0 or i == len(samples) - 1):
            progress(i + 1, len(samples))
    if errors:
        log.warning("%d of %d images could not be used; first: %s", len(errors), len(samples), errors[0]["error"])
    if not arrays:
        return np.zeros((0,), np.float32), kept, errors
    return np.stack(arrays), kept, errors


class ArrayDataset(torch.utils.data.Dataset):
    """Prepared arrays and targets; applies a MONAI augmentation (dict with key ``image``) and
    the preprocessor's normalisation on each draw.

    Args:
        arrays: ``(N, C, *spatial)`` float32, intensities in [0, 1].
        targets: ``(N,)`` class indices or ``(N, L)`` multi-hot vectors.
        preprocessor: supplies the z-score normalisation.
        augmentation: a MONAI ``Compose`` or None.
    """

    def __init__(self, arrays: np.ndarray, targets: np.ndarray, preprocessor: Preprocessor,
                 augmentation: Any | None = None) -> None:
        self.arrays = torch.from_numpy(np.ascontiguousarray(arrays))
        self.targets = torch.from_numpy(np.asarray(targets))
        self.preprocessor = preprocessor
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.arrays)

    def reseed(self, seed: int) -> None:
        """Make the next pass of random augmentation a function of ``seed`` alone."""
        if self.augmentation is not None:
            self.augmentation.set_random_state(seed=seed)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.arrays[i]
        if self.augmentation is not None:
            x = torch.as_tensor(self.augmentation({"image": x})["image"]).float()
        return self.preprocessor.normalize(x), self.targets[i]
