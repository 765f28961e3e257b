"""Tiny synthetic segmentation data for the tests: NIfTI volumes with two touching blobs
(labels 1 and 2) on noise, in Decathlon, folder-pair and CSV layouts, and a DICOM series."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SHAPE = (16, 20, 16)


def blobs(rng: np.random.Generator, shape=SHAPE, spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32, label uint8)`` in array order (z, y, x): two spheres side by side along y."""
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3)
    r = 3.5
    a = ((zz - c[0]) ** 2 + (yy - c[1] + 3) ** 2 + (xx - c[2]) ** 2) < r ** 2
    b = ((zz - c[0]) ** 2 + (yy - c[1] - 3) ** 2 + (xx - c[2]) ** 2) < r ** 2
    lab = np.zeros(shape, np.uint8)
    lab[a] = 1
    lab[b & ~a] = 2
    img = rng.normal(100, 8, shape).astype(np.float32) + 80 * (lab == 1) + 160 * (lab == 2)
    return img, lab


def affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A NIfTI (x, y, z) affine for array-order spacing (z, y, x)."""
    a = np.eye(4)
    a[0, 0], a[1, 1], a[2, 2] = spacing[2], spacing[1], spacing[0]
    a[:3, 3] = origin
    return a


def save_nifti(path: Path, arr: np.ndarray, aff: np.ndarray | None = None) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.T), affine() if aff is None else aff), str(path))
    return path


def decathlon(root: Path, n: int = 10, *, seed: int = 0, labels=None) -> Path:
    """A Decathlon folder with ``n`` cases ``case_000`` ...; returns ``root``."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        img, lab = blobs(rng)
        save_nifti(root / "imagesTr" / f"case_{i:03d}.nii.gz", img)
        save_nifti(root / "labelsTr" / f"case_{i:03d}.nii.gz", lab)
        entries.append({"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"})
    meta = {"name": "blobs", "labels": labels or {"0": "background", "1": "Left", "2": "Right"},
            "modality": {"0": "MRI"}, "numTraining": n, "training": entries}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def tiny_run_config(data: Path) -> dict:
    """The config of a tiny 3D U-Net on a :func:`decathlon` folder of 12 cases (a few seconds on
    2 CPU cores): the session model of the segmentation tests, and the DDP segmentation test's."""
    return {
        "task": "segmentation", "name": "blobs-seg", "modalities": ["MR"],
        "data": {"source": str(data), "val_fraction": 0.17, "test_fraction": 0.17, "split_seed": 0},
        "model": {"name": "unet", "params": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}},
        "augmentation": "none",
        "train": {"epochs": 6, "lr": 0.01, "steps_per_epoch": 6, "batch_size": 2, "threads": 2},
        "segmentation": {"samples_per_volume": 1},
    }


def folder_pairs(root: Path, n: int = 4, *, seed: int = 1, mask_dir: str = "labels", suffix: str = "_seg") -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, lab = blobs(rng)
        save_nifti(root / "images" / f"p{i}.nii.gz", img)
        save_nifti(root / mask_dir / f"p{i}{suffix}.nii.gz", lab)
    return root


def manifest(root: Path, n: int = 4, *, seed: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img, lab = blobs(rng)
        save_nifti(root / "vol" / f"m{i}.nii.gz", img)
        save_nifti(root / "seg" / f"m{i}.nii.gz", lab)
        rows.append({"image": f"vol/m{i}.nii.gz", "label": f"seg/m{i}.nii.gz", "split": "test" if i == 0 else "train"})
    path = root / "cases.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    return path


def dicom_series(folder: Path, volume: np.ndarray, *, spacing=(1.0, 1.0, 1.0)) -> list[Path]:
    """Write ``volume`` (slices, rows, cols; int16) as an MR series with slice k at z = k * spacing[0]."""
    from support.series_dicom import write_series

    return write_series(folder, volume, modality="MR", spacing=spacing)
