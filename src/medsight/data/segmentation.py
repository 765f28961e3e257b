"""Labelled images for segmentation: Decathlon folders, image/mask folder pairs, CSV manifests.

Three layouts are read, all into the same :class:`SegmentationData`:

* **Decathlon** (``dataset.json`` + ``imagesTr/`` + ``labelsTr/``): the labelled cases are the
  ``training`` entries; label names come from ``labels`` (``{"0": "background", "1": ...}``,
  or nnU-Net v2's ``{"background": 0, ...}``); the modality from ``modality`` /
  ``channel_names``.
* **Folder pairs**: ``root/images/`` and ``root/labels/`` (or ``masks/``, or ``imagesTr/`` and
  ``labelsTr/`` without a ``dataset.json``); an image and its mask share a case id (the file
  name without extension; a mask may add ``_seg``, ``_mask`` or ``_label``).
* **CSV manifest** with a header ``image,label[,split][,id][,time]``; relative paths are relative
  to the CSV's folder; any other column is a covariate of the case.

Every layout yields :class:`~medsight.data.case.Case` objects: the image file (or DICOM folder)
in role ``image``, the label file as ``mask`` (a path: nothing is read until a case is). Files
are listed with :func:`medsight.io.discovery.list_files`, manifests read with
:func:`medsight.data.tables.read_manifest`, and splits come from
:func:`medsight.data.splits.assign_splits` (a split file, the CSV ``split`` column, or the seeded
``permutation`` scheme).

A case is read with :func:`read_case`, which checks what a training run would otherwise trip
over later and names the case in every error: image and mask of different shapes or geometry,
mask values that are not declared labels, a missing mask file. Masks are cast to integers
(some Decathlon masks are stored as float32).

Example:
    >>> data = open_segmentation_data("../shared/data/msd_hippocampus")   # doctest: +SKIP
    >>> image, mask = read_case(data.cases[0], data.labels)               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.config import DataConfig
from medsight.data import splits as _splits
from medsight.data.case import Case
from medsight.data.splits import SPLITS, split_value
from medsight.data.tables import TIME_COLUMN, read_manifest, resolve_path, row_covariates
from medsight.errors import DataError, GeometryError, MedSightError
from medsight.io.discovery import list_files
from medsight.io.image import Image

__all__ = ["SegCase", "SegmentationData", "open_segmentation_data", "read_case", "read_cases", "check_cases",
           "iter_cases", "read_mask", "case_id",
           "parse_label_names", "modality_code", "SPLITS"]

log = logging.getLogger(__name__)

_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy", ".npz", ".dcm", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_MASK_SUFFIXES = ("_seg", "_mask", "_label", "_labels", "_gt")
_PAIR_FOLDERS = (("images", "labels"), ("images", "masks"), ("imagesTr", "labelsTr"), ("image", "label"))


def SegCase(id: str, image: str | Path, label: str | Path | None, split: str | None = None, *,  # noqa: N802
            covariates: dict[str, Any] | None = None, time: Any = None) -> Case:
    """A segmentation :class:`Case`: an image (file or DICOM folder) in role ``image`` and its
    label file as ``mask`` (None when unlabelled)."""
    return Case(id, {"image": str(image)}, mask=None if label is None else str(label), split=split,
                covariates=covariates or {}, time=time)


@dataclass
class SegmentationData:
    """Cases with their label names and splits.

    Attributes:
        cases: every case the source lists, in a stable (sorted) order.
        labels: label value → name, background (0) included.
        modality: DICOM modality code of the images ("MR", "CT", ... or "OT").
        channels: a name per image channel (the Decathlon ``modality`` entries).
        source: the folder or CSV this came from.
        layout: ``decathlon``, ``folder`` or ``csv``.
        fingerprint: what the data was (layout, listing checksum, counts), saved with models.
    """

    cases: list[Case]
    labels: dict[int, str]
    modality: str
    channels: list[str]
    source: str
    layout: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str | None) -> list[Case]:
        """The cases of split ``name`` (``None`` or ``"all"``: every case)."""
        if name in (None, "all"):
            return list(self.cases)
        if name not in SPLITS:
            raise DataError(f"split must be one of train, val, test or all; got {name!r}")
        return [c for c in self.cases if c.split == name]

    @property
    def foreground(self) -> dict[int, str]:
        """The labels without background (value 0)."""
        return {v: n for v, n in self.labels.items() if v != 0}


# -- names and codes ------------------------------------------------------------------------------
def case_id(path: str | Path) -> str:
    """A case's id: the file name without its image extension (``hippocampus_001``)."""
    name = Path(path).name
    low = name.lower()
    for suf in _VOLUME_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def _strip_mask_suffix(cid: str) -> str:
    for suf in _MASK_SUFFIXES:
        if cid.lower().endswith(suf):
            return cid[: -len(suf)]
    return cid


