"""Coded concepts and UIDs of the DICOM objects MedSight builds.

Finding names and segment labels without a standard code get a local code in the coding
scheme ``99MEDSIGHT`` (declared in CodingSchemeIdentificationSequence, see
:func:`coding_schemes`), whose meaning is the name itself. Units are UCUM (``"1"``, ``"mm"``,
``"mL"``, ``"%"``, ...).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["LOCAL_SCHEME", "local_code", "unit_code", "coding_schemes", "segment_category", "new_uid"]

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


def segment_category(label: str):
    """A segment's SegmentedPropertyCategory: a morphologically altered structure for names
    such as tumour, lesion or nodule, else an anatomical structure."""
    import highdicom as hd

    if any(w in label.lower() for w in _ABNORMAL_WORDS):
        return hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    return hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
