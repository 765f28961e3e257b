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


def test_isotropic_data_uses_the_median_spacing_and_a_divisible_patch():
    f = fp([[1, 1, 1], [1, 1, 1], [1.2, 1, 1]], [[35, 50, 35], [36, 51, 33], [30, 49, 36]])
    plan = plan_segmentation(f, SegmentationConfig(), model_name="dynunet", model_params={})
    assert plan["target_spacing"] == [1.0, 1.0, 1.0]
    assert plan["median_shape"] == [36, 50, 35]  # 30 slices of 1.2 mm count as 36 at 1 mm
    assert plan["patch_size"] == [40, 56, 40]  # nnU-Net's choice for this dataset
    assert plan["network"]["params"]["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert plan["network"]["params"]["filters"] == [16, 32, 64, 128]
    assert plan["normalization"] == [{"scheme": "zscore"}]


def test_anisotropic_data_takes_the_10th_percentile_on_the_coarse_axis():
    sp = [[5.0, 0.8, 0.8]] * 5 + [[3.0, 0.7, 0.7]] * 5
    f = fp(sp, [[40, 512, 512]] * 10, modality="CT")
    plan = plan_segmentation(f, SegmentationConfig(), model_name="dynunet", model_params={})
    assert plan["target_spacing"][0] == pytest.approx(np.percentile([5.0] * 5 + [3.0] * 5, 10))
    assert plan["target_spacing"][1:] == [0.75, 0.75]
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
    with pytest.raises(ConfigError, match=r"patch_size \[30, 30, 30\] must be divisible by \[8, 8, 8\].*try "
                                          r"\[32, 32, 32\]"):
        plan_segmentation(fp([[1, 1, 1]], [[64, 64, 64]]), SegmentationConfig(patch_size=[30, 30, 30]),
                          model_name="unet", model_params={"strides": [2, 2, 2]})


def test_topology_stops_when_an_axis_would_drop_below_4_voxels():
    kernels, strides = dynunet_topology([16, 64, 64], [1.0, 1.0, 1.0])
    assert [s[0] for s in strides] == [1, 2, 2, 1, 1]  # 16 → 8 → 4, then only y/x pool
    assert len(strides) == 5 and len(kernels) == 5


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
