"""Fast reads of the few plain header values every image needs.

pydicom converts an element on first access (VR lookup, character set, validation), about
10 microseconds each; reading one 512x512 slice needs ~35 values, which costs more than
decoding its pixels. For the value representations whose bytes are plain ASCII by definition
(CS, UI, DS, IS, DA, TM, AS) or little/big-endian integers (US, SS, UL, SL), :func:`value`
reads the raw bytes of a not-yet-converted element directly; everything else (text that may
use a character set, person names, sequences, already converted elements) goes through
pydicom's own ``Dataset.get``. Values come back as pydicom would give them to ``str()``,
``int()`` or ``float()``: a string, an int, or a list of them for multi-valued elements.
"""

from __future__ import annotations

import struct
from typing import Any

from medsight.io.image import Patient

__all__ = ["value", "patient_of"]

_ASCII_VRS = frozenset({"CS", "UI", "DS", "IS", "DA", "TM", "AS"})
_INT_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}
_TAGS: dict[str, tuple[int, str]] = {}


def _tag_and_vr(keyword: str) -> tuple[int, str]:
    if keyword not in _TAGS:
        from pydicom.datadict import dictionary_VR, tag_for_keyword

        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        _TAGS[keyword] = (tag, dictionary_VR(tag))
    return _TAGS[keyword]


def value(ds: Any, keyword: str, default: Any = None) -> Any:
    """The value of ``keyword`` in ``ds`` (a pydicom Dataset), or ``default`` when absent/empty."""
    from pydicom.dataelem import RawDataElement

    tag, vr = _tag_and_vr(keyword)
    if tag not in ds:
        return default
    try:
        raw = ds.get_item(tag, keep_deferred=True)
    except Exception:  # noqa: BLE001 - let pydicom's own path report or default
        raw = None
    if isinstance(raw, RawDataElement) and raw.value is not None and (raw.VR in (None, vr)):
        data = raw.value
        if vr in _ASCII_VRS:
            text = data.decode("ascii", "replace").strip(" \x00")
            if not text:
                return default
            parts = [p.strip(" \x00") for p in text.split("\\")]
            return parts[0] if len(parts) == 1 else parts
        fmt = _INT_VRS.get(vr)
        if fmt is not None:
            size = struct.calcsize(fmt)
            if not data or len(data) % size:
                return default
            ints = list(struct.unpack(("<" if raw.is_little_endian else ">") + fmt * (len(data) // size), data))
            return ints[0] if len(ints) == 1 else ints
    v = ds.get(keyword, default)
    return default if v is None or (isinstance(v, str) and v == "") else v


def patient_of(ds) -> Patient:
    """The patient identifiers of a dataset (kept for export, never logged)."""

    def s(kw: str) -> str | None:
        v = value(ds, kw)
        return None if v is None or str(v) == "" else str(v)

    return Patient(id=s("PatientID"), name=s("PatientName"), birth_date=s("PatientBirthDate"),
                   sex=s("PatientSex"), age=s("PatientAge"))
