"""Writing a built DICOM object as a Part 10 file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from medsight.errors import WriteError

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

__all__ = ["write_dicom"]

log = logging.getLogger(__name__)


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
