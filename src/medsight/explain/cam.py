"""Class-activation heatmaps for any registered classification network.

The target layer is found by running the network once and taking the last module (in
execution order) whose output is still a spatial feature map (``(N, C, *spatial)`` with a
spatial size above 1). That is the last convolutional stage of MONAI's ResNet and DenseNet
and the pooled convolution of the classic CNN, so no architecture needs a table entry. An
:class:`~medsight.models.architectures.Ensemble` gets the mean of its members' maps.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from medsight.errors import ShapeError
from medsight.explain.overlay import MAX_SIDE, display_shape
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.transforms.spacing import resize

__all__ = ["Heatmap", "find_target_layer", "heatmap"]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()  # GradCAM registers hooks on the shared network


@dataclass
class Heatmap:
    """A heatmap and how it was made.

    Attributes:
        values: ``(rows, cols)`` (or ``(slices, rows, cols)``) float32 in [0, 1], in the
            source image's geometry: its size, or, for an image with a side above ``max_side``,
            its :func:`~medsight.explain.overlay.display_shape` (the picture's size).
        method: ``gradcam``, ``gradcampp`` or ``occlusion``.
        layer: the target layer's module name (Grad-CAM, Grad-CAM++), else None.
        class_index: the class explained.
    """

    values: np.ndarray
    method: str
    layer: str | None
    class_index: int


def find_target_layer(network: nn.Module, x: torch.Tensor) -> str | None:
    """Name of the last module whose output is a spatial feature map for input ``x``.

    Args:
        network: the classification network.
        x: one input batch ``(N, C, *spatial)`` as the network receives it.

    Returns:
        A name usable as ``network.get_submodule(name)``, or None when no module keeps a
        spatial size above 1.
    """
    spatial_ndim = x.ndim
    seen: list[str] = []
    hooks = []

    def make(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == spatial_ndim and max(out.shape[2:]) > 1:
                seen.append(name)
        return hook

    for name, module in network.named_modules():
        if name:
            hooks.append(module.register_forward_hook(make(name)))
    try:
        with torch.no_grad():
            network(x)
    finally:
        for h in hooks:
            h.remove()
    return seen[-1] if seen else None


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(v.astype(np.float32))
    lo, hi = float(v.min()), float(v.max())
    return (v - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(v)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _gradcam(network: nn.Module, x: torch.Tensor, class_index: int, *, plus: bool = False) -> tuple[np.ndarray, str]:
    from monai.visualize import GradCAM, GradCAMpp

    layer = find_target_layer(network, x)
    if layer is None:
        raise ValueError("no spatial layer")
    # MONAI's default post-processing maps (min, max) to (1, 0), i.e. inverts the map: keep it raw
    cam = (GradCAMpp if plus else GradCAM)(nn_module=network, target_layers=layer, postprocessing=_identity)
    with torch.enable_grad():
        out = cam(x.clone().requires_grad_(True), class_idx=class_index)
    return np.asarray(out.detach().cpu().numpy())[0, 0], layer


def _occlusion(network: nn.Module, x: torch.Tensor, class_index: int) -> np.ndarray:
    from monai.visualize import OcclusionSensitivity

    size = x.shape[2:]
    mask = [max(2, s // 6) for s in size]
    occ = OcclusionSensitivity(nn_module=network, mask_size=mask, n_batch=32, verbose=False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's indexing deprecation notices
        sens, _ = occ(x)
    s = np.asarray(sens.detach().cpu().numpy())[0, class_index]
    return float(s.max()) - s  # a big drop of the class score when hidden = important


def heatmap(model: SavedModel, image: Image, *, class_index: int | None = None, method: str = "gradcam",
            max_side: int = MAX_SIDE) -> Heatmap:
    """Where ``model`` looked on ``image``, in the image's own geometry.

    Args:
        model: a model whose task explains it (``Task.explains``: classification models with a
            torch network; the caller asks the task, and checks the image with
            ``Task.validate_input``: this module knows no task).
        image: the image as read (any size; the model's own preprocessing is applied).
        class_index: the class to explain (default: the positive class of a binary model,
            else the most probable class).
        method: ``gradcam``, ``gradcampp`` (Grad-CAM++: second-order weights of the gradients, which
            cover several instances of a class better; both fall back to occlusion when they
            cannot run) or ``occlusion``.
        max_side: the longest in-plane side of the map; a larger image gets its map at
            :func:`~medsight.explain.overlay.display_shape`, never at full size.

    Returns:
        A :class:`Heatmap` with values in [0, 1] of shape ``image.shape`` (in-plane sides capped).

    Raises:
        ShapeError, ModalityError: the image does not fit the model.
    """
    if model.network is None or not model.labels:
        raise ShapeError(f"heatmaps explain classification models with a torch network; {model.name} is a "
                         f"{model.task} model")
    if method not in ("gradcam", "gradcampp", "occlusion"):
        raise ShapeError(f"method must be 'gradcam', 'gradcampp' or 'occlusion'; got {method!r}")
    if image.n_spatial != model.spatial_dims:
        raise ShapeError(f"model {model.name} takes {model.spatial_dims}D images; got a {image.n_spatial}D image "
                         f"of shape {image.shape}", path=image.source)
    x = model.preprocessor(image)[None]
    network = model.network  # GradCAM needs gradients through the module itself, not SavedModel.run
    network.eval()
    if class_index is None:
        pos = model.spec.positive_index
        class_index = int(pos) if pos is not None else int(model.run(x).argmax(1)[0])
    members = list(network.members) if hasattr(network, "members") else [network]
    used, layer = method, None
    with _LOCK:
        maps = []
        for member in members:
            if used in ("gradcam", "gradcampp"):
                try:
                    m, layer = _gradcam(member, x, class_index, plus=used == "gradcampp")
                    maps.append(m)
                    continue
                except (ValueError, RuntimeError) as exc:
                    log.info("%s not usable on %s (%s); using occlusion sensitivity", used, model.name, exc)
                    used, maps, layer = "occlusion", [], None
                    break
        if used == "occlusion":
            maps = [_occlusion(member, x, class_index) for member in members]
    values = _normalise(np.mean(maps, axis=0))
    shape = (*image.shape[:-2], *display_shape(*image.shape[-2:], max_side))
    return Heatmap(values=_normalise(resize(values[None], shape, "linear")[0]), method=used, layer=layer,
                   class_index=class_index)
