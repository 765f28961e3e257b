"""Real-data DICOM for service tests: an MR series made from one MSD hippocampus case.

The NIfTI volume (read with :func:`medsight.io.read`, so its geometry is in DICOM LPS) becomes
one MR Image Storage instance per slice, with the geometry a scanner writes:
ImagePositionPatient of each slice, ImageOrientationPatient, PixelSpacing, SliceThickness and
SpacingBetweenSlices, one FrameOfReferenceUID, one StudyInstanceUID and SeriesInstanceUID, and
fresh UIDs. Reading the folder back with :func:`medsight.io.read` gives the case's voxels on
the case's grid. Float volumes are stored as unsigned 16-bit integers with a RescaleSlope, so
the values read back differ from the NIfTI's by at most half a slope step.

The pixels are the real Medical Segmentation Decathlon Task04 image (CC BY-SA 4.0); the
patient identity is invented.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support.data import shared

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
HIPPOCAMPUS = "msd_hippocampus"
#: label value → name in MSD Task04's dataset.json
HIPPOCAMPUS_LABELS = {1: "Anterior", 2: "Posterior"}


def hippocampus_case(case_id: str) -> tuple[Path, Path]:
    """Image and label NIfTI paths of one MSD hippocampus case (the test skips when absent)."""
    root = shared(HIPPOCAMPUS)
    image, label = root / "imagesTr" / f"{case_id}.nii.gz", root / "labelsTr" / f"{case_id}.nii.gz"
    if not image.is_file() or not label.is_file():
        import pytest

        pytest.skip(f"real data not available: hippocampus case {case_id} is absent under {root}")
    return image, label


def reference_volumes_ml(label_path: Path) -> dict[str, float]:
    """Volume in mL of each labelled structure of a reference label NIfTI (voxel volume from
    its header's spacing)."""
    import nibabel as nib

    img = nib.load(str(label_path))
    labels = np.asarray(img.dataobj)
    voxel_ml = float(np.prod([float(z) for z in img.header.get_zooms()[:3]])) / 1000.0
    return {name: float(np.count_nonzero(labels == value)) * voxel_ml for value, name in HIPPOCAMPUS_LABELS.items()}


def write_mr_series(nifti: Path, folder: Path, *, patient_id: str, patient_name: str = "HIPPO^TEST",
                    study_date: str = "20240105", series_description: str = "T1 HIPPOCAMPUS CROP",
                    body_part: str = "HEAD", study_uid: str | None = None) -> tuple[list[Path], dict[str, str]]:
    """Write a NIfTI volume as an MR series, one file per slice (``folder/NNN.dcm``).

    Returns:
        The files in slice order, and the series' UIDs (``study``, ``series``, ``frame``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    import medsight.io

    image = medsight.io.read(nifti)
    volume = image.array[0]
    direction = np.asarray(image.direction, float)
    spacing = [float(s) for s in image.spacing]
    origin = np.asarray(image.origin, float)
    if volume.dtype.kind == "f" or volume.max() > 65535 or volume.min() < 0:
        lo, hi = float(volume.min()), float(volume.max())
        slope = (hi - lo) / 65535.0 if hi > lo else 1.0
        stored = np.round((volume - lo) / slope).astype(np.uint16)
        rescale: tuple[float, float] | None = (slope, lo)
    else:
        stored, rescale = volume.astype(np.uint16), None
    uids = {"study": study_uid or generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    # DICOM's row cosine is the direction along a row (array axis 2), the column cosine along a
    # column (array axis 1); their cross product is the slice normal (array axis 0 here)
    iop = [*direction[:, 2].tolist(), *direction[:, 1].tolist()]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(volume.shape[0]):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MR_STORAGE, sop
        meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_STORAGE, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids["study"], uids["series"], uids["frame"]
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, patient_name, "19600101", "M"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "ACCHIPPO1", "1", ""
        ds.StudyDescription, ds.SeriesDescription = "MR BRAIN", series_description
        ds.Modality, ds.BodyPartExamined, ds.SeriesNumber, ds.InstanceNumber = "MR", body_part, 3, k + 1
        ds.Manufacturer, ds.InstitutionName = "MSD Task04 (Vanderbilt)", "MedSight test site"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.DerivationDescription = f"{nifti.name}, slice {k}, MSD Task04 hippocampus, CC BY-SA 4.0"
        ds.ImagePositionPatient = (origin + direction[:, 0] * spacing[0] * k).tolist()
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [spacing[1], spacing[2]]  # between rows, between columns
        ds.SliceThickness = ds.SpacingBetweenSlices = spacing[0]
        ds.SliceLocation = float(np.dot(ds.ImagePositionPatient, np.cross(direction[:, 2], direction[:, 1])))
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:.10g}"[:16], f"{rescale[1]:.10g}"[:16]
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths, uids
