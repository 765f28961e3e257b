"""The preprocessing a saved model carries: from an Image to the network's input tensor.

Training, evaluation, prediction and the service all call :class:`Preprocessor`, built from
the ``preprocessing`` section of the model's manifest, so an image is prepared the same way
everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medsight.errors import ShapeError
from medsight.io.image import Image
from medsight.transforms.intensity import ct_window_bounds, to_unit_range

__all__ = ["Preprocessor"]


class Preprocessor:
    """Image → float32 tensor of shape ``(channels, *spatial_size)``.

    Steps: channel conversion (RGB → luminance, or gray → repeated), intensity to [0, 1]
    (see :func:`~medsight.transforms.intensity.to_unit_range`), resize with MONAI's
    ``Resize`` (area averaging when shrinking, bilinear when enlarging), then z-scoring with
    the training set's mean and std when the spec holds them.

    Args:
        spec: the ``preprocessing`` mapping of a config or manifest.
        spatial_dims: 2 or 3.
    """

    def __init__(self, spec: dict[str, Any], *, spatial_dims: int = 2) -> None:
        self.spec = dict(spec)
        self.spatial_dims = spatial_dims
        size = spec.get("spatial_size")
        self.spatial_size = tuple(int(s) for s in size) if size else None
        if self.spatial_size is not None and len(self.spatial_size) != spatial_dims:
            raise ShapeError(f"spatial_size {self.spatial_size} does not match {spatial_dims}D")
        window = spec.get("ct_window")
        self.window = ct_window_bounds(window) if window else None

    def array(self, image: Image) -> np.ndarray:
        """The preprocessed array (before z-scoring), shape ``(channels, *spatial_size)``."""
        if image.n_spatial != self.spatial_dims:
            kind = "2D" if self.spatial_dims == 2 else "3D"
            raise ShapeError(
                f"this model takes {kind} images; got a {image.n_spatial}D image of shape {image.shape}"
            )
        arr = image.array
        want = int(self.spec.get("channels", 1))
        if arr.shape[0] != want:
            if want == 1 and arr.shape[0] in (3, 4):
                luma = np.array([0.299, 0.587, 0.114], np.float32)
                arr = np.tensordot(luma, arr[:3].astype(np.float32), axes=1)[None]
            elif arr.shape[0] == 1:
                arr = np.repeat(arr, want, axis=0)
            else:
                raise ShapeError(f"model takes {want} channel(s); image has {arr.shape[0]}")
        window = self.window
        if window is None and image.meta.get("window"):
            c, w = image.meta["window"]
            if image.meta.get("inversion_sum") is not None:  # MONOCHROME1 was inverted on read
                c = float(image.meta["inversion_sum"]) - c
            window = (c - w / 2, c + w / 2)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):  # integers are always finite
            from medsight.errors import InvalidValueError

            raise InvalidValueError("image holds NaN or infinite values", path=image.source)
        arr = to_unit_range(
            arr, mode=self.spec.get("intensity", "range"), a_min=self.spec.get("a_min", 0.0),
            a_max=self.spec.get("a_max", 255.0), lower_percentile=self.spec.get("lower_percentile", 0.5),
            upper_percentile=self.spec.get("upper_percentile", 99.5), window=window,
        )
        if self.spatial_size is not None and tuple(arr.shape[1:]) != self.spatial_size:
            arr = _resize(arr, self.spatial_size)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.spec.get("normalize_mean"), self.spec.get("normalize_std")
        if mean is None or std is None:
            return x
        return (x - float(mean)) / float(std)

    def __call__(self, image: Image) -> torch.Tensor:
        return self.normalize(torch.from_numpy(self.array(image)))


def _resize(arr: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    from monai.transforms import Resize

    shrinking = all(s <= a for s, a in zip(size, arr.shape[1:]))
    mode = "area" if shrinking else ("bilinear" if len(size) == 2 else "trilinear")
    out = Resize(spatial_size=size, mode=mode, anti_aliasing=False)(torch.from_numpy(np.ascontiguousarray(arr)))
    return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=np.float32)
