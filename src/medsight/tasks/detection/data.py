"""Detection data: scans on disk and the LUNA16 annotation files that go with them.

::

    DATA/annotations.csv             seriesuid,coordX,coordY,coordZ,diameter_mm  (world LPS mm)
    DATA/annotations_excluded.csv    optional: lesions that count neither way (diameter -1 = unknown)
    DATA/seriesuids.csv              optional: the scans (first column); default every scan found
    candidates.csv                   optional, only when named (``negatives=``): LUNA16's candidates
                                     (seriesuid,coordX,coordY,coordZ,class); class 0 = not a nodule
    DATA/**/<seriesuid>.mhd|.mha|.nii.gz|.nii     a volume per scan (LUNA16's subset folders), or
    DATA/**/<a DICOM series folder>  whose SeriesInstanceUID is the scan's (LIDC as TCIA ships it)

The three CSV files may live elsewhere (``annotations=``, ``excluded=``, ``seriesuids=``; the
config's ``data.annotations``, ``data.excluded``, ``data.seriesuids``; ``medsight evaluate
--annotations ...``). Without ``annotations=`` the file is ``DATA/annotations.csv``, else the one
``annotations.csv`` anywhere under ``DATA`` (e.g. ``DATA/luna16/annotations.csv``); the excluded
annotations and the scan list default to the files of those names beside it.

Which scans are cases: the scan list's, when there is one, else every volume found. A listed
scan (or, without a list, an annotated one) with no volume on disk is **left out and counted**
(:attr:`DetectionData.not_on_disk`): LUNA16's files list 888 scans and a user often has a few
subsets, or a handful of LIDC series; ``missing="error"`` makes it an error instead. Volumes on
disk that the scan list does not name are left out and counted too (:attr:`DetectionData.unlisted`).
Scans without a nodule are valid cases (they simply have no annotation). Every scan is a
:class:`~medsight.data.case.Case` whose ``covariates`` hold its ``nodules`` and ``excluded``
lists of ``(x, y, z, diameter_mm)`` and its ``negatives``, ``(x, y, z)`` of known non-nodules
(empty unless a candidates file is named: training teaches them as background, see
:mod:`medsight.tasks.detection.training`; scoring does not read them).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medsight.data.case import Case
from medsight.errors import DataError
from medsight.metrics.luna16_csv import Nodule, read_annotations, read_excluded, read_negatives, read_seriesuids

__all__ = ["DetectionData", "open_detection_data", "open_config_data", "find_volumes", "scan_uid_of",
           "VOLUME_SUFFIXES"]

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".mhd", ".mha", ".nii.gz", ".nii")
#: Files that are never DICOM slices (tables, notes, MetaImage data, the LIDC reads' XML).
_NOT_DICOM = (".csv", ".raw", ".zraw", ".md", ".json", ".txt", ".xml", ".yaml", ".yml", ".png", ".jpg", ".npy",
              ".npz", ".pdf", ".html", ".gz", ".zip")


@dataclass
class DetectionData:
    """The cases of a detection data set and what was left out.

    Attributes:
        source: the scans' folder.
        cases: one per scan on disk (and in the scan list, when there is one), by series UID.
        annotations, excluded: the annotations of those scans.
        not_on_disk: series UIDs listed (or annotated) that have no volume under ``source``.
        unlisted: series UIDs on disk that the scan list does not name.
        files: the annotation files read (``annotations``, ``excluded``, ``seriesuids``,
            ``negatives``; None when absent).
        negatives: the known non-nodules of those scans (class-0 candidates).
    """

    source: str
    cases: list[Case]
    annotations: list[Nodule]
    excluded: list[Nodule]
    not_on_disk: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)
    negatives: list[Nodule] = field(default_factory=list)

    def split(self, name: str | None) -> list[Case]:
        return list(self.cases) if name in (None, "all") else [c for c in self.cases if c.split == name]

    def summary(self) -> dict[str, Any]:
        """What was read, for an evaluation's JSON and the training manifest."""
        out = {"n_scans": len(self.cases), "n_nodules": len(self.annotations), "n_excluded": len(self.excluded),
               "not_on_disk": len(self.not_on_disk), "unlisted": len(self.unlisted), "files": dict(self.files)}
        if self.negatives:
            out["n_negatives"] = len(self.negatives)
        return out


