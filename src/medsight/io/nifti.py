"""NIfTI-1/2 (``.nii``, ``.nii.gz``) through nibabel, with geometry from the affine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.errors import CorruptFileError, InvalidValueError, ShapeError, WriteError
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_decoded_size
from medsight.io.registry import register_reader

__all__ = ["read_nifti", "write_nifti", "lps_affine_to_image_geometry", "image_to_ras_affine"]

_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_affine_to_image_geometry(affine_ijk_lps: np.ndarray, n_spatial: int):
    """Split an (i, j[, k]) → LPS affine into MedSight's (spacing, origin, direction), whose
    array axes run in reverse order (k, j, i)."""
    cols = affine_ijk_lps[:3, :n_spatial]
    spacing_ijk = np.linalg.norm(cols, axis=0)
    if np.any(spacing_ijk <= 0) or not np.all(np.isfinite(spacing_ijk)):
        raise ShapeError(f"affine has zero or invalid voxel sizes: {spacing_ijk.tolist()}")
    direction_ijk = cols / spacing_ijk
    return (tuple(spacing_ijk[::-1].tolist()), tuple(affine_ijk_lps[:3, 3].tolist()),
            direction_ijk[:, ::-1].copy())


def image_to_ras_affine(image: Image) -> np.ndarray:
    """The nibabel (i, j, k) → RAS affine of ``image`` (whose axes are (k, j, i))."""
    n = image.n_spatial
    a = np.eye(4)
    cols = (image.direction * np.asarray(image.spacing))[:, ::-1]  # type: ignore[operator]
    if n == 2:
        normal = np.cross(image.direction[:, 0], image.direction[:, 1])  # type: ignore[index]
        cols = np.column_stack([cols, normal])
    a[:3, :3] = _LPS_RAS @ cols
    a[:3, 3] = _LPS_RAS @ np.asarray(image.origin)
    return a


@register_reader("nifti")
def read_nifti(path: Path, *, limits: ReadLimits, allow_nan: bool = False, modality: str = "OT",
               **_: object) -> Image:
    """Read a NIfTI file.

    3D data becomes ``(1, k, j, i)``; 4D data ``(t, k, j, i)`` (the 4th axis as channels);
    2D data ``(1, j, i)``. Scaling (scl_slope/scl_inter) is applied. Spacing, origin and
    direction come from the affine (sform, else qform), converted from RAS to LPS.

    Raises:
        InvalidValueError: the data holds NaN or infinity (unless ``allow_nan``).
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a bad header
        raise CorruptFileError(f"not a valid NIfTI header: {exc}", path=path) from exc
    shape = tuple(int(s) for s in img.shape)
    scaled = img.dataobj.slope != 1 or img.dataobj.inter != 0 if hasattr(img.dataobj, "slope") else False
    itemsize = max(img.get_data_dtype().itemsize, 4 if scaled else 1)  # scaling gives floats
    check_decoded_size(shape, itemsize, limits, path, frame=shape[:2])  # NIfTI: i, j in-plane
    if len(shape) > 4 or len(shape) < 2:
        raise ShapeError(f"expected 2D, 3D or 4D NIfTI data; got shape {shape}")
    try:
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, ValueError) as exc:
        raise CorruptFileError(f"NIfTI data is truncated or damaged: {exc}", path=path) from exc
    if data.dtype.kind == "f" and not allow_nan:
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InvalidValueError(f"{bad} voxels are NaN or infinite", path=path)
    affine_lps = np.eye(4)
    affine_lps[:3, :] = _LPS_RAS @ img.affine[:3, :]
    n_spatial = min(len(shape), 3)
    if len(shape) == 4:
        arr = np.ascontiguousarray(np.moveaxis(data, 3, 0).transpose(0, 3, 2, 1))
    else:
        arr = np.ascontiguousarray(data.T)[None]
    spacing, origin, direction = lps_affine_to_image_geometry(affine_lps, n_spatial)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:n_spatial])[::-1]
    meta = {"format": "nifti", "header_zooms_mm": list(zooms)}
    if not np.allclose(zooms, spacing, rtol=1e-3):
        meta["warnings"] = [f"header zooms {zooms} differ from affine spacing {spacing}"]
    return Image(array=arr, spacing=spacing, origin=origin, direction=direction, modality=modality,
                 source=str(path), meta=meta)


def write_nifti(image: Image, path: str | Path, *, dtype: np.dtype | str | None = None) -> Path:
    """Write ``image`` as NIfTI (gzip-compressed when the name ends in ``.gz``).

    Channels beyond the first become a 4th axis. Returns the path written.
    """
    import nibabel as nib

    path = Path(path)
    arr = image.array if dtype is None else image.array.astype(dtype)
    data = arr[0].T if image.channels == 1 else np.moveaxis(arr.transpose(0, *range(arr.ndim - 1, 0, -1)), 0, -1)
    nimg = nib.Nifti1Image(np.asarray(data), image_to_ras_affine(image))
    nimg.header.set_xyzt_units("mm", "sec")
    nimg.set_qform(nimg.affine, code=1)
    nimg.set_sform(nimg.affine, code=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nimg, str(path))
    except OSError as exc:
        raise WriteError(f"could not write NIfTI: {exc}", path=path) from exc
    return path
