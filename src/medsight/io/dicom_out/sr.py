"""Comprehensive 3D SR (TID 1500 Measurement Report) of a result's findings, built with highdicom."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import WriteError
from medsight.io.dicom_out.algorithm import Algorithm
from medsight.io.dicom_out.codes import coding_schemes, local_code, new_uid, unit_code
from medsight.io.dicom_out.sources import check_sources

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

__all__ = ["Finding", "build_sr"]


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

    srcs = check_sources(sources, "an SR")
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
            measurements.append(hd.sr.Measurement(name=local_code(f.name), value=value, unit=unit_code(f.unit),
                                                  algorithm_id=algo_id))
        if f.text is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(name=local_code(f.name), value=local_code(f.text)))
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
            evidence=srcs, content=report[0], series_instance_uid=new_uid(series_uid), series_number=series_number,
            sop_instance_uid=new_uid(sop_uid), instance_number=1, manufacturer=algorithm.manufacturer,
            is_complete=True, series_description=title[:64], manufacturer_model_name=algorithm.name[:64],
            software_versions=algorithm.version[:64], coding_schemes=coding_schemes(),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriteError(f"could not build the SR from these sources: {exc}") from exc
    return sr
