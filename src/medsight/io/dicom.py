"""DICOM files: single-frame and multi-frame (enhanced) images through pydicom.

Pixel values come out as the modality defines them: RescaleSlope/RescaleIntercept (or a
Modality LUT) applied, so CT is in Hounsfield units; MONOCHROME1 is inverted so that higher
always means brighter; colour (RGB, YBR) comes out as RGB channels. Compressed transfer
syntaxes (JPEG baseline/lossless, JPEG 2000, RLE) are decoded by pydicom's pixel-data plugins
(pylibjpeg, openjpeg, RLE).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import (
    CorruptFileError,
    MissingPixelDataError,
    PixelDataError,
    UnsupportedFormatError,
)
from medsight.io.image import Image, Patient, default_direction
from medsight.io.limits import ReadLimits, check_pixel_count
from medsight.io.registry import register_reader

__all__ = [
    "read_dicom",
    "read_dataset",
    "dataset_pixels",
    "dataset_to_image",
    "patient_of",
    "plane_geometry",
    "PIXEL_KEYWORDS",
]

log = logging.getLogger(__name__)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def read_dataset(path: Path | Any, *, headers_only: bool = False, force: bool = False):
    """Parse a DICOM file with pydicom, mapping every failure to a MedSight error.

    Args:
        path: a file path or a binary file-like object.
        headers_only: defer large values (pixel data) instead of loading them.
        force: accept files without the 128-byte preamble.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = path if isinstance(path, (str, Path)) else getattr(path, "name", None)
    try:
        return pydicom.dcmread(path, defer_size=1024 if headers_only else None, force=force)
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(f"not a DICOM file: {exc}", path=name) from exc
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, OverflowError,
            NotImplementedError, AttributeError, RuntimeError) as exc:
        raise CorruptFileError(f"DICOM is truncated or damaged ({type(exc).__name__}: {exc})", path=name) from exc


def _float_list(value: Any, n: int) -> list[float] | None:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(np.isfinite(vals)):
        return None
    return vals


def patient_of(ds) -> Patient:
    """The patient identifiers of a dataset (kept for export, never logged)."""

    def s(kw: str) -> str | None:
        v = ds.get(kw)
        return None if v is None or str(v) == "" else str(v)

    return Patient(id=s("PatientID"), name=s("PatientName"), birth_date=s("PatientBirthDate"),
                   sex=s("PatientSex"), age=s("PatientAge"))


def plane_geometry(ds) -> dict[str, Any]:
    """In-plane geometry of a (single-frame or shared/per-frame) dataset.

    Returns a dict with ``row_cosine`` (direction of increasing column index),
    ``col_cosine`` (direction of increasing row index), ``position`` (LPS of the first
    pixel), ``pixel_spacing`` (row spacing, column spacing) in mm and where each came from.
    Missing values fall back to identity orientation, zero position and 1 mm spacing, with
    ``known`` False.
    """
    iop = _float_list(ds.get("ImageOrientationPatient"), 6)
    ipp = _float_list(ds.get("ImagePositionPatient"), 3)
    spacing_source = None
    ps = None
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        ps = _float_list(ds.get(kw), 2)
        if ps and ps[0] > 0 and ps[1] > 0:
            spacing_source = kw
            break
        ps = None
    row, col = (np.array(iop[:3]), np.array(iop[3:])) if iop else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    if iop:
        nr, nc = np.linalg.norm(row), np.linalg.norm(col)
        if nr < 1e-6 or nc < 1e-6:
            row, col, iop = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), None
        else:
            row, col = row / nr, col / nc
    return {
        "row_cosine": row,
        "col_cosine": col,
        "position": np.array(ipp) if ipp else np.zeros(3),
        "pixel_spacing": tuple(ps) if ps else (1.0, 1.0),
        "orientation_known": iop is not None,
        "position_known": ipp is not None,
        "spacing_source": spacing_source,
    }


def _stored_range(ds) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _rescale(ds) -> tuple[float, float] | None:
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
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


def _frame_rescale(ds) -> tuple[float, float] | None:
    """RescaleSlope/Intercept of an enhanced multi-frame object (shared functional groups)."""
    for seq_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(seq_kw)
        if seq:
            pvt = seq[0].get("PixelValueTransformationSequence")
            if pvt:
                return _rescale(pvt[0])
    return None


