"""Labelled image collections for classification, from any of the supported layouts.

* MedMNIST ``.npz`` (official splits kept);
* a folder of classes, ``root/<class>/*.png|jpg|dcm|nii...``, optionally under
  ``root/train``, ``root/val``, ``root/test`` (as Keras' ``flow_from_directory``);
* a CSV manifest with columns ``path,label[,split]`` (multi-label: labels joined by ``|``).

When the source has no split, a seeded stratified train/val/test split is made.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.config import DataConfig
from medsight.errors import DataError
from medsight.io.image import Image

__all__ = ["Sample", "ClassificationData", "open_classification_data", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", ".npy", ".bmp")
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    """One labelled image: a file, or an array held in memory (MedMNIST)."""

    key: str
    label: Any
    split: str | None = None
    array: np.ndarray | None = None

    def image(self) -> Image:
        if self.array is not None:
            arr = self.array
            if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (3, 4):  # (H, W, C) colour
                arr = np.moveaxis(arr, -1, 0)
            elif arr.ndim in (2, 3):
                arr = arr[None]
            return Image(array=arr, spacing=(1.0,) * (arr.ndim - 1), source=self.key, meta={"spacing_known": False})
        from medsight.io import read

        return read(self.key)


@dataclass
class ClassificationData:
    """Samples with their labels and splits.

    Attributes:
        labels: class (or label) names; a sample's label is an index into it, or a multi-hot
            vector when ``multilabel``.
        spatial_dims: 2 or 3 (3 for MedMNIST 3D and volumes).
        fingerprint: what the data was (source, checksum, counts), saved with the model.
    """

    samples: list[Sample]
    labels: list[str]
    multilabel: bool
    spatial_dims: int
    source: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise DataError(f"split must be one of train, val, test; got {name!r}")
        return [s for s in self.samples if s.split == name]

    def targets(self, samples: list[Sample]) -> np.ndarray:
        if self.multilabel:
            return np.stack([np.asarray(s.label, dtype=np.float32) for s in samples])
        return np.array([int(s.label) for s in samples], dtype=np.int64)

    def class_counts(self, split: str) -> list[int]:
        y = self.targets(self.split(split))
        if self.multilabel:
            return [int(v) for v in y.sum(0)]
        return [int(v) for v in np.bincount(y, minlength=len(self.labels))]


def _detect_format(source: str) -> str:
    if source.startswith("medmnist:") or source.lower().endswith(".npz"):
        return "medmnist"
    p = Path(source)
    if p.is_dir():
        return "decathlon" if (p / "dataset.json").is_file() else "folder"
    if p.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    if not p.exists():
        raise DataError(f"data source not found: {source}")
    raise DataError(f"cannot tell the layout of {source}: expected a MedMNIST .npz, a class folder or a .csv manifest")


def open_classification_data(cfg: DataConfig | str) -> ClassificationData:
    """Open a labelled collection described by ``cfg`` (or a bare source path).

    Raises:
        DataError: missing source, empty class folders, labels out of range, bad manifest.
    """
    if isinstance(cfg, str):
        cfg = DataConfig(source=cfg)
    fmt = cfg.format if cfg.format != "auto" else _detect_format(cfg.source)
    if fmt == "medmnist":
        data = _from_medmnist(cfg)
    elif fmt == "folder":
        data = _from_folder(cfg)
    elif fmt == "csv":
        data = _from_csv(cfg)
    else:
        raise DataError(f"{cfg.source}: a {fmt} layout holds segmentation data, not classification labels")
    if any(s.split is None for s in data.samples):
        _assign_splits(data, cfg)
    for split in ("train", "val"):
        if not data.split(split):
            raise DataError(f"{cfg.source}: the {split} split is empty")
    data.fingerprint.update({
        "n": {s: len(data.split(s)) for s in SPLITS},
        "class_counts": {s: data.class_counts(s) for s in SPLITS if data.split(s)},
        "labels": data.labels,
    })
    return data


def _check_label_names(cfg: DataConfig, n_found: int, default: list[str]) -> list[str]:
    labels = cfg.labels or default
    if len(labels) < n_found:
        raise DataError(f"{cfg.source}: labels go up to {n_found - 1} but only {len(labels)} label names are given")
    return list(labels)


def _from_medmnist(cfg: DataConfig) -> ClassificationData:
    from medsight.data.medmnist import load_npz_splits, resolve_medmnist

    path = resolve_medmnist(cfg.source)
    z = load_npz_splits(path)
    info = z["info"]
    multilabel = bool(info and info["task"].startswith("multi-label"))
    samples: list[Sample] = []
    max_label, min_label = -1, 0
    for split, x in z["images"].items():
        y = z["labels"][split]
        if not multilabel and y.ndim == 2:
            multilabel = y.shape[1] > 1
        if y.size:
            max_label, min_label = max(max_label, int(y.max())), min(min_label, int(y.min()))
        for i in range(len(x)):
            samples.append(Sample(key=f"{path.name}#{split}/{i}", label=y[i] if multilabel else int(y[i]),
                                  split=split, array=x[i]))
    if min_label < 0:
        raise DataError(f"{path}: labels must be 0 or more; found {min_label}")
    if multilabel:
        n_labels = z["labels"]["train"].shape[1]
        labels = _check_label_names(cfg, n_labels, info["labels"] if info else [str(i) for i in range(n_labels)])
        if max_label > 1:
            raise DataError(f"{path}: multi-label targets must be 0/1; found {max_label}")
    else:
        default = info["labels"] if info else [str(i) for i in range(max_label + 1)]
        labels = _check_label_names(cfg, max_label + 1, default)
        if info and max_label >= len(info["labels"]):
            raise DataError(f"{path}: label {max_label} is out of range for {z['name']} "
                            f"(classes 0..{len(info['labels']) - 1})")
    first = next(iter(z["images"].values()))
    n_img_dims = first.ndim - 1
    channels_last = n_img_dims == 3 and first.shape[-1] in (3, 4)
    spatial_dims = 2 if (n_img_dims == 2 or channels_last) else 3
    fp = {"format": "medmnist", "source": str(path), "file": path.name, "md5": z["md5"],
          "official_md5": z["official"], "dataset": z["name"]}
    return ClassificationData(samples, labels, multilabel, spatial_dims, str(path), fp)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and (p.name.lower().endswith(IMAGE_SUFFIXES) or "." not in p.name))


def _from_folder(cfg: DataConfig) -> ClassificationData:
    root = Path(cfg.source)
    split_dirs = [d for d in SPLITS if (root / d).is_dir()]
    layout = [(s, root / s) for s in split_dirs] if split_dirs else [(None, root)]
    class_names: list[str] = []
    for _, base in layout:
        for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if d.name not in class_names:
                class_names.append(d.name)
    if not class_names:
        raise DataError(f"{root}: expected one sub-folder per class (root/<class>/*.png); found none")
    labels = cfg.labels or sorted(class_names)
    unknown = [c for c in class_names if c not in labels]
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not among the given labels {labels}")
    samples: list[Sample] = []
    for split, base in layout:
        for name in labels:
            d = base / name
            if not d.is_dir():
                continue
            files = _list_images(d)
            if not files:
                raise DataError(f"class folder {d} is empty: expected image files (png, jpg, dcm, nii)")
            samples += [Sample(key=str(f), label=labels.index(name), split=split) for f in files]
    digest = hashlib.sha256("\n".join(f"{s.key}|{s.label}|{s.split}" for s in samples).encode()).hexdigest()
    fp = {"format": "folder", "source": str(root), "listing_sha256": digest}
    return ClassificationData(samples, list(labels), False, _guess_dims(samples), str(root), fp)


def _from_csv(cfg: DataConfig) -> ClassificationData:
    path = Path(cfg.source)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read manifest ({exc})") from None
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix == ".tsv" else ","))
    if not rows:
        raise DataError(f"{path}: manifest is empty; expected a header 'path,label[,split]' and rows")
    cols = set(rows[0])
    if not {"path", "label"} <= cols:
        raise DataError(f"{path}: manifest needs columns 'path' and 'label'; found {sorted(cols)}")
    raw = [r["label"].strip() for r in rows]
    multilabel = any("|" in v for v in raw)
    tokens = sorted({t for v in raw for t in (v.split("|") if multilabel else [v]) if t != ""})
    if cfg.labels:
        labels = list(cfg.labels)
    elif all(t.lstrip("-").isdigit() for t in tokens):
        labels = [str(i) for i in range(max(int(t) for t in tokens) + 1)]
    else:
        labels = tokens

    def index(tok: str, line: int) -> int:
        if tok in labels:
            return labels.index(tok)
        if tok.lstrip("-").isdigit():
            i = int(tok)
            if 0 <= i < len(labels):
                return i
        raise DataError(f"{path}:{line}: label {tok!r} is out of range (known labels: {labels})")

    samples = []
    for line, r in enumerate(rows, start=2):
        p = Path(r["path"].strip())
        if not p.is_absolute():
            p = path.parent / p
        split = (r.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            raise DataError(f"{path}:{line}: split must be train, val or test; got {split!r}")
        if multilabel:
            vec = np.zeros(len(labels), np.float32)
            for t in filter(None, r["label"].split("|")):
                vec[index(t.strip(), line)] = 1
            label: Any = vec
        else:
            if r["label"].strip() == "":
                raise DataError(f"{path}:{line}: empty label")
            label = index(r["label"].strip(), line)
        samples.append(Sample(key=str(p), label=label, split=split))
    fp = {"format": "csv", "source": str(path), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return ClassificationData(samples, labels, multilabel, _guess_dims(samples), str(path), fp)


def _guess_dims(samples: list[Sample]) -> int:
    volumetric = sum(1 for s in samples[:50] if s.key.lower().endswith((".nii", ".nii.gz")))
    return 3 if volumetric and volumetric == min(50, len(samples)) else 2


def _assign_splits(data: ClassificationData, cfg: DataConfig) -> None:
    """Seeded stratified split of the samples that have none."""
    from sklearn.model_selection import train_test_split

    todo = [s for s in data.samples if s.split is None]
    strat = None if data.multilabel else [s.label for s in todo]
    if strat is not None and min(Counter(strat).values()) < 3:
        strat = None  # too few of a class to stratify
    idx = np.arange(len(todo))
    test_n = cfg.test_fraction
    if test_n > 0:
        rest, test = train_test_split(idx, test_size=test_n, random_state=cfg.split_seed,
                                      stratify=None if strat is None else [strat[i] for i in idx])
    else:
        rest, test = idx, np.array([], int)
    val_share = cfg.val_fraction / (1 - test_n)
    train, val = train_test_split(rest, test_size=val_share, random_state=cfg.split_seed,
                                  stratify=None if strat is None else [strat[i] for i in rest])
    for name, ids in (("train", train), ("val", val), ("test", test)):
        for i in ids:
            todo[i].split = name
    data.fingerprint["split"] = {"kind": "stratified" if strat is not None else "random", "seed": cfg.split_seed,
                                 "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction}
