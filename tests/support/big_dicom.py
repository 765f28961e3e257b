"""Huge images in small files, made on the fly (never committed): an RLE-compressed CR whose
header declares, say, 24000x24000 pixels, in about 9 MB.

The RLE Lossless stream is written by hand (DICOM PS3.5 Annex G): one segment per byte of a
sample, each row PackBits-encoded on its own as replicate runs of at most 128 bytes, so a
constant 8-bit row of 24000 pixels is 376 bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

from support.xray_dicom import xray_dataset


def rle_constant_frame(rows: int, cols: int, value: int = 0, bits: int = 8) -> bytes:
    """One RLE Lossless frame of ``rows`` x ``cols`` pixels all equal to ``value``."""
    runs = []
    left = cols
    while left:
        n = min(128, left)
        runs.append(n)
        left -= n
    nbytes = bits // 8
    segments = []
    for k in range(nbytes):  # most significant byte first
        byte = (value >> (8 * (nbytes - 1 - k))) & 0xFF
        row = b"".join(struct.pack("bB", 1 - n, byte) for n in runs)
        segments.append(row * rows)
    offsets, pos = [], 64
    for seg in segments:
        offsets.append(pos)
        pos += len(seg)
    header = struct.pack("<16I", len(segments), *offsets, *([0] * (15 - len(segments))))
    frame = header + b"".join(segments)
    return frame + b"\0" * (len(frame) % 2)


def rle_cr(path: Path, rows: int = 24000, cols: int = 24000, *, bits: int = 8, value: int = 100, **kwargs) -> Path:
    """Write a CR (the tags of :func:`support.xray_dicom.xray_dataset`) whose RLE pixel data
    declares ``rows`` x ``cols`` pixels of ``bits`` bits; returns ``path``."""
    import numpy as np
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds = xray_dataset(np.zeros((1, 1), np.uint8), **kwargs)
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.WindowCenter, ds.WindowWidth = 2 ** (bits - 1), 2**bits
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([rle_constant_frame(rows, cols, value, bits)])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
