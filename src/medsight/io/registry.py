"""Readers behind one interface, chosen by content.

A reader is a function ``read(path, limits, **options) -> Image`` registered for one format
name from :mod:`medsight.io.sniff`. :func:`read` validates the path, sniffs the format and
calls the reader; every failure comes out as a :class:`~medsight.errors.ImageReadError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsight.errors import (
    CorruptFileError,
    EmptyFileError,
    ImageReadError,
    MedSightError,
    UnsupportedFormatError,
)
from medsight.io.image import Image
from medsight.io.limits import DEFAULT_LIMITS, ReadLimits, check_file_size
from medsight.io.sniff import sniff_format

__all__ = ["read", "register_reader", "reader_for", "registered_formats", "Reader"]

log = logging.getLogger(__name__)

Reader = Callable[..., Image]
_READERS: dict[str, Reader] = {}
_FOLDER_READER: list[Reader] = []


def register_reader(fmt: str, *, folder: bool = False) -> Callable[[Reader], Reader]:
    """Register ``fn`` as the reader of format ``fmt`` (or of folders, when ``folder``)."""

    def deco(fn: Reader) -> Reader:
        if folder:
            _FOLDER_READER[:] = [fn]
        else:
            _READERS[fmt] = fn
        return fn

    return deco


def _load_builtin_readers() -> None:
    # Imported here, not at module import, so `import medsight` stays light.
    from medsight.io import archive, dicom, metaimage, nifti, numpy_io, raster  # noqa: F401

    try:
        from medsight.io import series  # noqa: F401
    except ImportError:  # pragma: no cover - series reading is part of the package
        pass


def registered_formats() -> list[str]:
    _load_builtin_readers()
    return sorted(_READERS)


def reader_for(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[str, Reader]:
    """Return ``(format, reader)`` for a file, judged by its content."""
    _load_builtin_readers()
    size = check_file_size(path, limits)
    if size == 0:
        raise EmptyFileError("file is empty (0 bytes)", path=path)
    fmt = sniff_format(path)
    if fmt is None or fmt not in _READERS:
        raise UnsupportedFormatError(
            "not a recognised image: expected DICOM, NIfTI, MetaImage, PNG, JPEG, TIFF or NumPy content "
            f"(the name says {path.suffix or 'nothing'!r}, the content matches none)",
            path=path,
        )
    return fmt, _READERS[fmt]


def read(path: str | Path, *, limits: ReadLimits | None = None, **options: Any) -> Image:
    """Read one image: a file in any supported format, or a folder holding one DICOM series.

    Args:
        path: file or folder.
        limits: caps on file size and pixel count; defaults to :class:`ReadLimits` from the
            environment.
        **options: passed to the reader (``series=`` to choose a DICOM series in a folder).

    Returns:
        The image with its geometry, modality and source identifiers.

    Raises:
        ImageReadError: (a subclass of it) for every reason the path cannot be read.
    """
    limits = limits or ReadLimits.from_env()
    p = Path(path)
    if not p.exists():
        raise ImageReadError("no such file or folder", path=p)
    if p.is_dir():
        _load_builtin_readers()
        if not _FOLDER_READER:
            raise UnsupportedFormatError("folders are not supported", path=p)
        return _guard(_FOLDER_READER[0], p, limits, options)
    if not p.is_file():
        raise UnsupportedFormatError("not a regular file", path=p)
    fmt, reader = reader_for(p, limits)
    image = _guard(reader, p, limits, options)
    image.meta.setdefault("format", fmt)
    return image


def _guard(reader: Reader, path: Path, limits: ReadLimits, options: dict[str, Any]) -> Image:
    """Run a reader and turn any unexpected exception into an ImageReadError."""
    try:
        return reader(path, limits=limits, **options)
    except MedSightError:
        raise
    except MemoryError as exc:
        raise ImageReadError("not enough memory to read this image", path=path) from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a third-party decoder failed on damaged content
        # (pyo3-based decoders raise PanicException, which is not an Exception)
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        log.debug("reader failed", exc_info=True)
        raise CorruptFileError(f"could not decode: {type(exc).__name__}: {exc}", path=path) from exc
