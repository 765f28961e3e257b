"""Input discovery: the inputs a list of files and folders holds.

For a 2D model every image file inside a folder is one input; for a 3D model a folder of DICOM
is one series and other volumes inside are listed one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["expand_inputs", "list_files", "IMAGE_SUFFIXES"]

#: File endings of the images the readers take.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", ".npy", ".npz",
                   ".bmp", ".mhd", ".mha")


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


def list_files(folder: str | Path, *, suffixes: Sequence[str] = IMAGE_SUFFIXES, recursive: bool = True,
               extensionless: bool = True, folders: bool = False) -> list[Path]:
    """The image files in a folder, sorted by path; hidden names (``.x``) are skipped.

    Args:
        folder: where to look.
        suffixes: file endings to keep (compared lower-case; ``.nii.gz`` works).
        recursive: look in sub-folders too.
        extensionless: also keep files without a dot in their name (DICOM files often have none).
        folders: also keep sub-folders (non-recursive listings: a DICOM series folder is one input).
    """
    base = Path(folder)
    found = base.rglob("*") if recursive else base.iterdir()
    ends = tuple(s.lower() for s in suffixes)
    out = []
    for p in found:
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if folders:
                out.append(p)
        elif p.is_file() and (p.name.lower().endswith(ends) or (extensionless and "." not in p.name)):
            out.append(p)
    return sorted(out)


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
        files = list_files(p)
        if spatial_dims == 3:
            files = [f for f in files if f.name.lower().endswith((".nii", ".nii.gz", ".npy", ".npz", ".mhd", ".mha"))]
        out.extend(str(f) for f in files) if files else out.append(str(p))
    return out