def scan_uid_of(path: str | Path) -> str | None:
    """The series UID a volume's file name gives (LUNA16 names each ``<seriesuid>.mhd``), or None."""
    name = Path(path).name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _dicom_series(folder: Path) -> str | None:
    """The SeriesInstanceUID of the first DICOM file directly in ``folder``, if any."""
    import pydicom

    tried = 0
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.lower().endswith(_NOT_DICOM)):
        if tried >= 5:
            break
        tried += 1
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # noqa: BLE001 - not DICOM: look at the next file
            continue
        uid = getattr(ds, "SeriesInstanceUID", None)
        if uid:
            return str(uid)
    return None


def find_volumes(root: Path) -> dict[str, str]:
    """Series UID → path of its volume under ``root``: ``<uid>.mhd|.mha|.nii.gz|.nii`` files, and
    folders of DICOM slices by their SeriesInstanceUID. The first found (by path) wins."""
    found: dict[str, str] = {}
    folders: set[Path] = set()
    for p in sorted(root.rglob("*")):
        if p.name.startswith(".") or not p.is_file():
            continue
        uid = scan_uid_of(p)
        if uid:
            found.setdefault(uid, str(p))
        elif not p.name.lower().endswith(_NOT_DICOM):
            folders.add(p.parent)
    for d in sorted(folders):
        uid = _dicom_series(d)
        if uid:
            found.setdefault(uid, str(d))
    return found


def _annotation_file(root: Path, given: str | Path | None) -> Path:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise DataError("annotations file not found (LUNA16 annotations.csv: seriesuid,coordX,coordY,coordZ,"
                            "diameter_mm)", path=path)
        return path
    if (root / "annotations.csv").is_file():
        return root / "annotations.csv"
    under = sorted(p for p in root.rglob("annotations.csv") if not any(s.startswith(".") for s in p.parts))
    if len(under) == 1:
        return under[0]
    if under:
        raise DataError(f"{len(under)} annotations.csv files under the folder ({under[0]}, {under[1]}, ...); "
                        "say which with annotations= (data.annotations, --annotations)", path=root)
    raise DataError("no annotations.csv (LUNA16 columns seriesuid,coordX,coordY,coordZ,diameter_mm) in the folder; "
                    "give its path with annotations= (data.annotations, --annotations)", path=root)


def _optional_file(given: str | Path | None, beside: Path, what: str) -> Path | None:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise DataError(f"{what} file not found", path=path)
        return path
    return beside if beside.is_file() else None


