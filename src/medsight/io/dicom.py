"""DICOM files: single-frame and multi-frame (enhanced) images through pydicom.

:func:`read_dataset` parses a file and checks that no element is cut short (a truncated file
is a :class:`~medsight.errors.CorruptFileError`, not a silently partial dataset).
:func:`dataset_to_image` turns a dataset into an :class:`~medsight.io.image.Image`: one frame
gives a 2D image; several frames of an enhanced object are sorted along the slice normal by
their PlanePositionSequence. Pixel values come out as :mod:`medsight.io.dicom_pixels`
describes (rescale to HU, MONOCHROME1 inverted, colour as RGB, compressed data decoded).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import CorruptFileError, UnsupportedFormatError
from medsight.io.dicom_pixels import PIXEL_KEYWORDS, dataset_pixels
from medsight.io.dicom_values import patient_of, value
from medsight.io.image import Image, default_direction
from medsight.io.limits import ReadLimits
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

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

_UNDEFINED_LENGTH = 0xFFFFFFFF
_PARSE_ERRORS = (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, OverflowError, NotImplementedError,
                 AttributeError, RuntimeError, UnicodeError, MemoryError, RecursionError)


def read_dataset(path: Path | Any, *, headers_only: bool = False, force: bool = False):
    """Parse a DICOM file with pydicom, mapping every failure to a MedSight error.

    Args:
        path: a file path or a binary file-like object.
        headers_only: defer large values (pixel data) instead of loading them.
        force: accept files without the 128-byte preamble.

    Raises:
        UnsupportedFormatError: the content is not DICOM.
        CorruptFileError: the file ends inside an element (truncated) or cannot be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = path if isinstance(path, (str, Path)) else getattr(path, "name", None)
    try:
        ds = pydicom.dcmread(path, defer_size=1024 if headers_only else None, force=force)
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(f"expected DICOM content: {exc}", path=name) from exc
    except _PARSE_ERRORS as exc:
        raise CorruptFileError(f"DICOM is truncated or damaged ({type(exc).__name__}: {exc})", path=name) from exc
    if isinstance(path, (str, Path)):
        _check_complete(ds, Path(path).stat().st_size, name)
    if len(ds) == 0:
        raise CorruptFileError("expected DICOM data elements after the file meta header; found none", path=name)
    return ds


def _check_complete(ds, file_size: int, name: object) -> None:
    """Raise when the file ends inside the last top-level element (truncation).

    pydicom reads elements in file order and stops quietly at the end of the file, so only the
    last element can be cut short: its value holds fewer bytes than its length declares (or,
    when deferred, it would end past the file), or a few bytes of a next element header follow.
    """
    from pydicom.dataelem import RawDataElement

    tags = list(ds.keys())
    if not tags:
        return
    tag = tags[-1]
    try:
        raw = ds.get_item(tag, keep_deferred=True)
    except _PARSE_ERRORS:
        return
    if not isinstance(raw, RawDataElement) or raw.length in (None, _UNDEFINED_LENGTH):
        return
    if raw.value is None:  # deferred: its bytes were skipped, not read
        have = max(0, file_size - raw.value_tell)
        short = raw.length > 0 and raw.value_tell + raw.length > file_size
    else:
        have = len(raw.value)
        short = have < raw.length
    if short:
        raise CorruptFileError(
            f"DICOM is truncated: element {tag} declares {raw.length:,} bytes but the file ends after "
            f"{have:,} of them", path=name)
    left = file_size - (raw.value_tell + raw.length)
    if 0 < left < 8:
        raise CorruptFileError(
            f"DICOM is truncated: the file ends {left} byte(s) into the element after {tag}", path=name)


def _float_list(value: Any, n: int) -> list[float] | None:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(np.isfinite(vals)):
        return None
    return vals


def plane_geometry(ds) -> dict[str, Any]:
    """In-plane geometry of a (single-frame or shared/per-frame) dataset.

    Returns a dict with ``row_cosine`` (direction of increasing column index),
    ``col_cosine`` (direction of increasing row index), ``position`` (LPS of the first
    pixel), ``pixel_spacing`` (row spacing, column spacing) in mm and where each came from.
    Missing values fall back to identity orientation, zero position and 1 mm spacing, with
    ``known`` False.
    """
    get = ds.get if isinstance(ds, dict) else (lambda kw: value(ds, kw))
    iop = _float_list(get("ImageOrientationPatient"), 6)
    ipp = _float_list(get("ImagePositionPatient"), 3)
    spacing_source = None
    ps = None
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        ps = _float_list(get(kw), 2)
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


