"""DICOM results out: SEG for masks, Comprehensive 3D SR (TID 1500) for findings, Secondary
Capture for overlays, all built with highdicom.

Every object built here

* belongs to the source's study (same StudyInstanceUID; the patient and study modules are
  copied from the first source), so a PACS files it beside the images it was computed on;
* starts a new series with fresh SeriesInstanceUID and SOPInstanceUID (pass ``series_uid=`` /
  ``sop_uid=`` to choose them, e.g. to keep re-processing idempotent);
* references its source instances: SEG through ReferencedSeriesSequence and per-frame
  DerivationImageSequence, SR through CurrentRequestedProcedureEvidenceSequence and the
  measurement group's source images, SC through SourceImageSequence;
* names the algorithm that made it (:class:`Algorithm`): Manufacturer, ManufacturerModelName
  and SoftwareVersions, plus the SEG's AlgorithmIdentificationSequence and the SR's device
  observer context.

Where the source datasets come from:
    Callers that hold only an :class:`~medsight.io.image.Image` read by :func:`medsight.io.read`
    get its source headers with :func:`source_datasets`: DICOM readers record the files in
    ``image.meta["source_files"]`` in array order (slice ``k`` of the array came from file
    ``k``), and :func:`source_datasets` re-reads their headers (no pixel data). Callers that
    received datasets over the network pass those datasets directly. (A series read with
    ``allow_gaps=True`` may hold filled-in slices, listed in ``meta["filled_slices"]``; they
    have no source, so drop them from a mask before :func:`build_seg`.)

Slice order of a SEG mask:
    ``mask[k]`` belongs to the ``k``-th source after sorting the sources as
    :func:`medsight.io.series.read_series` sorts slices: ascending by the projection of
    ImagePositionPatient on the slice normal ``cross(row cosine, column cosine)`` of
    ImageOrientationPatient, ties broken by InstanceNumber. So a mask computed on
    ``medsight.io.read(folder)`` pairs with ``source_datasets(image)`` as it is, and the
    order in which callers pass the sources does not matter. A single multi-frame source
    pairs frame ``k`` with ``mask[k]`` in frame order.

Codes:
    Finding names and segment labels without a standard code get a local code in the coding
    scheme ``99MEDSIGHT`` (declared in CodingSchemeIdentificationSequence), whose meaning is
    the name itself. Units are UCUM (``"1"``, ``"mm"``, ``"mL"``, ``"%"``, ...).

Example:
    >>> image = medsight.io.read("ct_folder")                        # doctest: +SKIP
    >>> srcs = source_datasets(image)                                 # doctest: +SKIP
    >>> seg = build_seg(srcs, mask, {1: "Nodule"}, algorithm=Algorithm("nodule-seg", "1.0.0"))  # doctest: +SKIP
    >>> write_dicom(seg, "out/seg.dcm")                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import ShapeError, WriteError
from medsight.io.limits import MAX_SIDE, display_shape, shrink_factor

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

    from medsight.io.image import Image

__all__ = [
    "Algorithm",
    "Finding",
    "build_sr",
    "build_sc",
    "build_seg",
    "build_mask_seg",
    "write_dicom",
    "source_datasets",
    "sort_like_series",
    "LOCAL_SCHEME",
]

log = logging.getLogger(__name__)

#: Coding scheme designator of MedSight's local codes (``99`` marks a private scheme).
LOCAL_SCHEME = "99MEDSIGHT"

_UCUM_MEANINGS = {
    "1": "no units",
    "mm": "millimeter",
    "cm": "centimeter",
    "mm2": "square millimeter",
    "mm3": "cubic millimeter",
    "cm3": "cubic centimeter",
    "mL": "milliliter",
    "%": "percent",
    "[hnsf'U]": "Hounsfield unit",
    "s": "second",
}
_UCUM_ALIASES = {"ml": "mL", "ML": "mL", "hu": "[hnsf'U]", "HU": "[hnsf'U]", "": "1", "mm^2": "mm2", "mm^3": "mm3"}
_ABNORMAL_WORDS = ("tumour", "tumor", "lesion", "nodule", "mass", "metasta", "cancer", "carcinoma", "edema",
                   "oedema", "necrosis", "enhancing", "haemorrhage", "hemorrhage", "infarct", "cyst")


@dataclass(frozen=True)
class Algorithm:
    """Who made a result.

    Args:
        name: the model's name, e.g. ``"pneumonia-xray"``.
        version: the model's version, e.g. ``"1.0.0"``.
        manufacturer: written as the result's Manufacturer.
    """

    name: str
    version: str
    manufacturer: str = "MedSight"


@dataclass(frozen=True)
class Finding:
    """One observation or measurement for a structured report.

    Args:
        name: what was observed, e.g. ``"Pneumonia probability"``, ``"Nodule diameter"``.
        value: the numeric value, when there is one.
        unit: its UCUM unit: ``"1"`` (unitless, probability), ``"mm"``, ``"mL"``, ``"%"``.
        text: a categorical result, e.g. the decision ``"pneumonia"`` / ``"normal"``.
    """

    name: str
    value: float | None = None
    unit: str = "1"
    text: str | None = None


# -- sources ----------------------------------------------------------------------------------


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


def _check_sources(sources: Sequence[pydicom.Dataset], what: str) -> list[pydicom.Dataset]:
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


# -- codes ------------------------------------------------------------------------------------


def _local_code(meaning: str):
    import highdicom as hd

    slug = re.sub(r"[^A-Za-z0-9]+", "-", meaning.strip()).strip("-").upper() or "UNNAMED"
    if len(slug) > 16:  # CodeValue is at most 16 characters: keep it unique with a hash
        slug = slug[:9] + "-" + hashlib.sha1(meaning.encode()).hexdigest()[:6].upper()
    return hd.sr.CodedConcept(value=slug, scheme_designator=LOCAL_SCHEME, meaning=meaning[:64])


def _unit_code(unit: str):
    import highdicom as hd

    u = _UCUM_ALIASES.get(unit, unit)
    return hd.sr.CodedConcept(value=u, scheme_designator="UCUM", meaning=_UCUM_MEANINGS.get(u, u))


def _coding_schemes():
    import highdicom as hd

    return [hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name="MedSight local codes", responsible_organization="MedSight")]


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


def _uid(given: str | None) -> str:
    import highdicom as hd

    return str(given) if given else str(hd.UID())


# -- SR -----------------------------------------------------------------------------------------


def build_sr(sources: Sequence[pydicom.Dataset], findings: Sequence[Finding], *, algorithm: Algorithm,
             title: str = "MedSight result", series_number: int = 901, series_uid: str | None = None,
             sop_uid: str | None = None) -> pydicom.Dataset:
    """A Comprehensive 3D SR holding a TID 1500 Measurement Report of ``findings``.

    The report has one measurement group (TID 1501) tracked as ``title``, made by
    ``algorithm`` (device observer and algorithm identification), whose source images are
    ``sources``. A finding with ``value`` becomes a numeric measurement in ``unit``; a
    finding with ``text`` becomes a qualitative evaluation (local code, meaning = the text).

    Args:
        sources: the source instances (one study); all are recorded as evidence.
        findings: what to report; at least one, each with a value or a text.
        algorithm: who made it.
        title: written as SeriesDescription and as the measurement group's tracking identifier.
        series_number: SeriesNumber of the new series.
        series_uid: SeriesInstanceUID to use; a fresh one by default.
        sop_uid: SOPInstanceUID to use; a fresh one by default.

    Returns:
        The SR dataset (with file meta), ready for :func:`write_dicom` or C-STORE.

    Raises:
        WriteError: no sources, sources from several studies, or a finding without value/text.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    srcs = _check_sources(sources, "an SR")
    if not findings:
        raise WriteError("an SR needs at least one finding; got none")
    measurements, evaluations = [], []
    algo_id = hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version)
    for f in findings:
        if f.value is None and f.text is None:
            raise WriteError(f"finding {f.name!r} needs a value or a text; it has neither")
        if f.value is not None:
            value = float(f.value)
            if not np.isfinite(value):
                raise WriteError(f"finding {f.name!r} must have a finite value; got {f.value}")
            measurements.append(hd.sr.Measurement(name=_local_code(f.name), value=value, unit=_unit_code(f.unit),
                                                  algorithm_id=algo_id))
        if f.text is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(name=_local_code(f.name), value=_local_code(f.text)))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=str(hd.UID()), identifier=title[:64]),
        algorithm_id=algo_id,
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in srcs],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=str(hd.UID()), name=algorithm.name[:64], manufacturer_name=algorithm.manufacturer[:64],
            model_name=algorithm.version[:64]),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion if str(srcs[0].get("Modality")) == "CT"
        else hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=[group],
    )
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=srcs, content=report[0], series_instance_uid=_uid(series_uid), series_number=series_number,
            sop_instance_uid=_uid(sop_uid), instance_number=1, manufacturer=algorithm.manufacturer,
            is_complete=True, series_description=title[:64], manufacturer_model_name=algorithm.name[:64],
            software_versions=algorithm.version[:64], coding_schemes=_coding_schemes(),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not build the SR from these sources: {exc}") from exc
    return sr


