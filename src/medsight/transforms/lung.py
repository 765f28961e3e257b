"""A classical lung mask for chest CT: HU thresholds, connected components and morphology.

No model: the steps of the classic preprocessing (LUNA16 / Kaggle DSB kernels, lungmask's
thresholding baseline), with every size in mm and converted by the image's spacing:

1. body: per axial slice, the largest connected region above ``body_hu`` (−500 HU), holes filled
   (so the lungs, being holes in the body, are inside it); air outside the patient and the
   table fall away;
2. air inside the body below ``threshold_hu`` (−320 HU);
3. airways: per axial slice, small (≤ ``airway_max_area_mm2``), near-midline regions of almost pure
   air (mean below ``airway_hu``) are the trachea or the main bronchi and are removed. This is a
   size/shape criterion, not "connected to the top slice", so it holds on slabs cut through the
   lungs (the LIDC slabs have 11–16 slices);
4. the one or two largest 3D components of at least ``min_lung_ml``; when the lungs touch (anterior
   junction) one component is split at the narrowest column near the midline of each slice;
5. per lung: holes filled per axial slice (vessels and nodules inside the lung), a closing with a
   ball of ``closing_mm`` (juxtapleural nodules up to about twice that diameter), and a dilation
   by ``margin_mm``. Both run on a coarse grid (about 2 mm voxels) by distance transforms, so a
   512×512×300 volume needs no float64 copy at full resolution.

Labels: 1 = left lung, 2 = right lung (patient left is +x in LPS) when the lungs were told apart;
when they could not be (one merged component that does not split) every lung voxel is 1 and
:attr:`LungMask.separated` is False. A volume without lungs (not a chest CT, all air, a phantom)
gives an empty mask with :attr:`LungMask.found` False and the reason, not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from medsight.errors import InvalidValueError, ShapeError
from medsight.io.image import Image
from medsight.transforms.geometry import Grid

__all__ = ["LEFT", "RIGHT", "LungMask", "lung_mask", "inside"]

#: Label values of the mask.
LEFT = 1
RIGHT = 2

_NAMES = {LEFT: "left", RIGHT: "right"}


@dataclass
class LungMask:
    """The lung mask of a CT volume and what was measured on it.

    Attributes:
        mask: uint8 mask ``(1, slices, rows, cols)`` in the image's geometry (0 background,
            1 left, 2 right; only 1 when :attr:`separated` is False).
        found: True when at least one lung was found.
        separated: True when the labels say left and right.
        reason: why nothing was found (``found`` False), else None.
        volumes_ml: mL per lung (``left``/``right``, or ``lung`` when not separated).
        bbox_voxels: ``(lo, hi)`` inclusive voxel index per spatial axis (array order) of all lung
            voxels, or None when empty.
        bbox_mm: ``(min_corner, max_corner)`` in patient LPS mm of the voxel centres of the bounding
            box, or None when empty.
        params: the parameters the mask was made with.
    """

    mask: Image
    found: bool
    separated: bool
    reason: str | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    bbox_voxels: tuple[tuple[int, int], ...] | None = None
    bbox_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def array(self) -> np.ndarray:
        """The spatial mask ``(slices, rows, cols)``, uint8."""
        return self.mask.array[0]

    @property
    def total_ml(self) -> float:
        return float(sum(self.volumes_ml.values()))

    def crop(self, margin_mm: float = 10.0) -> tuple[slice, ...]:
        """Slices (array order, spatial axes) of the lungs' bounding box grown by ``margin_mm`` on
        each side, clipped to the volume; the whole volume when no lung was found. Use as
        ``image.array[(slice(None), *lungs.crop())]``."""
        shape = self.mask.shape
        if self.bbox_voxels is None:
            return tuple(slice(0, n) for n in shape)
        out = []
        for (lo, hi), n, s in zip(self.bbox_voxels, shape, self.mask.spacing, strict=True):
            pad = int(np.ceil(max(margin_mm, 0.0) / s))
            out.append(slice(max(lo - pad, 0), min(hi + pad + 1, n)))
        return tuple(out)

    def inside(self, points_mm: Any) -> np.ndarray | bool:
        """:func:`inside` on this mask."""
        return inside(self.mask, points_mm)

    def summary(self) -> dict[str, Any]:
        """JSON-compatible facts (no arrays)."""
        return {
            "found": self.found,
            "separated": self.separated,
            "reason": self.reason,
            "volumes_ml": {k: round(v, 1) for k, v in self.volumes_ml.items()},
            "bbox_voxels": None if self.bbox_voxels is None else [list(b) for b in self.bbox_voxels],
            "bbox_mm": None if self.bbox_mm is None else [list(c) for c in self.bbox_mm],
            "params": dict(self.params),
        }


def inside(mask: Image | LungMask, points_mm: Any) -> np.ndarray | bool:
    """Whether patient LPS points (mm) fall in a non-zero voxel of ``mask``.

    Args:
        mask: a mask image (any non-zero voxel counts) or a :class:`LungMask`.
        points_mm: one point ``(x, y, z)`` or an array ``(N, 3)`` (finding centres, say).

    Returns:
        A bool for one point, else a bool array ``(N,)``. Points outside the volume are False.
    """
    image = mask.mask if isinstance(mask, LungMask) else mask
    pts = np.asarray(points_mm, float)
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    if pts.shape[-1] != 3 or pts.ndim != 2:
        raise ShapeError(f"points must be (x, y, z) or (N, 3) in LPS mm; got shape {np.shape(points_mm)}")
    arr = image.array[0]
    idx = np.rint(Grid.of(image).world_to_index(pts))
    ok = np.all(np.isfinite(idx), axis=1)
    idx = np.where(ok[:, None], idx, -1).astype(np.int64)
    ok &= np.all((idx >= 0) & (idx < np.asarray(arr.shape)), axis=1)
    out = np.zeros(len(pts), bool)
    if ok.any():
        sel = idx[ok]
        out[ok] = arr[tuple(sel.T)] != 0
    return bool(out[0]) if single else out


def lung_mask(image: Image, *, threshold_hu: float = -320.0, body_hu: float = -500.0,
              airway_hu: float = -900.0, airway_max_area_mm2: float = 700.0, airway_midline_mm: float = 30.0,
              min_lung_ml: float = 5.0, closing_mm: float = 15.0, margin_mm: float = 3.0,
              coarse_mm: float = 2.0) -> LungMask:
    """The lung mask of a chest CT volume (see the module docstring for the steps).

    Args:
        image: a single-channel 3D CT image in HU (any dtype; not copied to float64).
        threshold_hu: air (lung) is below this.
        body_hu: the body is above this.
        airway_hu: per-slice regions with a mean below this that are small and near the midline are
            airways (trachea, main bronchi); lung parenchyma is about −850 HU.
        airway_max_area_mm2: largest cross-section of an airway region (a 30 mm trachea is 700 mm²).
        airway_midline_mm: how far from the body's midline (left–right) an airway centre may be.
        min_lung_ml: smallest component kept as a lung.
        closing_mm: radius of the ball closing each lung (0 skips); fills juxtapleural nodules of
            up to about twice this diameter.
        margin_mm: dilation of each lung after the closing (0 skips).
        coarse_mm: voxel size of the grid the closing and dilation run on.

    Raises:
        ShapeError: not a single-channel 3D image.
        InvalidValueError: NaN or infinite voxels.
    """
    params = {k: float(v) for k, v in dict(
        threshold_hu=threshold_hu, body_hu=body_hu, airway_hu=airway_hu, airway_max_area_mm2=airway_max_area_mm2,
        airway_midline_mm=airway_midline_mm, min_lung_ml=min_lung_ml, closing_mm=closing_mm, margin_mm=margin_mm,
        coarse_mm=coarse_mm).items()}
    if image.n_spatial != 3 or image.channels != 1:
        raise ShapeError(f"lung_mask needs a single-channel 3D CT volume (1, slices, rows, cols); "
                         f"got shape {image.array.shape}")
    hu = image.array[0]
    if hu.dtype.kind not in "fiub":
        raise ShapeError(f"lung_mask needs a numeric array; got dtype {hu.dtype}")
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        n = int(np.count_nonzero(~np.isfinite(hu)))
        raise InvalidValueError(f"lung_mask needs finite HU values; got {n} NaN or infinite voxel(s)",
                                path=image.source)

    # Work in an axial layout: axis 0 along patient S-I, axis 2 along patient L-R.
    direction = np.abs(np.asarray(image.direction))
    ax_z = int(np.argmax(direction[2]))
    rest = [a for a in range(3) if a != ax_z]
    ax_x = rest[int(np.argmax(direction[0, rest]))]
    ax_y = next(a for a in rest if a != ax_x)
    order = (ax_z, ax_y, ax_x)
    hu_a = np.transpose(hu, order)
    flip = float(np.asarray(image.direction)[0, ax_x]) < 0  # columns run to the patient's right
    if flip:
        hu_a = hu_a[:, :, ::-1]  # a view: the column index now grows towards the patient's left (+x)
    spacing = tuple(float(image.spacing[a]) for a in order)
    voxel_ml = float(np.prod(spacing)) / 1000.0

    labels_a, separated, reason = _lungs(hu_a, spacing, voxel_ml, params)
    found = reason is None
    if found and (closing_mm > 0 or margin_mm > 0):
        labels_a = _grow(labels_a, spacing, closing_mm=closing_mm, margin_mm=margin_mm, coarse_mm=coarse_mm)

    if flip:
        labels_a = labels_a[:, :, ::-1]
    inverse = tuple(int(i) for i in np.argsort(order))
    labels = np.ascontiguousarray(np.transpose(labels_a, inverse))
    mask = image.with_array(labels[None], meta={"lung_mask": True})

    volumes: dict[str, float] = {}
    bbox_vox = bbox_mm = None
    if found:
        counts = [0] + [int(np.count_nonzero(labels == v)) for v in (LEFT, RIGHT)]
        if separated:
            volumes = {_NAMES[v]: float(counts[v] * voxel_ml) for v in (LEFT, RIGHT) if counts[v]}
        else:
            volumes = {"lung": float(sum(counts) * voxel_ml)}
        bbox_vox = tuple(_extent(labels, axis) for axis in range(3))
        corners = np.array(np.meshgrid(*[list(b) for b in bbox_vox], indexing="ij")).reshape(3, -1).T
        world = Grid.of(image).index_to_world(corners)
        bbox_mm = (tuple(float(v) for v in world.min(0)), tuple(float(v) for v in world.max(0)))
    return LungMask(mask=mask, found=found, separated=separated and found, reason=reason, volumes_ml=volumes,
                    bbox_voxels=bbox_vox, bbox_mm=bbox_mm, params=params)  # type: ignore[arg-type]


# -- steps ----------------------------------------------------------------------------------------


def _lungs(hu: np.ndarray, spacing: tuple[float, float, float], voxel_ml: float,
           params: dict[str, float]) -> tuple[np.ndarray, bool, str | None]:
    """Labels (axial layout) before the closing, whether left/right are told apart, and why not found."""
    nz = hu.shape[0]
    pixel_mm2 = spacing[1] * spacing[2]
    air = np.zeros(hu.shape, bool)
    body_any = False
    midlines = np.full(nz, np.nan)
    for k in range(nz):
        body = _largest_2d(hu[k] > params["body_hu"])
        if body is None:
            continue
        body_any = True
        body = _fill_holes(body)
        cols = np.nonzero(body.any(axis=0))[0]
        midlines[k] = (cols[0] + cols[-1]) / 2.0
        a = body & (hu[k] < params["threshold_hu"])
        _drop_airways(a, hu[k], midlines[k], pixel_mm2, spacing[2], params)
        air[k] = a
    if not body_any:
        return np.zeros(hu.shape, np.uint8), False, "no body: no voxel above the body threshold"
    if not air.any():
        return np.zeros(hu.shape, np.uint8), False, "no air inside the body below the lung threshold"

    comp, n = ndimage.label(air)
    del air
    sizes = np.zeros(n + 1, np.int64)
    for k in range(nz):  # per slice: np.bincount would make an int64 copy of the whole volume
        sizes += np.bincount(comp[k].ravel(), minlength=n + 1)
    sizes = sizes[1:]
    order = np.argsort(sizes)[::-1]
    min_vox = params["min_lung_ml"] / voxel_ml
    keep = [int(i) + 1 for i in order[:2] if sizes[i] >= min_vox]
    if len(keep) == 2 and sizes[keep[1] - 1] < 0.05 * sizes[keep[0] - 1]:
        keep = keep[:1]  # a bowel loop or a bronchus, not a second lung
    if not keep:
        return np.zeros(hu.shape, np.uint8), False, (
            f"no air component of at least {params['min_lung_ml']:g} mL inside the body")

    mid = float(np.nanmedian(midlines))
    labels = np.zeros(hu.shape, np.uint8)
    separated = True
    if len(keep) == 2:
        for c in keep:
            labels[comp == c] = _side(comp == c, mid)
        if len(np.unique(labels[labels > 0])) < 2:  # both on one side: not a left/right pair
            labels[labels > 0] = 1
            separated = False
    else:
        one = comp == keep[0]
        del comp
        left_right = _split(one, midlines)
        if left_right is None:
            labels[one] = _side(one, mid)
        else:
            labels = left_right
    for k in range(nz):  # vessels and nodules inside the lung
        for v in (LEFT, RIGHT):
            sl = labels[k] == v
            if sl.any():
                labels[k][_fill_holes(sl) & (labels[k] == 0)] = v
    return labels, separated, None


def _largest_2d(mask: np.ndarray) -> np.ndarray | None:
    comp, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return comp == int(np.argmax(sizes))


def _drop_airways(air: np.ndarray, hu: np.ndarray, midline: float, pixel_mm2: float, col_mm: float,
                  params: dict[str, float]) -> None:
    """Remove, in place, small near-midline regions of almost pure air (trachea, main bronchi)."""
    comp, n = ndimage.label(air)
    if n == 0:
        return
    flat = comp.ravel()
    count = np.bincount(flat, minlength=n + 1)[1:]
    cols = np.broadcast_to(np.arange(comp.shape[1], dtype=np.float64), comp.shape).ravel()
    centre = np.bincount(flat, weights=cols, minlength=n + 1)[1:] / count
    mean = np.bincount(flat, weights=hu.ravel(), minlength=n + 1)[1:] / count
    airway = (count * pixel_mm2 <= params["airway_max_area_mm2"]) & (mean < params["airway_hu"]) \
        & (np.abs(centre - midline) * col_mm <= params["airway_midline_mm"])
    if airway.any():
        air[np.isin(comp, np.flatnonzero(airway) + 1)] = False


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """binary_fill_holes of a 2D mask, computed on the mask's bounding box only."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out = mask.copy()
    out[box] = ndimage.binary_fill_holes(mask[box])
    return out


