"""Limits on what is read, so that a hostile or broken file cannot exhaust the machine."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import ConfigError, ImageTooLargeError

__all__ = ["ReadLimits", "DEFAULT_LIMITS", "check_file_size", "check_pixel_count", "check_decoded_size", "MAX_SIDE",
           "display_shape", "shrink_factor"]

#: Longest side, in pixels, of any rendered picture (heatmap, overlay, image PNG, Secondary Capture).
MAX_SIDE = 2048


@dataclass(frozen=True)
class ReadLimits:
    """Caps applied before any pixel data is decoded (from the headers).

    The byte budgets count the array the decoder produces: voxels x samples x bytes per
    sample as stored (BitsAllocated / 8 for DICOM, the dtype for NIfTI/NumPy, the mode for
    PNG/JPEG/TIFF), before any rescale. Reading and preparing an image for a model needs a
    small multiple of it, so the budgets bound the memory one image can take.

    Args:
        max_file_bytes: largest file accepted, in bytes (default 2 GiB).
        max_pixels: largest number of voxels (all channels and frames) one image may decode
            to (default 600 million: a 512x512x2000 CT, far beyond a 60000x60000 PNG bomb).
        max_decoded_bytes: largest decoded pixel array of one image: a file, or a whole
            series (default 1 GiB: a 512x512x2000 CT at 16 bits).
        max_frame_bytes: largest decoded 2D frame (rows x columns x samples) of any image; the
            budget of a radiograph (default 128 MiB: 8192x8192 at 16 bits; a 4096x4096 DX is
            32 MiB, a 512x512 CT slice 0.5 MiB).
        max_files: most files scanned in one folder or archive.
        max_archive_ratio: largest uncompressed/compressed ratio accepted in an archive.
        max_slice_gap: largest step between neighbouring slices of a DICOM series, as a multiple
            of the series' median step, that is still stacked: the missing slices are filled
            with the volume's lowest value and listed in ``meta["filled_slices"]``, with a
            warning. A larger gap is a :class:`~medsight.errors.SeriesError`. Steps up to 1.5x
            the median are never gaps, so the default 1.5 tolerates no missing slice; 2.5
            tolerates one missing slice in a row, 3.5 two.
    """

    max_file_bytes: int = 2 * 2**30
    max_pixels: int = 600_000_000
    max_files: int = 100_000
    max_archive_ratio: float = 200.0
    max_decoded_bytes: int = 2**30
    max_frame_bytes: int = 128 * 2**20
    max_slice_gap: float = 1.5

    def __post_init__(self) -> None:
        gap = self.max_slice_gap
        if not isinstance(gap, (int, float)) or not math.isfinite(gap) or gap < 1.0:
            raise ConfigError(f"max_slice_gap is a multiple of the median slice step, at least 1; got {gap!r}")

    @classmethod
    def from_env(cls) -> ReadLimits:
        """Defaults, overridden by the environment variables in :data:`ENV` when set.

        ``medsight predict``, batch inference (``Predictor``, ``medsight.Model``) and the service
        (receiver and workers) all take their limits from here.

        Raises:
            ConfigError: a variable is set to something other than a positive whole number (for
                ``MEDSIGHT_MAX_SLICE_GAP``: a number of at least 1).
        """
        kwargs = {}
        for key, env in ENV.items():
            raw = os.environ.get(env, "").strip()
            if not raw:
                continue
            if key == "max_slice_gap":
                try:
                    gap = float(raw)
                except ValueError:
                    gap = 0.0
                if not math.isfinite(gap) or gap < 1.0:
                    raise ConfigError(f"environment variable {env} must be a number of at least 1 (a multiple of "
                                      f"the median slice step); got {raw!r}")
                kwargs[key] = gap
                continue
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value <= 0:
                raise ConfigError(f"environment variable {env} must be a positive whole number of "
                                  f"{'pixels' if key == 'max_pixels' else 'bytes'}; got {raw!r}")
            kwargs[key] = value
        return cls(**kwargs)


#: The environment variable that overrides each limit.
ENV = {"max_file_bytes": "MEDSIGHT_MAX_FILE_BYTES", "max_pixels": "MEDSIGHT_MAX_PIXELS",
       "max_decoded_bytes": "MEDSIGHT_MAX_DECODED_BYTES", "max_frame_bytes": "MEDSIGHT_MAX_FRAME_BYTES",
       "max_slice_gap": "MEDSIGHT_MAX_SLICE_GAP"}


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


def check_decoded_size(shape: tuple[int, ...], itemsize: int, limits: ReadLimits, path: object = None, *,
                       frame: tuple[int, ...] | None = None) -> None:
    """Raise before decoding when an image of ``shape`` would exceed the pixel or byte budgets.

    Args:
        shape: every dimension of the decoded array (frames, rows, columns, samples...).
        itemsize: bytes per sample of the decoded array.
        limits: the budgets.
        path: named in the error.
        frame: the dimensions of one 2D frame (rows, columns and samples); default the last two
            of ``shape``.

    Raises:
        ImageTooLargeError: naming the declared size, the budget and its environment variable.
    """
    check_pixel_count(shape, limits, path)
    itemsize = max(1, int(itemsize))
    frame = tuple(shape[-2:]) if frame is None else tuple(frame)
    dims = "x".join(str(int(s)) for s in shape)
    for what, dim, key in ((frame, "x".join(str(int(s)) for s in frame), "max_frame_bytes"),
                           (shape, dims, "max_decoded_bytes")):
        n = itemsize
        for s in what:
            n *= int(s)
        budget = getattr(limits, key)
        if n > budget:
            kind = f"one frame ({dim})" if key == "max_frame_bytes" else "the image"
            raise ImageTooLargeError(
                f"image declares {dims} values of {itemsize} byte(s): {kind} would decode to {n:,} bytes, over the "
                f"budget of {budget:,} bytes ({key}, {ENV[key]}); refused before decoding", path=path)


def shrink_factor(rows: int, cols: int, max_side: int = MAX_SIDE) -> int:
    """The whole factor that brings ``rows`` x ``cols`` within ``max_side`` (1 when it fits)."""
    return max(1, -(-max(int(rows), int(cols)) // max(1, int(max_side))))


def display_shape(rows: int, cols: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The ``(rows, cols)`` of the picture of a ``rows`` x ``cols`` plane: shrunk by
    :func:`shrink_factor`, each side rounded up."""
    f = shrink_factor(rows, cols, max_side)
    return -(-int(rows) // f), -(-int(cols) // f)
