"""NumPy ``.npy`` and single-image ``.npz`` files (never with pickles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.errors import CorruptFileError, ShapeError, UnsupportedFormatError
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_decoded_size
from medsight.io.registry import register_reader

__all__ = ["read_npy", "read_npz", "array_to_image"]


def array_to_image(arr: np.ndarray, *, spacing=None, source: str | None = None, channel_first: bool | None = None,
                   modality: str = "OT") -> Image:
    """Wrap a bare array as an Image.

    A 2D array is one grayscale image; a 3D array is a volume unless ``channel_first`` says
    its first axis holds channels; a 4D array is channel-first.
    """
    if arr.dtype.kind not in "biuf":
        raise ShapeError(f"expected a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and not channel_first:
        arr = arr[None]
    elif arr.ndim not in (3, 4):
        raise ShapeError(f"expected a 2D or 3D array (optionally channel-first); got shape {arr.shape}")
    n = arr.ndim - 1
    return Image(array=arr, spacing=tuple(spacing) if spacing is not None else (1.0,) * n,
                 source=source, modality=modality, meta={"spacing_known": spacing is not None})


@register_reader("npy")
def read_npy(path: Path, *, limits: ReadLimits, **_: object) -> Image:
    """Read a ``.npy`` array: 2D image, 3D volume, or 4D channel-first volume."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise CorruptFileError(f"not a plain NumPy array (pickled objects are refused): {exc}", path=path) from exc
    check_decoded_size(arr.shape, arr.dtype.itemsize, limits, path)
    arr = np.array(arr)
    img = array_to_image(arr, source=str(path))
    img.meta["format"] = "npy"
    return img


@register_reader("npz")
def read_npz(path: Path, *, limits: ReadLimits, key: str | None = None, **_: object) -> Image:
    """Read one image from an ``.npz``: the key ``image`` (or the only array), with an
    optional ``spacing`` array. A MedMNIST dataset file is a dataset, not an image."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if key is None:
                if any(k.endswith("_images") for k in keys):
                    raise UnsupportedFormatError(
                        "this .npz is a dataset (keys " + ", ".join(keys[:6]) + "); "
                        "use it as --data, not as an image", path=path)
                key = "image" if "image" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None or key not in keys:
                raise UnsupportedFormatError(f"expected a key 'image' in the .npz; found {keys}", path=path)
            with z.zip.open(key + ".npy") as member:  # check the shape before decompressing
                version = np.lib.format.read_magic(member)
                fmt = np.lib.format
                reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = reader(member)
            check_decoded_size(shape, np.dtype(dtype).itemsize, limits, path)
            arr = z[key]
            spacing = tuple(np.asarray(z["spacing"], float).tolist()) if "spacing" in keys else None
    except ValueError as exc:
        raise CorruptFileError(f"not a plain NumPy archive (pickled objects are refused): {exc}", path=path) from exc
    return array_to_image(arr, spacing=spacing, source=str(path))
