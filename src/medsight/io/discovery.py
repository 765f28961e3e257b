"""Input discovery: the inputs a list of files and folders holds.

For a 2D model every image file inside a folder is one input; for a 3D model a folder of DICOM
is one series and other volumes inside are listed one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["expand_inputs"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", ".npy", ".npz",
                   ".bmp")


def _holds_dicom(folder: Path) -> bool:
    from medsight.io.sniff import sniff_format

    for p in sorted(folder.rglob("*"))[:200]:
        if p.is_file():
            try:
                if sniff_format(p) == "dicom":
                    return True
            except OSError:
                continue
    return False


def expand_inputs(inputs: Sequence[str | Path], *, spatial_dims: int = 2) -> list[str]:
    """Expand folders: for a 2D model, every image file inside (sorted, recursive); for a 3D
    model, a folder of DICOM is one series and other volumes inside are listed one by one.
    Files and missing paths are kept as they are (a missing path is reported later)."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            out.append(str(item))
            continue
        if spatial_dims == 3 and _holds_dicom(p):
            out.append(str(p))
            continue
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".")
                 and (f.name.lower().endswith(_IMAGE_SUFFIXES) or "." not in f.name)]
        if spatial_dims == 3:
            files = [f for f in files if f.name.lower().endswith((".nii", ".nii.gz", ".npy", ".npz"))]
        out.extend(str(f) for f in files) if files else out.append(str(p))
    return out