def dataset_pixels(ds, *, path: object = None, limits: ReadLimits | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a dataset's pixels to ``(frames, rows, cols)`` grayscale or
    ``(frames, rows, cols, 3)`` RGB, with the modality LUT applied and MONOCHROME1 inverted.

    Returns:
        The array and facts about the decoding (units, photometric interpretation, ...).

    Raises:
        MissingPixelDataError: the dataset holds no pixel data.
        PixelDataError: the pixel data cannot be decoded or has the wrong length.
        ImageTooLargeError: rows x columns x frames x samples exceeds the limit.
    """
    if not any(kw in ds for kw in PIXEL_KEYWORDS):
        sop = str(ds.get("SOPClassUID", "unknown"))
        name = getattr(ds.get("SOPClassUID"), "name", sop)
        raise MissingPixelDataError(f"DICOM object has no pixel data (SOP class {name})", path=path)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PixelDataError(f"Rows/Columns/NumberOfFrames missing or invalid: {exc}", path=path) from exc
    if rows <= 0 or cols <= 0 or frames <= 0 or samples not in (1, 3):
        raise PixelDataError(f"invalid image size rows={rows} cols={cols} frames={frames} samples={samples}", path=path)
    if limits is not None:
        check_pixel_count((frames, rows, cols, samples), limits, path)
    try:
        arr = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, KeyError,
            IndexError, OSError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PixelDataError(f"pixel data cannot be decoded: {msg}", path=path) from exc
    arr = np.asarray(arr)
    if samples == 1:
        arr = arr.reshape(frames, rows, cols)
    else:
        arr = arr.reshape(frames, rows, cols, samples)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    info: dict[str, Any] = {"photometric_interpretation": photometric}
    if samples == 1:
        rescale = _rescale(ds) or _frame_rescale(ds)
        lo, hi = _stored_range(ds)
        if rescale is not None and rescale != (1.0, 0.0):
            slope, intercept = rescale
            arr = arr.astype(np.float32)
            if slope != 1.0:
                arr *= np.float32(slope)
            arr += np.float32(intercept)
            lo, hi = lo * slope + intercept, hi * slope + intercept
            info["rescale"] = [slope, intercept]
        elif "ModalityLUTSequence" in ds:
            from pydicom.pixels import apply_modality_lut

            arr = apply_modality_lut(arr, ds).astype(np.float32)
            info["modality_lut"] = True
        if photometric == "MONOCHROME1":
            if arr.dtype.kind == "u":
                arr = arr.astype(np.int32) if arr.dtype.itemsize >= 2 else arr.astype(np.int16)
            arr = (lo + hi) - arr
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32, copy=False)
            info["inverted_monochrome1"] = True
        if str(ds.get("Modality", "")).upper() == "CT" and ("rescale" in info or "modality_lut" in info):
            info["units"] = "HU"
        elif ds.get("RescaleType"):
            info["units"] = str(ds.RescaleType)
    else:
        info["color"] = "RGB"
    return arr, info


def _window(ds) -> list[float] | None:
    c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
    if c is None or w is None:
        return None
    try:
        c0 = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w0 = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    except (TypeError, ValueError, IndexError):
        return None
    return [c0, w0] if w0 > 0 else None


def _common_meta(ds) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "dicom"}
    for kw, key in (("SeriesDescription", "series_description"), ("BodyPartExamined", "body_part"),
                    ("SOPClassUID", "sop_class_uid"), ("StudyDate", "study_date"),
                    ("SeriesNumber", "series_number"), ("Manufacturer", "manufacturer"),
                    ("ViewPosition", "view_position"), ("StudyDescription", "study_description")):
        v = ds.get(kw)
        if v is not None and str(v) != "":
            meta[key] = str(v)
    thick = ds.get("SliceThickness")
    try:
        if thick is not None and str(thick) != "":
            meta["slice_thickness_mm"] = float(thick)
    except (TypeError, ValueError):
        pass
    w = _window(ds)
    if w:
        meta["window"] = w
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None:
        meta["transfer_syntax"] = str(ts)
    return meta


def _frame_positions(ds, frames: int) -> list[np.ndarray] | None:
    """ImagePositionPatient of each frame of an enhanced multi-frame object, when present."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if not per or len(per) != frames:
        return None
    out = []
    for item in per:
        pps = item.get("PlanePositionSequence")
        ipp = _float_list(pps[0].get("ImagePositionPatient"), 3) if pps else None
        if ipp is None:
            return None
        out.append(np.array(ipp))
    return out


def _functional(ds, seq_kw: str, kw: str):
    for group_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(group_kw)
        if groups and seq_kw in groups[0] and groups[0].get(seq_kw):
            value = groups[0].get(seq_kw)[0].get(kw)
            if value is not None:
                return value
    return None


def dataset_to_image(ds, *, path: object = None, limits: ReadLimits | None = None) -> Image:
    """Turn one parsed DICOM dataset into an Image (2D for one frame, 3D for several)."""
    pixels, info = dataset_pixels(ds, path=path, limits=limits)
    frames = pixels.shape[0]
    meta = _common_meta(ds)
    meta.update(info)
    if frames > 1 and "PerFrameFunctionalGroupsSequence" in ds:  # enhanced multi-frame
        proxy = {
            "ImageOrientationPatient": _functional(ds, "PlaneOrientationSequence", "ImageOrientationPatient"),
            "PixelSpacing": _functional(ds, "PixelMeasuresSequence", "PixelSpacing"),
            "ImagePositionPatient": None,
        }
        geo = plane_geometry(proxy)
        thickness = _functional(ds, "PixelMeasuresSequence", "SliceThickness")
        if thickness is not None:
            meta["slice_thickness_mm"] = float(thickness)
    else:
        geo = plane_geometry(ds)
    row, col = geo["row_cosine"], geo["col_cosine"]
    normal = np.cross(row, col)
    meta["spacing_known"] = geo["spacing_source"] is not None
    if isinstance(path, (str, Path)):
        meta["source_files"] = [str(path)]  # lets dicom_out.source_datasets re-read the headers
    if geo["spacing_source"] in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        meta["spacing_source"] = geo["spacing_source"]
    common = dict(modality=str(ds.get("Modality", "OT")) or "OT",
                  study_uid=_str(ds.get("StudyInstanceUID")), series_uid=_str(ds.get("SeriesInstanceUID")),
                  sop_uids=(str(ds.get("SOPInstanceUID", "")),) if ds.get("SOPInstanceUID") else (),
                  frame_of_reference_uid=_str(ds.get("FrameOfReferenceUID")), patient=patient_of(ds),
                  source=None if path is None else str(path), meta=meta)
    channel_axis_last = pixels.ndim == 4
    if frames == 1:
        arr = pixels[0]
        arr = arr.transpose(2, 0, 1) if channel_axis_last else arr[None]
        direction = np.column_stack([col, row]) if geo["orientation_known"] else default_direction(2)
        return Image(array=arr, spacing=geo["pixel_spacing"], origin=tuple(geo["position"]),
                     direction=direction, **common)
    positions = _frame_positions(ds, frames)
    order = np.arange(frames)
    slice_spacing = None
    origin = geo["position"]
    if positions is not None:
        proj = np.array([p @ normal for p in positions])
        order = np.argsort(proj, kind="stable")
        steps = np.diff(proj[order])
        if len(steps) and np.all(steps > 1e-4):
            slice_spacing = float(np.mean(steps))
        origin = positions[order[0]]
    if slice_spacing is None:
        sbs = ds.get("SpacingBetweenSlices") or _functional(ds, "PixelMeasuresSequence", "SpacingBetweenSlices")
        try:
            slice_spacing = float(sbs) if sbs else float(meta.get("slice_thickness_mm", 1.0)) or 1.0
        except (TypeError, ValueError):
            slice_spacing = 1.0
        meta["slice_spacing_source"] = "SpacingBetweenSlices" if sbs else "assumed"
    arr = pixels[order]
    arr = arr.transpose(3, 0, 1, 2) if channel_axis_last else arr[None]
    direction = np.column_stack([normal, col, row])
    return Image(array=np.ascontiguousarray(arr), spacing=(abs(slice_spacing), *geo["pixel_spacing"]),
                 origin=tuple(origin), direction=direction, **common)


def _str(v: Any) -> str | None:
    return None if v is None or str(v) == "" else str(v)


@register_reader("dicom")
def read_dicom(path: Path, *, limits: ReadLimits, **_: object) -> Image:
    """Read one DICOM file (single- or multi-frame)."""
    with open(path, "rb") as f:
        head = f.read(132)
    ds = read_dataset(path, force=head[128:132] != b"DICM")
    return dataset_to_image(ds, path=path, limits=limits)
