"""PNG, JPEG and TIFF through Pillow: 8 and 16 bit, grayscale and RGB."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from medsight.errors import CorruptFileError, UnsupportedFormatError
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_pixel_count
from medsight.io.registry import register_reader

__all__ = ["read_raster"]


@register_reader("png")
@register_reader("jpeg")
@register_reader("tiff")
def read_raster(path: Path, *, limits: ReadLimits, modality: str = "OT", **_: object) -> Image:
    """Read a 2D raster image.

    Returns an image of shape ``(1, rows, cols)`` (grayscale, any bit depth, values kept) or
    ``(3, rows, cols)`` (colour; alpha dropped, palettes expanded). Spacing is 1 mm, marked
    unknown in ``meta["spacing_known"]``; TIFF resolution tags are not trusted as anatomy.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            pil = PILImage.open(path)
    except PILImage.DecompressionBombWarning as exc:
        raise CorruptFileError(f"refused as a decompression bomb: {exc}", path=path) from exc
    except PILImage.DecompressionBombError as exc:
        raise CorruptFileError(f"refused as a decompression bomb: {exc}", path=path) from exc
    except UnidentifiedImageError as exc:
        raise CorruptFileError("the header is not a valid PNG/JPEG/TIFF header", path=path) from exc
    with pil:
        cols, rows = pil.size
        bands = len(pil.getbands())
        check_pixel_count((bands, rows, cols), limits, path)
        frames = getattr(pil, "n_frames", 1)
        if frames > 1:
            raise UnsupportedFormatError(f"multi-page image with {frames} pages; expected one", path=path)
        mode = pil.mode
        saved = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None  # our own limit was checked above
        try:
            if mode in ("P", "PA"):
                pil = pil.convert("RGBA" if "transparency" in pil.info or mode == "PA" else "RGB")
                mode = pil.mode
            if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                if mode == "LA":
                    pil = pil.getchannel(0)
                arr = np.asarray(pil)
                if mode == "1":
                    arr = arr.astype(np.uint8) * 255
                arr = arr[None]
            elif mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
                arr = np.asarray(pil.convert("RGB")).transpose(2, 0, 1)
            else:
                raise UnsupportedFormatError(f"unsupported pixel mode {mode!r}", path=path)
        except OSError as exc:
            raise CorruptFileError(f"pixel data is damaged or truncated ({exc})", path=path) from exc
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # Pillow widens 16-bit PNGs to int32
    return Image(
        array=arr,
        spacing=(1.0, 1.0),
        modality=modality,
        source=str(path),
        meta={"spacing_known": False, "pil_mode": mode, "bit_depth": int(arr.dtype.itemsize * 8)},
    )
