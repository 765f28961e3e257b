"""The source instances of a derived DICOM object: their headers re-read from an image's
files, sorted as a series is, and checked to share one study.

Callers that hold only an :class:`~medsight.io.image.Image` read by :func:`medsight.io.read`
get its source headers with :func:`source_datasets`: DICOM readers record the files in
``image.meta["source_files"]`` in array order (slice ``k`` of the array came from file ``k``),
and :func:`source_datasets` re-reads their headers (no pixel data). Callers that received
datasets over the network pass those datasets directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import WriteError

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

    from medsight.io.image import Image

__all__ = ["source_datasets", "sort_like_series", "check_sources"]


def source_datasets(image: Image) -> list[pydicom.Dataset]:
    """The source DICOM headers of an image read by :func:`medsight.io.read`, in array order.

    Args:
        image: an image read from DICOM (a file, a folder or a series).

    Returns:
        One header-only dataset (no pixel data) per source file, in the order of the image's
        slices (for a series, as :func:`sort_like_series` orders them).

    Raises:
        WriteError: the image was not read from DICOM files, or a file is gone or unreadable.
    """
    from medsight.errors import MedSightError
    from medsight.io.dicom import read_dataset

    files = [f for f in image.meta.get("source_files") or [] if f]  # "" marks a filled-in missing slice
    if not files:
        raise WriteError(
            "expected an image read from DICOM files (meta['source_files']); this one has no source DICOM files "
            f"(format {image.meta.get('format', 'unknown')!r})", path=image.source)
    out = []
    from medsight.io.archive import MEMBER_SEP, open_member

    for f in files:
        try:
            ds = read_dataset(open_member(f) if MEMBER_SEP in f else Path(f), headers_only=True, force=True)
        except MedSightError as exc:
            raise WriteError(f"cannot re-read a source DICOM header: {exc}", path=f) from exc
        for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if kw in ds:
                del ds[kw]
        out.append(ds)
    return out


def _slice_key(ds: pydicom.Dataset) -> tuple[float, int]:
    iop = ds.get("ImageOrientationPatient")
    ipp = ds.get("ImagePositionPatient")
    try:
        inst = int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        inst = 0
    if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
        return (0.0, inst)
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return (float(np.asarray(ipp, float) @ normal), inst)


def sort_like_series(datasets: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """Sort slices as :func:`medsight.io.series.read_series` does.

    The key is the projection of ImagePositionPatient on the slice normal
    ``cross(row cosine, column cosine)`` (ascending), then InstanceNumber. Slices without
    position or orientation keep their relative order at the front.
    """
    return sorted(datasets, key=_slice_key)


#: Type 2 patient/study attributes highdicom copies from the source; absent ones become empty.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
          "StudyTime", "ReferringPhysicianName")


def _malformed(ds: pydicom.Dataset, kw: str) -> bool:
    """True when a type 2 attribute holds a value highdicom refuses to copy (a date that is
    not YYYYMMDD, a time that is not HHMMSS.FFFFFF, a PatientSex other than M, F or O)."""
    from pydicom.valuerep import DA, TM

    v = str(ds.get(kw, "") or "").strip()
    if not v:
        return False
    if kw == "PatientSex":
        return v not in ("M", "F", "O")
    convert = {"PatientBirthDate": DA, "StudyDate": DA, "StudyTime": TM}.get(kw)
    if convert is None:
        return False
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warning would echo the value
            convert(v)
    except (ValueError, TypeError, OverflowError):
        return True
    return False


def check_sources(sources: Sequence[pydicom.Dataset], what: str) -> list[pydicom.Dataset]:
    """Check that the sources share one study; return them, copied where a type 2
    patient/study attribute is missing or malformed (see :func:`_malformed`), which the copy
    holds empty (as DICOM allows), so that a result is still reported on a sloppy header."""
    import copy

    if not sources:
        raise WriteError(f"{what} needs at least one source DICOM dataset; got none")
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in sources}
    if len(studies) != 1 or "" in studies:
        raise WriteError(f"{what} needs sources from one study (one StudyInstanceUID); got {len(studies)} distinct "
                         "values or a missing one")
    out = []
    for ds in sources:
        missing = [kw for kw in _TYPE2 if kw not in ds or _malformed(ds, kw)]
        if missing:
            ds = copy.deepcopy(ds)  # never change the caller's dataset
            for kw in missing:
                setattr(ds, kw, "")
        out.append(ds)
    return out
