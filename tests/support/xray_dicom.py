"""Real-data DICOM for service tests: chest X-rays made from PneumoniaMNIST test images.

Each image becomes a CR instance with the tags a modality writes (patient, study, series,
equipment, geometry, display), so the service sees what a PACS would send. The pixels are
the real, de-identified 28x28 PneumoniaMNIST test image (CC BY 4.0); the patient identity is
invented.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def xray_dataset(pixels: np.ndarray, *, patient_id: str, patient_name: str = "TEST^PATIENT", index: int = 0,
                 study_uid: str | None = None, series_uid: str | None = None, sop_uid: str | None = None,
                 study_date: str = "20240105", modality: str = "CR", body_part: str = "CHEST"):
    """A CR dataset (with file meta) holding ``pixels`` (uint8, rows x cols)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CR_STORAGE, sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID, ds.PatientName = patient_id, patient_name
    ds.PatientBirthDate, ds.PatientSex = "20190101", "F"
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.ContentDate, ds.ContentTime = study_date, "101500", study_date, \
        study_date, "101500"
    ds.AccessionNumber = f"ACC{index:06d}"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.StudyDescription, ds.SeriesDescription = "XR CHEST PA", "PA CHEST"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = modality, body_part, "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer, ds.InstitutionName = "PneumoniaMNIST (MedMNIST v2)", "MedSight test site"
    ds.DerivationDescription = f"PneumoniaMNIST test image {index}, 28x28, de-identified, CC BY 4.0"
    ds.BurnedInAnnotation = "NO"
    ds.ImagerPixelSpacing = [6.4, 6.4]  # a ~180 mm paediatric chest field over 28 pixels
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = pixels.tobytes()
    return ds


def pneumonia_test_images(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """The PneumoniaMNIST test split: images (N, 28, 28) uint8 and labels (N,)."""
    with np.load(npz) as z:
        return z["test_images"], z["test_labels"].reshape(-1)


def write_xray(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    """Write :func:`xray_dataset` as a Part 10 file; returns ``path``."""
    ds = xray_dataset(pixels, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
