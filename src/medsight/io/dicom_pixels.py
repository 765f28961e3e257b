"""DICOM pixel data to modality values: decode, check, rescale, un-invert, colour.

What comes out of :func:`dataset_pixels`:

* grayscale as ``(frames, rows, cols)``, with the Modality LUT applied: RescaleSlope and
  RescaleIntercept (single-frame, or shared / per-frame PixelValueTransformationSequence of
  enhanced objects), else a ModalityLUTSequence. CT comes out in Hounsfield units (float32).
  Without a rescale the stored integers are kept as they are (uint8/uint16/int16);
* MONOCHROME1 inverted so that higher values always mean brighter: ``v' = lo + hi - v``
  with ``[lo, hi]`` the stored range (after rescale, when there is one);
* colour as ``(frames, rows, cols, 3)`` uint8 RGB: YBR_FULL, YBR_FULL_422, YBR_ICT/RCT and
  PALETTE COLOR are converted to RGB; PlanarConfiguration is handled by pydicom.

Compressed transfer syntaxes are decoded by pydicom's plugins: JPEG baseline/extended/lossless
(pylibjpeg-libjpeg), JPEG-LS (pylibjpeg-libjpeg), JPEG 2000 (pylibjpeg-openjpeg) and RLE
(pydicom's own decoder or pylibjpeg-rle). Native (uncompressed) pixel data is length-checked
before decoding, so a short or over-long PixelData gets a :class:`PixelDataError` that says
how many bytes were expected and found.

:func:`check_pixel_header` does every check that needs no decoding (the declared size against
the :class:`~medsight.io.limits.ReadLimits` budgets, the length of native pixel data): the
service's receiver runs it instead of decoding, and :func:`dataset_pixels` runs it first.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from medsight.errors import MissingPixelDataError, PixelDataError
from medsight.io.dicom_values import value
from medsight.io.limits import ReadLimits, check_decoded_size

__all__ = ["PIXEL_KEYWORDS", "check_pixel_header", "dataset_pixels", "expected_native_bytes"]

log = logging.getLogger(__name__)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_DECODE_ERRORS = (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, KeyError, IndexError,
                  OSError, EOFError, OverflowError, ZeroDivisionError, MemoryError)


def _int(ds, kw: str, default: int) -> int:
    v = value(ds, kw, default)
    try:
        return int(v) if v is not None and str(v) != "" else default
    except (TypeError, ValueError):
        return default


def _header(ds) -> dict[str, int]:
    """The integer attributes that describe the pixel data, read once (each get costs)."""
    allocated = _int(ds, "BitsAllocated", 16)
    return {"rows": _int(ds, "Rows", 0), "cols": _int(ds, "Columns", 0),
            "frames": _int(ds, "NumberOfFrames", 1) or 1, "samples": _int(ds, "SamplesPerPixel", 1),
            "allocated": allocated, "stored": _int(ds, "BitsStored", allocated) or allocated,
            "signed": int(_int(ds, "PixelRepresentation", 0) == 1)}


def expected_native_bytes(ds, h: dict[str, int] | None = None) -> int:
    """Bytes that uncompressed PixelData must hold: rows x cols x frames x samples x bits/8.

    1-bit data (BitsAllocated 1) is packed, rounded up to whole bytes.
    """
    h = h or _header(ds)
    n = h["rows"] * h["cols"] * h["frames"] * (h["samples"] or 1)
    bits = h["allocated"]
    return (n * bits + 7) // 8


def _is_compressed(ds) -> bool:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return bool(ts is not None and getattr(ts, "is_compressed", False))


def _native_length_error(ds, h: dict[str, int], path: object) -> None:
    """Raise on PixelData shorter than the header says, or longer by a whole frame or more."""
    actual = len(ds.PixelData or b"")
    expected = expected_native_bytes(ds, h)
    if actual < expected:
        raise PixelDataError(
            f"pixel data has {actual:,} bytes; Rows x Columns x NumberOfFrames x SamplesPerPixel x BitsAllocated "
            f"give {expected:,} bytes (the pixel data is short, or the header is wrong)", path=path)
    frame_bytes = max(1, expected // h["frames"])
    extra = actual - expected
    if extra >= frame_bytes and extra > 1:
        raise PixelDataError(
            f"pixel data has {actual:,} bytes; the header describes {expected:,} bytes, so {extra:,} bytes "
            "(at least one whole frame) are unaccounted for (NumberOfFrames or Rows/Columns is wrong)", path=path)


def _check_native_length(ds, h: dict[str, int], path: object) -> str | None:
    """Drop a few extra bytes after native PixelData (checked by :func:`_native_length_error`), with a warning."""
    if "PixelData" not in ds or _is_compressed(ds):
        return None
    expected = expected_native_bytes(ds, h)
    extra = len(ds.PixelData or b"") - expected
    if extra > 1:
        ds.PixelData = ds.PixelData[:expected + (expected % 2)]  # drop the excess before pydicom sees it
        return f"pixel data has {extra} bytes more than the header describes; they were ignored"
    return None


def _stored_range(h: dict[str, int]) -> tuple[float, float]:
    bits = h["stored"] or 16
    if h["signed"]:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _rescale(item) -> tuple[float, float] | None:
    slope, intercept = value(item, "RescaleSlope"), value(item, "RescaleIntercept")
    if slope is None and intercept is None:
        return None
    try:
        s = float(slope) if slope is not None and str(slope) != "" else 1.0
        i = float(intercept) if intercept is not None and str(intercept) != "" else 0.0
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(s) and np.isfinite(i)) or s == 0:
        return None
    return s, i


def _frame_rescales(ds, frames: int) -> list[tuple[float, float]] | None:
    """Per-frame (slope, intercept) of an enhanced object, or one shared value repeated."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and shared[0].get("PixelValueTransformationSequence"):
        r = _rescale(shared[0].PixelValueTransformationSequence[0])
        return None if r is None else [r] * frames
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per and len(per) == frames:
        out = []
        for item in per:
            pvt = item.get("PixelValueTransformationSequence")
            r = _rescale(pvt[0]) if pvt else None
            if r is None:
                return None
            out.append(r)
        return out
    return None


_NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99")


def _native_fast(ds, h: dict[str, int]) -> np.ndarray | None:
    """Uncompressed little-endian grayscale with 8/16/32 bits, decoded as pydicom does.

    pydicom's ``pixel_array`` spends most of a 512x512 slice's decode time on option
    handling; for this one common layout we take the bytes as they are and apply pydicom's
    own rule for BitsStored < BitsAllocated (mask unsigned values, sign-extend signed ones).
    Everything else (compressed, big endian, colour, 1-bit, float) goes through pydicom.
    """
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts not in _NATIVE_LE or "PixelData" not in ds or h["samples"] != 1:
        return None
    allocated, stored, signed = h["allocated"], h["stored"], h["signed"]
    if allocated not in (8, 16, 32) or not 0 < stored <= allocated:
        return None
    n = h["rows"] * h["cols"] * h["frames"]
    arr = np.frombuffer(ds.PixelData, dtype=f"<{'i' if signed else 'u'}{allocated // 8}", count=n)
    if stored < allocated:  # new arrays: the read-only view over PixelData is left alone
        if signed:
            shift = allocated - stored
            arr = (arr << shift) >> shift
        else:
            arr = arr & arr.dtype.type((1 << stored) - 1)
    return arr  # may be a read-only view; dataset_pixels copies it unless a rescale does


