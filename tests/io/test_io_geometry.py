"""Preprocessing helpers keep every physical point where it was (oblique images included)."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import ConfigError, ShapeError
from medsight.io.image import Image
from medsight.transforms.geometry import (
    crop,
    crop_foreground,
    crop_or_pad,
    normalize_mr,
    pad,
    reorient,
    resample_to,
    resample_to_spacing,
    window_ct,
)


def oblique_volume() -> Image:
    rng = np.random.default_rng(3)
    direction = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    image = Image(array=np.zeros((1, 20, 24, 28), np.float32), spacing=(2.0, 0.5, 0.7), origin=(5.0, -3.0, 12.0),
                  direction=direction)
    image.array[0, 8:12, 10:18, 12:20] = 100.0
    return image


def centroid_lps(image: Image) -> np.ndarray:
    idx = np.argwhere(image.array[0] > 50).mean(axis=0)
    idx = np.r_[idx, np.zeros(3 - len(idx))]
    return image.affine[:3, :3] @ idx + image.affine[:3, 3]


@pytest.mark.parametrize("step", [
    lambda im: reorient(im, "RAS"),
    lambda im: reorient(im, "IAR"),
    lambda im: crop(im, (2, 3, 4), (18, 22, 26)),
    lambda im: pad(im, (1, 2, 3), (0, 1, 4)),
    lambda im: crop_or_pad(im, (10, 40, 16)),
    lambda im: crop_foreground(im, threshold=50, margin=2),
], ids=["reorient-RAS", "reorient-IAR", "crop", "pad", "crop_or_pad", "crop_foreground"])
def test_voxel_moving_steps_keep_positions_exactly(step):
    image = oblique_volume()
    out = step(image)
    np.testing.assert_allclose(centroid_lps(out), centroid_lps(image), atol=1e-6)
    assert int((out.array > 50).sum()) == int((image.array > 50).sum())
    assert out.meta["transforms"][-1]["name"]


def test_reorient_puts_axes_along_the_named_directions():
    out = reorient(oblique_volume(), "SPL")
    lps = {"L": [1, 0, 0], "P": [0, 1, 0], "S": [0, 0, 1]}
    for axis, code in enumerate("SPL"):
        assert float(out.direction[:, axis] @ lps[code]) > 0.3  # the closest patient axis, positively


def test_resampling_keeps_position_and_volume_within_a_voxel():
    image = oblique_volume()
    image.array[0, 4:16, 6:20, 6:22] = 100.0  # an object of many voxels along every axis
    volume = (image.array > 50).sum() * image.voxel_volume_mm3
    for target in ((1.0, 1.0, 1.0), (2.5, 0.4, 0.9)):
        out = resample_to_spacing(image, target)  # linear: the 50 % level keeps the object's size
        assert out.spacing == pytest.approx(target)
        assert np.linalg.norm(centroid_lps(out) - centroid_lps(image)) < max(target) / 2
        assert (out.array > 50).sum() * out.voxel_volume_mm3 == pytest.approx(volume, rel=0.1)
        labels = resample_to_spacing(image.with_array(image.array.astype(np.uint8)), target, mode="nearest")
        assert labels.array.dtype == np.uint8 and set(np.unique(labels.array)) == {0, 100}
    back = resample_to(resample_to_spacing(image, 1.0, mode="nearest"), image, mode="nearest")
    assert back.same_geometry(image)
    a, b = back.array > 50, image.array > 50
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9  # Dice of the round trip through 1 mm


def test_2d_oblique_plane_crop_and_resample_keep_the_plane():
    direction = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0][:, :2]
    image = Image(array=np.zeros((1, 30, 40), np.float32), spacing=(0.5, 0.7), origin=(1, 2, 3), direction=direction)
    image.array[0, 10:14, 20:24] = 100
    for out in (crop(image, (5, 5), (25, 35)), pad(image, (3, 0), (0, 2)), resample_to_spacing(image, 0.25)):
        assert np.linalg.norm(centroid_lps(out) - centroid_lps(image)) < 0.35
        np.testing.assert_allclose(out.direction, direction, atol=1e-9)


def test_ct_windows_and_mr_normalisation():
    ct = Image(array=np.array([[[-2000.0, -1350.0, 150.0, 3000.0]]], np.float32), spacing=(1, 1), modality="CT",
               meta={"units": "HU"})
    np.testing.assert_allclose(window_ct(ct, "lung").array[0, 0], [0, 0, 1, 1])
    np.testing.assert_allclose(window_ct(ct, (0.0, 300.0)).array[0, 0], [0, 0, 1, 1])
    assert window_ct(ct, "bone").array[0, 0, 2] == pytest.approx((150 + 500) / 1800)
    with pytest.raises(ConfigError, match="unknown CT window"):
        window_ct(ct, "liverish")
    mr = Image(array=np.r_[np.zeros(50), np.linspace(100, 300, 50)].reshape(1, 10, 10).astype(np.float32),
               spacing=(1, 1))
    z = normalize_mr(mr).array[0]
    inside = z[mr.array[0] > 0]
    assert inside.mean() == pytest.approx(0, abs=1e-5) and inside.std() == pytest.approx(1, rel=1e-3)
    assert np.all(z[mr.array[0] == 0] == 0)
    p = normalize_mr(mr, "percentile", lower=0, upper=100).array
    assert p.min() == 0 and p.max() == 1


def test_geometry_helpers_explain_bad_arguments():
    image = oblique_volume()
    with pytest.raises(ConfigError, match="three different axes"):
        reorient(image, "SSL")
    with pytest.raises(ConfigError, match="inside the image"):
        crop(image, (0, 0, 0), (30, 5, 5))
    with pytest.raises(ShapeError, match="3D"):
        reorient(Image(array=np.zeros((1, 4, 4)), spacing=(1, 1)), "SPL")
    with pytest.raises(ShapeError, match="no voxel above"):
        crop_foreground(image, threshold=1000)
