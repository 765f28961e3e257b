"""Preprocessing helpers on :class:`~medsight.io.image.Image` that keep the geometry right.

Every helper runs a MONAI transform on the array and gives back a new Image whose spacing,
origin and direction describe the new voxels, taken from the affine MONAI returns: the same
physical point keeps the same LPS coordinates. Each step is recorded in
``meta["transforms"]`` (name and parameters), so what was done can be read back.

* intensity: :func:`window_ct` (lung, mediastinum, bone, brain, abdomen presets or a
  (level, width) in HU) and :func:`normalize_mr` (z-score over the foreground, or a
  percentile range to [0, 1]);
* grid: :func:`resample_to_spacing`, :func:`resample_to` (onto another image's grid),
  :func:`reorient` (to axis codes such as ``"SPL"``), :func:`crop`, :func:`pad`,
  :func:`crop_or_pad` and :func:`crop_foreground`;
* :class:`Grid`: where an array's voxels sit in patient space without the array; a model's
  preprocessor returns the network grid's :class:`Grid` with its input
  (:meth:`medsight.transforms.preprocess.Preprocessor.apply`), so a voxel or a box found on the
  network grid maps back to patient millimetres (:meth:`Grid.index_to_world`) and to the
  source image's voxels (:meth:`Grid.index_to`).

How the geometry is kept: the transform runs on a *local* affine (``diag(spacing)``, origin 0,
array axes as coordinates), and the affine it returns, ``A``, is mapped back to patient
space: new direction x spacing = ``direction @ A[:n, :n]``, new origin = ``origin + direction
@ A[:n, n]``. This works alike for 2D and 3D and for oblique images. :func:`reorient` and
:func:`resample_to` need the patient axes themselves and use the full LPS affine (3D only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsight.errors import ConfigError, ShapeError
from medsight.io.image import Image
from medsight.transforms.intensity import CT_WINDOWS, ct_window_bounds

__all__ = [
    "Grid",
    "window_ct",
    "normalize_mr",
    "resample_to_spacing",
    "resample_to",
    "reorient",
    "crop",
    "pad",
    "crop_or_pad",
    "crop_foreground",
]

#: MONAI axis labels for an LPS world: (negative end, positive end) of x, y, z.
LPS_LABELS = (("R", "L"), ("A", "P"), ("I", "S"))
_TORCH_UNSAFE = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}


# -- grids ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The geometry of a voxel grid, in :mod:`medsight.io.image`'s conventions.

    The LPS position (mm) of continuous array index ``v`` is ``origin + direction @ (spacing *
    v)``; index 0 is the centre of the first voxel.

    Attributes:
        shape: voxels per spatial axis, array order.
        spacing: mm between voxel centres per axis.
        origin: LPS mm of the centre of voxel 0.
        direction: ``(3, n_spatial)`` unit columns.
        applied: the steps that made this grid's array from the source, in order (name and
            parameters), so what was done can be read back.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(repr=False)
    applied: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, image: Image) -> Grid:
        """The grid of ``image``."""
        return cls(shape=tuple(image.shape), spacing=tuple(image.spacing), origin=tuple(image.origin),  # type: ignore[arg-type]
                   direction=np.asarray(image.direction, float))

    @property
    def n_spatial(self) -> int:
        return len(self.shape)

    def index_to_world(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """LPS mm of continuous array indices ``(..., n_spatial)`` → ``(..., 3)``."""
        v = np.asarray(index, float)
        return np.asarray(self.origin) + (v * np.asarray(self.spacing)) @ self.direction.T

    def world_to_index(self, points: Sequence[float] | np.ndarray) -> np.ndarray:
        """Continuous array indices of LPS points ``(..., 3)`` (for a 2D grid, the point's
        projection onto the image plane)."""
        p = np.asarray(points, float) - np.asarray(self.origin)
        return (p @ np.linalg.pinv(self.direction).T) / np.asarray(self.spacing)

    def index_to(self, other: Grid, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """Indices on ``other`` of the points at ``index`` on this grid (e.g. network grid →
        source image)."""
        return other.world_to_index(self.index_to_world(index))

    def resized(self, shape: Sequence[int], **step: Any) -> Grid:
        """This grid resampled to ``shape`` over the same field of view (voxel edges kept;
        :func:`medsight.transforms.spacing.resize`): spacing scales by ``n_in / n_out`` and
        voxel 0's centre moves to input index ``(n_in / n_out - 1) / 2``. ``step`` (name and
        parameters) is recorded in :attr:`applied` when given."""
        new = tuple(int(s) for s in shape)
        scale = np.asarray(self.shape, float) / np.asarray(new, float)
        spacing = np.asarray(self.spacing) * scale
        origin = self.index_to_world((scale - 1.0) / 2.0)
        applied = (*self.applied, step) if step else self.applied
        return Grid(shape=new, spacing=tuple(float(s) for s in spacing), origin=tuple(float(o) for o in origin),  # type: ignore[arg-type]
                    direction=self.direction, applied=applied)

    def with_step(self, **step: Any) -> Grid:
        """The same grid with one more step in :attr:`applied` (an intensity change, say)."""
        return Grid(shape=self.shape, spacing=self.spacing, origin=self.origin, direction=self.direction,
                    applied=(*self.applied, step))


# -- plumbing -------------------------------------------------------------------------------------


def _tensor(image: Image, affine: np.ndarray):
    import torch
    from monai.data import MetaTensor

    arr = image.array
    if arr.dtype in _TORCH_UNSAFE:
        arr = arr.astype(_TORCH_UNSAFE[arr.dtype])
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(arr)), affine=torch.as_tensor(affine, dtype=torch.float64))


def _local_affine(image: Image) -> np.ndarray:
    n = image.n_spatial
    a = np.eye(n + 1)
    a[:n, :n] = np.diag(image.spacing)
    return a


def _array(out: Any, like: np.ndarray, *, keep_dtype: bool) -> np.ndarray:
    arr = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    if keep_dtype and arr.dtype != like.dtype:
        if like.dtype.kind in "iub":
            info = np.iinfo(like.dtype) if like.dtype.kind != "b" else None
            arr = np.rint(arr)
            if info is not None:
                arr = np.clip(arr, info.min, info.max)
        arr = arr.astype(like.dtype)
    return np.ascontiguousarray(arr)


def _record(image: Image, name: str, **params: Any) -> dict[str, Any]:
    meta = dict(image.meta)
    meta["transforms"] = [*meta.get("transforms", []), {"name": name, **params}]
    return meta


def _from_local(image: Image, out: Any, name: str, *, keep_dtype: bool = True, **params: Any) -> Image:
    """An Image from a MONAI output whose affine is in the local frame of ``image``."""
    n = image.n_spatial
    affine = np.asarray(out.affine, dtype=float)
    if affine.shape[0] != n + 1:  # MONAI may hand back a 4x4 for 2D data
        affine = np.delete(np.delete(affine, 2, axis=0), 2, axis=1) if n == 2 else affine
    cols = image.direction @ affine[:n, :n]  # type: ignore[operator]
    spacing = np.linalg.norm(cols, axis=0)
    origin = np.asarray(image.origin) + image.direction @ affine[:n, n]  # type: ignore[operator]
    return image.with_array(_array(out, image.array, keep_dtype=keep_dtype), spacing=tuple(spacing),
                            origin=tuple(origin), direction=cols / spacing, meta=_record(image, name, **params))


def _from_lps(image: Image, out: Any, name: str, *, keep_dtype: bool = True, **params: Any) -> Image:
    """An Image from a MONAI output whose affine maps array indices to LPS mm (3D)."""
    affine = np.asarray(out.affine, dtype=float)
    cols = affine[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    return image.with_array(_array(out, image.array, keep_dtype=keep_dtype), spacing=tuple(spacing),
                            origin=tuple(affine[:3, 3]), direction=cols / spacing,
                            meta=_record(image, name, **params))


def _need_3d(image: Image, what: str) -> None:
    if image.n_spatial != 3:
        raise ShapeError(f"{what} needs a 3D image (C, slices, rows, cols); got a {image.n_spatial}D image")


def _per_axis(value: float | Sequence[float], n: int, what: str) -> tuple[float, ...]:
    vals = (value,) * n if np.isscalar(value) else tuple(value)  # type: ignore[arg-type]
    if len(vals) != n:
        raise ConfigError(f"{what} needs {n} values (one per spatial axis, array order); got {len(vals)}")
    return tuple(float(v) for v in vals)


# -- intensity ------------------------------------------------------------------------------------


def window_ct(image: Image, window: str | tuple[float, float]) -> Image:
    """Map a CT window to [0, 1] (float32), clipping outside it.

    Args:
        image: a CT image in Hounsfield units.
        window: a preset name (``lung``, ``mediastinum``, ``bone``, ``brain``, ``abdomen``) or
            ``(level, width)`` in HU.

    Raises:
        ConfigError: unknown preset or a width that is not positive.
    """
    from monai.transforms import ScaleIntensityRange

    if isinstance(window, str):
        lo, hi = ct_window_bounds(window)
    else:
        level, width = (float(v) for v in window)
        if width <= 0:
            raise ConfigError(f"a CT window needs a positive width; got {width}")
        lo, hi = level - width / 2, level + width / 2
    if image.meta.get("units") not in (None, "HU"):
        raise ConfigError(f"window_ct expects Hounsfield units; this image is in {image.meta.get('units')!r}")
    out = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(image.array.astype(np.float32))
    meta = _record(image, "window_ct", window=window if isinstance(window, str) else list(window), hu=[lo, hi])
    meta["units"] = "window fraction"
    return image.with_array(_array(out, image.array, keep_dtype=False).astype(np.float32), meta=meta)


def normalize_mr(image: Image, method: str = "zscore", *, nonzero: bool = True, lower: float = 1.0,
                 upper: float = 99.0) -> Image:
    """Normalise MR intensities, per channel, to float32.

    Args:
        image: any image (MR has no absolute scale, so this is the usual first step).
        method: ``"zscore"``: subtract the mean and divide by the standard deviation (over
            voxels > 0 when ``nonzero``, leaving the background at 0); ``"percentile"``: the
            ``lower`` and ``upper`` percentiles map to 0 and 1, clipped.
        nonzero: z-score statistics from non-zero voxels only.
        lower, upper: percentiles for ``"percentile"``.

    Raises:
        ConfigError: an unknown method or percentiles out of order.
    """
    from monai.transforms import NormalizeIntensity, ScaleIntensityRangePercentiles

    x = image.array.astype(np.float32)
    if method == "zscore":
        out = NormalizeIntensity(nonzero=nonzero, channel_wise=True)(x)
        params: dict[str, Any] = {"method": method, "nonzero": nonzero}
    elif method == "percentile":
        if not 0 <= lower < upper <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= lower < upper <= 100; got {lower}, {upper}")
        out = ScaleIntensityRangePercentiles(lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True,
                                             channel_wise=True)(x)
        params = {"method": method, "lower": lower, "upper": upper}
    else:
        raise ConfigError(f"normalize_mr method must be 'zscore' or 'percentile'; got {method!r}")
    meta = _record(image, "normalize_mr", **params)
    meta["units"] = "normalised"
    return image.with_array(_array(out, image.array, keep_dtype=False).astype(np.float32), meta=meta)


# -- grid -----------------------------------------------------------------------------------------


def resample_to_spacing(image: Image, spacing: float | Sequence[float], *, mode: str = "linear") -> Image:
    """Resample to a target voxel spacing in mm (array order), keeping the physical extent.

    Args:
        image: 2D or 3D.
        spacing: mm per voxel, one value or one per spatial axis.
        mode: ``"linear"`` (images) or ``"nearest"`` (label masks: values kept exactly).

    Raises:
        ConfigError: an unknown mode or a spacing that is not positive.
    """
    from monai.transforms import Spacing

    target = _per_axis(spacing, image.n_spatial, "spacing")
    if any(s <= 0 for s in target):
        raise ConfigError(f"spacing must be positive mm; got {target}")
    if mode not in ("linear", "nearest"):
        raise ConfigError(f"mode must be 'linear' or 'nearest'; got {mode!r}")
    interp = "nearest" if mode == "nearest" else "bilinear"
    out = Spacing(pixdim=target, mode=interp, padding_mode="border")(_tensor(image, _local_affine(image)))
    return _from_local(image, out, "resample_to_spacing", keep_dtype=mode == "nearest", spacing=list(target),
                       mode=mode)


def resample_to(image: Image, reference: Image, *, mode: str = "linear") -> Image:
    """Resample ``image`` onto ``reference``'s grid (shape, spacing, origin, direction), in
    patient space; voxels outside ``image`` become 0. Both must be 3D.

    Raises:
        ShapeError: an image is not 3D.
    """
    from monai.transforms import ResampleToMatch

    _need_3d(image, "resample_to")
    _need_3d(reference, "resample_to")
    if mode not in ("linear", "nearest"):
        raise ConfigError(f"mode must be 'linear' or 'nearest'; got {mode!r}")
    dst = _tensor(reference.with_array(reference.array[:1]), reference.affine)
    out = ResampleToMatch(mode="nearest" if mode == "nearest" else "bilinear", padding_mode="zeros")(
        _tensor(image, image.affine), img_dst=dst)
    return _from_lps(image, out, "resample_to", keep_dtype=mode == "nearest", mode=mode,
                     reference=reference.source)


def reorient(image: Image, axcodes: str = "SPL") -> Image:
    """Permute and flip the axes so that array axis ``a`` increases towards ``axcodes[a]``.

    Codes are patient directions: L/R, P/A, S/I. The default ``"SPL"`` is the usual axial
    stack (slices towards the head, rows towards the back, columns towards the left); a
    NIfTI-style RAS volume in MedSight's (z, y, x) order is ``"SAR"``. Voxel values are moved,
    never interpolated.

    Raises:
        ShapeError: the image is not 3D.
        ConfigError: ``axcodes`` is not three distinct axes.
    """
    from monai.transforms import Orientation

    _need_3d(image, "reorient")
    codes = axcodes.upper()
    axes = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
    if len(codes) != 3 or any(c not in axes for c in codes) or len({axes[c] for c in codes}) != 3:
        raise ConfigError(f"axcodes must name three different axes from L/R, P/A, S/I; got {axcodes!r}")
    out = Orientation(axcodes=codes, labels=LPS_LABELS)(_tensor(image, image.affine))
    return _from_lps(image, out, "reorient", axcodes=codes)


def crop(image: Image, start: Sequence[int], end: Sequence[int]) -> Image:
    """Keep voxels ``start <= index < end`` along each spatial axis (array order)."""
    from monai.transforms import SpatialCrop

    n = image.n_spatial
    if len(start) != n or len(end) != n:
        raise ConfigError(f"crop needs {n} start and {n} end indices; got {list(start)}, {list(end)}")
    if any(s < 0 or e <= s or e > size for s, e, size in zip(start, end, image.shape)):
        raise ConfigError(f"crop box {list(start)}..{list(end)} must lie inside the image {list(image.shape)} "
                          "and be non-empty")
    out = SpatialCrop(roi_start=list(start), roi_end=list(end))(_tensor(image, _local_affine(image)))
    return _from_local(image, out, "crop", start=list(map(int, start)), end=list(map(int, end)))


def pad(image: Image, before: Sequence[int], after: Sequence[int], *, value: float | None = None) -> Image:
    """Add ``before``/``after`` voxels along each spatial axis, filled with ``value`` (default:
    the image's minimum, so CT pads with air, not with 0 HU)."""
    from monai.transforms import BorderPad

    n = image.n_spatial
    if len(before) != n or len(after) != n or min(*before, *after) < 0:
        raise ConfigError(f"pad needs {n} non-negative 'before' and 'after' counts; got {list(before)}, {list(after)}")
    fill = float(image.array.min()) if value is None and image.array.size else float(value or 0)
    spatial_border = [int(v) for pair in zip(before, after) for v in pair]
    out = BorderPad(spatial_border=spatial_border, mode="constant", value=fill)(_tensor(image, _local_affine(image)))
    return _from_local(image, out, "pad", before=list(map(int, before)), after=list(map(int, after)), value=fill)


def crop_or_pad(image: Image, size: Sequence[int], *, value: float | None = None) -> Image:
    """Centre-crop or pad each spatial axis to ``size`` (array order)."""
    from monai.transforms import ResizeWithPadOrCrop

    n = image.n_spatial
    if len(size) != n or min(size) <= 0:
        raise ConfigError(f"crop_or_pad needs {n} positive sizes; got {list(size)}")
    fill = float(image.array.min()) if value is None and image.array.size else float(value or 0)
    out = ResizeWithPadOrCrop(spatial_size=list(size), mode="constant", value=fill)(
        _tensor(image, _local_affine(image)))
    return _from_local(image, out, "crop_or_pad", size=list(map(int, size)), value=fill)


def crop_foreground(image: Image, *, threshold: float = 0.0, margin: int = 0) -> Image:
    """Crop to the bounding box of voxels above ``threshold`` (any channel), plus ``margin``.

    Raises:
        ShapeError: no voxel is above the threshold.
    """
    from monai.transforms import CropForeground

    if not np.any(image.array > threshold):
        raise ShapeError(f"crop_foreground found no voxel above {threshold}; the image range is "
                         f"{float(image.array.min())}..{float(image.array.max())}")
    out = CropForeground(select_fn=lambda x: x > threshold, margin=int(margin), allow_smaller=True)(
        _tensor(image, _local_affine(image)))
    return _from_local(image, out, "crop_foreground", threshold=threshold, margin=int(margin))


_ = CT_WINDOWS  # re-exported through medsight.transforms.intensity; named here for the docs
