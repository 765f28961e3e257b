"""Synthetic DICOM series for unit tests: a volume written one slice per file, with the
geometry a scanner writes (ImagePositionPatient per slice, orientation, pixel spacing, slice
thickness, one frame of reference) and an invented patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_series(folder: Path, volume: np.ndarray, *, modality: str = "MR", spacing=(1.0, 1.0, 1.0),
                 origin=(0.0, 0.0, 0.0), rescale_intercept: float | None = None) -> list[Path]:
    """Write ``volume`` (slices, rows, cols; stored as int16) as one series, slice ``k`` at
    ``origin + (0, 0, k * spacing[0])`` mm; returns the files in slice order.

    ``modality`` is ``"MR"`` or ``"CT"``; ``rescale_intercept`` adds RescaleSlope 1 and that
    intercept (CT stores HU + 1024 this way).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(volume.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = {"MR": MRImageStorage, "CT": CTImageStorage}[modality]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Syn^Pat", "SYN-1", "19600101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240101", "120000", "A1", "1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, k + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * spacing[0])]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0])
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        if rescale_intercept is not None:
            ds.RescaleSlope, ds.RescaleIntercept = 1.0, float(rescale_intercept)
        ds.PixelData = np.ascontiguousarray(volume[k].astype(np.int16)).tobytes()
        path = folder / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
