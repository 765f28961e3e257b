"""De-identification for export: a documented subset of the DICOM PS3.15 Basic Application
Level Confidentiality Profile (Annex E, Table E.1-1).

What :class:`Deidentifier` does to every dataset, recursively into every sequence:

* **Patient identity replaced**: PatientName and PatientID become a pseudonym (given, or
  ``ANON-`` + a salted hash of the original PatientID, so one patient keeps one pseudonym).
* **Removed (X)**: the attributes in :data:`REMOVE` (other patient IDs and names, addresses,
  telephone numbers, insurance, ethnic group, occupation, history and comments, institution
  address and department, physicians of record / reading / performing / requesting, operators,
  station name, device serial number, admission and visit data, request attributes, ...);
  the descriptions in :data:`DESCRIPTIONS` unless ``keep_descriptions``; patient age, size and
  weight unless ``keep_patient_characteristics``; every private attribute; curves and overlays
  (groups 50xx and 60xx).
* **Emptied (Z)**: the type-2 attributes in :data:`EMPTY` (birth date, sex unless kept,
  referring physician, accession number, study ID) and every other person name (PN) anywhere.
* **Dates**: without ``date_shift_days``, every date (DA), date-time (DT) and time (TM) is
  emptied. With it, every DA and DT is moved by that many days (the same shift for the whole
  export, so intervals between studies survive) and times are kept: the Retain Longitudinal
  Temporal Information with Modified Dates Option. Birth dates are always emptied.
* **UIDs (U)**: every UID (VR UI) that is not a DICOM-defined UID (``1.2.840.10008.*``) nor
  one of :data:`KEEP_UIDS` is replaced by ``2.25.<128-bit salted hash>``, in the file meta as
  well, and inside every sequence, so references between objects (a SEG's
  ReferencedSOPInstanceUID, an SR's evidence) still point at the remapped instances. The map
  depends only on the salt: one :class:`Deidentifier` (or one salt) per export keeps a study
  consistent across files and runs.
* **Recorded**: PatientIdentityRemoved = YES, DeidentificationMethod and
  DeidentificationMethodCodeSequence (113100 Basic Profile; 113107 with date shift; 113108
  when patient characteristics are kept), LongitudinalTemporalInformationModified.

Not covered (so refused or left to the user): identifiers burned into the pixels (an object
with BurnedInAnnotation YES raises :class:`~medsight.errors.DeidentificationError`; nothing
looks at pixels), free text in attributes this list keeps, and the profile's other options.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Iterable
from pathlib import Path

from medsight.errors import DeidentificationError, MedSightError, WriteError

__all__ = ["Deidentifier", "deidentify_files", "REMOVE", "EMPTY", "DESCRIPTIONS", "KEEP_UIDS"]

log = logging.getLogger(__name__)

REMOVE = frozenset({
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName", "PatientBirthTime",
    "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation", "PatientMotherBirthName",
    "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "PatientInsurancePlanCodeSequence", "PatientReligiousPreference",
    "CountryOfResidence", "RegionOfResidence", "ResponsiblePerson", "ResponsibleOrganization", "PatientState",
    "MedicalAlerts", "Allergies", "SmokingStatus", "PregnancyStatus", "LastMenstrualDate", "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "PatientInstitutionResidence", "CurrentPatientLocation",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName", "OperatorIdentificationSequence",
    "RequestingPhysician", "RequestingService", "ScheduledPerformingPhysicianName", "StationName",
    "DeviceSerialNumber", "DeviceUID", "AdmissionID", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
    "RequestAttributesSequence", "ImageComments", "StudyComments", "InterpretationAuthor", "TextComments",
    "OriginalAttributesSequence", "ModifiedAttributesSequence", "ContributingEquipmentSequence",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "ScheduledProcedureStepID",
    "RequestedProcedureID", "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest",
    "PersonAddress", "PersonTelephoneNumbers", "InstitutionNameCodeSequence", "VisitComments",
    "DigitalSignaturesSequence", "EncryptedAttributesSequence",
})
EMPTY = frozenset({"PatientBirthDate", "PatientSex", "ReferringPhysicianName", "AccessionNumber", "StudyID"})
DESCRIPTIONS = frozenset({
    "StudyDescription", "SeriesDescription", "ProtocolName", "AcquisitionDeviceProcessingDescription",
    "DerivationDescription", "PerformedProcedureStepDescription", "RequestedProcedureDescription",
})
CHARACTERISTICS = frozenset({"PatientAge", "PatientSize", "PatientWeight", "PatientSex"})
KEEP_UIDS = frozenset({
    "CodingSchemeUID", "ContextUID", "ImplementationClassUID", "MappingResourceUID", "PrivateInformationCreatorUID",
    "TemplateExtensionOrganizationUID", "TransferSyntaxUID", "SOPClassUID", "ReferencedSOPClassUID",
    "MediaStorageSOPClassUID", "ReferencedSOPClassUIDInFile", "AffectedSOPClassUID",
})
_DICOM_ROOT = "1.2.840.10008."
_METHOD = "MedSight PS3.15 Basic Profile subset"  # LO: at most 64 characters


class Deidentifier:
    """De-identifies datasets consistently: one instance (or one salt) per export.

    Args:
        salt: secret that keys the UID map and the pseudonyms; random when None (consistent
            within this instance only). Keep it secret: with it, a UID can be traced back.
        patient_id: pseudonym for every patient; by default ``ANON-<hash of PatientID>``.
        date_shift_days: move every date by this many days (keep times); None empties dates.
        keep_descriptions: keep study/series descriptions and protocol names.
        keep_patient_characteristics: keep age, sex, size and weight.

    Example:
        >>> deid = Deidentifier(salt=b"export-2024-07", date_shift_days=-365)  # doctest: +SKIP
        >>> clean = deid(pydicom.dcmread("slice.dcm"))                          # doctest: +SKIP
    """

    def __init__(self, *, salt: bytes | str | None = None, patient_id: str | None = None,
                 date_shift_days: int | None = None, keep_descriptions: bool = False,
                 keep_patient_characteristics: bool = False) -> None:
        self.salt = salt.encode() if isinstance(salt, str) else (salt or secrets.token_bytes(32))
        self.patient_id = patient_id
        self.date_shift_days = date_shift_days
        self.keep_descriptions = keep_descriptions
        self.keep_patient_characteristics = keep_patient_characteristics
        self.uid_map: dict[str, str] = {}

    # -- mappings ---------------------------------------------------------------------------
    def _hash(self, text: str) -> bytes:
        return hashlib.sha256(self.salt + b"\x00" + text.encode()).digest()

    def new_uid(self, uid: str) -> str:
        """The replacement of ``uid``: ``2.25.`` + a 128-bit salted hash (the same every time)."""
        uid = str(uid).strip()
        if uid not in self.uid_map:
            self.uid_map[uid] = "2.25." + str(int.from_bytes(self._hash("uid:" + uid)[:16], "big"))
        return self.uid_map[uid]

    def pseudonym(self, patient_id: str | None) -> str:
        """The patient pseudonym: the given one, or ``ANON-`` + 12 hex digits of a salted hash."""
        if self.patient_id:
            return self.patient_id
        return "ANON-" + self._hash("pid:" + (patient_id or "")).hex()[:12].upper()

    def _shift(self, value: str, vr: str) -> str:
        days = dt.timedelta(days=self.date_shift_days or 0)
        v = str(value).strip()
        try:
            if vr == "DA":
                return (dt.datetime.strptime(v[:8], "%Y%m%d") + days).strftime("%Y%m%d")
            return (dt.datetime.strptime(v[:8], "%Y%m%d") + days).strftime("%Y%m%d") + v[8:]  # DT
        except ValueError:
            return ""  # an unparseable date cannot be shifted safely: empty it

    # -- the work ------------------------------------------------------------------------------
    def __call__(self, ds):
        """A de-identified deep copy of ``ds`` (the input is left untouched).

        Raises:
            DeidentificationError: the object declares burned-in annotation.
        """
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            raise DeidentificationError("expected no burned-in annotation; this object declares BurnedInAnnotation "
                                        "YES, and identifiers in pixels cannot be removed here")
        out = copy.deepcopy(ds)
        pseudonym = self.pseudonym(str(ds.get("PatientID", "") or ""))
        out.remove_private_tags()
        self._clean(out, set())
        out.PatientName = pseudonym
        out.PatientID = pseudonym
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = _METHOD
        out.DeidentificationMethodCodeSequence = self._method_codes()
        out.LongitudinalTemporalInformationModified = "MODIFIED" if self.date_shift_days is not None else "REMOVED"
        meta = getattr(out, "file_meta", None)
        if meta is not None:
            if "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in out:
                meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
            for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                       "ReceivingApplicationEntityTitle", "PrivateInformation"):
                if kw in meta:
                    delattr(meta, kw)
        return out

    def _method_codes(self):
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        codes = [("113100", "Basic Application Confidentiality Profile")]
        if self.date_shift_days is not None:
            codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        if self.keep_patient_characteristics:
            codes.append(("113108", "Retain Patient Characteristics Option"))
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        return Sequence(items)

    def _clean(self, ds, seen: set[int]) -> None:
        """Apply the actions to one dataset and, recursively, to every item of its sequences.

        ``seen`` holds the ids of datasets already cleaned: an item object shared by two
        sequences (highdicom builds such) must be remapped once, not twice.
        """
        if id(ds) in seen:
            return
        seen.add(id(ds))
        for elem in list(ds):
            tag = elem.tag
            if tag.group in range(0x5000, 0x5100) or tag.group in range(0x6000, 0x6100):
                del ds[tag]  # curves and overlays
                continue
            kw = elem.keyword
            if kw in REMOVE or (kw in DESCRIPTIONS and not self.keep_descriptions) or (
                    kw in CHARACTERISTICS - {"PatientSex"} and not self.keep_patient_characteristics):
                del ds[tag]
                continue
            if kw in EMPTY and not (kw == "PatientSex" and self.keep_patient_characteristics):
                elem.value = ""
                continue
            vr = elem.VR
            if vr == "SQ":
                for item in elem.value:
                    self._clean(item, seen)
            elif vr == "PN":
                elem.value = ""
            elif vr == "UI" and kw not in KEEP_UIDS:
                elem.value = self._remap(elem.value)
            elif vr in ("DA", "DT", "TM"):
                elem.value = self._date(elem.value, vr, kw)

    def _remap(self, value):
        if value is None or value == "":
            return value
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return [self._remap(v) for v in value]
        return value if str(value).startswith(_DICOM_ROOT) else self.new_uid(str(value))

    def _date(self, value, vr: str, kw: str):
        if value is None or value == "":
            return value
        if self.date_shift_days is None or "Birth" in kw:
            return ""
        if vr == "TM":
            return value
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return [self._shift(v, vr) for v in value]
        return self._shift(value, vr)


def deidentify_files(paths: Iterable[str | Path], out_dir: str | Path, deid: Deidentifier,
                     errors: list[dict[str, str]] | None = None) -> list[Path]:
    """De-identify DICOM files into ``out_dir``, named by their new SOPInstanceUID.

    A file that cannot be read or de-identified is skipped, the others are still written.
    Skipped files are appended to ``errors`` (``{"file", "error", "reason"}``) when given; the
    log names only how many (file names can hold identifiers).

    Returns:
        The paths written.

    Raises:
        WriteError: ``out_dir`` cannot be created or written.
    """
    from medsight.io.dicom import read_dataset

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create the export folder: {exc}", path=out) from exc
    written = []
    failed = 0
    for p in paths:
        try:
            ds = read_dataset(Path(p), force=True)
            clean = deid(ds)
        except MedSightError as exc:
            failed += 1
            if errors is not None:
                errors.append({"file": str(p), "error": type(exc).__name__, "reason": str(exc)})
            continue
        target = out / f"{clean.get('SOPInstanceUID', deid.new_uid(str(p)))}.dcm"
        try:
            clean.save_as(target, enforce_file_format=True)
        except (OSError, ValueError) as exc:
            raise WriteError(f"could not write a de-identified file: {exc}", path=target) from exc
        written.append(target)
    if failed:
        log.warning("de-identification skipped %d file(s); %d written", failed, len(written))
    return written
