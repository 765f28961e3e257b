"""The fingerprint → plan rules (docs/segmentation.md): spacing, patch, normalisation, topology."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.config import SegmentationConfig
from medsight.data.fingerprint import Fingerprint, collect_fingerprint, dynunet_topology, plan_segmentation
from medsight.errors import ConfigError
from medsight.io.image import Image


def fp(spacings, shapes, modality="MR", intensity=None) -> Fingerprint:
    return Fingerprint(spacings=np.asarray(spacings, float), shapes=np.asarray(shapes, int), modality=modality,
                       channels=1, intensity=intensity or [{"mean": 0.0, "sd": 1.0, "p00_5": -1.0, "p99_5": 1.0,
                                                            "min": -2.0, "max": 2.0}])


def _divisor(strides) -> list[int]:
    """The network's total downsampling per axis (what a patch must be divisible by)."""
    return [int(np.prod([s[a] for s in strides])) for a in range(len(strides[0]))]


def test_isotropic_data_uses_the_median_spacing_and_a_divisible_patch():
    spacings, shapes = [[1, 1, 1], [1, 1, 1], [1.2, 1, 1]], [[35, 50, 35], [36, 51, 33], [30, 49, 36]]
    plan = plan_segmentation(fp(spacings, shapes), SegmentationConfig(), model_name="dynunet", model_params={})
    assert plan["target_spacing"] == pytest.approx(np.median(spacings, axis=0))
    # the median shape is measured at the target spacing: 30 slices of 1.2 mm count as 36 at 1 mm
    at_target = np.round(np.asarray(shapes) * np.asarray(spacings) / np.asarray(plan["target_spacing"]))
    assert plan["median_shape"] == np.median(at_target, axis=0).astype(int).tolist()
    strides = plan["network"]["params"]["strides"]
    div = _divisor(strides)
    for p, m, d in zip(plan["patch_size"], plan["median_shape"], div):
        assert p % d == 0 and m <= p < m + d  # the median shape, rounded up to what the network divides
        assert p / d >= 4 and p / (2 * d) < 4  # downsampled while an axis keeps at least 4 voxels, no further
    assert strides[0] == [1, 1, 1] and len(plan["network"]["params"]["kernel_size"]) == len(strides)
    filters = plan["network"]["params"]["filters"]
    assert len(filters) == len(strides) and all(b == min(2 * a, 256) for a, b in zip(filters, filters[1:]))
    assert plan["normalization"] == [{"scheme": "zscore"}]  # MR: z-score per image


def test_anisotropic_data_takes_the_10th_percentile_on_the_coarse_axis():
    sp = [[5.0, 0.8, 0.8]] * 5 + [[3.0, 0.7, 0.7]] * 5
    f = fp(sp, [[40, 512, 512]] * 10, modality="CT")
    plan = plan_segmentation(f, SegmentationConfig(), model_name="dynunet", model_params={})
    assert plan["target_spacing"][0] == pytest.approx(np.percentile([5.0] * 5 + [3.0] * 5, 10))
    assert plan["target_spacing"][1:] == pytest.approx(np.median(np.asarray(sp)[:, 1:], axis=0))
    assert "anisotropic" in plan["rules"]["target_spacing"]
    kernels = plan["network"]["params"]["kernel_size"]
    assert kernels[0][0] == 1 and kernels[0][1:] == [3, 3]  # no 3-wide kernel across thick slices at first
    assert plan["network"]["params"]["strides"][1][0] == 1  # and no pooling across them


def test_patch_is_shrunk_to_the_voxel_budget():
    f = fp([[1, 1, 1]] * 3, [[200, 200, 200]] * 3)
    plan = plan_segmentation(f, SegmentationConfig(max_patch_voxels=64 ** 3), model_name="unet",
                             model_params={"strides": [2, 2, 2]})
    assert np.prod(plan["patch_size"]) <= 64 ** 3
    assert all(p % 8 == 0 for p in plan["patch_size"])


def test_ct_is_clipped_and_scaled_with_the_training_sets_foreground_statistics():
    stats = [{"mean": 40.0, "sd": 20.0, "p00_5": -100.0, "p99_5": 300.0, "min": -1000.0, "max": 2000.0}]
    plan = plan_segmentation(fp([[1, 1, 1]], [[64, 64, 64]], modality="CT", intensity=stats), SegmentationConfig(),
                             model_name="unet", model_params={})
    assert plan["normalization"] == [{"scheme": "ct", "lower": -100.0, "upper": 300.0, "mean": 40.0, "sd": 20.0}]


def test_explicit_patch_that_the_network_cannot_divide_is_refused():
    with pytest.raises(ConfigError, match="patch_size") as info:
        plan_segmentation(fp([[1, 1, 1]], [[64, 64, 64]]), SegmentationConfig(patch_size=[30, 30, 30]),
                          model_name="unet", model_params={"strides": [2, 2, 2]})
    # the key facts: the value given, what the network divides, and the nearest patch that works
    assert all(fact in str(info.value) for fact in ("[30, 30, 30]", "[8, 8, 8]", "[32, 32, 32]", "unet"))


def test_topology_stops_when_an_axis_would_drop_below_4_voxels():
    patch = [16, 64, 64]
    kernels, strides = dynunet_topology(patch, [1.0, 1.0, 1.0])
    assert len(kernels) == len(strides) and strides[0] == [1, 1, 1]
    for a, size in enumerate(patch):
        steps = [s[a] for s in strides[1:]]
        bottom = size / np.prod(steps)
        assert 4 <= bottom < 8  # pooled while it keeps at least 4 voxels, and no further
        assert steps == sorted(steps, reverse=True)  # once an axis stops, it stays stopped
    assert any(s == [1, 2, 2] for s in strides)  # the short axis stopped while the others went on


def test_collect_fingerprint_measures_foreground_intensity_and_volumes(rng):
    pairs = []
    for k in range(3):
        arr = np.zeros((1, 10, 10, 10), np.float32)
        m = np.zeros((1, 10, 10, 10), np.uint8)
        m[0, 2:4, 2:4, 2:4] = 1  # 8 voxels of 2 mm³ = 0.016 mL
        arr[m > 0] = 500.0 + k
        pairs.append((Image(arr, spacing=(2.0, 1.0, 1.0)), m))
    f = collect_fingerprint(pairs, modality="CT")
    assert f.n_cases == 3 and f.spatial_dims == 3
    assert f.intensity[0]["mean"] == pytest.approx(501.0)
    assert f.label_voxels == {1: 8.0}
    assert f.label_volume_ml[1] == pytest.approx(0.016)
    assert f.to_dict()["spacing_mm"]["median"] == [2.0, 1.0, 1.0]
