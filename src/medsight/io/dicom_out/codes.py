"""Coded concepts and UIDs of the DICOM objects MedSight builds.

Finding names and segment labels without a standard code get a local code in the coding
scheme ``99MEDSIGHT`` (declared in CodingSchemeIdentificationSequence, see
:func:`coding_schemes`), whose meaning is the name itself. Units are UCUM (``"1"``, ``"mm"``,
``"mL"``, ``"%"``, ...).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

__all__ = ["LOCAL_SCHEME", "local_code", "unit_code", "coding_schemes", "segment_category", "new_uid", "name_uid",
           "FINDING_CONCEPTS", "LesionKind", "lesion_kind"]

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


def local_code(meaning: str):
    """A local code (scheme ``99MEDSIGHT``) for a name without a standard code; its meaning is
    the name (cut to 64 characters), its value a slug of at most 16 characters."""
    import highdicom as hd

    slug = re.sub(r"[^A-Za-z0-9]+", "-", meaning.strip()).strip("-").upper() or "UNNAMED"
    if len(slug) > 16:  # CodeValue is at most 16 characters: keep it unique with a hash
        slug = slug[:9] + "-" + hashlib.sha1(meaning.encode()).hexdigest()[:6].upper()
    return hd.sr.CodedConcept(value=slug, scheme_designator=LOCAL_SCHEME, meaning=meaning[:64])


def unit_code(unit: str):
    """The UCUM code of a unit (``"mm"``, ``"mL"``, ``"1"``...); common spellings such as ``"ml"``
    and ``"HU"`` are mapped to their UCUM form."""
    import highdicom as hd

    u = _UCUM_ALIASES.get(unit, unit)
    return hd.sr.CodedConcept(value=u, scheme_designator="UCUM", meaning=_UCUM_MEANINGS.get(u, u))


def coding_schemes():
    """The CodingSchemeIdentificationSequence item that declares the local scheme."""
    import highdicom as hd

    return [hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name="MedSight local codes", responsible_organization="MedSight")]




def new_uid(given: str | None) -> str:
    """``given`` when there is one, else a fresh UID."""
    import highdicom as hd

    return str(given) if given else str(hd.UID())


#: Namespace of :func:`name_uid` (fixed: the same parts always give the same UID); it is
#: uuid5(NAMESPACE_URL, "medsight:dicom-out:content-uids").
_UID_NAMESPACE = uuid.UUID("9216f5fe-44f6-5b0d-a44a-12891de69fbe")


def name_uid(*parts: str) -> str:
    """A UID that depends only on ``parts`` (``2.25.<int>`` of a name-based UUID), e.g. a
    lesion's tracking UID from its SR's SOPInstanceUID and its identifier, so that an SR built
    twice with the same UIDs holds the same content."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"


#: Finding names (:meth:`medsight.tasks.results.Result.findings`) with a standard concept in an
#: SR, as (code value, scheme, meaning); every other name gets a local code whose meaning is
#: the finding's title.
FINDING_CONCEPTS: dict[str, tuple[str, str, str]] = {
    "nodule_diameter_mm": ("81827009", "SCT", "Diameter"),
    "nodule_volume_ml": ("118565006", "SCT", "Volume"),
}


@dataclass(frozen=True)
class LesionKind:
    """What a lesion's SR measurement group says it is: the name its tracking identifier starts
    with (``"Nodule"`` → ``"Nodule 1"``), its finding type and its finding site, as (code value,
    scheme, meaning)."""

    label: str
    finding_type: tuple[str, str, str]
    finding_site: tuple[str, str, str] | None = None


#: Lesion kinds by the prefix of their findings' names; a lesion whose names have none of them
#: is a "Lesion" with no finding site.
_LESION_KINDS = {"nodule_": LesionKind("Nodule", ("27925004", "SCT", "Nodule"), ("39607008", "SCT", "Lung"))}
_ANY_LESION = LesionKind("Lesion", ("52988006", "SCT", "Lesion"))


def lesion_kind(names: list[str]) -> LesionKind:
    """The kind of a lesion whose findings have these names (the first known prefix wins)."""
    for name in names:
        for prefix, kind in _LESION_KINDS.items():
            if name.startswith(prefix):
                return kind
    return _ANY_LESION


def segment_category(label: str):
    """A segment's SegmentedPropertyCategory: a morphologically altered structure for names
    such as tumour, lesion or nodule, else an anatomical structure."""
    import highdicom as hd

    if any(w in label.lower() for w in _ABNORMAL_WORDS):
        return hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    return hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
