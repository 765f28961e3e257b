"""Labelled image collections for classification, from any of the supported layouts.

* MedMNIST ``.npz`` (official splits kept);
* a folder of classes, ``root/<class>/*.png|jpg|dcm|nii...``, optionally under
  ``root/train``, ``root/val``, ``root/test`` (as Keras' ``flow_from_directory``);
* a CSV manifest with columns ``path,label[,split][,time]`` (multi-label: labels joined by ``|``);
  any other column is a covariate of the case.

Every layout yields :class:`~medsight.data.case.Case` objects (role ``image``, the class index
or multi-hot vector as ``label``). Files are listed with :func:`medsight.io.discovery.list_files`,
manifests read with :func:`medsight.data.tables.read_manifest`, and a source without splits gets
the seeded stratified split of :func:`medsight.data.splits.assign_splits` (scheme ``sklearn``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.config import DataConfig
from medsight.data.case import Case
from medsight.data.splits import SPLITS, assign_splits, split_value
from medsight.data.tables import TIME_COLUMN, read_manifest, resolve_path, row_covariates
from medsight.errors import DataError
from medsight.io.discovery import list_files

__all__ = ["Sample", "ClassificationData", "open_classification_data", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", ".npy", ".bmp")

#: A labelled image is a :class:`Case` (kept as a name for callers of the first API).
Sample = Case


@dataclass
class ClassificationData:
    """Cases with their labels and splits.

    Attributes:
        samples: the cases; a case's ``id`` is its file path (or ``file.npz#split/index``).
        labels: class (or label) names; a case's label is an index into it, or a multi-hot
            vector when ``multilabel``.
        spatial_dims: 2 or 3 (3 for MedMNIST 3D and volumes).
        fingerprint: what the data was (source, checksum, counts), saved with the model.
    """

    samples: list[Case]
    labels: list[str]
    multilabel: bool
    spatial_dims: int
    source: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def cases(self) -> list[Case]:
        """The cases (the same list as ``samples``)."""
        return self.samples

    def split(self, name: str) -> list[Case]:
        if name not in SPLITS:
            raise DataError(f"split must be one of train, val, test; got {name!r}")
        return [s for s in self.samples if s.split == name]

    def targets(self, samples: list[Case]) -> np.ndarray:
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


def open_classification_data(cfg: DataConfig | str, *, require: tuple[str, ...] = ("train", "val")
                             ) -> ClassificationData:
    """Open a labelled collection described by ``cfg`` (or a bare source path).

    Args:
        require: the splits that must hold cases (training needs train and val; evaluating a
            model on a site's own test list needs only that split).

    Raises:
        DataError: missing source, empty class folders, labels out of range, bad manifest, or
            a required split that is empty.
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
    record = assign_splits(data.samples, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           seed=cfg.split_seed, scheme="sklearn", fill="unassigned", source=cfg.source,
                           stratify=None if data.multilabel else (lambda c: c.label))
    if record is not None:
        data.fingerprint["split"] = record
    for split in require:
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
    samples: list[Case] = []
    max_label, min_label = -1, 0
    for split, x in z["images"].items():
        y = z["labels"][split]
        if not multilabel and y.ndim == 2:
            multilabel = y.shape[1] > 1
        if y.size:
            max_label, min_label = max(max_label, int(y.max())), min(min_label, int(y.min()))
        for i in range(len(x)):
            samples.append(Case(f"{path.name}#{split}/{i}", {"image": x[i]}, label=y[i] if multilabel else int(y[i]),
                                split=split))
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
    samples: list[Case] = []
    for split, base in layout:
        for name in labels:
            d = base / name
            if not d.is_dir():
                continue
            files = list_files(d, suffixes=IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"class folder {d} is empty: expected image files (png, jpg, dcm, nii)")
            samples += [Case(str(f), {"image": str(f)}, label=labels.index(name), split=split) for f in files]
    digest = hashlib.sha256("\n".join(f"{s.id}|{s.label}|{s.split}" for s in samples).encode()).hexdigest()
    fp = {"format": "folder", "source": str(root), "listing_sha256": digest}
    return ClassificationData(samples, list(labels), False, _guess_dims(samples), str(root), fp)


def _from_csv(cfg: DataConfig) -> ClassificationData:
    path = Path(cfg.source)
    table = read_manifest(path, required=("path", "label"), header="path,label[,split]")
    rows = [r for _, r in table.rows]
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
    for line, r in table.rows:
        p = resolve_path(path.parent, r["path"].strip(), where=f"{path}:{line}")
        split = split_value(r.get("split"), where=f"{path}:{line}")
        if multilabel:
            vec = np.zeros(len(labels), np.float32)
            for t in filter(None, r["label"].split("|")):
                vec[index(t.strip(), line)] = 1
            label: Any = vec
        else:
            if r["label"].strip() == "":
                raise DataError(f"{path}:{line}: empty label")
            label = index(r["label"].strip(), line)
        samples.append(Case(str(p), {"image": str(p)}, label=label, split=split, time=r.get(TIME_COLUMN),
                            covariates=row_covariates(r, known=("path", "label", "split"))))
    fp = {"format": "csv", "source": str(path), "sha256": table.sha256}
    return ClassificationData(samples, labels, multilabel, _guess_dims(samples), str(path), fp)


def _guess_dims(samples: list[Case]) -> int:
    volumetric = sum(1 for s in samples[:50] if s.id.lower().endswith((".nii", ".nii.gz")))
    return 3 if volumetric and volumetric == min(50, len(samples)) else 2
