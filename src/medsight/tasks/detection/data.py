"""Detection data in the LUNA16 layout: a folder with ``annotations.csv`` and the scans.

::

    DATA/annotations.csv             seriesuid,coordX,coordY,coordZ,diameter_mm  (world LPS mm)
    DATA/annotations_excluded.csv    optional: lesions that count neither way (diameter -1 = unknown)
    DATA/seriesuids.csv              optional: the scans (first column); default every scan found
    DATA/**/<seriesuid>.mhd|.mha|.nii.gz|.nii     a volume per scan (LUNA16's subset folders), or
    DATA/**/<a DICOM series folder>  whose SeriesInstanceUID is the scan's

Scans without a nodule are valid cases (they are listed in ``seriesuids.csv`` or found on
disk and simply have no annotation). Every scan is a :class:`~medsight.data.case.Case` whose
``covariates`` hold its ``nodules`` and ``excluded`` lists of ``(x, y, z, diameter_mm)``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from medsight.data.case import Case
from medsight.errors import DataError
from medsight.metrics.luna16_csv import Nodule, read_annotations, read_excluded

__all__ = ["DetectionData", "open_detection_data", "VOLUME_SUFFIXES"]

VOLUME_SUFFIXES = (".mhd", ".mha", ".nii.gz", ".nii")


@dataclass
class DetectionData:
    source: str
    cases: list[Case]
    annotations: list[Nodule]
    excluded: list[Nodule]

    def split(self, name: str | None) -> list[Case]:
        return list(self.cases) if name in (None, "all") else [c for c in self.cases if c.split == name]


def _uid_of(path: Path) -> str | None:
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _dicom_series(folder: Path) -> str | None:
    """The SeriesInstanceUID of the first DICOM file directly in ``folder``, if any."""
    import pydicom

    for f in sorted(p for p in folder.iterdir() if p.is_file())[:5]:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # noqa: BLE001 - not DICOM: look at the next file
            continue
        uid = getattr(ds, "SeriesInstanceUID", None)
        if uid:
            return str(uid)
    return None


def find_volumes(root: Path) -> dict[str, str]:
    """Series UID → path of its volume (file, or DICOM series folder) under ``root``."""
    found: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            uid = _uid_of(p)
            if uid and not p.name.startswith("."):
                found.setdefault(uid, str(p))
    # DICOM series folders (LIDC as TCIA ships it): folders holding files that are not volumes or tables
    for d in sorted({p.parent for p in root.rglob("*") if p.is_file() and _uid_of(p) is None
                     and not p.name.endswith((".csv", ".raw", ".md", ".json", ".txt"))}):
        uid = _dicom_series(d)
        if uid:
            found.setdefault(uid, str(d))
    return found


def _series_list(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r and r[0].strip()]
    uids = [r[0].strip() for r in rows]
    return uids[1:] if uids and uids[0] == "seriesuid" else uids


def open_detection_data(source: str | Path, *, max_cases: int | None = None) -> DetectionData:
    """Read a LUNA16-layout folder (module docstring) into cases.

    Raises:
        DataError: not a folder, no ``annotations.csv``, a listed or annotated scan whose volume
            is missing, or no scan at all.
    """
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"{root}: detection data is a folder with annotations.csv and the scans; no such folder")
    ann_path = root / "annotations.csv"
    if not ann_path.is_file():
        raise DataError(f"{root}: no annotations.csv (LUNA16 columns seriesuid,coordX,coordY,coordZ,diameter_mm)")
    annotations = read_annotations(ann_path)
    excluded = read_excluded(root / "annotations_excluded.csv") if (root / "annotations_excluded.csv").is_file() else []
    volumes = find_volumes(root)
    listed = root / "seriesuids.csv"
    uids = _series_list(listed) if listed.is_file() else sorted(volumes)
    missing = sorted({u for u in uids if u not in volumes} | {n.seriesuid for n in annotations
                                                             if n.seriesuid not in volumes and n.seriesuid in uids})
    if missing:
        raise DataError(f"{root}: {len(missing)} scan(s) have no volume (.mhd/.nii.gz or a DICOM series folder); "
                        f"first: {missing[0]}")
    if not uids:
        raise DataError(f"{root}: no scan found (.mhd, .nii.gz or DICOM series folders)")
    uids = sorted(uids)[:max_cases] if max_cases else sorted(uids)
    by_scan: dict[str, list] = defaultdict(list)
    for n in annotations:
        by_scan[n.seriesuid].append((*n.center_mm, n.diameter_mm))
    ex_scan: dict[str, list] = defaultdict(list)
    for n in excluded:
        ex_scan[n.seriesuid].append((*n.center_mm, n.diameter_mm))
    cases = [Case(u, {"image": volumes[u]}, covariates={"nodules": by_scan.get(u, []), "excluded": ex_scan.get(u, [])})
             for u in uids]
    keep = set(uids)
    return DetectionData(source=str(root), cases=cases, annotations=[n for n in annotations if n.seriesuid in keep],
                         excluded=[n for n in excluded if n.seriesuid in keep])
