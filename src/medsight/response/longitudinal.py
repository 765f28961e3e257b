"""Longitudinal response assessment: one patient's serial studies → sizes, category, suggestion.

:func:`track` finds the DICOM studies under a folder (any layout), checks they are one
patient's, orders them by their DICOM dates (never by folder names), takes each study's lesion
mask (checking it lies on its image), measures it (:mod:`~medsight.response.measure`),
classifies the latest time point under the chosen criteria (:mod:`~medsight.response.criteria`)
and turns the category into a suggestion (:mod:`~medsight.response.adjustment`). The result
records every reason, the criteria and policy, the inputs (UIDs and paths, never patient
identifiers), the MedSight version and the time.

Example:
    >>> import medsight
    >>> result = medsight.track("../shared/data/brain_tumor_progression/PGBM-001")  # doctest: +SKIP
    >>> result.response, result.suggestion                                           # doctest: +SKIP
    ('progressive disease', 'escalate or review treatment')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsight.errors import MissingMaskError, MixedPatientsError, NoStudyError, StudyDateError
from medsight.io.image import Image, Patient
from medsight.io.limits import ReadLimits
from medsight.io.studies import StudyInfo, StudySeries, scan_studies
from medsight.response.adjustment import DEFAULT_POLICY, ResponsePolicy, get_policy, suggest_adjustment
from medsight.response.criteria import (
    DEFAULT_CRITERIA,
    Assessment,
    ResponseCriteria,
    assess,
    get_criteria,
    list_criteria,
)
from medsight.response.masks import aligned_image_series, choose_mask, read_mask, study_label
from medsight.response.measure import MaskMeasure, measure_mask

__all__ = ["TimePoint", "TrackResult", "track", "track_studies", "Segmenter"]

log = logging.getLogger(__name__)

#: The segmentation hook: given a study without a mask series, return its lesion mask.
Segmenter = Callable[[StudyInfo], Image]


@dataclass(frozen=True)
class TimePoint:
    """One study of the series: when, which mask, its sizes and its category so far.

    ``response`` is this time point's category under the chosen criteria, judged from the time
    points up to it (None for the baseline); ``assessment`` is that judgement with its numbers,
    ``suggestion`` the policy's suggestion for it, and ``reasons`` both of their reasons.
    """

    study: StudyInfo
    mask_series: StudySeries | None
    image_series: tuple[StudySeries, ...]  # the series the mask lies on (none share its frame of reference: empty)
    measure: MaskMeasure
    value: float
    lesions_used: tuple[int, ...]
    response: str | None
    assessment: Assessment | None = None
    suggestion: str | None = None
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        whole = self.measure.whole
        return {
            "date": self.study.date, "datetime": self.study.acquired.isoformat() if self.study.acquired else None,
            "date_source": self.study.date_source,
            "volume_ml": round(whole.volume_ml, 4), "longest_diameter_mm": round(whole.longest_diameter_mm, 3),
            "perpendicular_diameter_mm": round(whole.perpendicular_diameter_mm, 3),
            "criteria_value": round(self.value, 4), "lesions_used": list(self.lesions_used), "response": self.response,
            "suggestion": self.suggestion,
            "n_lesions": len(self.measure.lesions), "lesions": [lesion.to_dict() for lesion in self.measure.lesions],
            "connectivity": self.measure.connectivity, "study_uid": self.study.uid,
            "mask_series_uid": self.mask_series.uid if self.mask_series else None,
            "mask_series_description": self.mask_series.description if self.mask_series else None,
            "mask_folder": str(self.mask_series.folder) if self.mask_series else None,
            "image_series": [{"series_uid": s.uid, "description": s.description, "folder": str(s.folder)}
                             for s in self.image_series],
        }


@dataclass(frozen=True)
class TrackResult:
    """What :func:`track` found: the time points in date order, the response and the suggestion.

    Attributes:
        response: the latest time point's category (one of
            :data:`~medsight.response.criteria.CATEGORIES`), or None for a baseline only.
        by_criteria: the category under every registered preset, for comparison.
    """

    folder: str
    timepoints: tuple[TimePoint, ...]
    criteria: ResponseCriteria
    policy: ResponsePolicy
    assessment: Assessment
    suggestion: str
    reasons: tuple[str, ...]
    by_criteria: dict[str, str | None]
    version: str
    created: str

    @property
    def response(self) -> str | None:
        return self.assessment.category

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``medsight track --json``: ``timepoints``, ``criteria``, ``response``,
        ``suggestion``, ``reasons``, and the details that decided."""
        return {
            "timepoints": [t.to_dict() for t in self.timepoints], "criteria": self.criteria.name,
            "response": self.response, "suggestion": self.suggestion, "reasons": list(self.reasons),
            "assessment": self.assessment.to_dict(), "criteria_definition": self.criteria.model_dump(),
            "policy": self.policy.model_dump(), "by_criteria": self.by_criteria, "folder": self.folder,
            "medsight_version": self.version, "created": self.created,
        }

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of the criteria's value over time with its thresholds (see :mod:`medsight.report.plots`)."""
        from medsight.report.plots import response_png

        c, a = self.criteria, self.assessment
        nadir = a.nadir if a.nadir is not None else a.baseline
        grow, shrink = c.progression_level(nadir), c.partial_level(a.baseline)
        more = f", ≥ +{c.progression_min_increase:g} {c.unit}" if c.progression_min_increase else ""
        return response_png(
            [t.study.acquired for t in self.timepoints], [t.value for t in self.timepoints], Path(path),
            ylabel=c.quantity_label, baseline=a.baseline, nadir=nadir, progression_at=grow, partial_at=shrink,
            progression_label=f"progression: ≥ +{c.progression_pct:g} % from nadir{more} ({c.format(grow)})",
            partial_label=f"partial response: ≤ −{c.partial_pct:g} % from baseline ({c.format(shrink)})",
            value_labels=[c.format(t.value) for t in self.timepoints],
            title=f"{c.title}: {self.response or a.rule}", subtitle=f"suggestion: {self.suggestion}")


