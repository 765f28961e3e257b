"""Named augmentation presets built from MONAI dictionary transforms.

``classic`` reproduces the reference design's Keras ``ImageDataGenerator`` settings:
rotation 40°, width/height shift 0.2, shear 0.2 (Keras reads it in degrees), zoom 0.2,
horizontal flip, ``fill_mode="nearest"`` (MONAI's ``border`` padding). The other presets are
medically sane defaults: no left-right flip for chest X-rays (it moves the heart to the
wrong side), small rotations, brightness/contrast jitter; for nodule crops, the orientations a
nodule can have, but never a change of size or density.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from medsight.errors import ConfigError

__all__ = ["PRESETS", "build_augmentation", "list_presets"]


def _classic(dims: int, size: Sequence[int], keys: list[str], label_keys: list[str]):
    from monai.transforms import RandAffined, RandFlipd

    modes = ["bilinear" if k not in label_keys else "nearest" for k in keys]
    shear = math.tan(math.radians(0.2))
    return [
        RandAffined(keys=keys, prob=1.0, rotate_range=math.radians(40) if dims == 2 else [math.radians(40)] * 3,
                    translate_range=[0.2 * s for s in size], shear_range=[shear] * (2 if dims == 2 else 6),
                    scale_range=[0.2] * dims, padding_mode="border", mode=modes, spatial_size=list(size)),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=dims - 1),
    ]


def _xray(dims: int, size: Sequence[int], keys: list[str], label_keys: list[str]):
    from monai.transforms import RandAffined, RandScaleIntensityd, RandShiftIntensityd

    modes = ["bilinear" if k not in label_keys else "nearest" for k in keys]
    img = [k for k in keys if k not in label_keys]
    return [
        RandAffined(keys=keys, prob=1.0, rotate_range=math.radians(10), translate_range=[0.1 * s for s in size],
                    scale_range=[0.1] * dims, padding_mode="border", mode=modes, spatial_size=list(size),
                    cache_grid=True),
        RandScaleIntensityd(keys=img, factors=0.2, prob=1.0),
        RandShiftIntensityd(keys=img, offsets=0.1, prob=1.0),
    ]


def _ultrasound(dims: int, size: Sequence[int], keys: list[str], label_keys: list[str]):
    """No mirroring: the probe-marker side is a display convention the image keeps (and on
    BreastMNIST mirroring lowered validation and test AUC in our runs)."""
    from monai.transforms import RandAffined, RandScaleIntensityd, RandShiftIntensityd

    modes = ["bilinear" if k not in label_keys else "nearest" for k in keys]
    img = [k for k in keys if k not in label_keys]
    return [
        RandAffined(keys=keys, prob=1.0, rotate_range=math.radians(10), translate_range=[0.1 * s for s in size],
                    scale_range=[0.15] * dims, padding_mode="border", mode=modes, spatial_size=list(size),
                    cache_grid=True),
        RandScaleIntensityd(keys=img, factors=0.2, prob=1.0),
        RandShiftIntensityd(keys=img, offsets=0.1, prob=1.0),
    ]


def _volume(dims: int, size: Sequence[int], keys: list[str], label_keys: list[str]):
    """3D MR/CT segmentation: small rotations and scaling, gamma, noise, left-right mirroring
    on the last array axis only (anatomically symmetric), never front-back."""
    from monai.transforms import (
        RandAdjustContrastd,
        RandAffined,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    modes = ["bilinear" if k not in label_keys else "nearest" for k in keys]
    img = [k for k in keys if k not in label_keys]
    return [
        RandAffined(keys=keys, prob=0.5, rotate_range=[math.radians(15)] * (3 if dims == 3 else 1),
                    scale_range=[0.1] * dims, padding_mode="border" if not label_keys else "zeros", mode=modes,
                    spatial_size=list(size)),
        RandScaleIntensityd(keys=img, factors=0.1, prob=0.3),
        RandShiftIntensityd(keys=img, offsets=0.1, prob=0.3),
        RandAdjustContrastd(keys=img, gamma=(0.7, 1.5), prob=0.3),
        RandGaussianNoised(keys=img, std=0.05, prob=0.2),
    ]


def _nodule(dims: int, size: Sequence[int], keys: list[str], label_keys: list[str]):
    """CT nodule crops (NoduleMNIST3D): a nodule has no handedness or up, so mirroring on every
    axis, quarter turns in the axial plane and small rotations/shifts; no zoom (size is a
    malignancy cue, and the crops have a fixed voxel size) and no gamma or brightness change
    (attenuation in HU is calibrated: solid vs ground-glass is a cue); light noise only."""
    from monai.transforms import RandAffined, RandFlipd, RandGaussianNoised, RandRotate90d

    modes = ["bilinear" if k not in label_keys else "nearest" for k in keys]
    img = [k for k in keys if k not in label_keys]
    steps = [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(dims)]
    if size[-1] == size[-2]:  # a quarter turn keeps the shape only when the plane is square
        steps.append(RandRotate90d(keys=keys, prob=0.75, max_k=3, spatial_axes=(dims - 2, dims - 1)))
    steps += [
        RandAffined(keys=keys, prob=0.5, rotate_range=[math.radians(10)] * (3 if dims == 3 else 1),
                    translate_range=[0.05 * s for s in size], padding_mode="border", mode=modes,
                    spatial_size=list(size)),
        RandGaussianNoised(keys=img, std=0.02, prob=0.2),
    ]
    return steps


PRESETS: dict[str, Callable] = {
    "none": lambda dims, size, keys, label_keys: [],
    "classic": _classic,
    "xray": _xray,
    "ultrasound": _ultrasound,
    "volume": _volume,
    "nodule": _nodule,
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def build_augmentation(name: str, *, spatial_dims: int, spatial_size: Sequence[int], keys: Sequence[str] = ("image",),
                       label_keys: Sequence[str] = (), seed: int = 0):
    """A seeded MONAI ``Compose`` for preset ``name`` (None for ``none``).

    Raises:
        ConfigError: the preset does not exist.
    """
    from monai.transforms import Compose

    if name not in PRESETS:
        raise ConfigError(f"unknown augmentation preset {name!r}; expected one of {', '.join(list_presets())}")
    steps = PRESETS[name](spatial_dims, list(spatial_size), list(keys), list(label_keys))
    if not steps:
        return None
    comp = Compose(steps)
    comp.set_random_state(seed=seed)
    return comp
