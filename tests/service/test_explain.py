"""Heatmaps: the target layer is found for every registered classification architecture;
GradCAM points where the network looks; occlusion takes over when no spatial layer exists;
the overlay is in the source image's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from medsight.explain import find_target_layer, heatmap, overlay
from medsight.io.image import Image
from medsight.models.registry import create_model, list_models
from medsight.models.saved import SavedModel


def _saved(net, size=(28, 28)):
    return SavedModel(network=net, manifest={
        "name": "t", "version": "1", "task": "classification", "architecture": {"spatial_dims": len(size)},
        "preprocessing": {"spatial_size": list(size), "channels": 1, "intensity": "minmax"},
        "labels": ["normal", "abnormal"], "positive_index": 1})


@pytest.mark.parametrize("arch", list_models(task="classification"))
def test_a_spatial_target_layer_is_found_for_every_architecture(arch):
    params = {"input_size": [64, 64]} if arch == "classic-cnn" else {}
    net = create_model(arch, spatial_dims=2, in_channels=1, num_classes=2, **params).eval()
    name = find_target_layer(net, torch.zeros(1, 1, 64, 64))
    assert name is not None
    out = {}
    h = net.get_submodule(name).register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    with torch.no_grad():
        net(torch.zeros(1, 1, 64, 64))
    h.remove()
    assert out["o"].ndim == 4 and max(out["o"].shape[2:]) > 1


class _Brightness(nn.Module):
    """Class 1's logit is the mean of a (positive) feature map of the image's brightness."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        nn.init.constant_(self.conv.weight, 0.1)
        nn.init.zeros_(self.conv.bias)
        self.act = nn.ReLU()

    def forward(self, x):
        centre = self.act(self.conv(x)).mean(dim=(1, 2, 3))
        return torch.stack([-centre, centre], dim=1)


def test_gradcam_points_where_the_evidence_is_in_source_geometry():
    arr = np.zeros((1, 56, 56), np.float32)
    arr[:, 16:40, 16:40] = 1.0  # the evidence sits in the centre of the 56x56 source
    h = heatmap(_saved(_Brightness()), Image(array=arr, spacing=(0.5, 0.5)))
    assert h.method == "gradcam" and h.layer == "act" and h.values.shape == (56, 56)
    inside = h.values[16:40, 16:40].mean()  # rows 8..19 of 28 → 16..39 of 56
    outside = np.concatenate([h.values[:12].ravel(), h.values[44:].ravel()]).mean()
    assert inside > 0.5 > outside


def test_occlusion_when_no_spatial_layer_exists():
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[1, 0:28 * 6] = 0.01  # only the top six rows matter
    img = Image(array=np.random.default_rng(1).uniform(0, 1, (1, 28, 28)).astype(np.float32), spacing=(1, 1))
    h = heatmap(_saved(net), img)
    assert h.method == "occlusion" and h.layer is None
    assert h.values[:6].mean() > h.values[14:].mean()


def test_overlay_keeps_the_source_geometry_and_colours_only_hot_areas():
    img = Image(array=np.full((1, 30, 40), 100, np.uint16), spacing=(1, 1), meta={"window": [100, 200]})
    heat = np.zeros((30, 40), np.float32)
    heat[10:20, 10:20] = 1.0
    rgb = overlay(img, heat)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert np.ptp(rgb[0, 0]) == 0  # cold: gray
    assert np.ptp(rgb[15, 15]) > 50  # hot: coloured
    with pytest.raises(Exception, match="heatmap of shape"):
        overlay(img, np.zeros((5, 5)))


def test_label_overlay_fills_and_outlines_each_label_on_the_fullest_slice():
    from medsight.errors import ShapeError
    from medsight.explain.overlay import LABEL_COLOURS, label_overlay

    arr = np.zeros((1, 5, 20, 20), np.float32)
    arr[0, :, :, 10:] = 100.0  # left half dark, right half bright
    labels = np.zeros((5, 20, 20), np.uint8)
    labels[1, 2:6, 2:6] = 1  # 16 voxels on slice 1
    labels[3, 5:15, 5:15] = 2  # 100 voxels on slice 3: the fullest
    labels[3, 16:19, 1:4] = 1
    image = Image(arr, spacing=(1.0, 1.0, 1.0))
    rgb, shown = label_overlay(image, labels, alpha=0.5)
    assert shown == 3 and rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all() and (rgb[0, 19] == 255).all()  # unlabelled pixels keep their gray
    blue, orange = (LABEL_COLOURS[1] * 255).round(), (LABEL_COLOURS[0] * 255).round()
    np.testing.assert_allclose(rgb[5, 9], blue, atol=1)  # outline: the label's colour
    np.testing.assert_allclose(rgb[10, 7], (blue * 0.5).round(), atol=1)  # inside, over black: half colour
    np.testing.assert_allclose(rgb[10, 12], (255 * 0.5 + blue * 0.5).round(), atol=1)  # over white
    np.testing.assert_allclose(rgb[16, 1], orange, atol=1)  # a 3x3 island: outline all round
    np.testing.assert_allclose(rgb[17, 2], (orange * 0.5).round(), atol=1)  # but its centre
    assert label_overlay(image, labels, slice_index=1)[1] == 1
    with pytest.raises(ShapeError, match="labels of shape"):
        label_overlay(image, labels[:4])