def modality_code(names: Sequence[str]) -> str:
    """The DICOM modality code for Decathlon channel names (``MRI``, ``T1w``, ``FLAIR`` → MR)."""
    codes = set()
    for n in names:
        u = str(n).upper()
        if u == "CT" or u.startswith("CT"):
            codes.add("CT")
        elif u in ("MR", "MRI", "ADC", "DWI", "FLAIR", "PD", "SWI") or u.startswith(("T1", "T2", "MR")):
            codes.add("MR")
        elif u in ("US", "ULTRASOUND"):
            codes.add("US")
        elif u in ("PET", "PT"):
            codes.add("PT")
        else:
            codes.add("OT")
    return codes.pop() if len(codes) == 1 else "OT"


def parse_label_names(raw: Any, *, where: str) -> dict[int, str]:
    """Label value → name from a Decathlon ``labels`` entry or a list of names.

    Accepts ``{"0": "background", "1": "tumour"}`` (MSD), ``{"background": 0, "tumour": 1}``
    (nnU-Net v2) and ``["background", "tumour"]`` (values 0, 1, ...).

    Raises:
        DataError: region labels (lists of values), non-integer values, no background.
    """
    out: dict[int, str] = {}
    if isinstance(raw, (list, tuple)):
        out = {i: str(n) for i, n in enumerate(raw)}
    elif isinstance(raw, Mapping) and raw:
        if all(re.fullmatch(r"-?\d+", str(k).strip()) for k in raw):
            out = {int(str(k).strip()): str(v) for k, v in raw.items()}
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
            out = {int(v): str(k) for k, v in raw.items()}
        else:
            bad = next(v for v in raw.values() if not (isinstance(v, int) and not isinstance(v, bool)))
            raise DataError(f"{where}: labels must map integer values to names (or names to integers); found "
                            f"{bad!r} (region labels are not supported)")
    else:
        raise DataError(f"{where}: expected label names as a mapping or a list; got {raw!r}")
    if any(v < 0 for v in out):
        raise DataError(f"{where}: label values must be >= 0; got {sorted(out)}")
    if 0 not in out:
        raise DataError(f"{where}: label 0 (background) must be declared; got values {sorted(out)}")
    if len(out) < 2:
        raise DataError(f"{where}: expected background and at least one structure; got {out}")
    return dict(sorted(out.items()))


# -- layouts --------------------------------------------------------------------------------------
def _detect_layout(source: Path) -> str:
    if source.is_dir():
        if (source / "dataset.json").is_file():
            return "decathlon"
        if any((source / a).is_dir() and (source / b).is_dir() for a, b in _PAIR_FOLDERS):
            return "folder"
        raise DataError(f"{source}: expected a Decathlon folder (dataset.json, imagesTr/, labelsTr/) or image/mask "
                        "folder pairs (images/ and labels/); found neither")
    if source.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    if not source.exists():
        raise DataError(f"segmentation data not found: {source}")
    raise DataError(f"{source}: expected a Decathlon folder, image/mask folder pairs or a CSV manifest "
                    "(image,label[,split])")


def _resolve(root: Path, rel: str, where: str) -> Path:
    return resolve_path(root, rel, where=where, confine=True)