def _decode(ds, h: dict[str, int], path: object) -> np.ndarray:
    try:
        fast = _native_fast(ds, h)
        return fast if fast is not None else np.asarray(ds.pixel_array)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - decoders in Rust raise pyo3's PanicException (a BaseException)
        if not isinstance(exc, _DECODE_ERRORS) and type(exc).__name__ != "PanicException":
            raise
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # pydicom's "raised by all available plugins:" is followed by one line per plugin: keep them, on one line
        text = "; ".join(lines[:4]).replace(":;", ":") if lines else type(exc).__name__
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", ts) or "unknown transfer syntax"
        raise PixelDataError(f"pixel data ({ts_name}) cannot be decoded: {text}", path=path) from exc


def check_pixel_header(ds, *, path: object = None, limits: ReadLimits | None = None) -> dict[str, int]:
    """Check what the header declares about the pixels, without decoding them.

    Rows, Columns, NumberOfFrames, SamplesPerPixel and BitsAllocated must be usable and their
    decoded size within ``limits`` (frames x rows x columns x samples x BitsAllocated/8, the
    frame and image budgets); uncompressed pixel data must hold the bytes they describe.
    Compressed data is not decoded here: a damaged stream is found when it is decoded.
    ``limits`` None means :meth:`ReadLimits.from_env`.

    Returns:
        The integer header attributes (rows, cols, frames, samples, allocated, stored, signed).

    Raises:
        MissingPixelDataError: the dataset holds no pixel data.
        PixelDataError: unusable dimensions, or native pixel data too short or too long.
        ImageTooLargeError: the declared size exceeds a budget.
    """
    if not any(kw in ds for kw in PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        hint = "; it has Rows/Columns, so the file may be cut short before its pixel data" if "Rows" in ds else ""
        raise MissingPixelDataError(
            f"expected an image, found a DICOM object without pixel data (SOP class {getattr(sop, 'name', sop)}"
            f"{hint})", path=path)
    h = _header(ds)
    rows, cols, frames, samples = h["rows"], h["cols"], h["frames"], h["samples"]
    if rows <= 0 or cols <= 0 or frames <= 0 or samples not in (1, 3):
        raise PixelDataError(f"expected positive Rows/Columns/NumberOfFrames and 1 or 3 samples per pixel; got "
                             f"rows={rows} cols={cols} frames={frames} samples={samples}", path=path)
    if h["allocated"] not in (1, 8, 16, 32, 64):
        raise PixelDataError(f"expected BitsAllocated of 1, 8, 16, 32 or 64; got {ds.get('BitsAllocated')}", path=path)
    check_decoded_size((frames, rows, cols, samples), (h["allocated"] + 7) // 8, limits or ReadLimits.from_env(),
                       path, frame=(rows, cols, samples))
    if "PixelData" in ds and not _is_compressed(ds):
        _native_length_error(ds, h, path)
    return h


def dataset_pixels(ds, *, path: object = None, limits: ReadLimits | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a dataset's pixels to modality values.

    Args:
        ds: a fully read pydicom dataset.
        path: named in error messages.
        limits: caps on the decoded size, checked before decoding (default
            :meth:`ReadLimits.from_env`).

    Returns:
        ``(frames, rows, cols)`` grayscale or ``(frames, rows, cols, 3)`` uint8 RGB, and facts
        about the decoding (``photometric_interpretation``, ``rescale``, ``units``,
        ``inverted_monochrome1``, ``color``, ``warnings``).

    Raises:
        MissingPixelDataError: the dataset holds no pixel data.
        PixelDataError: the pixel data is too short or too long, or cannot be decoded.
        ImageTooLargeError: the declared size exceeds a budget (see :func:`check_pixel_header`).
    """
    h = check_pixel_header(ds, path=path, limits=limits)
    rows, cols, frames, samples = h["rows"], h["cols"], h["frames"], h["samples"]
    info: dict[str, Any] = {}
    warning = _check_native_length(ds, h, path)
    if warning:
        info["warnings"] = [warning]
    photometric = str(value(ds, "PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    info["photometric_interpretation"] = photometric
    arr = _decode(ds, h, path)
    expected_size = frames * rows * cols * samples
    if arr.size < expected_size:
        raise PixelDataError(f"decoded {arr.size:,} values; the header describes {expected_size:,}", path=path)
    if arr.size > expected_size:  # a decoder returned extra frames: keep the ones described
        arr = arr.reshape(-1)[:expected_size] if arr.ndim == 1 else arr[:frames]
    arr = arr.reshape((frames, rows, cols) if samples == 1 else (frames, rows, cols, samples))
    if samples == 3 or photometric == "PALETTE COLOR":
        arr, info = _colour(ds, arr, photometric, info, path)
    else:
        arr, info = _grayscale(ds, arr, photometric, info, h)
    if not arr.flags.writeable:  # a view over the dataset's bytes: give the caller its own array
        arr = arr.copy()
    return arr, info


def _colour(ds, arr: np.ndarray, photometric: str, info: dict[str, Any], path: object):
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except _DECODE_ERRORS as exc:
            raise PixelDataError(f"PALETTE COLOR image has an unusable colour lookup table: {exc}", path=path) from exc
        if arr.dtype != np.uint8:  # LUT entries are 16 bit: keep 8 significant bits
            descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
            bits = int(descriptor[2]) if descriptor else 16
            arr = (arr >> max(0, bits - 8)).astype(np.uint8)
    elif arr.dtype != np.uint8:
        # 16-bit colour is rare; scale into 8 bit so that every colour image has one dtype
        bits = _int(ds, "BitsStored", 16)  # colour: rare enough to read again
        arr = (arr.astype(np.uint32) >> max(0, bits - 8)).astype(np.uint8)
    info["color"] = "RGB"
    if photometric.startswith("YBR"):
        info["converted_from"] = photometric  # pydicom's decoders return RGB by default
    return arr, info


def _grayscale(ds, arr: np.ndarray, photometric: str, info: dict[str, Any], h: dict[str, int]):
    frames = h["frames"]
    lo, hi = _stored_range(h)
    rescales = None
    single = _rescale(ds)
    if single is not None:
        rescales = [single] * frames
    elif "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        rescales = _frame_rescales(ds, frames)
    if rescales is not None and any(r != (1.0, 0.0) for r in rescales):
        slopes = np.array([r[0] for r in rescales], np.float32)[:, None, None]
        intercepts = np.array([r[1] for r in rescales], np.float32)[:, None, None]
        if np.any(slopes != 1):
            arr = np.multiply(arr, slopes, dtype=np.float32)
            arr += intercepts
        else:
            arr = np.add(arr, intercepts, dtype=np.float32)  # one pass: cast and shift
        s0, i0 = rescales[0]
        lo, hi = sorted((lo * s0 + i0, hi * s0 + i0))
        info["rescale"] = [float(s0), float(i0)] if len(set(rescales)) == 1 else "per-frame"
    elif "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        arr = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        info["modality_lut"] = True
    if photometric == "MONOCHROME1":
        if arr.dtype.kind == "f":
            arr = np.float32(lo + hi) - arr
        else:
            arr = np.int32(int(lo + hi)) - arr.astype(np.int32)
            for small in (np.uint8, np.uint16, np.int16):  # back to the smallest type that holds it
                info_t = np.iinfo(small)
                if arr.size and arr.min() >= info_t.min and arr.max() <= info_t.max:
                    arr = arr.astype(small)
                    break
        info["inverted_monochrome1"] = True
        info["inversion_sum"] = float(lo + hi)  # v' = sum - v; a DICOM window centre maps the same way
    modality = str(value(ds, "Modality", "")).upper()
    if modality == "CT" and ("rescale" in info or "modality_lut" in info):
        info["units"] = "HU"
    elif str(value(ds, "RescaleType", "US")).upper() not in ("US", ""):  # "US" means unspecified
        info["units"] = str(value(ds, "RescaleType"))
    elif modality == "PT" and ds.get("Units"):
        info["units"] = str(ds.Units)
    return arr, info
