"""The DICOM studies a folder holds: its series grouped by StudyInstanceUID, with their dates.

One patient's serial exams sit in one folder in many layouts (a folder per study, per series,
or all files together), and folder names say nothing reliable about time. :func:`scan_studies`
scans the folder once (:func:`~medsight.io.series.scan_folder`, headers only), reads the header
of one file per series for the study-level facts (StudyInstanceUID, dates and times,
FrameOfReferenceUID, SOP class, patient), and groups the series into :class:`StudyInfo`.
Ordering the studies is left to the caller, by :attr:`StudyInfo.acquired`, never by path.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.io.dicom import read_dataset
from medsight.io.dicom_values import patient_of, value
from medsight.io.image import Patient
from medsight.io.limits import ReadLimits
from medsight.io.series import SeriesInfo, scan_folder

__all__ = ["StudySeries", "StudyInfo", "StudyScan", "scan_studies", "dicom_datetime"]

#: Where a study's date and time come from, in order of preference.
DATE_KEYWORDS = ("StudyDate", "AcquisitionDate", "SeriesDate", "ContentDate")
TIME_KEYWORDS = ("StudyTime", "AcquisitionTime", "SeriesTime", "ContentTime")


@dataclass
class StudySeries:
    """One series of a study: the checked series and the header facts of its first file."""

    info: SeriesInfo
    study_uid: str
    frame_of_reference_uid: str | None
    sop_class_uid: str | None
    headers: dict[str, str]  # the date and time keywords present in the first file
    patient: Patient = field(default_factory=Patient)  # hidden from reprs and logs

    @property
    def uid(self) -> str:
        return self.info.uid

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def folder(self) -> Path:
        """The folder holding the series' first file (for provenance, not for ordering)."""
        return self.info.slices[0].path.parent


@dataclass
class StudyInfo:
    """One study: its series, when it was acquired, and whose it is.

    Attributes:
        uid: StudyInstanceUID.
        series: the study's series, sorted by description then UID.
        patient: the identifiers of the study's first series (hidden from reprs and logs).
        acquired: date and time of the study (see :func:`dicom_datetime`), None when no file says.
        date_source: the keywords ``acquired`` came from, e.g. ``"StudyDate + StudyTime"``.
    """

    uid: str
    series: list[StudySeries]
    patient: Patient
    acquired: dt.datetime | None
    date_source: str | None
    time_known: bool = False

    @property
    def folder(self) -> Path | None:
        """The deepest folder holding all the study's series (for provenance, not for ordering)."""
        if not self.series:
            return None
        return Path(os.path.commonpath([str(s.folder) for s in self.series]))

    @property
    def date(self) -> str | None:
        """The study date as ISO ``YYYY-MM-DD``, or None."""
        return None if self.acquired is None else self.acquired.date().isoformat()


@dataclass
class StudyScan:
    """Every study found under a folder, and the files skipped with the reasons."""

    root: Path
    studies: list[StudyInfo]
    skipped: list[dict[str, str]] = field(default_factory=list)


def _parse_date(text: str | None) -> dt.date | None:
    digits = re.sub(r"[.\-/]", "", (text or "").strip())  # DA is YYYYMMDD; old files write YYYY.MM.DD
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _parse_time(text: str | None) -> dt.time | None:
    raw = (text or "").strip().replace(":", "")  # TM is HH[MM[SS[.FFFFFF]]]; old files write HH:MM:SS
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", raw)
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    try:
        return dt.time(int(hh), int(mm or 0), min(int(ss or 0), 59), int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None


def dicom_datetime(headers: dict[str, str]) -> tuple[dt.datetime | None, str | None, bool]:
    """The acquisition date and time from DICOM date/time values.

    The date is the first valid one of StudyDate, AcquisitionDate, SeriesDate, ContentDate; the
    time is the first valid one of StudyTime, AcquisitionTime, SeriesTime, ContentTime (midnight
    when none is).

    Returns:
        ``(datetime or None, source such as "StudyDate + StudyTime", whether a time was found)``.
    """
    date_kw = next((kw for kw in DATE_KEYWORDS if _parse_date(headers.get(kw))), None)
    if date_kw is None:
        return None, None, False
    time_kw = next((kw for kw in TIME_KEYWORDS if _parse_time(headers.get(kw))), None)
    day = _parse_date(headers[date_kw])
    clock = _parse_time(headers[time_kw]) if time_kw else dt.time()
    assert day is not None and clock is not None
    return dt.datetime.combine(day, clock), date_kw + (f" + {time_kw}" if time_kw else ""), time_kw is not None


def _series_facts(info: SeriesInfo) -> StudySeries:
    ds = read_dataset(info.slices[0].path, headers_only=True, force=True)
    headers = {kw: str(v) for kw in DATE_KEYWORDS + TIME_KEYWORDS if (v := value(ds, kw)) is not None}
    study = str(value(ds, "StudyInstanceUID", "") or "")
    return StudySeries(info=info, study_uid=study or "(no StudyInstanceUID)",
                       frame_of_reference_uid=_s(value(ds, "FrameOfReferenceUID")),
                       sop_class_uid=_s(value(ds, "SOPClassUID")), headers=headers, patient=patient_of(ds))


def _s(v: Any) -> str | None:
    return None if v is None or str(v) == "" else str(v)


def scan_studies(root: str | Path, *, limits: ReadLimits | None = None) -> StudyScan:
    """Find every DICOM study under ``root`` (any folder layout).

    Args:
        root: a folder (a patient's folder of serial exams, a study, or one series).
        limits: caps on file sizes and counts (:class:`~medsight.io.limits.ReadLimits`).

    Returns:
        The studies in no particular order (order them by :attr:`StudyInfo.acquired`), and the
        files skipped (not DICOM images, damaged) with their reasons.

    Raises:
        ImageReadError: ``root`` is not a folder.
    """
    scan = scan_folder(root, limits=limits)
    groups: dict[str, list[StudySeries]] = {}
    for info in scan.series:
        if info.slices:
            series = _series_facts(info)
            groups.setdefault(series.study_uid, []).append(series)
    studies = []
    for uid, members in groups.items():
        merged: dict[str, str] = {}
        for kw in DATE_KEYWORDS + TIME_KEYWORDS:  # StudyDate/Time are the same in every series; for the
            found = [s.headers[kw] for s in members if kw in s.headers]  # others, the earliest series' value
            if found:
                merged[kw] = min(found)
        acquired, source, time_known = dicom_datetime(merged)
        members.sort(key=lambda s: (s.description, s.uid))
        studies.append(StudyInfo(uid=uid, series=members, patient=members[0].patient, acquired=acquired,
                                 date_source=source, time_known=time_known))
    return StudyScan(root=Path(root), studies=studies, skipped=scan.skipped)
