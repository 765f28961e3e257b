"""Limits on what is read, so that a hostile or broken file cannot exhaust the machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import ImageTooLargeError

__all__ = ["ReadLimits", "DEFAULT_LIMITS", "check_file_size", "check_pixel_count"]


@dataclass(frozen=True)
class ReadLimits:
    """Caps applied before any pixel data is decoded.

    Args:
        max_file_bytes: largest file accepted, in bytes (default 2 GiB).
        max_pixels: largest number of voxels (all channels and frames) one image may decode
            to (default 600 million: a 512x512x2000 CT, far beyond a 60000x60000 PNG bomb).
        max_files: most files scanned in one folder or archive.
        max_archive_ratio: largest uncompressed/compressed ratio accepted in an archive.
    """

    max_file_bytes: int = 2 * 2**30
    max_pixels: int = 600_000_000
    max_files: int = 100_000
    max_archive_ratio: float = 200.0

    @classmethod
    def from_env(cls) -> ReadLimits:
        """Defaults, overridden by MEDSIGHT_MAX_FILE_BYTES / MEDSIGHT_MAX_PIXELS when set."""
        kwargs = {}
        for key, env in (("max_file_bytes", "MEDSIGHT_MAX_FILE_BYTES"), ("max_pixels", "MEDSIGHT_MAX_PIXELS")):
            if os.environ.get(env):
                kwargs[key] = int(os.environ[env])
        return cls(**kwargs)


DEFAULT_LIMITS = ReadLimits()


def check_file_size(path: Path, limits: ReadLimits) -> int:
    """Return the file's size in bytes, or raise when it exceeds the limit."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ImageTooLargeError(
            f"file is {size:,} bytes; the limit is {limits.max_file_bytes:,} bytes", path=path
        )
    return size


def check_pixel_count(shape: tuple[int, ...], limits: ReadLimits, path: object = None) -> None:
    """Raise when an image of ``shape`` would decode to more voxels than the limit allows."""
    n = 1
    for s in shape:
        n *= int(s)
    if n > limits.max_pixels:
        dims = "x".join(str(int(s)) for s in shape)
        raise ImageTooLargeError(
            f"image claims {dims} = {n:,} pixels; the limit is {limits.max_pixels:,} "
            "(possible decompression bomb)",
            path=path,
        )
