"""Zip archives (a DICOM study sent as one file), unpacked safely before reading.

:func:`medsight.io.read` on a ``.zip`` (recognised by content) unpacks it into a private
temporary folder and reads that folder (or its only file) as usual. Before one byte is written
every member is checked, and the whole archive is refused when any member

* has an absolute path, a drive letter, or a ``..`` component (:class:`UnsafePathError`);
* is a symbolic link or another special file (:class:`UnsafePathError`);
* is encrypted (:class:`UnsupportedFormatError`);
* would unpack to more than ``limits.max_file_bytes``, or expands more than
  ``limits.max_archive_ratio`` times (a zip bomb), or the archive holds more than
  ``limits.max_files`` members (:class:`ImageTooLargeError`).

While unpacking, the bytes actually written are counted, so a member whose header lies
about its size is stopped at the declared size. Images read from an archive name their
files ``"<archive>::<member>"`` in ``meta["source_files"]``;
:func:`open_member` opens such a name again (used by
:func:`medsight.io.dicom_out.source_datasets`).
"""

from __future__ import annotations

import io
import logging
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from medsight.errors import (
    CorruptFileError,
    ImageTooLargeError,
    UnsafePathError,
    UnsupportedFormatError,
)
from medsight.io.image import Image
from medsight.io.limits import ReadLimits
from medsight.io.registry import register_reader

__all__ = ["MEMBER_SEP", "check_archive", "unpacked", "read_zip", "open_member"]

log = logging.getLogger(__name__)

MEMBER_SEP = "::"
_CHUNK = 1 << 20
_RATIO_MIN_BYTES = 1 << 20  # ratios of members smaller than this are not judged (tiny files compress oddly)


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in parts:
        return "has a '..' path component"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no Unix file type
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a special file (device, pipe or socket)"
    return None


def check_archive(zf: zipfile.ZipFile, limits: ReadLimits, path: object) -> list[zipfile.ZipInfo]:
    """Check every member of an open archive; return the regular files to unpack.

    Raises:
        UnsafePathError: a member's path leaves the archive, or it is a link.
        UnsupportedFormatError: a member is encrypted.
        ImageTooLargeError: too many members, too many bytes, or too high a compression ratio.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise ImageTooLargeError(f"archive holds {len(infos):,} members; the limit is {limits.max_files:,}", path=path)
    total = 0
    files = []
    for info in infos:
        problem = _member_problem(info)
        if problem:
            raise UnsafePathError(f"archive refused: member {info.filename!r} {problem}", path=path)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise UnsupportedFormatError(f"archive member {info.filename!r} is encrypted", path=path)
        total += info.file_size
        if total > limits.max_file_bytes:
            raise ImageTooLargeError(f"archive unpacks to more than {limits.max_file_bytes:,} bytes "
                                     "(possible zip bomb)", path=path)
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size >= _RATIO_MIN_BYTES and ratio > limits.max_archive_ratio:
            raise ImageTooLargeError(
                f"archive member {info.filename!r} expands {info.file_size / max(1, info.compress_size):,.0f} times "
                f"(limit {limits.max_archive_ratio:g}); possible zip bomb", path=path)
        files.append(info)
    return files


def _copy_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, path: object) -> None:
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise ImageTooLargeError(f"archive member {info.filename!r} unpacks to more than the "
                                         f"{info.file_size:,} bytes its header declares", path=path)
            out.write(chunk)


@contextmanager
def unpacked(path: Path, limits: ReadLimits) -> Iterator[Path]:
    """Unpack a checked archive into a temporary folder, removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="medsight-zip-"))
    try:
        try:
            with zipfile.ZipFile(path) as zf:
                for info in check_archive(zf, limits, path):
                    dest = tmp.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                    if not dest.resolve().is_relative_to(tmp.resolve()):  # belt and braces
                        raise UnsafePathError(f"archive refused: member {info.filename!r} leaves the folder", path=path)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _copy_capped(zf, info, dest, path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, ValueError, NotImplementedError,
                OSError) as exc:
            raise CorruptFileError(f"expected a valid zip archive: {type(exc).__name__}: {exc}", path=path) from exc
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relabel(value: str, tmp: Path, archive: Path) -> str:
    if not value:
        return value
    try:
        rel = Path(value).resolve().relative_to(tmp.resolve())
    except ValueError:
        return value
    return f"{archive}{MEMBER_SEP}{rel.as_posix()}"


def relabel_paths(obj: Any, tmp: Path, archive: Path) -> Any:
    """Replace paths inside ``tmp`` with ``archive::member`` names, in nested dicts/lists."""
    if isinstance(obj, str):
        return _relabel(obj, tmp, archive) if str(tmp) in obj else obj
    if isinstance(obj, list):
        return [relabel_paths(v, tmp, archive) for v in obj]
    if isinstance(obj, dict):
        return {k: relabel_paths(v, tmp, archive) for k, v in obj.items()}
    return obj


@register_reader("zip")
def read_zip(path: Path, *, limits: ReadLimits, member: str | None = None, **options: Any) -> Image:
    """Read the image in a zip archive: its DICOM series (choose with ``series=``), or its
    only file, or the file named by ``member``."""
    from medsight.io.registry import read

    with unpacked(path, limits) as tmp:
        if member is not None:
            target = tmp.joinpath(*PurePosixPath(member).parts)
            if not target.is_file():
                raise UnsupportedFormatError(f"archive has no member {member!r}", path=path)
        else:
            files = [p for p in tmp.rglob("*") if p.is_file()]
            if not files:
                raise UnsupportedFormatError("archive holds no files", path=path)
            target = files[0] if len(files) == 1 else tmp
        image = read(target, limits=limits, **options)
        image.meta = relabel_paths(image.meta, tmp, path)
        image.source = str(path) if target == tmp else _relabel(str(target), tmp, path)
        image.meta["archive"] = str(path)
    return image


def open_member(name: str) -> io.BytesIO:
    """The bytes of ``"<archive>::<member>"`` as a file-like object (a header re-read).

    Raises:
        CorruptFileError: the archive or member cannot be read.
    """
    archive, _, member = name.partition(MEMBER_SEP)
    try:
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(member)
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise CorruptFileError(f"cannot re-read archive member {member!r}: {exc}", path=archive) from exc
    buf = io.BytesIO(data)
    buf.name = name
    return buf
