"""Sliding-window inference, slabs in bounded memory, TTA, post-processing, resampling."""

from __future__ import annotations

import numpy as np
import torch

from medsight.engine.sliding import (
    keep_largest_component,
    predict_classes,
    predict_probabilities,
    window_predictor,
)
from medsight.io.image import Image
from medsight.tasks.segmentation.preprocess import SegPreprocessor


class PointwiseNet(torch.nn.Module):
    """A 1x1x1 convolution: its output at a voxel depends on that voxel only, so any tiling of
    windows must give the same answer as the whole volume."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([[-1.0], [0.0], [1.0]]).view(3, 1, 1, 1, 1)
            self.conv.bias[:] = torch.tensor([0.0, 0.5, 0.0])

    def forward(self, x):
        return self.conv(x)


def test_slabs_give_the_same_classes_as_the_whole_volume(rng):
    x = torch.from_numpy(rng.normal(0, 1, (1, 37, 20, 18)).astype(np.float32))
    net = PointwiseNet()
    whole = predict_probabilities(net, x, patch_size=[8, 8, 8]).argmax(0).numpy()
    slabs = predict_classes(net, x, patch_size=[8, 8, 8], max_voxels=8 * 20 * 18)  # forces 4-slice cores
    assert slabs.dtype == np.uint8
    assert np.array_equal(whole, slabs)
    assert set(np.unique(slabs)) == {0, 1, 2}


def test_probabilities_sum_to_one_and_flip_tta_keeps_shape(rng):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3, padding=1))
    x = torch.from_numpy(rng.normal(0, 1, (1, 12, 14, 10)).astype(np.float32))
    plain = predict_probabilities(net, x, patch_size=[8, 8, 8])
    tta = predict_probabilities(net, x, patch_size=[8, 8, 8], tta_flips=True)
    assert plain.shape == tta.shape == (3, 12, 14, 10)
    assert torch.allclose(tta.sum(0), torch.ones(12, 14, 10), atol=1e-5)
    assert not torch.allclose(plain, tta)  # the mirrored passes were really averaged in


def test_tta_along_listed_axes_averages_the_image_and_its_mirror(rng):
    torch.manual_seed(1)
    net = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.from_numpy(rng.normal(0, 1, (2, 1, 6, 8, 10)).astype(np.float32))
    with torch.no_grad():
        p0 = torch.softmax(net(x), 1)
        p1 = torch.flip(torch.softmax(net(torch.flip(x, (4,))), 1), (4,))
        got = window_predictor(net, tta_flips=[2])(x)
    assert torch.allclose(got, (p0 + p1) / 2, atol=1e-6)


def test_mirror_axes_flip_image_and_label_together(rng):
    from medsight.tasks.segmentation.training import PatchDataset

    img = np.arange(4 * 4 * 6, dtype=np.float32).reshape(1, 4, 4, 6)
    lab = (img[0] > 50).astype(np.uint8)
    ds = PatchDataset([img], [lab], patch_size=[4, 4, 6], foreground_ratio=0.5, samples_per_volume=16,
                      mirror_axes=[2], seed=3)
    flipped = 0
    for i in range(len(ds)):
        x, y = ds[i]
        assert torch.equal((x[0] > 50).long(), y[0])  # the label moved with the image
        flipped += int(torch.equal(x[0], torch.from_numpy(img[0][:, :, ::-1].copy())))
    assert 0 < flipped < 16


def test_largest_component_keeps_one_island_per_label():
    m = np.zeros((10, 10, 10), np.uint8)
    m[1:5, 1:5, 1:5] = 1        # 64 voxels
    m[8, 8, 8] = 1              # a speck
    m[6:9, 1:3, 1:3] = 2        # label 2, one piece
    m[1, 8, 8] = 2              # its speck
    out = keep_largest_component(m.copy(), [1, 2])
    assert int((out == 1).sum()) == 64 and out[8, 8, 8] == 0
    assert int((out == 2).sum()) == 12 and out[1, 8, 8] == 0


def test_preprocessor_resamples_to_target_spacing_and_back_keeping_the_field_of_view(rng):
    arr = rng.normal(50, 10, (1, 10, 24, 24)).astype(np.float32)
    image = Image(arr, spacing=(3.0, 0.5, 0.5))
    pre = SegPreprocessor({"target_spacing": [1.5, 1.0, 1.0], "normalization": [{"scheme": "zscore"}], "channels": 1})
    x = pre.image(image)
    assert tuple(x.shape) == (1, 20, 12, 12)
    z = pre.normalize(arr)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-4  # z-scored before resampling
    probs = torch.softmax(torch.randn(3, 20, 12, 12), 0)
    back = pre.probabilities_back(probs, image.shape)
    assert tuple(back.shape) == (3, 10, 24, 24)
    classes = np.zeros((20, 12, 12), np.uint8)
    classes[10:, :, :6] = 2
    c = pre.classes_back(classes, image.shape)
    assert c.shape == (10, 24, 24) and np.array_equal(np.unique(c), [0, 2])
    assert (c[5:, :, :12] == 2).all() and (c[:5] == 0).all()  # the same half of the field of view