def open_detection_data(source: str | Path, *, annotations: str | Path | None = None,
                        excluded: str | Path | None = None, seriesuids: str | Path | None = None,
                        negatives: str | Path | None = None, max_cases: int | None = None,
                        missing: Literal["skip", "error"] = "skip") -> DetectionData:
    """Read the scans under ``source`` and their annotations (module docstring) into cases.

    Args:
        source: the folder holding the scans (any depth).
        annotations, excluded, seriesuids: the LUNA16 files, when not in ``source``.
        negatives: a LUNA16 candidates file whose class-0 rows are known non-nodules (read only
            when given).
        max_cases: keep only the first N scans (by series UID) of those on disk.
        missing: ``"skip"`` leaves listed scans that are not on disk out (counted); ``"error"``
            refuses the data set.

    Raises:
        DataError: not a folder, no or several ``annotations.csv``, a bad CSV, a missing scan
            with ``missing="error"``, or no scan on disk.
    """
    root = Path(source)
    if not root.is_dir():
        raise DataError("detection data is a folder holding the scans (.mhd/.mha, .nii/.nii.gz or DICOM series "
                        "folders); no such folder", path=root)
    ann_path = _annotation_file(root, annotations)
    exc_path = _optional_file(excluded, ann_path.parent / "annotations_excluded.csv", "excluded annotations")
    list_path = _optional_file(seriesuids, ann_path.parent / "seriesuids.csv", "series list")
    all_annotations = read_annotations(ann_path)
    all_excluded = read_excluded(exc_path) if exc_path is not None else []
    neg_path = _optional_file(negatives, ann_path, "candidates") if negatives is not None else None
    all_negatives = read_negatives(neg_path) if neg_path is not None else []
    volumes = find_volumes(root)
    if list_path is not None:
        wanted = read_seriesuids(list_path)
        listed = set(wanted)
        unlisted = sorted(u for u in volumes if u not in listed)
    else:  # every scan on disk, and the annotated ones (to count those that are missing)
        wanted = sorted(set(volumes) | {n.seriesuid for n in all_annotations})
        unlisted = []
    not_on_disk = sorted({u for u in wanted if u not in volumes})
    if not_on_disk and missing == "error":
        raise DataError(f"{len(not_on_disk)} scan(s) listed or annotated have no volume (.mhd/.mha, .nii/.nii.gz "
                        f"or a DICOM series folder); first: {not_on_disk[0]}", path=root)
    uids = sorted(u for u in set(wanted) if u in volumes)
    if not uids:
        what = f"none of the {len(set(wanted))} scan(s) listed in {list_path}" if list_path else "no scan"
        raise DataError(f"{what} found on disk (.mhd/.mha, .nii/.nii.gz named by series UID, or DICOM series "
                        "folders)", path=root)
    if not_on_disk:
        log.warning("%s: %d scan(s) of %d listed or annotated are not on disk and are left out (%d on disk)",
                    root, len(not_on_disk), len(set(wanted)), len(uids))
    if unlisted:
        log.warning("%s: %d scan(s) on disk are not in the series list %s and are left out", root, len(unlisted),
                    list_path)
    uids = uids[:max_cases] if max_cases else uids
    keep = set(uids)
    by_scan: dict[str, list] = defaultdict(list)
    for n in all_annotations:
        by_scan[n.seriesuid].append((*n.center_mm, n.diameter_mm))
    ex_scan: dict[str, list] = defaultdict(list)
    for n in all_excluded:
        ex_scan[n.seriesuid].append((*n.center_mm, n.diameter_mm))
    neg_scan: dict[str, list] = defaultdict(list)
    for n in all_negatives:
        neg_scan[n.seriesuid].append(n.center_mm)
    cases = [Case(u, {"image": volumes[u]}, covariates={"nodules": by_scan.get(u, []), "excluded": ex_scan.get(u, []),
                                                        "negatives": neg_scan.get(u, [])})
             for u in uids]
    return DetectionData(source=str(root), cases=cases,
                         annotations=[n for n in all_annotations if n.seriesuid in keep],
                         excluded=[n for n in all_excluded if n.seriesuid in keep], not_on_disk=not_on_disk,
                         unlisted=unlisted,
                         files={"annotations": str(ann_path), "excluded": str(exc_path) if exc_path else None,
                                "seriesuids": str(list_path) if list_path else None,
                                "negatives": str(neg_path) if neg_path else None},
                         negatives=[n for n in all_negatives if n.seriesuid in keep])


def open_config_data(cfg: Any, **override: Any) -> DetectionData:
    """:func:`open_detection_data` of a data config (a :class:`DetectionDataConfig`, or a plain
    :class:`~medsight.config.DataConfig` without the detection keys); ``override`` wins over it."""
    opts = {"annotations": getattr(cfg, "annotations", None), "excluded": getattr(cfg, "excluded", None),
            "negatives": getattr(cfg, "negatives", None),
            "seriesuids": getattr(cfg, "seriesuids", None), "max_cases": getattr(cfg, "max_cases", None),
            "missing": getattr(cfg, "missing_scans", "skip")}
    opts.update({k: v for k, v in override.items() if v is not None})
    return open_detection_data(cfg.source, **opts)
