"""Dataset fingerprint and the plan it implies: nnU-Net's self-configuration, simplified.

The fingerprint is measured on the training cases only (never on validation or test cases):
voxel spacing and array shape per case, and intensity statistics of the foreground voxels per
channel (a seeded sample of up to 10,000 voxels per case). :func:`plan_segmentation` turns it
into the choices a model needs, which are saved in its manifest:

* **target spacing**: the median spacing per axis. When the median spacings are anisotropic
  (largest / smallest > 3), the coarse axis takes the 10th percentile of its spacings instead,
  so that thin-slice cases are not thrown away.
* **patch size**: the median shape at the target spacing, rounded up to a multiple of the
  network's total downsampling per axis; while it holds more than ``max_patch_voxels``
  voxels (default 96³ in 3D, 512² in 2D), the axis that is largest relative to the median
  shape is shrunk by one step.
* **normalisation**: CT is clipped to the foreground's 0.5-99.5 percentiles and z-scored
  with the foreground mean and sd of the whole training set (HU are comparable between
  scans); every other modality is z-scored per image, since MR intensities are not.
* **DynUNet topology** (kernels and strides): an axis is downsampled while it keeps at least
  4 voxels and its spacing is at most twice the finest one; kernels are 1 along an axis whose
  spacing is more than twice the finest, else 3. At most 5 downsamplings.

Example:
    >>> fp = collect_fingerprint(pairs, modality="MR")          # doctest: +SKIP
    >>> plan = plan_segmentation(fp, cfg.segmentation, model_name="dynunet", model_params={})  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsight.errors import ConfigError, DataError

__all__ = ["Fingerprint", "collect_fingerprint", "plan_segmentation", "dynunet_topology", "network_divisor",
           "ANISOTROPY_RATIO"]

#: Median spacings more unequal than this (largest / smallest) count as anisotropic.
ANISOTROPY_RATIO = 3.0
_SAMPLES_PER_CASE = 10_000
_DEFAULT_MAX_PATCH = {2: 512 * 512, 3: 96 * 96 * 96}


@dataclass
class Fingerprint:
    """What the training cases look like.

    Attributes:
        spacings: ``(n_cases, n_spatial)`` voxel spacing in mm, array axis order.
        shapes: ``(n_cases, n_spatial)`` array shapes.
        modality: DICOM modality code of the images.
        intensity: per channel, statistics of foreground voxels (mean, sd, percentiles 0.5 and
            99.5, min, max).
        label_voxels: label value → mean number of voxels per case.
        label_volume_ml: label value → mean volume per case in mL.
    """

    spacings: np.ndarray
    shapes: np.ndarray
    modality: str
    channels: int
    intensity: list[dict[str, float]] = field(default_factory=list)
    label_voxels: dict[int, float] = field(default_factory=dict)
    label_volume_ml: dict[int, float] = field(default_factory=dict)

    @property
    def n_cases(self) -> int:
        return int(len(self.spacings))

    @property
    def spatial_dims(self) -> int:
        return int(self.spacings.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """A JSON summary (for the manifest and the docs)."""
        sp, sh = self.spacings, self.shapes
        return {
            "n_cases": self.n_cases, "spatial_dims": self.spatial_dims, "channels": self.channels,
            "modality": self.modality,
            "spacing_mm": {"median": _r(np.median(sp, 0)), "min": _r(sp.min(0)), "max": _r(sp.max(0))},
            "shape": {"median": _r(np.median(sh, 0), 1), "min": sh.min(0).tolist(), "max": sh.max(0).tolist()},
            "intensity": [{k: round(v, 4) for k, v in c.items()} for c in self.intensity],
            "label_voxels_mean": {str(k): round(v, 1) for k, v in self.label_voxels.items()},
            "label_volume_ml_mean": {str(k): round(v, 4) for k, v in self.label_volume_ml.items()},
        }


def _r(a: Any, nd: int = 4) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(a).ravel()]


def collect_fingerprint(pairs: Iterable[tuple[Any, np.ndarray]], *, modality: str = "OT", seed: int = 0) -> Fingerprint:
    """Measure spacings, shapes and foreground intensities of training cases.

    Args:
        pairs: ``(image, mask)`` per case: an :class:`~medsight.io.image.Image` and its integer
            mask array of shape ``(1, *spatial)`` or ``spatial``.
        modality: DICOM modality code, recorded with the fingerprint.
        seed: seeds the sampling of foreground voxels.

    Raises:
        DataError: no cases, or cases of different dimensionality or channel count.
    """
    rng = np.random.default_rng(seed)
    spacings: list[tuple[float, ...]] = []
    shapes: list[tuple[int, ...]] = []
    samples: list[list[np.ndarray]] = []
    voxels: dict[int, list[int]] = {}
    volumes: dict[int, list[float]] = {}
    channels = dims = 0
    for image, mask in pairs:
        m = np.asarray(mask)
        m = m[0] if m.ndim == image.array.ndim else m
        if not dims:
            dims, channels = image.n_spatial, image.channels
            samples = [[] for _ in range(channels)]
        if image.n_spatial != dims or image.channels != channels:
            raise DataError(f"{image.source}: every case must be {dims}D with {channels} channel(s); this one is "
                            f"{image.n_spatial}D with {image.channels}")
        spacings.append(image.spacing)
        shapes.append(image.shape)
        fg: np.ndarray = np.flatnonzero(m.ravel() > 0)
        if fg.size == 0:
            fg = np.arange(m.size)
        pick = fg if fg.size <= _SAMPLES_PER_CASE else rng.choice(fg, _SAMPLES_PER_CASE, replace=False)
        for c in range(channels):
            samples[c].append(image.array[c].ravel()[pick].astype(np.float64))
        counts = np.bincount(m.ravel().astype(np.int64))
        for v in np.flatnonzero(counts):
            if v == 0:
                continue
            voxels.setdefault(int(v), []).append(int(counts[v]))
            volumes.setdefault(int(v), []).append(float(counts[v]) * image.voxel_volume_mm3 / 1000.0)
    if not dims:
        raise DataError("cannot fingerprint a dataset without readable training cases")
    intensity = []
    for c in range(channels):
        vals = np.concatenate(samples[c])
        intensity.append({"mean": float(vals.mean()), "sd": float(vals.std()),
                          "p00_5": float(np.percentile(vals, 0.5)), "p99_5": float(np.percentile(vals, 99.5)),
                          "min": float(vals.min()), "max": float(vals.max())})
    return Fingerprint(spacings=np.asarray(spacings, float), shapes=np.asarray(shapes, int), modality=modality,
                       channels=int(channels), intensity=intensity,
                       label_voxels={k: float(np.mean(x)) for k, x in sorted(voxels.items())},
                       label_volume_ml={k: float(np.mean(x)) for k, x in sorted(volumes.items())})


# -- network geometry -----------------------------------------------------------------------------
def dynunet_topology(patch: Sequence[int], spacing: Sequence[float], *, max_levels: int = 5,
                     min_size: int = 4) -> tuple[list[list[int]], list[list[int]]]:
    """Kernels and strides of a DynUNet for ``patch`` (voxels) at ``spacing`` (mm).

    Returns:
        ``(kernel_size, strides)``: one entry per level, each with a value per axis; the first
        level has stride 1.
    """
    size = [float(s) for s in patch]
    sp = [float(s) for s in spacing]
    d = len(size)
    kernels = [[3 if sp[a] <= 2 * min(sp) else 1 for a in range(d)]]
    strides = [[1] * d]
    for _ in range(max_levels):
        finest = min(sp)
        step = [2 if size[a] / 2 >= min_size and sp[a] <= 2 * finest else 1 for a in range(d)]
        if not any(s == 2 for s in step):
            break
        size = [s / st for s, st in zip(size, step)]
        sp = [s * st for s, st in zip(sp, step)]
        finest = min(sp)
        strides.append(step)
        kernels.append([3 if sp[a] <= 2 * finest else 1 for a in range(d)])
    return kernels, strides


def network_divisor(model_name: str, params: dict[str, Any], spatial_dims: int) -> list[int]:
    """By how much each axis of a patch must be divisible for ``model_name``."""
    if model_name == "dynunet" and params.get("strides"):
        return [int(np.prod([s[a] for s in params["strides"]])) for a in range(spatial_dims)]
    if model_name == "unet":
        strides = params.get("strides", (2, 2, 2))
        return [int(np.prod([s if isinstance(s, int) else s[a] for s in strides])) for a in range(spatial_dims)]
    if model_name == "segresnet":
        blocks = params.get("blocks_down", (1, 2, 2, 4))
        return [2 ** (len(blocks) - 1)] * spatial_dims
    return [16] * spatial_dims


def _round_up(x: float, m: int) -> int:
    return int(math.ceil(max(x, 1) / m) * m)


def plan_segmentation(fp: Fingerprint, seg: Any, *, model_name: str, model_params: dict[str, Any]) -> dict[str, Any]:
    """Turn a fingerprint (and the config's explicit choices) into a plan.

    Args:
        fp: the training set's fingerprint.
        seg: a :class:`~medsight.config.SegmentationConfig`; values other than ``auto`` win.
        model_name: the registered architecture.
        model_params: its parameters from the config (DynUNet kernels/strides are filled in).

    Returns:
        A JSON-compatible mapping: ``target_spacing``, ``patch_size``, ``normalization`` (one
        entry per channel), ``median_shape``, ``network`` (name and parameters), ``rules``.

    Raises:
        ConfigError: explicit spacing/patch values with the wrong number of axes, or a patch
            that the network cannot divide.
    """
    d = fp.spatial_dims
    rules: dict[str, str] = {}
    med = np.median(fp.spacings, axis=0)
    if seg.target_spacing != "auto":
        target = np.asarray(seg.target_spacing, float)
        if target.shape != (d,) or np.any(target <= 0):
            raise ConfigError(f"segmentation.target_spacing needs {d} positive values (mm); got {seg.target_spacing}")
        rules["target_spacing"] = "given in the config"
    else:
        target = med.copy()
        rules["target_spacing"] = "median spacing per axis"
        if med.max() / med.min() > ANISOTROPY_RATIO:
            a = int(np.argmax(med))
            target[a] = float(np.percentile(fp.spacings[:, a], 10))
            rules["target_spacing"] += f"; anisotropic, so axis {a} takes the 10th percentile of its spacings"
    shapes_t = np.round(fp.shapes * fp.spacings / target[None, :])
    median_shape = np.median(shapes_t, axis=0)
    params = dict(model_params)
    budget = int(getattr(seg, "max_patch_voxels", None) or _DEFAULT_MAX_PATCH[d])

    def fit(patch: list[int]) -> tuple[list[int], list[int]]:
        if model_name == "dynunet" and not model_params.get("strides"):
            k, s = dynunet_topology(patch, [float(t) for t in target])
            params["kernel_size"], params["strides"] = k, s
        div = network_divisor(model_name, params, d)
        return [_round_up(p, m) for p, m in zip(patch, div)], div

    if seg.patch_size != "auto":
        patch = [int(p) for p in seg.patch_size]
        if len(patch) != d or min(patch) < 1:
            raise ConfigError(f"segmentation.patch_size needs {d} positive values (voxels); got {seg.patch_size}")
        fitted, div = fit(patch)
        if fitted != patch:
            raise ConfigError(f"segmentation.patch_size {patch} must be divisible by {div} for {model_name}; "
                              f"try {fitted}")
        rules["patch_size"] = "given in the config"
    else:
        patch, div = fit([int(x) for x in median_shape])
        while int(np.prod(patch)) > budget:
            rel = [p / max(m, 1) for p, m in zip(patch, median_shape)]
            a = int(np.argmax([r if p > div[i] else -1 for i, (r, p) in enumerate(zip(rel, patch))]))
            if patch[a] <= div[a]:
                break
            patch[a] -= div[a]
            patch, div = fit(patch)
        rules["patch_size"] = (f"median shape at target spacing {[int(x) for x in median_shape]}, rounded up to a "
                               f"multiple of {div}, at most {budget} voxels")
    if model_name == "dynunet" and "filters" not in model_params:
        n = len(params["strides"])
        base = int(model_params.get("base_filters", 16)) if "base_filters" in model_params else 16
        params["filters"] = [min(base * 2 ** i, 256) for i in range(n)]
    params.pop("base_filters", None)
    norm = seg.normalization
    if norm == "auto":
        norm = "ct" if fp.modality == "CT" else "zscore"
        rules["normalization"] = ("CT: clip to the foreground 0.5-99.5 percentiles, z-score with the training set's "
                                  "foreground mean/sd" if norm == "ct" else f"{fp.modality}: z-score per image")
    else:
        rules["normalization"] = "given in the config"
    channels = []
    for c in range(fp.channels):
        st = fp.intensity[c]
        if norm == "ct":
            channels.append({"scheme": "ct", "lower": st["p00_5"], "upper": st["p99_5"], "mean": st["mean"],
                             "sd": max(st["sd"], 1e-6)})
        else:
            channels.append({"scheme": norm})
    return {
        "spatial_dims": d, "in_channels": fp.channels, "target_spacing": _r(target, 6), "patch_size": patch,
        "median_shape": [int(x) for x in median_shape], "normalization": channels,
        "network": {"name": model_name, "params": params}, "rules": rules,
    }
