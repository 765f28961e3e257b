"""The preprocessing a saved model carries: from an Image to the network's input tensor.

Training, evaluation, prediction and the service all use the preprocessor built from the
``preprocessing`` section of the model's manifest (``SavedModel.preprocessor``, through
:func:`build_preprocessor`), so an image is prepared the same way everywhere. Two kinds:

* :class:`Preprocessor` (``kind: resize``, classification): channels, intensity to [0, 1], resize to a
  fixed ``spatial_size``, z-score with the training set's statistics.
* :class:`SpacingPreprocessor` (``kind: spacing``, segmentation): per-channel normalisation, resample
  to a ``target_spacing`` in mm; and the network's output back onto the input's grid.

Both give the network input and, from ``apply``, where the network's grid sits in patient
space (:class:`~medsight.transforms.geometry.Grid`, with the steps applied), so a finding on
the network grid maps back to the patient's millimetres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medsight.errors import ConfigError, InvalidValueError, ShapeError
from medsight.io.image import Image
from medsight.transforms.geometry import Grid
from medsight.transforms.intensity import ct_window_bounds, normalize_channels, to_unit_range
from medsight.transforms.spacing import resize, shape_at_spacing

__all__ = ["Preprocessor", "SpacingPreprocessor", "Prepared", "build_preprocessor"]


@dataclass(frozen=True)
class Prepared:
    """A network input and its geometry.

    Attributes:
        tensor: float32 ``(C, *grid.shape)``.
        grid: where the tensor's voxels sit in patient space, and the steps applied.
    """

    tensor: torch.Tensor
    grid: Grid


class Preprocessor:
    """Image → float32 tensor of shape ``(channels, *spatial_size)``.

    Steps: channel conversion (RGB → luminance, or gray → repeated), intensity to [0, 1]
    (see :func:`~medsight.transforms.intensity.to_unit_range`), resize with
    :func:`~medsight.transforms.spacing.resize` (``auto``: area averaging when shrinking,
    linear when enlarging), then z-scoring with the training set's mean and std when the spec
    holds them.

    Args:
        spec: the ``preprocessing`` mapping of a config or manifest.
        spatial_dims: 2 or 3.
    """

    def __init__(self, spec: Mapping[str, Any], *, spatial_dims: int = 2) -> None:
        self.spec = dict(spec)
        self.spatial_dims = spatial_dims
        size = spec.get("spatial_size")
        self.spatial_size = tuple(int(s) for s in size) if size else None
        if self.spatial_size is not None and len(self.spatial_size) != spatial_dims:
            raise ShapeError(f"spatial_size {self.spatial_size} does not match {spatial_dims}D")
        window = spec.get("ct_window")
        self.window = ct_window_bounds(window) if window else None

    def _prepare(self, image: Image) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if image.n_spatial != self.spatial_dims:
            kind = "2D" if self.spatial_dims == 2 else "3D"
            raise ShapeError(
                f"this model takes {kind} images; got a {image.n_spatial}D image of shape {image.shape}"
            )
        steps: list[dict[str, Any]] = []
        arr = image.array
        want = int(self.spec.get("channels", 1))
        if arr.shape[0] != want:
            if want == 1 and arr.shape[0] in (3, 4):
                luma = np.array([0.299, 0.587, 0.114], np.float32)
                arr = np.tensordot(luma, arr[:3].astype(np.float32), axes=1)[None]
                steps.append({"name": "channels", "from": int(image.channels), "to": 1, "how": "luminance"})
            elif arr.shape[0] == 1:
                arr = np.repeat(arr, want, axis=0)
                steps.append({"name": "channels", "from": 1, "to": want, "how": "repeat"})
            else:
                raise ShapeError(f"model takes {want} channel(s); image has {arr.shape[0]}")
        window = self.window
        if window is None and image.meta.get("window"):
            c, w = image.meta["window"]
            if image.meta.get("inversion_sum") is not None:  # MONOCHROME1 was inverted on read
                c = float(image.meta["inversion_sum"]) - c
            window = (c - w / 2, c + w / 2)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):  # integers are always finite
            raise InvalidValueError("image holds NaN or infinite values", path=image.source)
        mode = self.spec.get("intensity", "range")
        arr = to_unit_range(
            arr, mode=mode, a_min=self.spec.get("a_min", 0.0),
            a_max=self.spec.get("a_max", 255.0), lower_percentile=self.spec.get("lower_percentile", 0.5),
            upper_percentile=self.spec.get("upper_percentile", 99.5), window=window,
        )
        steps.append({"name": "to_unit_range", "mode": mode, "window": list(window) if window else None})
        if self.spatial_size is not None and tuple(arr.shape[1:]) != self.spatial_size:
            steps.append({"name": "resize", "from": list(arr.shape[1:]), "to": list(self.spatial_size),
                          "mode": "auto"})
            arr = resize(arr, self.spatial_size, "auto")
        return np.ascontiguousarray(arr, dtype=np.float32), steps

    def array(self, image: Image) -> np.ndarray:
        """The preprocessed array (before z-scoring), shape ``(channels, *spatial_size)``."""
        return self._prepare(image)[0]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.spec.get("normalize_mean"), self.spec.get("normalize_std")
        if mean is None or std is None:
            return x
        return (x - float(mean)) / float(std)

    def apply(self, image: Image) -> Prepared:
        """The network input and its grid: a resize keeps the field of view, so the grid's
        spacing is the source's times ``n_in / n_out``, in the source's direction."""
        arr, steps = self._prepare(image)
        grid = Grid.of(image)
        for step in steps:
            grid = grid.resized(step["to"], **step) if step["name"] == "resize" else grid.with_step(**step)
        mean, std = self.spec.get("normalize_mean"), self.spec.get("normalize_std")
        if mean is not None and std is not None:
            grid = grid.with_step(name="zscore", mean=float(mean), std=float(std))
        return Prepared(tensor=self.normalize(torch.from_numpy(arr)), grid=grid)

    def __call__(self, image: Image) -> torch.Tensor:
        """The network input (``apply(image).tensor``)."""
        return self.normalize(torch.from_numpy(self.array(image)))


class SpacingPreprocessor:
    """Image → float32 tensor ``(C, *grid)`` at the target spacing, and network output back.

    Resampling keeps the field of view (voxel edges stay where they were), so going to the
    grid and back is exact in position. Images are interpolated linearly, probabilities
    linearly before the argmax.

    Args:
        spec: a ``preprocessing`` mapping with ``target_spacing`` (mm, array axis order),
            ``normalization`` (one ``{"scheme": ...}`` per channel, see
            :func:`~medsight.transforms.intensity.normalize_channels`), ``channels``.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.target_spacing = tuple(float(s) for s in spec["target_spacing"])
        self.spatial_dims = len(self.target_spacing)
        self.normalization = list(spec["normalization"])
        channels = spec.get("channels")
        self.channels = int(channels) if channels is not None else len(self.normalization)

    def grid_shape(self, image: Image) -> tuple[int, ...]:
        """The image's shape at the target spacing (voxels, array order)."""
        return shape_at_spacing(image.shape, image.spacing, self.target_spacing)

    def normalize(self, arr: np.ndarray) -> np.ndarray:
        """Intensity normalisation per channel; ``arr`` is ``(C, *spatial)``."""
        return normalize_channels(arr, self.normalization)

    def _check(self, image: Image) -> None:
        if image.n_spatial != self.spatial_dims:
            raise ShapeError(f"this model takes {self.spatial_dims}D images; got a {image.n_spatial}D image of shape "
                             f"{image.shape}", path=image.source)
        if image.channels != self.channels:
            raise ShapeError(f"this model takes {self.channels} channel(s); the image has {image.channels}",
                             path=image.source)
        if image.array.dtype.kind == "f" and not np.all(np.isfinite(image.array)):
            raise InvalidValueError("image holds NaN or infinite values", path=image.source)

    def image(self, image: Image) -> torch.Tensor:
        """The network input: ``(C, *grid)`` float32, normalised and resampled.

        Raises:
            ShapeError: wrong number of dimensions or channels.
            InvalidValueError: NaN or infinite voxels.
        """
        self._check(image)
        x = torch.from_numpy(self.normalize(image.array))
        return resize(x, self.grid_shape(image), "linear").contiguous()

    def apply(self, image: Image) -> Prepared:
        """The network input and its grid (the actual spacing is the source extent over the
        grid's voxel count, within half a voxel of ``target_spacing``)."""
        x = self.image(image)
        grid = Grid.of(image).with_step(name="normalize", rules=[dict(r) for r in self.normalization])
        shape = tuple(x.shape[1:])
        if shape != tuple(image.shape):
            grid = grid.resized(shape, name="resample", target_spacing=list(self.target_spacing), mode="linear")
        return Prepared(tensor=x, grid=grid)

    __call__ = image

    def probabilities_back(self, probs: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Class probabilities ``(K, *grid)`` resampled linearly to the input's ``shape``."""
        return resize(probs, shape, "linear")


def build_preprocessor(spec: Mapping[str, Any], *, spatial_dims: int) -> Preprocessor | SpacingPreprocessor:
    """The preprocessor of a manifest's ``preprocessing`` section, by its ``kind``
    (``resize``: :class:`Preprocessor`; ``spacing``: :class:`SpacingPreprocessor`; without a
    kind, ``spacing`` when the section has a ``target_spacing``).

    Raises:
        ConfigError: an unknown kind.
    """
    kind = spec.get("kind") or ("spacing" if "target_spacing" in spec else "resize")
    if kind == "resize":
        return Preprocessor(spec, spatial_dims=spatial_dims)
    if kind == "spacing":
        return SpacingPreprocessor(spec)
    raise ConfigError(f"preprocessing kind must be 'resize' or 'spacing'; got {kind!r}")
