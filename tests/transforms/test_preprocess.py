"""The preprocessing a model carries: the same Image gives the same tensor, whatever its source."""

import numpy as np
import pytest
import torch

from medsight.errors import InvalidValueError, ShapeError
from medsight.io.image import Image
from medsight.transforms.augment import build_augmentation, list_presets
from medsight.transforms.preprocess import Preprocessor

SPEC = {"spatial_size": [28, 28], "channels": 1, "intensity": "range", "a_min": 0, "a_max": 255}


def img(arr, **meta):
    arr = np.asarray(arr)
    return Image(array=arr[None] if arr.ndim == 2 else arr, spacing=(1.0, 1.0), meta=meta)


def test_8bit_images_are_divided_by_255_and_resized():
    a = np.tile(np.linspace(0, 255, 56, dtype=np.float32), (56, 1)).astype(np.uint8)
    out = Preprocessor(SPEC).array(img(a))
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and out[0, 0, 0] < 0.05 and out[0, 0, -1] > 0.95


def test_a_12bit_xray_uses_its_dicom_window():
    a = np.full((28, 28), 1000, np.uint16)
    a[:, 14:] = 3000
    out = Preprocessor(SPEC).array(img(a, window=[2000.0, 2000.0]))  # window 1000..3000
    assert out[0, 0, 0] == pytest.approx(0.0) and out[0, 0, -1] == pytest.approx(1.0)


def test_monochrome1_window_follows_the_inversion():
    # stored 0..4095, window centre 1000 width 400 (bright = low stored values); read as 4095 - v
    stored = np.full((28, 28), 1000, np.int32)
    stored[:, 14:] = 800
    a = (4095 - stored).astype(np.uint16)
    out = Preprocessor(SPEC).array(img(a, window=[1000.0, 400.0], inversion_sum=4095.0))
    # in MONOCHROME1 a lower stored value is brighter: stored 800 must come out brighter than 1000
    assert out[0, 0, -1] > out[0, 0, 0]
    assert out[0, 0, 0] == pytest.approx(0.5, abs=0.01)  # stored 1000 = the window centre


def test_rgb_becomes_luminance_and_gray_can_be_repeated():
    rgb = np.zeros((3, 28, 28), np.uint8)
    rgb[1] = 255  # pure green
    out = Preprocessor(SPEC).array(Image(array=rgb, spacing=(1.0, 1.0)))
    assert out.shape == (1, 28, 28) and out.mean() == pytest.approx(0.587, abs=1e-3)
    out3 = Preprocessor({**SPEC, "channels": 3}).array(img(np.full((28, 28), 51, np.uint8)))
    assert out3.shape == (3, 28, 28) and np.allclose(out3, 0.2)


def test_zscore_uses_stored_statistics():
    p = Preprocessor({**SPEC, "normalize_mean": 0.5, "normalize_std": 0.25})
    t = p(img(np.full((28, 28), 255, np.uint8)))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.full((1, 28, 28), 2.0))


def test_wrong_dimensions_and_nan_are_refused():
    vol = Image(array=np.zeros((1, 4, 28, 28), np.float32), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ShapeError, match="takes 2D images; got a 3D image"):
        Preprocessor(SPEC).array(vol)
    bad = np.zeros((28, 28), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InvalidValueError, match="NaN"):
        Preprocessor(SPEC).array(img(bad))


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_keeps_shape_and_is_seeded(name):
    x = torch.rand(1, 28, 28)
    a = build_augmentation(name, spatial_dims=2, spatial_size=(28, 28), seed=3)
    b = build_augmentation(name, spatial_dims=2, spatial_size=(28, 28), seed=3)
    if a is None:
        assert name == "none"
        return
    ya, yb = a({"image": x})["image"], b({"image": x})["image"]
    assert ya.shape == (1, 28, 28) and torch.equal(torch.as_tensor(ya), torch.as_tensor(yb))


def test_xray_preset_never_mirrors_but_classic_does():
    x = torch.zeros(1, 28, 28)
    x[0, :, :4] = 1.0  # a bright band on the left
    xray = build_augmentation("xray", spatial_dims=2, spatial_size=(28, 28), seed=0)
    classic = build_augmentation("classic", spatial_dims=2, spatial_size=(28, 28), seed=0)
    left_heavy = []
    for _ in range(40):
        y = torch.as_tensor(xray({"image": x})["image"])
        left_heavy.append(float(y[0, :, :14].sum() - y[0, :, 14:].sum()) > 0)
    assert all(left_heavy)
    mirrored = 0
    for _ in range(40):
        y = torch.as_tensor(classic({"image": x})["image"])
        mirrored += float(y[0, 8:20, 14:].mean()) > float(y[0, 8:20, :14].mean())
    assert mirrored > 0
