"""PNG, JPEG and TIFF through Pillow: 8 and 16 bit, grayscale and RGB."""

from __future__ import annotations

import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np

from medsight.errors import CorruptFileError, ImageTooLargeError, UnsupportedFormatError
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_decoded_size
from medsight.io.registry import register_reader

__all__ = ["read_raster"]

_PIL_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide: set it for one open at a time


def _png_is_16bit_colour(path: Path) -> bool:
    """True for a 16-bit RGB(A) PNG, which Pillow reduces to 8 bits per channel."""
    with open(path, "rb") as f:
        head = f.read(29)
    return len(head) == 29 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)


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
        with _PIL_LOCK, warnings.catch_warnings():
            # Pillow's own bomb check is replaced by ours (limits: pixels and bytes), checked below
            warnings.simplefilter("ignore")
            saved = PILImage.MAX_IMAGE_PIXELS
            PILImage.MAX_IMAGE_PIXELS = max(1, limits.max_pixels // 2)  # Pillow errors at twice this value
            try:
                pil = PILImage.open(path)
            finally:
                PILImage.MAX_IMAGE_PIXELS = saved
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLargeError(f"refused as a decompression bomb: {exc}", path=path) from exc
    except UnidentifiedImageError as exc:
        raise CorruptFileError("expected a valid PNG/JPEG/TIFF header; Pillow cannot identify it", path=path) from exc
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise CorruptFileError(f"the image header is damaged ({type(exc).__name__}: {exc})", path=path) from exc
    with pil:
        cols, rows = pil.size
        bands = 3 if pil.mode == "P" else len(pil.getbands())  # palettes are expanded to RGB
        itemsize = 4 if pil.mode in ("I", "F") else 2 if pil.mode.startswith("I;16") else 1
        check_decoded_size((bands, rows, cols), itemsize, limits, path, frame=(bands, rows, cols))
        frames = getattr(pil, "n_frames", 1)
        if frames > 1:
            raise UnsupportedFormatError(f"expected one image; found a multi-page file with {frames} pages", path=path)
        mode = pil.mode
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
        except (OSError, ValueError, SyntaxError, struct.error, zlib.error, EOFError) as exc:
            raise CorruptFileError(f"pixel data is damaged or truncated ({exc})", path=path) from exc
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # Pillow widens 16-bit PNGs to int32
    meta = {"spacing_known": False, "pil_mode": mode, "bit_depth": int(arr.dtype.itemsize * 8)}
    if arr.shape[0] == 3 and _png_is_16bit_colour(path):
        meta["warnings"] = ["16-bit colour PNG read at 8 bits per channel (Pillow's limit)"]
    return Image(
        array=arr,
        spacing=(1.0, 1.0),
        modality=modality,
        source=str(path),
        meta=meta,
    )
