"""What is in a file or folder: the data behind ``medsight info``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medsight.errors import ImageReadError, MedSightError
from medsight.io.limits import ReadLimits

__all__ = ["describe"]


def describe(path: str | Path, *, limits: ReadLimits | None = None) -> dict[str, Any]:
    """Describe every image or series under ``path``.

    Returns:
        ``{"path", "images": [summary, ...], "skipped": [{"file", "error", "reason"}, ...]}``;
        each summary has ``modality``, ``shape``, ``spacing_mm``, ``series_uid``,
        ``intensity_range`` and more (never patient identifiers).

    Raises:
        ImageReadError: ``path`` does not exist, or is a single file that cannot be read.
    """
    from medsight.io.registry import read
    from medsight.io.series import read_series, scan_folder
    from medsight.io.sniff import sniff_format

    limits = limits or ReadLimits.from_env()
    p = Path(path)
    if not p.exists():
        raise ImageReadError("no such file or folder", path=p)
    if p.is_file():
        if p.stat().st_size and sniff_format(p) == "zip":
            from medsight.io.archive import relabel_paths, unpacked

            with unpacked(p, limits) as tmp:
                inner = describe(tmp, limits=limits)
                inner = relabel_paths(inner, tmp, p)
            inner["path"] = str(p)
            return inner
        return {"path": str(p), "images": [_summary(read(p, limits=limits, allow_nan=True))], "skipped": []}
    scan = scan_folder(p, limits=limits)
    images: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for info in scan.series:
        try:
            image = read_series(info, limits=limits, source=str(p))
            summary = image.summary()
            summary.update({"series_description": info.description, "problems": info.problems})
            files = [f for f in image.meta.get("source_files", []) if f]
            if files:  # the series' own folder, not the folder that was described
                summary["source"] = os.path.commonpath([os.path.dirname(f) for f in files])
            images.append(summary)
        except MedSightError as exc:
            images.append({**info.summary(), "error": str(exc)})
        skipped += info.skipped
    for entry in scan.skipped:  # non-DICOM files may still be images in their own right
        f = Path(entry["file"])
        try:
            fmt = sniff_format(f)
        except OSError:
            fmt = None
        if fmt in ("nifti", "metaimage", "png", "jpeg", "tiff", "npy", "npz") and f.stat().st_size > 0:
            try:
                images.append(_summary(read(f, limits=limits, allow_nan=True)))
                continue
            except MedSightError as exc:
                entry = {"file": str(f), "error": type(exc).__name__, "reason": str(exc)}
        skipped.append(entry)
    return {"path": str(p), "images": images, "skipped": skipped}


def _summary(image) -> dict[str, Any]:
    """The image's summary, plus how many voxels are NaN or infinite (NIfTI read with allow_nan)."""
    import numpy as np

    summary = image.summary()
    if image.array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image.array)))
        if bad:
            summary["non_finite_voxels"] = bad
    return summary