# -- SC -----------------------------------------------------------------------------------------


def build_sc(source: pydicom.Dataset, rgb: np.ndarray, *, algorithm: Algorithm,
             series_description: str = "MedSight overlay", series_number: int = 902, series_uid: str | None = None,
             sop_uid: str | None = None, max_side: int = MAX_SIDE) -> pydicom.Dataset:
    """A Secondary Capture image of an RGB overlay (a heatmap on the source image).

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

    (source,) = _check_sources([source], "a Secondary Capture")
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
            bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=_uid(series_uid),
            series_number=series_number, sop_instance_uid=_uid(sop_uid), instance_number=1,
            manufacturer=algorithm.manufacturer, patient_orientation=_patient_orientation(source),
            pixel_spacing=tuple(spacing) if spacing else None,
            transfer_syntax_uid="1.2.840.10008.1.2.1", series_description=series_description[:64],
            manufacturer_model_name=algorithm.name[:64], software_versions=algorithm.version[:64],
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not build the Secondary Capture from this source: {exc}") from exc
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = DicomSequence([ref])
    sc.DerivationDescription = f"overlay made by {algorithm.name} {algorithm.version}"[:1024]
    sc.BurnedInAnnotation = "NO"
    return sc


# -- SEG ----------------------------------------------------------------------------------------


def _category(label: str):
    import highdicom as hd

    if any(w in label.lower() for w in _ABNORMAL_WORDS):
        return hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    return hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")


def build_seg(sources: Sequence[pydicom.Dataset], mask: np.ndarray, labels: dict[int, str], *, algorithm: Algorithm,
              series_number: int = 903, series_uid: str | None = None, sop_uid: str | None = None) -> pydicom.Dataset:
    """A binary DICOM Segmentation of a label mask, one segment per label.

    Args:
        sources: the source slices (one study), in any order: they are sorted with
            :func:`sort_like_series`, and ``mask[k]`` belongs to the ``k``-th sorted source. A
            single multi-frame source pairs ``mask[k]`` with its frame ``k``.
        mask: ``(slices, rows, cols)`` integers (a ``(rows, cols)`` mask for one 2D source);
            0 is background, every other value must be a key of ``labels``.
        labels: label value → segment name, e.g. ``{1: "Anterior hippocampus"}``. Segments
            are numbered 1..N in ascending label value; the label value is kept in the
            segment's TrackingID (``"label <value>"``).
        algorithm: who made it (AlgorithmIdentificationSequence, manufacturer, versions).
        series_number: SeriesNumber of the new series.
        series_uid: SeriesInstanceUID to use; a fresh one by default.
        sop_uid: SOPInstanceUID to use; a fresh one by default.

    Raises:
        ShapeError: the mask's shape does not match the sources' slices, rows and columns.
        WriteError: sources from several studies, a label without a name, or no label at all.
    """
    import highdicom as hd

    srcs = _check_sources(sources, "a SEG")
    if not labels:
        raise WriteError("a SEG needs at least one label name in `labels`; got none")
    if any(int(k) <= 0 for k in labels):
        raise WriteError(f"label values must be positive integers (0 is background); got {sorted(labels)}")
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biu":
        if mask.dtype.kind == "f" and np.all(np.isfinite(mask)) and np.all(mask == np.round(mask)):
            mask = mask.astype(np.int64)
        else:
            raise ShapeError(f"expected an integer label mask; got dtype {mask.dtype}")
    multi_frame = len(srcs) == 1 and int(srcs[0].get("NumberOfFrames", 1) or 1) > 1
    if not multi_frame:
        srcs = sort_like_series(srcs)
    n_frames = int(srcs[0].get("NumberOfFrames", 1) or 1) if multi_frame else len(srcs)
    if mask.ndim == 2:
        mask = mask[None]
    rows, cols = int(srcs[0].Rows), int(srcs[0].Columns)
    if mask.shape != (n_frames, rows, cols):
        raise ShapeError(f"expected a mask of shape (slices, rows, cols) = ({n_frames}, {rows}, {cols}) matching the "
                         f"sources; got {mask.shape}")
    present = {int(v) for v in np.unique(mask)} - {0}
    unnamed = sorted(present - {int(k) for k in labels})
    if unnamed:
        raise WriteError(f"mask holds label value(s) {unnamed} that `labels` does not name; named: {sorted(labels)}")
    ordered = sorted((int(k), str(v)) for k, v in labels.items())
    lut = np.zeros(max(k for k, _ in ordered) + 1, dtype=np.uint16)
    for number, (value, _) in enumerate(ordered, start=1):
        lut[value] = number
    segment_numbers = lut[mask.astype(np.int64)] if ordered else mask
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm.name[:64], version=algorithm.version[:64],
        family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64], segmented_property_category=_category(name),
            segmented_property_type=_local_code(name), algorithm_type="AUTOMATIC", algorithm_identification=algo,
            tracking_uid=str(hd.UID()), tracking_id=f"label {value}")
        for number, (value, name) in enumerate(ordered, start=1)
    ]
    # one segment per frame: a one-hot (frames, rows, cols, segments) array keeps highdicom from guessing
    onehot = np.stack([segment_numbers == n for n in range(1, len(ordered) + 1)], axis=-1)
    try:
        seg = hd.seg.Segmentation(
            source_images=srcs, pixel_array=onehot, segmentation_type="BINARY", segment_descriptions=descriptions,
            series_instance_uid=_uid(series_uid), series_number=series_number, sop_instance_uid=_uid(sop_uid),
            instance_number=1, manufacturer=algorithm.manufacturer, manufacturer_model_name=algorithm.name[:64],
            software_versions=algorithm.version[:64], device_serial_number="0",
            omit_empty_frames=bool(present), coding_schemes=_coding_schemes(),
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise WriteError(f"could not build the SEG from these sources: {exc}") from exc
    return seg


def build_mask_seg(sources: Sequence[pydicom.Dataset], mask: np.ndarray, labels: dict[int, str], *,
                   algorithm: Algorithm, source_uids: Sequence[str] | None = None, series_uid: str | None = None,
                   sop_uid: str | None = None) -> pydicom.Dataset | None:
    """The DICOM SEG of a task's label mask, or None when the mask is empty: the one path from
    a mask to a SEG, used by the CLI, the Python API and the service.

    Args:
        sources: the source datasets (headers are enough), in any order.
        mask: the label values on the source grid, ``(slices, rows, cols)`` or ``(rows, cols)``.
        labels: label value → structure name.
        algorithm: who made it.
        source_uids: the SOPInstanceUIDs of the sources in mask slice order, when known (a
            result records them): every one must be among ``sources``, one per slice, and the
            sources must sort into that order (see the module docstring), else no SEG is built
            rather than one that maps slices to the wrong images. Not checked for one
            multi-frame source.
        series_uid, sop_uid: the UIDs to use (fresh ones by default).

    Raises:
        WriteError: a source is missing or out of order, or highdicom refuses the sources.
        ShapeError: the mask does not match the sources.
    """
    from medsight.errors import MedSightError

    arr = np.asarray(mask)
    if not arr.any():
        return None
    if arr.ndim == 2:
        arr = arr[None]
    srcs = list(sources)
    multi_frame = len(srcs) == 1 and int(srcs[0].get("NumberOfFrames", 1) or 1) > 1
    if source_uids and not multi_frame:
        uids = [str(u) for u in source_uids]
        by_uid = {str(ds.SOPInstanceUID): ds for ds in srcs}
        missing = [u for u in uids if u not in by_uid]
        if missing or len(uids) != arr.shape[0]:
            raise WriteError(f"expected the {arr.shape[0]} source instance(s) of the mask; {len(missing)} of the "
                             f"{len(uids)} recorded are not given")
        srcs = [by_uid[u] for u in uids]
        if [str(ds.SOPInstanceUID) for ds in sort_like_series(srcs)] != uids:
            raise WriteError("the source instances do not sort into the mask's slice order; no SEG is built "
                             "rather than one that maps slices to the wrong images")
    try:
        return build_seg(srcs, arr, labels, algorithm=algorithm, series_uid=series_uid, sop_uid=sop_uid)
    except MedSightError:
        raise
    except Exception as exc:  # noqa: BLE001 - highdicom refuses a source it cannot reference
        raise WriteError(f"could not build a DICOM SEG: {type(exc).__name__}: {exc}") from exc


# -- writing ------------------------------------------------------------------------------------


def write_dicom(ds: pydicom.Dataset, path: str | Path) -> Path:
    """Write a dataset as a DICOM Part 10 file (preamble and file meta), creating folders.

    Returns:
        The path written.

    Raises:
        WriteError: the file cannot be written, or the dataset cannot be encoded.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not write DICOM: {type(exc).__name__}: {exc}", path=path) from exc
    log.info("wrote %s (%s)", path.name, getattr(ds.get("SOPClassUID"), "name", "DICOM"))
    return path