def _from_decathlon(root: Path) -> SegmentationData:
    where = str(root / "dataset.json")
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise DataError(f"{where}: expected a Decathlon dataset.json with 'labels' and 'training'")
    labels = parse_label_names(meta["labels"], where=where)
    channels_raw = meta.get("modality") or meta.get("channel_names") or {"0": "OT"}
    channels = [str(channels_raw[k]) for k in sorted(channels_raw, key=lambda k: int(k))] \
        if isinstance(channels_raw, dict) else [str(c) for c in channels_raw]
    entries = meta.get("training")
    cases: list[Case] = []
    if isinstance(entries, list) and entries:
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "image" not in e:
                raise DataError(f"{where}: training entry {i} must have 'image' and 'label'; got {e!r}")
            img = _resolve(root, str(e["image"]), where)
            lab = _resolve(root, str(e["label"]), where) if e.get("label") else None
            cases.append(SegCase(id=case_id(img), image=str(img), label=None if lab is None else str(lab)))
    elif (root / "imagesTr").is_dir():  # nnU-Net v2 style: no list, files by name
        return _from_folder(root, labels=labels, channels=channels, layout="decathlon")
    else:
        raise DataError(f"{where}: 'training' lists no cases")
    return SegmentationData(cases=cases, labels=labels, modality=modality_code(channels), channels=channels,
                            source=str(root), layout="decathlon")


def _list_volumes(folder: Path) -> list[Path]:
    return list_files(folder, suffixes=_VOLUME_SUFFIXES, recursive=False, extensionless=False, folders=True)


def _from_folder(root: Path, *, labels: dict[int, str], channels: list[str] | None = None,
                 layout: str = "folder") -> SegmentationData:
    img_dir = lab_dir = None
    for a, b in _PAIR_FOLDERS:
        if (root / a).is_dir() and (root / b).is_dir():
            img_dir, lab_dir = root / a, root / b
            break
    if img_dir is None or lab_dir is None:
        raise DataError(f"{root}: expected folders images/ and labels/ (or masks/) side by side")
    masks: dict[str, Path] = {}
    for p in _list_volumes(lab_dir):
        masks.setdefault(_strip_mask_suffix(case_id(p)), p)
    cases = []
    for p in _list_volumes(img_dir):
        cid = case_id(p)
        cid = re.sub(r"_0000$", "", cid)  # nnU-Net channel suffix
        m = masks.get(cid)
        # a missing mask is reported when the case is read, naming the file that was expected
        cases.append(SegCase(id=cid, image=str(p), label=str(m if m is not None else lab_dir / p.name)))
    if not cases:
        raise DataError(f"{img_dir}: no images found (expected NIfTI, NumPy, DICOM or PNG files)")
    channels = channels or ["OT"]
    return SegmentationData(cases=cases, labels=labels, modality=modality_code(channels), channels=channels,
                            source=str(root), layout=layout)


def _from_csv(path: Path, *, labels: dict[int, str]) -> SegmentationData:
    table = read_manifest(path, required=("image", "label"), header="image,label[,split]")
    cases, seen = [], set()
    for line, r in table.rows:
        where = f"{path}:{line}"
        img = (r.get("image") or "").strip()
        if not img:
            raise DataError(f"{where}: empty image path")
        split = split_value(r.get("split"), where=where)
        cid = (r.get("id") or "").strip() or case_id(img)
        if cid in seen:
            raise DataError(f"{where}: case id {cid!r} appears twice")
        seen.add(cid)
        lab = (r.get("label") or "").strip()
        cases.append(SegCase(cid, _resolve(path.parent, img, where), _resolve(path.parent, lab, where) if lab else None,
                             split=split, covariates=row_covariates(r, known=("image", "label", "split", "id")),
                             time=r.get(TIME_COLUMN)))
    return SegmentationData(cases=cases, labels=labels, modality="OT", channels=["OT"], source=str(path), layout="csv")


