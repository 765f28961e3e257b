"""Secondary Capture of an RGB overlay (a heatmap or a mask drawn on its source image), built
with highdicom."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import ShapeError, WriteError
from medsight.io.dicom_out.algorithm import Algorithm
from medsight.io.dicom_out.codes import new_uid
from medsight.io.dicom_out.sources import check_sources
from medsight.io.limits import MAX_SIDE, display_shape, shrink_factor

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

__all__ = ["build_sc", "NOT_FOR_DIAGNOSIS"]

#: the end of every overlay's SeriesDescription
NOT_FOR_DIAGNOSIS = " (not for diagnosis)"


def build_sc(source: pydicom.Dataset, rgb: np.ndarray, *, algorithm: Algorithm,
             series_description: str = "MedSight overlay", series_number: int = 902, series_uid: str | None = None,
             sop_uid: str | None = None, max_side: int = MAX_SIDE) -> pydicom.Dataset:
    """A Secondary Capture image of an RGB overlay (a heatmap on the source image), labelled as
    a derived picture that is not for diagnosis: ImageType ``DERIVED\\SECONDARY``, a
    SeriesDescription ending in ``(not for diagnosis)`` (what a viewer's series list shows),
    ImageComments and DerivationDescription saying what made it.

    An overlay longer than ``max_side`` on a side is shrunk by a whole factor (box filter), so
    an SC is at most 2048 x 2048 x 3 bytes (12.6 MB) by default. The patient orientation comes
    from the source's ImageOrientationPatient; when the overlay is the source's rows and
    columns, or the source shrunk by a whole factor (:func:`~medsight.io.limits.display_shape`),
    its PixelSpacing is copied, times that factor. The source is referenced in
    SourceImageSequence.

    Args:
        source: the image the overlay was drawn on.
        rgb: ``(rows, cols, 3)`` uint8 RGB pixels.
        algorithm: who made it.
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series.
        series_uid: SeriesInstanceUID to use; a fresh one by default.
        sop_uid: SOPInstanceUID to use; a fresh one by default.
        max_side: the longest side of the SC's pixels.

    Raises:
        ShapeError: ``rgb`` is not ``(rows, cols, 3)`` uint8.
        WriteError: the source has no StudyInstanceUID.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    (source,) = check_sources([source], "a Secondary Capture")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ShapeError(f"expected an overlay of shape (rows, cols, 3) and dtype uint8; got {rgb.shape} {rgb.dtype}")
    g = shrink_factor(*rgb.shape[:2], max_side)
    if g > 1:
        from PIL import Image as PILImage

        rgb = np.asarray(PILImage.fromarray(np.ascontiguousarray(rgb)).reduce(g))  # sides rounded up, as display_shape
    rows, cols = int(source.get("Rows", 0) or 0), int(source.get("Columns", 0) or 0)
    f = shrink_factor(rows, cols, max(rgb.shape[:2])) if rows > 0 and cols > 0 else 0
    spacing = source.get("PixelSpacing") if f and display_shape(rows, cols, max(rgb.shape[:2])) == rgb.shape[:2] \
        else None
    if spacing is not None:
        spacing = [float(v) * f for v in spacing]
    try:
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source, pixel_array=np.ascontiguousarray(rgb), photometric_interpretation="RGB",
            bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=new_uid(series_uid),
            series_number=series_number, sop_instance_uid=new_uid(sop_uid), instance_number=1,
            manufacturer=algorithm.manufacturer, patient_orientation=_patient_orientation(source),
            pixel_spacing=tuple(spacing) if spacing else None,
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            series_description=series_description[:64 - len(NOT_FOR_DIAGNOSIS)] + NOT_FOR_DIAGNOSIS,
            manufacturer_model_name=algorithm.name[:64], software_versions=algorithm.version[:64],
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not build the Secondary Capture from this source: {exc}") from exc
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = DicomSequence([ref])
    sc.DerivationDescription = f"overlay made by {algorithm.name} {algorithm.version}"[:1024]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ImageComments = (f"Derived image: {algorithm.manufacturer} {algorithm.name} {algorithm.version} drew its result "
                        "on the source image. Not for diagnosis: read the source image.")
    sc.BurnedInAnnotation = "NO"
    return sc


def _patient_orientation(ds: pydicom.Dataset) -> tuple[str, str]:
    """DICOM PatientOrientation (row direction, column direction) from ImageOrientationPatient."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return ("L", "P")  # no orientation known: DICOM's default axial display

    def letters(v: np.ndarray) -> str:
        out = ""
        for axis in np.argsort(-np.abs(v)):
            if abs(v[axis]) < 1e-3 or len(out) == 3:
                break
            out += ("L", "P", "H")[axis] if v[axis] > 0 else ("R", "A", "F")[axis]
        return out or "L"

    return letters(np.asarray(iop[:3], float)), letters(np.asarray(iop[3:], float))