def _identity(p: Patient) -> str | None:
    if p.id:
        return "id:" + p.id
    if p.name or p.birth_date:
        return f"name:{p.name or ''}|{p.birth_date or ''}"
    return None


def _check_one_patient(studies: list[StudyInfo]) -> str:
    """Refuse studies of several patients; the message shows salted hashes, never identifiers."""
    salt = secrets.token_bytes(16)  # a fresh salt: keys tell patients apart in one message, and nothing more

    def key(identity: str) -> str:
        return "patient-" + hashlib.sha256(salt + identity.encode()).hexdigest()[:8]

    seen: dict[str, list[str]] = {}
    for study in sorted(studies, key=lambda s: (s.acquired is None, s.acquired or dt.datetime.min)):
        for series in study.series:
            identity = _identity(series.patient)
            if identity is not None:
                seen.setdefault(identity, [])
                if study_label(study) not in seen[identity]:
                    seen[identity].append(study_label(study))
    if len(seen) > 1:
        parts = "; ".join(f"{key(i)}: {', '.join(labels)}" for i, labels in seen.items())
        raise MixedPatientsError(f"the folder holds studies of {len(seen)} patients ({parts}); give one patient's "
                                 "serial studies per folder (keys are salted hashes of the identifiers)")
    if not seen:
        return "no study names its patient (PatientID, PatientName): they are assumed to be one patient's"
    how = "PatientID" if next(iter(seen)).startswith("id:") else "PatientName and PatientBirthDate"
    return f"every study belongs to the same patient ({how} compared; identifiers are not shown)"


def _in_date_order(studies: list[StudyInfo]) -> list[StudyInfo]:
    undated = [s for s in studies if s.acquired is None]
    if undated:
        raise StudyDateError(f"{study_label(undated[0])} has no valid StudyDate, AcquisitionDate, SeriesDate or "
                             "ContentDate, so the studies cannot be put in time order (folder names are not used)")
    ordered = sorted(studies, key=lambda s: s.acquired)  # type: ignore[arg-type, return-value]
    for a, b in zip(ordered, ordered[1:]):
        if a.acquired == b.acquired:
            raise StudyDateError(f"the {study_label(a)} and the {study_label(b)} have the same date and time "
                                 f"({a.acquired.isoformat()}), so their order is unknown")  # type: ignore[union-attr]
    return ordered


