"""Comprehensive 3D SR (TID 1500 Measurement Report) of a result's findings, one measurement group for
the whole input and one per lesion (a nodule, located by its centre), built with highdicom.

Every group is placed on an image, so that a viewer can show it beside its image: a lesion by
its centre (an SCOORD point on the source slice nearest it), the whole-input group by the outline
of the image it is about
(SCOORD closed polyline on the source image; a series: on its middle slice). OHIF 3.13 shows a
measurement group only through its coordinates, and fails on a group that has none; its SR
viewport does not draw SCOORD3D points, so a located lesion is an SCOORD3D point only for
sources without a single frame's plane geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import WriteError
from medsight.io.dicom_out.algorithm import Algorithm
from medsight.io.dicom_out.codes import coding_schemes, local_code, name_uid, new_uid, unit_code
from medsight.io.dicom_out.sources import check_sources

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

__all__ = ["Finding", "Lesion", "build_sr", "body_part_site", "on_nearest_slice", "scoord_to_patient"]


@dataclass(frozen=True)
class Finding:
    """One observation or measurement for a structured report.

    Args:
        name: what was observed, e.g. ``"Pneumonia probability"``, ``"Nodule diameter"``.
        value: the numeric value, when there is one.
        unit: its UCUM unit: ``"1"`` (unitless, probability), ``"mm"``, ``"mL"``, ``"%"``.
        text: a categorical result, e.g. the decision ``"pneumonia"`` / ``"normal"``.
        code: a standard concept for ``name`` as (code value, scheme, meaning), e.g.
            ``("81827009", "SCT", "Diameter")``; None: a local code whose meaning is ``name``.
    """

    name: str
    value: float | None = None
    unit: str = "1"
    text: str | None = None
    code: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Lesion:
    """One lesion (a nodule) and its findings: a measurement group of its own (TID 1410).

    Args:
        identifier: its tracking identifier, e.g. ``"Nodule 1"``.
        findings: its measurements and evaluations (diameter, volume, type, category...).
        center_mm: its centre ``(x, y, z)`` in patient mm (LPS, the sources' frame of
            reference), written as an image region (an SCOORD POINT on its nearest slice);
            None: not located.
        finding_type: what it is, as (code value, scheme, meaning), e.g. SCT "Nodule".
        finding_site: where, e.g. SCT "Lung".
        uid: its tracking UID; by default one derived from the SR's SOPInstanceUID and
            ``identifier`` (the same SR UIDs give the same content).
    """

    identifier: str
    findings: Sequence[Finding]
    center_mm: Sequence[float] | None = None
    finding_type: tuple[str, str, str] | None = None
    finding_site: tuple[str, str, str] | None = None
    uid: str | None = None


def _concept(code: tuple[str, str, str]):
    import highdicom as hd

    value, scheme, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _items(findings: Sequence[Finding], algo_id) -> tuple[list, list]:
    """The numeric measurements and qualitative evaluations of ``findings``."""
    import highdicom as hd

    measurements, evaluations = [], []
    for f in findings:
        if f.value is None and f.text is None:
            raise WriteError(f"finding {f.name!r} needs a value or a text; it has neither")
        name = _concept(f.code) if f.code else local_code(f.name)
        if f.value is not None:
            value = float(f.value)
            if not np.isfinite(value):
                raise WriteError(f"finding {f.name!r} must have a finite value; got {f.value}")
            measurements.append(hd.sr.Measurement(name=name, value=value, unit=unit_code(f.unit),
                                                  algorithm_id=algo_id))
        if f.text is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(name=name, value=local_code(f.text)))
    return measurements, evaluations


def body_part_site(srcs: Sequence[pydicom.Dataset]) -> tuple[str, str, str] | None:
    """The imaged region as an SCT concept, from the sources' BodyPartExamined (``CHEST`` →
    ``816094009`` Chest, ``HEAD``, ``BRAIN``, ``BREAST``, ``ABDOMEN`` ...: the codes of DICOM's
    own table, as pydicom lists them); None when there is none or it has no single code."""
    from pydicom.sr.codedict import codes

    part = str(srcs[0].get("BodyPartExamined", "") or "").strip()
    if not part.isalpha():
        return None
    try:
        code = getattr(codes.SCT, part.title())
    except AttributeError:
        return None
    return str(code.value), str(code.scheme_designator), str(code.meaning)


def _outline(srcs: Sequence[pydicom.Dataset]):
    """The whole-input group's region: the outline of the source image (a series: of its middle
    slice, in the order :func:`~medsight.io.dicom_out.sources.sort_like_series` gives), a closed
    polyline through the corners of its pixel matrix (column, row). None when the source has no
    rows and columns."""
    import highdicom as hd

    from medsight.io.dicom_out.sources import sort_like_series

    ordered = sort_like_series(list(srcs)) if len(srcs) > 1 else list(srcs)
    ds = ordered[len(ordered) // 2]
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        return None
    corners = np.array([[0, 0], [cols, 0], [cols, rows], [0, rows], [0, 0]], np.float32)
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                             source_image=hd.sr.SourceImageForRegion.from_source_image(ds))


def _plane(ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A single-frame image's plane (:func:`medsight.io.dicom.plane_geometry`): its first pixel's
    centre, the row and column directions and the pixel spacing (between columns, between rows),
    in patient mm; None without ImagePositionPatient, ImageOrientationPatient or PixelSpacing."""
    from medsight.io.dicom import plane_geometry

    try:
        if int(str(ds.get("NumberOfFrames", 1) or 1)) != 1:
            return None
    except ValueError:
        return None
    g = plane_geometry(ds)
    if not (g["orientation_known"] and g["position_known"] and g["spacing_source"] == "PixelSpacing"):
        return None
    return g["position"], g["row_cosine"], g["col_cosine"], np.asarray(g["pixel_spacing"][::-1], np.float64)


