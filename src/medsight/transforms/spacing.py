"""Resizing arrays and resampling them to a voxel spacing, keeping the field of view.

One :func:`resize` serves every caller (classification's fixed input size, segmentation's
target spacing and the way back, heatmaps to the image's size): MONAI ``Resize`` with
``align_corners=False``, so voxel edges stay where they were and the centre of output voxel
``i`` sits at input index ``(i + 0.5) * n_in / n_out - 0.5`` (what
:meth:`medsight.transforms.geometry.Grid.resized` writes down).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from medsight.errors import ConfigError

__all__ = ["resize", "shape_at_spacing", "RESIZE_MODES"]

#: ``linear`` (bi/trilinear), ``nearest`` (nearest-exact: label maps), ``area`` (averaging, for
#: shrinking), ``auto`` (area when no axis grows, else linear).
RESIZE_MODES = ("linear", "nearest", "area", "auto")

A = TypeVar("A", np.ndarray, torch.Tensor)


def resize(x: A, size: Sequence[int], mode: str = "linear") -> A:
    """Resize a channel-first array ``(C, *spatial)`` to ``(C, *size)``.

    Args:
        x: a NumPy array (float32 comes back) or a torch tensor (a plain tensor comes back).
        size: the new spatial shape, array order.
        mode: one of :data:`RESIZE_MODES`.

    Returns:
        ``x`` itself when it already has that size.

    Raises:
        ConfigError: an unknown mode.
    """
    from monai.transforms import Resize

    size = tuple(int(s) for s in size)
    if mode not in RESIZE_MODES:
        raise ConfigError(f"resize mode must be one of {', '.join(RESIZE_MODES)}; got {mode!r}")
    if tuple(x.shape[1:]) == size:
        return x
    if mode == "auto":
        mode = "area" if all(s <= a for s, a in zip(size, x.shape[1:])) else "linear"
    interp = {"linear": "bilinear" if len(size) == 2 else "trilinear", "nearest": "nearest-exact"}.get(mode, mode)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x
    out = Resize(spatial_size=list(size), mode=interp, anti_aliasing=False)(t)
    out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
    if isinstance(x, np.ndarray):
        return np.asarray(out.detach().cpu().numpy(), dtype=np.float32)
    return out


def shape_at_spacing(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """The spatial shape that covers the same extent at ``target`` spacing (mm, array order),
    at least one voxel per axis."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))
