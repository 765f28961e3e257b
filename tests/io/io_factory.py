"""Tiny synthetic DICOM objects for the I/O tests, built with pydicom (no files from disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

STUDY = "1.2.826.0.1.3680043.8.498.1"
PATIENT_ID = "SYN-PAT-0042"
PATIENT_NAME = "Synthetic^Patient"


def make_slice(
    pixels: np.ndarray,
    *,
    z: float = 0.0,
    series_uid: str = "1.2.826.0.1.3680043.8.498.2",
    study_uid: str = STUDY,
    sop_uid: str | None = None,
    modality: str = "CT",
    iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    origin_xy: tuple[float, float] = (-10.0, -20.0),
    spacing: tuple[float, float] = (0.7, 0.8),
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    instance: int = 1,
    photometric: str = "MONOCHROME2",
    description: str = "synthetic",
) -> Dataset:
    """One single-frame image. Its position is ``origin_xy`` + ``z`` along the slice normal.

    Args:
        pixels: ``(rows, cols)`` stored values (uint8/uint16/int16) or ``(rows, cols, 3)`` uint8 RGB.
    """
    pixels = np.ascontiguousarray(pixels)
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    position = row * origin_xy[0] + col * origin_xy[1] + normal * z
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.StudyDate = "20200102"
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC123"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "Doctor^Who"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    if pixels.ndim == 3:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.PixelData = pixels.tobytes()
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp_volume(n: int, rows: int = 6, cols: int = 5) -> np.ndarray:
    """``(n, rows, cols)`` int16 whose slice k holds values 100*k + pixel index, so order shows."""
    base = np.arange(rows * cols, dtype=np.int16).reshape(rows, cols)
    return np.stack([base + np.int16(100 * k) for k in range(n)])


def write_series(folder: Path, volume: np.ndarray, *, step: float = 2.5, names=None, **kw) -> list[Path]:
    """Write ``volume`` slice by slice, slice k at ``z = k * step``; file names from ``names``."""
    series_uid = kw.pop("series_uid", generate_uid())
    paths = []
    for k in range(volume.shape[0]):
        name = names[k] if names is not None else f"{k:03d}.dcm"
        ds = make_slice(volume[k], z=k * step, series_uid=series_uid, instance=k + 1, **kw)
        paths.append(write(ds, folder / name))
    return paths


def read_back(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def series_dir(shared, sub: str) -> Path:
    """The only leaf folder holding .dcm files under a shared-data folder (one DICOM series)."""
    root = shared(sub)
    leaves = [p for p in [root, *root.rglob("*")] if p.is_dir() and any(f.suffix == ".dcm" for f in p.iterdir())]
    assert len(leaves) == 1, leaves
    return leaves[0]


def pgbm_series(shared, date: str, kind: str) -> Path:
    """A PGBM-001 series folder: ``date`` like "1991-11-19", ``kind`` like "T1post" or "MaskTumor"."""
    root = shared("brain_tumor_progression/PGBM-001") / date
    (match,) = [p for p in root.iterdir() if f"-{kind}-" in p.name]
    return match