def _nearest(centre_mm: Sequence[float], planes: Sequence[tuple[pydicom.Dataset, tuple | None]],
             ) -> tuple[pydicom.Dataset, tuple[float, float]] | None:
    """:func:`on_nearest_slice` over sources whose :func:`_plane` is already known."""
    c = np.asarray(centre_mm, np.float64)
    best = None
    for ds, plane in planes:
        if plane is None:
            continue
        ipp, row_dir, col_dir, spacing = plane
        d = c - ipp
        off = abs(float(d @ np.cross(row_dir, col_dir)))
        if best is None or off < best[0]:
            best = (off, ds, (float(d @ row_dir / spacing[0]) + 0.5, float(d @ col_dir / spacing[1]) + 0.5))
    return None if best is None else (best[1], best[2])


def on_nearest_slice(centre_mm: Sequence[float], srcs: Sequence[pydicom.Dataset],
                     ) -> tuple[pydicom.Dataset, tuple[float, float]] | None:
    """The source image whose plane lies nearest ``centre_mm`` (LPS) and the centre's SCOORD
    there, (column, row) with (0, 0) the top left corner of the top left pixel; None when no
    source is a single-frame image with its plane geometry."""
    return _nearest(centre_mm, [(ds, _plane(ds)) for ds in srcs])


def scoord_to_patient(ds: pydicom.Dataset, column: float, row: float) -> np.ndarray:
    """The patient position (LPS mm) of an SCOORD (column, row) on single-frame image ``ds``
    (the inverse of :func:`on_nearest_slice` on that image's plane)."""
    plane = _plane(ds)
    if plane is None:
        raise WriteError("the image has no plane geometry (ImagePositionPatient, ImageOrientationPatient, "
                         "PixelSpacing)")
    ipp, row_dir, col_dir, spacing = plane
    return ipp + (column - 0.5) * spacing[0] * row_dir + (row - 0.5) * spacing[1] * col_dir


