"""DICOM Segmentation (SEG) objects read as label images, through highdicom.

A SEG read by :func:`medsight.io.read` becomes an :class:`~medsight.io.image.Image` of shape
``(1, slices, rows, cols)`` whose voxels hold segment numbers (0 = background), on the SEG's
own frame geometry: the slices that hold frames, in ascending order along the slice normal,
like every other volume. ``meta["segments"]`` maps each segment number to its label, and
``meta["referenced_series_uid"]`` names the series it was drawn on. To put the mask on the
source image's grid, use :func:`medsight.transforms.geometry.resample_to`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsight.errors import CorruptFileError, UnsupportedFormatError
from medsight.io.dicom_values import patient_of
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_decoded_size

__all__ = ["seg_to_image"]


def seg_to_image(ds, *, path: object = None, limits: ReadLimits | None = None) -> Image:
    """A label image from a DICOM SEG dataset.

    Raises:
        UnsupportedFormatError: the SEG's frames cannot form one regular volume.
        CorruptFileError: the SEG is malformed.
        ImageTooLargeError: its frames exceed the pixel or byte budgets.
    """
    import highdicom as hd

    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_decoded_size((frames, rows, cols), 1, limits or ReadLimits.from_env(), path)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (ValueError, AttributeError, KeyError, IndexError, TypeError, RuntimeError) as exc:
        raise CorruptFileError(f"malformed DICOM SEG: {type(exc).__name__}: {exc}", path=path) from exc
    if "PlanePositionSequence" not in _first_frame_groups(ds):
        return _projection_seg(seg, ds, path)  # e.g. a mask on an X-ray: no patient-space positions
    try:
        volume = seg.get_volume(combine_segments=True, skip_overlap_checks=True, dtype=np.uint16)
    except RuntimeError as exc:
        raise UnsupportedFormatError(f"expected SEG frames that form one regular volume: {exc}", path=path) from exc
    except Exception as exc:  # noqa: BLE001 - highdicom's frame index raises sqlite and other errors
        raise CorruptFileError(f"malformed DICOM SEG: {type(exc).__name__}: {exc}", path=path) from exc
    affine = np.asarray(volume.affine, float)
    arr = np.asarray(volume.array)
    if arr.ndim == 2:
        arr = arr[None]
    cols_vec = affine[:3, :3]
    spacing = np.linalg.norm(cols_vec, axis=0)
    direction = cols_vec / spacing
    normal = np.cross(direction[:, 2], direction[:, 1])  # cross(row cosine, column cosine)
    origin = affine[:3, 3]
    if float(direction[:, 0] @ normal) < 0:  # highdicom may stack downwards: ascend like every volume
        origin = origin + cols_vec[:, 0] * (arr.shape[0] - 1)
        arr = arr[::-1]
        direction[:, 0] = -direction[:, 0]
    segments: dict[str, Any] = {str(d.SegmentNumber): str(d.SegmentLabel) for d in ds.SegmentSequence}
    ref = ds.get("ReferencedSeriesSequence")
    meta = {"format": "dicom-seg", "segments": segments, "units": "segment number",
            "referenced_series_uid": str(ref[0].SeriesInstanceUID) if ref else None}
    if path is not None:
        meta["source_files"] = [str(path)]
    return Image(array=np.ascontiguousarray(arr)[None], spacing=tuple(float(s) for s in spacing), origin=tuple(origin),
                 direction=direction, modality="SEG", study_uid=str(ds.StudyInstanceUID),
                 series_uid=str(ds.SeriesInstanceUID), sop_uids=(str(ds.SOPInstanceUID),),
                 frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None, patient=patient_of(ds),
                 source=None if path is None else str(path), meta=meta)


def _first_frame_groups(ds) -> Any:
    for kw in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(kw)
        if groups and "PlanePositionSequence" in groups[0]:
            return groups[0]
    return {}


def _projection_seg(seg, ds, path: object) -> Image:
    """A SEG without plane positions (drawn on projection images): frames in the order of the
    source instances it references, spacing from PixelMeasuresSequence when present."""
    uids = [item.ReferencedSOPInstanceUID for series in ds.get("ReferencedSeriesSequence", [])
            for item in series.ReferencedInstanceSequence]
    try:
        arr = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True,
                                                dtype=np.uint16)
    except Exception as exc:  # noqa: BLE001 - highdicom's frame index raises sqlite and other errors
        raise CorruptFileError(f"malformed DICOM SEG: {type(exc).__name__}: {exc}", path=path) from exc
    spacing = (1.0, 1.0)
    shared = ds.get("SharedFunctionalGroupsSequence")
    measures = shared[0].get("PixelMeasuresSequence") if shared else None
    if measures and measures[0].get("PixelSpacing"):
        spacing = tuple(float(v) for v in measures[0].PixelSpacing)
    arr = np.asarray(arr)
    image_array = arr[:1] if arr.shape[0] == 1 else arr[None]
    n = image_array.ndim - 1
    meta = {"format": "dicom-seg", "units": "segment number", "spacing_known": measures is not None,
            "segments": {str(d.SegmentNumber): str(d.SegmentLabel) for d in ds.SegmentSequence},
            "referenced_sop_uids": uids}
    if path is not None:
        meta["source_files"] = [str(path)]
    return Image(array=np.ascontiguousarray(image_array), spacing=spacing if n == 2 else (1.0, *spacing),
                 modality="SEG", study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                 sop_uids=(str(ds.SOPInstanceUID),), patient=patient_of(ds),
                 source=None if path is None else str(path), meta=meta)