def open_segmentation_data(cfg: DataConfig | str | Path, *, labels: Any = None,
                           assign_splits: bool = True) -> SegmentationData:
    """Open segmentation data in any supported layout and assign its splits.

    Args:
        cfg: a :class:`~medsight.config.DataConfig` (``source``, ``labels``, ``split_file``,
            ``val_fraction``, ``test_fraction``, ``split_seed``) or a bare path.
        labels: label names for folder pairs and CSVs when ``cfg`` has none (a list indexed by
            value, or a value → name mapping); default ``["background", "foreground"]``.

    Splits: a ``split_file`` (JSON ``{"train": [ids], "val": [ids], "test": [ids]}``) wins;
    then a CSV ``split`` column; otherwise a seeded random split by ``val_fraction`` and
    ``test_fraction``. Cases without a split are kept (``split`` None) and only used when a
    caller asks for every case.

    Raises:
        DataError: unknown layout, bad dataset.json or manifest, a split file naming unknown
            cases.
    """
    if not isinstance(cfg, DataConfig):
        cfg = DataConfig(source=str(cfg))
    source = Path(cfg.source)
    layout = cfg.format if cfg.format not in ("auto", "medmnist") else _detect_layout(source)
    given = cfg.labels if cfg.labels is not None else labels
    names = parse_label_names(given, where=str(source)) if given is not None else {0: "background", 1: "foreground"}
    if layout == "decathlon":
        data = _from_decathlon(source)
        if cfg.labels is not None and [data.labels[k] for k in sorted(data.labels)] != list(cfg.labels):
            raise DataError(f"{source}: data.labels {list(cfg.labels)} differ from dataset.json's "
                            f"{list(data.labels.values())}")
    elif layout == "folder":
        data = _from_folder(source, labels=names)
    elif layout == "csv":
        data = _from_csv(source, labels=names)
    else:
        raise DataError(f"{source}: layout {layout!r} is not a segmentation layout (decathlon, folder, csv)")
    data.cases.sort(key=lambda c: c.id)
    ids = [c.id for c in data.cases]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"{source}: case ids must be unique; repeated: {dup}")
    if cfg.split_file or assign_splits:
        _splits.assign_splits(data.cases, split_file=cfg.split_file, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, seed=cfg.split_seed, scheme="permutation",
                              fill="none_assigned", source=data.source)
    listing = "\n".join(f"{c.id}\t{Path(c.path() or '').name}\t{_size(c.path())}\t{_size(c.mask_path)}"
                        for c in data.cases)
    data.fingerprint = {
        "layout": data.layout, "source": data.source, "n_cases": len(data.cases),
        "n": {s: len(data.split(s)) for s in SPLITS},
        "labels": {str(k): v for k, v in data.labels.items()}, "modality": data.modality, "channels": data.channels,
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }
    return data


def _size(path: str | None) -> int:
    try:
        return Path(path).stat().st_size if path else -1
    except OSError:
        return -1