def _study_mask(study: StudyInfo, *, pattern: str | None, segment: Segmenter | str | None,
                limits: ReadLimits | None) -> tuple[Image, StudySeries | None]:
    series = choose_mask(study, pattern)
    if series is not None:
        return read_mask(series, limits=limits), series
    found = ", ".join(repr(s.description or s.uid) for s in study.series) or "none"
    if segment is None or isinstance(segment, str):
        model = f"segmenting with the model {segment!r}" if isinstance(segment, str) else "segmenting with a model"
        raise MissingMaskError(f"the {study_label(study)} has no lesion mask: no DICOM SEG and no series whose "
                               f"SeriesDescription names a mask, segmentation or label (series: {found}); "
                               f"{model} is not implemented yet, so give each study a mask series")
    mask = segment(study)
    if not isinstance(mask, Image):
        raise MissingMaskError(f"segment= returned {type(mask).__name__} for the {study_label(study)}; "
                               "it must return a medsight Image (1, slices, rows, cols)")
    return mask, None


def track(folder: str | Path, *, criteria: str | ResponseCriteria | dict[str, Any] = DEFAULT_CRITERIA,
          policy: str | ResponsePolicy | dict[str, Any] = DEFAULT_POLICY, mask: str | None = None,
          segment: Segmenter | str | None = None, connectivity: int = 26,
          limits: ReadLimits | None = None) -> TrackResult:
    """Assess the response of one patient's lesions across the serial studies under ``folder``.

    Args:
        folder: a folder holding one patient's DICOM studies, in any layout.
        criteria: a preset name (``recist-like``, ``rano-like``, ``volumetric``; see
            :func:`~medsight.response.criteria.list_criteria`), a :class:`ResponseCriteria`, or a dict.
        policy: the suggestion policy: a preset name (``default``, ``reference``), a
            :class:`ResponsePolicy`, or a dict.
        mask: a regular expression on SeriesDescription choosing the mask series when a study has several.
        segment: for a study without a mask series, a callable given the
            :class:`~medsight.io.studies.StudyInfo` that returns its mask. A model name is the
            place for a segmentation model and is not implemented yet.
        connectivity: 26 or 6, the neighbourhood of a lesion's voxels.
        limits: caps on file sizes and counts.

    Returns:
        The time points in date order, the response under ``criteria``, the suggestion and the reasons.

    Raises:
        NoStudyError: no DICOM image study under ``folder``.
        MixedPatientsError: studies of more than one patient.
        StudyDateError: a study without a date, or two at the same date and time.
        MissingMaskError: a study without a mask (and no ``segment``), or with several.
        MaskAlignmentError: a mask that does not lie on the image series of its frame of reference.
        ConfigError: unknown criteria or policy.
    """
    chosen, rule = get_criteria(criteria), get_policy(policy)  # a bad preset is refused before any file is read
    scan = scan_studies(folder, limits=limits)
    if not scan.studies:
        why = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in scan.skipped[:3])
        raise NoStudyError("expected one patient's DICOM studies; found no DICOM image series"
                           + (f" ({len(scan.skipped)} file(s) skipped: {why})" if why else ""), path=folder)
    return track_studies(scan.studies, source=str(folder), criteria=chosen, policy=rule, mask=mask, segment=segment,
                         connectivity=connectivity, limits=limits)


