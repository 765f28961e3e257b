"""The preprocessing a segmentation model carries: to the network's grid and back.

The network sees every image at the plan's target spacing and with the plan's intensity
normalisation; its output is brought back to the input's own voxel grid, so a mask always has
the geometry of the image it was computed on. Resampling keeps the field of view (voxel edges
stay where they were; MONAI ``Resize`` with ``align_corners=False``), so going to the grid and
back is exact in position. Images are interpolated linearly, masks by nearest neighbour,
probabilities linearly before the argmax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medsight.errors import InvalidValueError, ShapeError
from medsight.io.image import Image

__all__ = ["SegPreprocessor", "label_lookup"]


def label_lookup(values: Sequence[int]) -> np.ndarray:
    """A table mapping label values to class indices 0..K-1 (undeclared values → 0)."""
    lut = np.zeros(max(values) + 1, dtype=np.uint8 if len(values) <= 256 else np.int64)
    for i, v in enumerate(values):
        lut[v] = i
    return lut


def _resize(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    from monai.transforms import Resize

    if tuple(x.shape[1:]) == tuple(size):
        return x
    if mode == "linear":
        mode = "bilinear" if len(size) == 2 else "trilinear"
    out = Resize(spatial_size=list(size), mode=mode, anti_aliasing=False)(x)
    return out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)


def _mean_sd(x: np.ndarray, rows: int = 1 << 22) -> tuple[float, float]:
    """Mean and standard deviation of ``x`` in float64, without a float64 copy of it."""
    flat = x.reshape(-1)
    n = flat.size
    total = sum(float(flat[i:i + rows].sum(dtype=np.float64)) for i in range(0, n, rows))
    mean = total / max(n, 1)
    sq = sum(float(np.square(flat[i:i + rows] - mean, dtype=np.float64).sum()) for i in range(0, n, rows))
    return mean, (sq / max(n, 1)) ** 0.5


class SegPreprocessor:
    """Image → float32 tensor ``(C, *grid)`` at the target spacing, and network output back.

    Args:
        spec: the ``preprocessing`` mapping of a segmentation manifest: ``target_spacing``
            (mm, array axis order), ``normalization`` (one ``{"scheme": ...}`` per channel:
            ``zscore``, ``percentile`` or ``ct`` with ``lower``/``upper``/``mean``/``sd``),
            ``channels``.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.target_spacing = tuple(float(s) for s in spec["target_spacing"])
        self.spatial_dims = len(self.target_spacing)
        self.normalization = list(spec["normalization"])
        self.channels = int(spec.get("channels", len(self.normalization)))

    def grid_shape(self, image: Image) -> tuple[int, ...]:
        """The image's shape at the target spacing (voxels, array order)."""
        return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(image.shape, image.spacing, self.target_spacing))

    def normalize(self, arr: np.ndarray) -> np.ndarray:
        """Intensity normalisation per channel; ``arr`` is ``(C, *spatial)``.

        Works in place on one float32 copy of the image (statistics are accumulated slab by
        slab in float64), so a large CT costs one extra volume of memory, not three.
        """
        out = np.empty(arr.shape, np.float32)
        for c, rule in enumerate(self.normalization):
            x = out[c]
            x[...] = arr[c]
            scheme = rule.get("scheme", "zscore")
            if scheme == "ct":
                np.clip(x, rule["lower"], rule["upper"], out=x)
                x -= np.float32(rule["mean"])
                x /= np.float32(rule["sd"])
                continue
            if scheme == "percentile":
                lo, hi = np.percentile(x, [0.5, 99.5])
                np.clip(x, lo, hi, out=x)
            mean, sd = _mean_sd(x)
            x -= np.float32(mean)
            x /= np.float32(max(sd, 1e-8))
        return out

    def image(self, image: Image) -> torch.Tensor:
        """The network input: ``(C, *grid)`` float32, normalised and resampled.

        Raises:
            ShapeError: wrong number of dimensions or channels.
            InvalidValueError: NaN or infinite voxels.
        """
        if image.n_spatial != self.spatial_dims:
            raise ShapeError(f"this model takes {self.spatial_dims}D images; got a {image.n_spatial}D image of shape "
                             f"{image.shape}", path=image.source)
        if image.channels != self.channels:
            raise ShapeError(f"this model takes {self.channels} channel(s); the image has {image.channels}",
                             path=image.source)
        if image.array.dtype.kind == "f" and not np.all(np.isfinite(image.array)):
            raise InvalidValueError("image holds NaN or infinite values", path=image.source)
        x = torch.from_numpy(self.normalize(image.array))
        return _resize(x, self.grid_shape(image), "linear").contiguous()

    def mask(self, classes: np.ndarray, image: Image) -> np.ndarray:
        """A class-index mask ``(*spatial)`` of ``image`` on the network grid (nearest)."""
        grid = self.grid_shape(image)
        if tuple(classes.shape) == grid:
            return classes
        t = torch.from_numpy(np.ascontiguousarray(classes)[None].astype(np.float32))
        return _resize(t, grid, "nearest-exact")[0].numpy().astype(classes.dtype)

    def probabilities_back(self, probs: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Class probabilities ``(K, *grid)`` resampled linearly to the input's ``shape``."""
        return _resize(probs, shape, "linear")

    def classes_back(self, classes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """A class-index map ``(*grid)`` resampled by nearest neighbour to ``shape``."""
        if tuple(classes.shape) == tuple(shape):
            return classes
        t = torch.from_numpy(np.ascontiguousarray(classes)[None].astype(np.float32))
        return _resize(t, shape, "nearest-exact")[0].numpy().astype(classes.dtype)