def _side(one: np.ndarray, midline: float) -> int:
    """LEFT when a component's centre is on the patient's left (higher column index in the axial
    layout, whose column index grows towards +x)."""
    cols = np.nonzero(one.any(axis=(0, 1)))[0]
    weights = one.sum(axis=(0, 1))[cols]
    centre = float((cols * weights).sum() / weights.sum())
    return LEFT if centre > midline else RIGHT


def _split(one: np.ndarray, midlines: np.ndarray) -> np.ndarray | None:
    """Split one merged lung component into left and right at, per slice, the column with the fewest
    lung voxels near the body's midline; None when the component does not straddle the midline."""
    mid = float(np.nanmedian(midlines))
    per_col = one.sum(axis=(0, 1))
    lo, hi = per_col[: int(mid)].sum(), per_col[int(mid):].sum()
    total = lo + hi
    if total == 0 or min(lo, hi) < 0.2 * total:
        return None
    labels = np.zeros(one.shape, np.uint8)
    ncol = one.shape[2]
    for k in range(one.shape[0]):
        sl = one[k]
        if not sl.any():
            continue
        m = midlines[k] if np.isfinite(midlines[k]) else mid
        band = max(int(0.1 * ncol), 1)
        a, b = max(int(m) - band, 0), min(int(m) + band, ncol - 1)
        prof = sl.sum(axis=0)[a: b + 1]
        ties = a + np.flatnonzero(prof == prof.min())
        cut = int(ties[np.argmin(np.abs(ties - m))])  # of equally narrow columns, the one nearest the midline
        labels[k, :, cut + 1:][sl[:, cut + 1:]] = LEFT
        labels[k, :, : cut + 1][sl[:, : cut + 1]] = RIGHT
    return labels