# -- reading one case -----------------------------------------------------------------------------
def read_mask(path: str | Path | Image, labels: Mapping[int, str], *, case: str, binary_255: bool = False) -> Image:
    """Read a label mask and cast it to integers, refusing undeclared values.

    Args:
        path: the mask file (or a mask already read: only checked and cast).
        labels: the declared label values (→ names).
        case: the case id, named in every error.
        binary_255: read an 8-bit 0/255 mask as 0/1 (only for binary label sets).

    Returns:
        The mask as an Image of shape ``(1, *spatial)`` and dtype uint8 (uint16 when a value
        exceeds 255).

    Raises:
        DataError: missing file, several channels, non-integer or undeclared values.
    """
    from medsight.io import read

    if isinstance(path, Image):
        m, name = path, Path(path.source or "the mask").name
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"case {case}: label file is missing: expected {p}")
        try:
            m = read(p)
        except MedSightError as exc:
            raise DataError(f"case {case}: label file cannot be read ({exc})") from None
        name = p.name
    arr = m.array
    if arr.shape[0] != 1:
        raise DataError(f"case {case}: a label mask has one channel; {name} has {arr.shape[0]}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise DataError(f"case {case}: label holds NaN or infinite values")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            bad = np.unique(arr[rounded != arr])[:3]
            raise DataError(f"case {case}: label values must be integers; found {bad.tolist()}")
        arr = rounded
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.size and arr.min() < 0:
        raise DataError(f"case {case}: label values must be >= 0; found {int(arr.min())}")
    arr = arr.astype(np.int64, copy=False)
    present = np.flatnonzero(np.bincount(arr.ravel(), minlength=1)) if arr.size else np.zeros(0, int)
    allowed = set(int(v) for v in labels)
    if binary_255 and set(present.tolist()) <= {0, 255} and allowed == {0, 1}:
        arr = (arr == 255).astype(np.int64)
        present = np.array([v for v in (0, 1) if (arr == v).any()])
    unexpected = sorted(set(present.tolist()) - allowed)
    if unexpected:
        declared = ", ".join(f"{v} {n}" for v, n in sorted(labels.items()))
        raise DataError(f"case {case}: label values {unexpected[:10]} are not declared labels ({declared})")
    dtype = np.uint8 if max(allowed) <= 255 else np.uint16
    return m.with_array(arr.astype(dtype))


def read_case(case: Case, labels: Mapping[int, str]) -> tuple[Image, Image]:
    """Read a case's image and mask and check that they belong together.

    Returns:
        ``(image, mask)``: the image as read, and the mask (``(1, *spatial)``, uint8/uint16)
        on the same grid.

    Raises:
        DataError: no label, a missing or unreadable file, undeclared mask values.
        GeometryError: image and mask differ in shape, spacing, origin or direction.
    """

    if case.mask is None:
        raise DataError(f"case {case.id}: has no label file")
    try:
        image = case.image()
    except MedSightError as exc:
        raise DataError(f"case {case.id}: image cannot be read ({exc})") from None
    binary_255 = image.n_spatial == 2
    mask = read_mask(case.mask, labels, case=case.id, binary_255=binary_255)
    if image.shape != mask.shape:
        raise GeometryError(f"case {case.id}: image is {'x'.join(map(str, image.shape))} but its label is "
                            f"{'x'.join(map(str, mask.shape))}; they must have the same shape")
    if not image.same_geometry(mask):
        raise GeometryError(f"case {case.id}: image and label differ in geometry (spacing {_r(image.spacing)} vs "
                            f"{_r(mask.spacing)}, origin {_r(image.origin)} vs {_r(mask.origin)}); expected the same "
                            "voxel grid")
    return image, mask


def _r(v: Sequence[float]) -> list[float]:
    return [round(float(x), 3) for x in v]


def check_cases(cases: Sequence[Case], labels: Mapping[int, str], *,
                keep: bool = True) -> tuple[list[Case], list[dict[str, str]]]:
    """Read and check each case once (:func:`read_case`); a bad case is logged and listed, never fatal.

    Args:
        cases: the cases.
        labels: the declared label values.
        keep: return cases holding their image and checked mask in memory; otherwise the cases
            as given (paths), and nothing read is kept.

    Returns:
        ``(ok, bad)``: the readable cases, and ``{"input", "error"}`` of each other one.
    """
    ok: list[Case] = []
    bad: list[dict[str, str]] = []
    for c in cases:
        try:
            image, mask = read_case(c, labels)
        except MedSightError as exc:
            bad.append({"input": c.id, "error": str(exc)})
            continue
        ok.append(dataclasses.replace(c, images={**c.images, "image": image}, mask=mask) if keep else c)
    if bad:
        log.warning("%d of %d case(s) skipped; first: %s", len(bad), len(cases), bad[0]["error"])
    return ok, bad


def iter_cases(cases: Sequence[Case], labels: Mapping[int, str]) -> Iterator[tuple[Image, Image]]:
    """``(image, mask)`` per case (:func:`read_case`), read, or taken from memory, one at a time."""
    for c in cases:
        yield read_case(c, labels)


def read_cases(cases: Sequence[Case],
               labels: Mapping[int, str]) -> tuple[list[tuple[Case, Image, Image]], list[dict[str, str]]]:
    """Read and check cases (:func:`check_cases`), keeping what was read.

    Returns:
        ``(ok, bad)``: ``(case, image, mask)`` of each readable case, and ``{"input", "error"}``
        of each other one.
    """
    ok, bad = check_cases(cases, labels, keep=True)
    return [(c, c.image(), c.mask) for c in ok], bad
