"""Recognise a file's format from its first bytes, not from its name."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

__all__ = ["sniff_format", "FORMATS"]

FORMATS = ("dicom", "nifti", "png", "jpeg", "tiff", "npy", "npz", "zip", "metaimage")

_NIFTI_MAGICS = (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"ni2\x00")


def _looks_like_nifti(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in _NIFTI_MAGICS:
        return True
    return len(head) >= 540 and head[4:8] in _NIFTI_MAGICS  # NIfTI-2 keeps its magic at byte 4


# Keys a MetaImage header starts with (MetaIO writes ObjectType first; hand-written ones vary).
_METAIMAGE_FIRST_KEYS = {b"objecttype", b"objectsubtype", b"comment", b"ndims", b"name", b"id", b"formtypename"}


def _looks_like_metaimage(head: bytes) -> bool:
    """A MetaImage header (``.mhd``/``.mha``): text ``Key = Value`` lines, first a MetaIO key, with NDims."""
    line = head.lstrip().split(b"\n", 1)[0]
    if b"=" not in line:
        return False
    return (line.split(b"=", 1)[0].strip().lower() in _METAIMAGE_FIRST_KEYS
            and (b"NDims" in head or b"DimSize" in head))


def _looks_like_raw_dicom(head: bytes) -> bool:
    """DICOM without the 128-byte preamble: starts with an (0008,xxxx) or (0002,xxxx) tag."""
    return len(head) >= 8 and head[1:2] == b"\x00" and head[0:1] in (b"\x02", b"\x08") and head[2:4] != b"\x00\x00"


def sniff_format(path: Path, head: bytes | None = None) -> str | None:
    """Return one of :data:`FORMATS`, or None when nothing matches.

    Args:
        path: the file; its name is used only to tell apart formats that share a signature
            (a gzip that holds a NIfTI, a zip that is a NumPy ``.npz``).
        head: the first bytes of the file, when already read (at least 1 KiB is best).
    """
    if head is None:
        with open(path, "rb") as f:
            head = f.read(1024)
    name = path.name.lower()
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz" if name.endswith(".npz") else "zip"
    if _looks_like_nifti(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):  # a gzip: a NIfTI inside has its magic near the start
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(548)
        except (OSError, EOFError, zlib.error):
            return None
        return "nifti" if _looks_like_nifti(inner) else None
    if _looks_like_metaimage(head):
        return "metaimage"
    if name.endswith((".dcm", ".dicom", ".ima")) or "." not in name:
        if _looks_like_raw_dicom(head):
            return "dicom"
    return None