def track_studies(studies: Sequence[StudyInfo], *, source: str = "",
                  criteria: str | ResponseCriteria | dict[str, Any] = DEFAULT_CRITERIA,
                  policy: str | ResponsePolicy | dict[str, Any] = DEFAULT_POLICY, mask: str | None = None,
                  segment: Segmenter | str | None = None, connectivity: int = 26,
                  limits: ReadLimits | None = None) -> TrackResult:
    """What :func:`track` does once the studies are found: the same checks, ordering, masks,
    measures, criteria and policy, for studies gathered elsewhere (the service gathers a
    patient's stored studies with :func:`~medsight.io.studies.scan_studies` over each study's folder).

    Args:
        studies: one patient's studies, in any order (they are ordered by their DICOM dates).
        source: what :attr:`TrackResult.folder` records (a folder, or the service's description).
        criteria, policy, mask, segment, connectivity, limits: as for :func:`track`.

    Raises:
        NoStudyError: ``studies`` is empty.
        MixedPatientsError, StudyDateError, MissingMaskError, MaskAlignmentError, ConfigError: as for :func:`track`.
    """
    import medsight

    chosen, rule = get_criteria(criteria), get_policy(policy)
    if not studies:
        raise NoStudyError("expected one patient's DICOM studies; got none", path=source or None)
    studies = list(studies)
    patient_reason = _check_one_patient(studies)
    studies = _in_date_order(studies)
    log.info("%d studies found, ordered by date", len(studies))
    reasons = [f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found, in date order ("
               + ", ".join(f"{s.date} from {s.date_source}" for s in studies) + "); folder names are not used",
               patient_reason]
    found = []
    for study in studies:
        image, series = _study_mask(study, pattern=mask, segment=segment, limits=limits)
        on = aligned_image_series(image, series, study)
        measure = measure_mask(image, connectivity=connectivity)
        found.append((study, series, on, measure))
        where = f"mask {series.description!r}" if series else "mask from segment="
        lay = ("lies on " + ", ".join(repr(s.description or s.uid) for s in on) if on
               else "no image series shares its frame of reference: alignment not checked")
        w = measure.whole
        reasons.append(f"{study.date}: {where} ({lay}): {w.volume_ml:.2f} mL, longest in-plane diameter "
                       f"{w.longest_diameter_mm:.1f} mm x {w.perpendicular_diameter_mm:.1f} mm perpendicular, "
                       f"{len(measure.lesions)} lesion(s) ({connectivity}-connected)")
        log.info("time point %s: %.2f mL, %d lesion(s)", study.date, w.volume_ml, len(measure.lesions))
    dates = [s.date or "?" for s in studies]
    any_lesion = [m.whole.voxels > 0 for *_, m in found]
    scored = [chosen.value(m) for *_, m in found]
    values = [v for v, _ in scored]
    for (study, *_, m), (v, used) in zip(found, scored):
        reasons.append(f"{study.date} under {chosen.name}: {chosen.quantity_label.split(' (')[0]} {chosen.format(v)} "
                       f"from {len(used)} of {len(m.lesions)} lesion(s)"
                       + (" (the others are below the measurable size" + (
                           f" or beyond the {chosen.max_lesions} largest)" if chosen.max_lesions else ")")
                           if len(used) < len(m.lesions) else ""))
    # each time point judged from the time points up to it; the last is the response
    per_point = [assess(chosen, values[: k + 1], any_lesion=any_lesion[: k + 1], dates=dates[: k + 1])
                 for k in range(len(values))]
    advice = [suggest_adjustment(rule, a) for a in per_point]
    assessment = per_point[-1]
    by_criteria = {name: assess(get_criteria(name), [get_criteria(name).value(m)[0] for *_, m in found],
                                any_lesion=any_lesion).category for name in list_criteria()}
    suggestion, why = advice[-1]
    reasons += [*assessment.reasons, *why,
                "under every preset: " + ", ".join(f"{n} → {c or 'no category'}" for n, c in by_criteria.items())]
    timepoints = tuple(TimePoint(study=s, mask_series=series, image_series=tuple(on), measure=m, value=v,
                                 lesions_used=tuple(used), response=a.category, assessment=a, suggestion=text,
                                 reasons=(*a.reasons, *because))
                       for (s, series, on, m), (v, used), a, (text, because) in zip(found, scored, per_point, advice))
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return TrackResult(folder=source, timepoints=timepoints, criteria=chosen, policy=rule, assessment=assessment,
                       suggestion=suggestion, reasons=tuple(reasons), by_criteria=by_criteria,
                       version=medsight.__version__, created=created)