def _window(ds) -> list[float] | None:
    c, w = value(ds, "WindowCenter"), value(ds, "WindowWidth")
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
        v = value(ds, kw)
        if v is not None and str(v) != "":
            meta[key] = str(v)
    thick = value(ds, "SliceThickness")
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
    """Turn one parsed DICOM dataset into an Image (2D for one frame, 3D for several).

    A DICOM Segmentation (SEG) becomes a label image (see :mod:`medsight.io.dicom_seg`).
    """
    if str(value(ds, "SOPClassUID", "")) == SEG_STORAGE:
        from medsight.io.dicom_seg import seg_to_image

        return seg_to_image(ds, path=path, limits=limits)
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
    meta["spacing_known"] = geo["spacing_source"] is not None
    if isinstance(path, (str, Path)):
        meta["source_files"] = [str(path)]  # lets dicom_out.source_datasets re-read the headers
    if geo["spacing_source"] in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        meta["spacing_source"] = geo["spacing_source"]
    sop_uid = _str(value(ds, "SOPInstanceUID"))
    common = dict(modality=str(value(ds, "Modality", "OT")) or "OT",
                  study_uid=_str(value(ds, "StudyInstanceUID")), series_uid=_str(value(ds, "SeriesInstanceUID")),
                  sop_uids=(sop_uid,) if sop_uid else (),
                  frame_of_reference_uid=_str(value(ds, "FrameOfReferenceUID")), patient=patient_of(ds),
                  source=None if path is None else str(path), meta=meta)
    channel_axis_last = pixels.ndim == 4
    if frames == 1:
        arr = pixels[0]
        arr = arr.transpose(2, 0, 1) if channel_axis_last else arr[None]
        direction = np.column_stack([col, row]) if geo["orientation_known"] else default_direction(2)
        return Image(array=arr, spacing=geo["pixel_spacing"], origin=tuple(geo["position"]),
                     direction=direction, **common)
    normal = np.cross(row, col)
    order, slice_spacing, origin, notes = _frame_order(ds, frames, normal, geo["position"])
    if notes:
        meta.setdefault("warnings", []).extend(notes)
    if slice_spacing is None:
        sbs = ds.get("SpacingBetweenSlices") or _functional(ds, "PixelMeasuresSequence", "SpacingBetweenSlices")
        try:
            slice_spacing = abs(float(sbs)) if sbs else float(meta.get("slice_thickness_mm", 1.0)) or 1.0
        except (TypeError, ValueError):
            slice_spacing = 1.0
        meta["slice_spacing_source"] = "SpacingBetweenSlices" if sbs else "assumed"
        if not sbs:
            meta.setdefault("warnings", []).append(
                f"frames have no positions and no SpacingBetweenSlices; a slice spacing of {slice_spacing:g} mm "
                "is assumed")
    arr = pixels[order]
    arr = arr.transpose(3, 0, 1, 2) if channel_axis_last else arr[None]
    direction = np.column_stack([normal, col, row])
    return Image(array=np.ascontiguousarray(arr), spacing=(abs(slice_spacing), *geo["pixel_spacing"]),
                 origin=tuple(origin), direction=direction, **common)


def _frame_order(ds, frames: int, normal: np.ndarray, position: np.ndarray):
    """Sort the frames of a multi-frame object along the slice normal.

    Returns:
        ``(order, spacing or None, origin, warnings)``: frame indices in ascending position,
        the mean step between positions (None when unknown or not strictly increasing), the
        LPS position of the first frame after sorting, and what looked wrong.
    """
    positions = _frame_positions(ds, frames)
    if positions is None:
        return np.arange(frames), None, position, []
    proj = np.array([float(p @ normal) for p in positions])
    order = np.argsort(proj, kind="stable")
    steps = np.diff(proj[order])
    origin = positions[order[0]]
    if not len(steps):
        return order, None, origin, []
    if np.any(steps < 1e-3):
        return (np.arange(frames), None, positions[0],
                ["frames share positions (several stacks, echoes or time points); they are kept in frame order"])
    typical = float(np.median(steps))
    notes = []
    if (steps.max() - steps.min()) > 0.05 * typical:
        notes.append(f"uneven frame spacing from {steps.min():.3f} to {steps.max():.3f} mm; the mean is used")
    return order, float(np.mean(steps)), origin, notes


def _str(v: Any) -> str | None:
    return None if v is None or str(v) == "" else str(v)


@register_reader("dicom")
def read_dicom(path: Path, *, limits: ReadLimits, **_: object) -> Image:
    """Read one DICOM file (single- or multi-frame); the registry has sniffed it as DICOM."""
    ds = read_dataset(path, force=True)  # force: also preamble-less files named .dcm
    return dataset_to_image(ds, path=path, limits=limits)
