"""Sliding-window inference with Gaussian blending, flip test-time augmentation, bounded
memory for large volumes, and largest-connected-component post-processing.

Windows are predicted by MONAI's ``sliding_window_inference`` (Gaussian importance map,
sigma = 1/8 of the window, as nnU-Net). Each window's softmax is averaged over mirrored copies
when flip TTA is on, so TTA costs no extra memory.

Two things are written here rather than taken from MONAI, and why:

* **Slabs for large volumes.** ``sliding_window_inference`` accumulates a float map per class
  plus a count map over the whole volume (for a 512x512x300 CT and 3 classes, about 1.3 GB).
  Above ``max_voxels`` the volume is cut along its first axis into slabs that overlap by half
  a window on each side; each slab goes through ``sliding_window_inference`` and only its
  core's argmax (uint8) is kept. Peak memory is then bounded by the slab, not the volume.
* **Largest connected component.** MONAI's ``KeepLargestConnectedComponent`` needs
  scikit-image; :func:`scipy.ndimage.label` (SciPy is already a dependency) does the same with
  full connectivity in a few lines, on the label's bounding box only.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext

import numpy as np
import torch

#: What the predictors call on a batch ``(B, C, *patch)`` for logits ``(B, K, *patch)``: a saved
#: model's :meth:`~medsight.models.saved.SavedModel.run` at inference, a bare module in training
#: validation.
Forward = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["Forward", "window_predictor", "predict_probabilities", "predict_classes", "keep_largest_component",
           "DEFAULT_MAX_VOXELS", "native_bf16"]

log = logging.getLogger(__name__)

#: Above this many voxels (network grid), a volume is predicted in slabs.
DEFAULT_MAX_VOXELS = 16_000_000


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's AVX-512 BF16 or AMX kernels).

    Without it bf16 autocast is emulated: on a 2-core AVX2 machine a detector training step took
    7.4 s in bf16 against 0.76 s in fp32 (``benchmarks/bench_detector_step.py``), and the shipped
    hippocampus-mri 12.4 s a volume against 0.32 s.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


@functools.cache
def _note_fp32_fallback() -> None:
    log.warning("this model's precision is bf16, but this CPU has no native bf16 (AVX-512 BF16 or AMX), where "
                "it is emulated and many times slower: running it in fp32")


def _autocast(precision: str):
    """bf16 autocast where the CPU has native bf16; fp32 (the weights' own precision) elsewhere."""
    if precision == "bf16":
        if native_bf16():
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        _note_fp32_fallback()
    return nullcontext()


def _eval(network: Forward) -> None:
    if isinstance(network, torch.nn.Module):
        network.eval()


def window_predictor(network: Forward, *, tta_flips: bool | Sequence[int] = False,
                     precision: str = "fp32") -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from windows ``(B, C, *patch)`` to class probabilities ``(B, K, *patch)``.

    With ``tta_flips`` the softmax is averaged over every combination of mirrored spatial
    axes: all of them for ``True`` (4 passes in 2D, 8 in 3D), or the listed spatial axes
    (``[2]``: the image and its mirror along the last axis, 2 passes).
    """

    def run(x: torch.Tensor) -> torch.Tensor:
        dims = x.ndim - 2
        if dims == 3:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        flips: list[tuple[int, ...]] = [()]
        if tta_flips:
            axes = tuple(range(2, 2 + dims)) if tta_flips is True else tuple(2 + int(a) for a in tta_flips)
            flips = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]
        total = None
        with _autocast(precision):
            for f in flips:
                xi = torch.flip(x, f) if f else x
                p = torch.softmax(network(xi).float(), dim=1)
                p = torch.flip(p, f) if f else p
                total = p if total is None else total + p
        assert total is not None
        return (total / len(flips)).contiguous()

    return run


def predict_probabilities(network: Forward, x: torch.Tensor, *, patch_size: Sequence[int],
                          overlap: float = 0.5, sw_batch_size: int = 4, tta_flips: bool | Sequence[int] = False,
                          precision: str = "fp32") -> torch.Tensor:
    """Class probabilities of one image on the network grid.

    Args:
        network: ``SavedModel.run``, or a segmentation module (put in eval mode here).
        x: the preprocessed image ``(C, *spatial)``.
        patch_size: window size in voxels (the plan's patch size).
        overlap: fraction of a window shared with its neighbour along each axis.
        sw_batch_size: windows per forward pass.
        tta_flips: average over mirrored copies (True: every axis; or a list of spatial axes).
        precision: ``fp32`` or ``bf16`` (CPU autocast where the CPU has native bf16, else fp32).

    Returns:
        ``(K, *spatial)`` float32 probabilities.
    """
    from monai.inferers import sliding_window_inference

    _eval(network)
    with torch.inference_mode():
        out = sliding_window_inference(x[None].float(), roi_size=list(patch_size), sw_batch_size=sw_batch_size,
                                       predictor=window_predictor(network, tta_flips=tta_flips, precision=precision),
                                       overlap=overlap, mode="gaussian", sigma_scale=0.125, padding_mode="constant",
                                       cval=0.0)
    out = out.as_tensor() if hasattr(out, "as_tensor") else out
    return out[0]


def predict_classes(network: Forward, x: torch.Tensor, *, patch_size: Sequence[int], overlap: float = 0.5,
                    sw_batch_size: int = 4, tta_flips: bool | Sequence[int] = False, precision: str = "fp32",
                    max_voxels: int = DEFAULT_MAX_VOXELS) -> np.ndarray:
    """Class indices (argmax) of one image on the network grid, in bounded memory.

    Volumes of at most ``max_voxels`` are predicted whole; larger ones in slabs along the
    first axis, each extended by half a window of context on both sides.

    Returns:
        ``(*spatial)`` uint8 class indices.
    """
    def probs(part: torch.Tensor) -> torch.Tensor:
        return predict_probabilities(network, part, patch_size=patch_size, overlap=overlap,
                                     sw_batch_size=sw_batch_size, tta_flips=tta_flips, precision=precision)

    depth = int(x.shape[1])
    plane = int(np.prod(x.shape[2:]))
    if depth * plane <= max_voxels:
        return probs(x).argmax(0).to(torch.uint8).numpy()
    margin = int(patch_size[0]) // 2
    core = max(int(patch_size[0]), max_voxels // plane - 2 * margin)
    out = np.empty(tuple(x.shape[1:]), np.uint8)
    log.debug("predicting %s in slabs of %d (+%d context) along axis 0", tuple(x.shape[1:]), core, margin)
    for z0 in range(0, depth, core):
        z1 = min(depth, z0 + core)
        a, b = max(0, z0 - margin), min(depth, z1 + margin)
        p = probs(x[:, a:b])
        out[z0:z1] = p[:, z0 - a:z1 - a].argmax(0).to(torch.uint8).numpy()
        del p
    return out


def keep_largest_component(classes: np.ndarray, class_ids: Iterable[int]) -> np.ndarray:
    """Keep only the largest connected component (full connectivity) of each class in
    ``class_ids``; removed voxels become background (0). Works in place and returns
    ``classes``."""
    from scipy import ndimage

    from medsight.metrics.segmentation import bounding_box

    structure = ndimage.generate_binary_structure(classes.ndim, classes.ndim)
    for k in class_ids:
        m = classes == k
        if not m.any():
            continue
        box = bounding_box(m)
        sub = m[box]
        lab, n = ndimage.label(sub, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        drop = lab != int(sizes.argmax())
        del lab
        drop &= sub
        classes[box][drop] = 0
    return classes