def _grow(labels: np.ndarray, spacing: tuple[float, float, float], *, closing_mm: float, margin_mm: float,
          coarse_mm: float) -> np.ndarray:
    """Close each lung with a ball of ``closing_mm`` and dilate it by ``margin_mm`` on a coarse grid
    (block max-pooling to about ``coarse_mm`` voxels), then add the result to the fine mask; a lung's
    growth only takes voxels that are still background (left first, then right)."""
    factors = tuple(max(1, int(round(coarse_mm / s))) for s in spacing)
    c_spacing = tuple(s * f for s, f in zip(spacing, factors, strict=True))
    out = labels.copy()
    for v in (LEFT, RIGHT):
        fine = labels == v
        if not fine.any():
            continue
        coarse = _pool_any(fine, factors)
        grown = coarse
        if closing_mm > 0:
            dilated = ndimage.distance_transform_edt(~grown, sampling=c_spacing) <= closing_mm
            grown = (ndimage.distance_transform_edt(dilated, sampling=c_spacing) > closing_mm) | coarse
            del dilated
        if margin_mm > 0:
            grown = ndimage.distance_transform_edt(~grown, sampling=c_spacing) <= margin_mm
        up = _unpool(grown, factors, labels.shape)
        # the closing may bridge into the other lung; never take its voxels
        out[up & (out == 0)] = v
    return out


def _pool_any(mask: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    pad = [(0, (-n) % f) for n, f in zip(mask.shape, factors, strict=True)]
    m = np.pad(mask, pad) if any(p[1] for p in pad) else mask
    shp = []
    for n, f in zip(m.shape, factors, strict=True):
        shp += [n // f, f]
    return m.reshape(shp).any(axis=(1, 3, 5))


def _unpool(coarse: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    idx = np.ix_(*[np.arange(n) // f for n, f in zip(shape, factors, strict=True)])
    return coarse[idx]


def _extent(labels: np.ndarray, axis: int) -> tuple[int, int]:
    other = tuple(a for a in range(labels.ndim) if a != axis)
    hit = np.nonzero(labels.any(axis=other))[0]
    return int(hit[0]), int(hit[-1])