def _lesion_group(lesion: Lesion, srcs: Sequence[pydicom.Dataset], planes: Sequence[tuple], algo_id, sr_uid: str):
    """TID 1410 (planar ROI, its centre as a point: see :func:`build_sr`) when the lesion is located in a
    frame of reference, else TID 1501 (no region) with the sources as its source images."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurements, evaluations = _items(lesion.findings, algo_id)
    tracking = hd.sr.TrackingIdentifier(uid=lesion.uid or name_uid(sr_uid, lesion.identifier),
                                        identifier=lesion.identifier[:64])
    common = dict(tracking_identifier=tracking, algorithm_id=algo_id, measurements=measurements or None,
                  qualitative_evaluations=evaluations or None,
                  finding_type=_concept(lesion.finding_type) if lesion.finding_type else None,
                  finding_sites=[hd.sr.FindingSite(_concept(lesion.finding_site))] if lesion.finding_site else None)
    frame = str(srcs[0].get("FrameOfReferenceUID", "") or "")
    if lesion.center_mm is not None and frame:
        centre = np.asarray(lesion.center_mm, np.float64).reshape(1, 3)
        if not np.isfinite(centre).all():
            raise WriteError(f"lesion {lesion.identifier!r} must have a finite centre; got {list(lesion.center_mm)}")
        placed = _nearest(centre[0], planes)
        if placed is not None:  # on its image, where a viewer draws it (OHIF's SR viewport draws SCOORDs)
            ds, point = placed
            region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT,
                                       graphic_data=np.asarray([point], np.float32),
                                       source_image=hd.sr.SourceImageForRegion.from_source_image(ds))
        else:
            region = hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=centre,
                                         frame_of_reference_uid=frame)
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=region, geometric_purpose=codes.DCM.Center, **common)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in srcs], **common)


def build_sr(sources: Sequence[pydicom.Dataset], findings: Sequence[Finding], *, algorithm: Algorithm,
             title: str = "MedSight result", lesions: Sequence[Lesion] = (), series_number: int = 901,
             series_uid: str | None = None, sop_uid: str | None = None) -> pydicom.Dataset:
    """A Comprehensive 3D SR holding a TID 1500 Measurement Report of ``findings`` and ``lesions``.

    ``findings`` make one measurement group tracked as ``title``: a planar ROI group (TID 1410)
    whose region is the outline of the source image (of a series' middle slice), with the
    imaged region (:func:`body_part_site`) as its finding site; a TID 1501 group with the
    sources as its source images when the sources have no pixel matrix. Each of ``lesions``
    makes a measurement group of its own, tracked by its identifier and a tracking UID, with its
    finding type and site: a planar ROI group (TID 1410)
    whose image region is the lesion's centre (geometric purpose "Center"): an SCOORD point on
    the source slice whose plane lies nearest it (:func:`on_nearest_slice`; a viewer draws it
    there), an SCOORD3D point in the sources' FrameOfReferenceUID when no source has a single
    frame's plane geometry, or, for sources without a frame of
    reference or a lesion without a centre, a TID 1501 group. Every group is made by
    ``algorithm`` (device observer and algorithm identification). A finding with ``value``
    becomes a numeric measurement in ``unit``; one with ``text`` a qualitative evaluation
    (local code, meaning = the text); its concept is its ``code``, else a local code.

    Args:
        sources: the source instances (one study); all are recorded as evidence.
        findings: what to report about the whole input, each with a value or a text.
        algorithm: who made it.
        title: written as SeriesDescription and as the findings' group's tracking identifier.
        lesions: the lesions found (nodules), each with its own findings.
        series_number: SeriesNumber of the new series.
        series_uid: SeriesInstanceUID to use; a fresh one by default.
        sop_uid: SOPInstanceUID to use; a fresh one by default.

    Returns:
        The SR dataset (with file meta), ready for :func:`write_dicom` or C-STORE.

    Raises:
        WriteError: no sources, sources from several studies, no finding and no lesion, a finding
            without value/text, a lesion without a finding or with a centre that is not finite.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    srcs = check_sources(sources, "an SR")
    if not findings and not lesions:
        raise WriteError("an SR needs at least one finding; got none")
    sop = new_uid(sop_uid)
    algo_id = hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version)
    groups = []
    for lesion in lesions:
        if not lesion.findings:
            raise WriteError(f"lesion {lesion.identifier!r} needs at least one finding; got none")
    try:  # highdicom refuses some sources as images to measure on (e.g. an RTDOSE): a ValueError
        if findings:
            measurements, evaluations = _items(findings, algo_id)
            site = body_part_site(srcs)
            common = dict(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=name_uid(sop, title), identifier=title[:64]),
                algorithm_id=algo_id, measurements=measurements or None, qualitative_evaluations=evaluations or None,
                finding_sites=[hd.sr.FindingSite(_concept(site))] if site else None)
            outline = _outline(srcs)
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=outline, **common)
                          if outline is not None else hd.sr.MeasurementsAndQualitativeEvaluations(
                              source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)
                                             for ds in srcs], **common))
        planes = [(ds, _plane(ds)) for ds in srcs] if lesions else []  # once, for every lesion
        groups.extend(_lesion_group(lesion, srcs, planes, algo_id, sop) for lesion in lesions)
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not build the SR's measurement groups from these sources: {exc}") from exc
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=name_uid("device", algorithm.manufacturer, algorithm.name, algorithm.version),  # one per algorithm
            name=algorithm.name[:64], manufacturer_name=algorithm.manufacturer[:64], model_name=algorithm.version[:64]),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion if str(srcs[0].get("Modality")) == "CT"
        else hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=groups,
    )
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=srcs, content=report[0], series_instance_uid=new_uid(series_uid), series_number=series_number,
            sop_instance_uid=sop, instance_number=1, manufacturer=algorithm.manufacturer,
            is_complete=True, series_description=title[:64], manufacturer_model_name=algorithm.name[:64],
            software_versions=algorithm.version[:64], coding_schemes=coding_schemes(),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not build the SR from these sources: {exc}") from exc
    return sr
