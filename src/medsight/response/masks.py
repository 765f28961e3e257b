"""A study's lesion mask: which series it is, reading it, and checking it lies on its image.

A mask series is a DICOM SEG, or an image series whose SeriesDescription names a mask,
segmentation or label (TCIA's Brain-Tumor-Progression stores ``Mask_Tumor`` as Secondary
Capture slices on the T1post grid) and whose values are 0 and a few lesion labels. When an
image series of the same study shares the mask's FrameOfReferenceUID, every mask slice must lie
on one of that series' slices (same orientation, rows, columns and pixel spacing, positions
within 0.05 mm); otherwise the mask is refused, since its sizes would be measured on another
grid than the one it was drawn on.
"""

from __future__ import annotations

import re

import numpy as np

from medsight.errors import MaskAlignmentError, MissingMaskError
from medsight.io.image import Image
from medsight.io.limits import ReadLimits
from medsight.io.series import read_series
from medsight.io.studies import StudyInfo, StudySeries

__all__ = ["MASK_DESCRIPTION", "SEG_STORAGE", "mask_series", "choose_mask", "read_mask", "aligned_image_series",
           "study_label"]

#: SeriesDescriptions that name a mask (searched case-insensitively).
MASK_DESCRIPTION = r"mask|segment|label"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_POSITION_TOL_MM = 0.05
_COSINE_TOL = 1e-3
_MAX_LABELS = 16  # a mask holds 0 and a few labels; more distinct values means an image


def study_label(study: StudyInfo) -> str:
    """How errors and reasons name a study: its date and its folder (never patient identifiers)."""
    return f"study of {study.date or 'unknown date'} ({study.folder or '?'})"


def _is_seg(series: StudySeries) -> bool:
    return series.sop_class_uid == SEG_STORAGE or series.info.modality == "SEG"


def mask_series(study: StudyInfo, pattern: str | None = None) -> list[StudySeries]:
    """The study's series that are masks: DICOM SEG, or a description matching ``pattern``
    (default :data:`MASK_DESCRIPTION`, case-insensitive)."""
    rx = re.compile(pattern or MASK_DESCRIPTION, re.IGNORECASE)
    return [s for s in study.series if _is_seg(s) or rx.search(s.description or "")]


def choose_mask(study: StudyInfo, pattern: str | None = None) -> StudySeries | None:
    """The study's one mask series, or None when it has none.

    Raises:
        MissingMaskError: several series look like masks (choose one with ``pattern``).
    """
    found = mask_series(study, pattern)
    if len(found) > 1:
        names = ", ".join(f"{s.description or '(no description)'!r}" for s in found)
        raise MissingMaskError(f"{study_label(study)} holds {len(found)} mask series ({names}); choose one with "
                               "mask=PATTERN (a regular expression on SeriesDescription)")
    return found[0] if found else None


def read_mask(series: StudySeries, *, limits: ReadLimits | None = None) -> Image:
    """Read a mask series as an Image whose voxels > 0 are lesion.

    Raises:
        MissingMaskError: the series holds values no mask holds (negative, fractional, or more
            than 16 distinct ones: an image, not a mask).
        SeriesError: the series cannot be stacked (gaps, mixed geometry).
    """
    image = _as_volume(read_series(series.info, limits=limits, source=str(series.folder)))
    if _is_seg(series):
        return image
    values = np.unique(image.array)
    problem = None
    if len(values) > _MAX_LABELS:
        problem = f"{len(values)} distinct values"
    elif values.min() < 0 or not np.all(np.mod(values, 1) == 0):
        problem = f"values {values[:8].tolist()}"
    if problem:
        raise MissingMaskError(f"series {series.description!r} is named as a mask but holds {problem}; a mask holds "
                               "0 and a few integer lesion labels", path=series.folder)
    return image


def _as_volume(image: Image) -> Image:
    """A one-slice mask (read as a 2D image) as a volume of one slice, SliceThickness thick."""
    if image.n_spatial == 3:
        return image
    assert image.direction is not None
    col, row = image.direction[:, 0], image.direction[:, 1]
    thickness = float(image.meta.get("slice_thickness_mm") or 1.0)
    return image.with_array(image.array[:, None], spacing=(thickness, *image.spacing),
                            direction=np.column_stack([np.cross(row, col), col, row]))


def _mismatch(mask: Image, series: StudySeries) -> str | None:
    """Why ``mask`` does not lie on ``series``' slices, or None when it does."""
    slices = series.info.slices
    first = slices[0]
    if tuple(mask.shape[1:]) != (first.rows, first.cols):
        return f"its slices are {mask.shape[1]}x{mask.shape[2]} pixels, the image's {first.rows}x{first.cols}"
    if not np.allclose(mask.spacing[1:], first.pixel_spacing, rtol=1e-3, atol=1e-4):
        return f"its pixel spacing is {list(mask.spacing[1:])} mm, the image's {list(first.pixel_spacing)} mm"
    assert mask.direction is not None
    if not (np.allclose(mask.direction[:, 2], first.row_cosine, atol=_COSINE_TOL)
            and np.allclose(mask.direction[:, 1], first.col_cosine, atol=_COSINE_TOL)):
        return "its slice orientation (ImageOrientationPatient) differs from the image's"
    normal = mask.direction[:, 0]
    positions = np.asarray(mask.origin) + np.outer(np.arange(mask.shape[0]) * mask.spacing[0], normal)
    image_positions = np.array([h.position for h in slices])
    gaps = np.linalg.norm(positions[:, None, :] - image_positions[None, :, :], axis=2).min(axis=1)
    worst = int(np.argmax(gaps))
    if gaps[worst] > _POSITION_TOL_MM:
        return (f"its slice {worst} lies {gaps[worst]:.2f} mm from the nearest image slice (ImagePositionPatient; "
                f"at most {_POSITION_TOL_MM} mm is accepted)")
    return None


def aligned_image_series(mask: Image, mask_from: StudySeries | None, study: StudyInfo) -> list[StudySeries]:
    """The image series of ``study`` that ``mask`` lies on; empty when no image series shares
    its frame of reference (then nothing can be checked).

    A SEG is checked against the series it references; another mask against every image
    series of its frame of reference, and it must lie on at least one of them.

    Raises:
        MaskAlignmentError: image series share the mask's frame of reference but the mask lies
            on none of them; the message says how it differs.
    """
    frame = mask.frame_of_reference_uid or (mask_from.frame_of_reference_uid if mask_from else None)
    if frame is None:
        return []
    masks = {s.uid for s in mask_series(study)} | ({mask_from.uid} if mask_from else set())
    candidates = [s for s in study.series if s.uid not in masks and s.frame_of_reference_uid == frame]
    referenced = mask.meta.get("referenced_series_uid")
    if referenced and any(s.uid == referenced for s in candidates):
        candidates = [s for s in candidates if s.uid == referenced]
    why = {s.uid: _mismatch(mask, s) for s in candidates}
    aligned = [s for s in candidates if why[s.uid] is None]
    if candidates and not aligned:
        what = repr(mask_from.description) if mask_from else "the segmented mask"
        problems = "; ".join(f"{s.description or s.uid!r}: {why[s.uid]}" for s in candidates)
        raise MaskAlignmentError(f"mask {what} of the {study_label(study)} is not aligned with the image series of "
                                 f"its frame of reference: {problems}")
    return aligned
