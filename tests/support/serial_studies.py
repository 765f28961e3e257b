"""Synthetic serial studies for response tests: per study, an image series and a mask series
on the same slices (one StudyInstanceUID, one FrameOfReferenceUID), as TCIA's
Brain-Tumor-Progression stores them, with a chosen date, patient and orientation.

Positions follow the slice normal of the orientation (an oblique stack is written as a scanner
writes it: ImagePositionPatient steps along cross(row, column) by the slice spacing, and
SpacingBetweenSlices says the same), so the reader must use the projected step, not the z step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def oblique(degrees: float) -> tuple[float, ...]:
    """An orientation tilted by ``degrees`` about the left-right axis (like PGBM-001's)."""
    t = np.deg2rad(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))


def disc_mask(shape=(6, 64, 64), *, radius_px: float, centre=None, slices=(2, 3)) -> np.ndarray:
    """A mask (slices, rows, cols) holding a disc of ``radius_px`` pixels on the given slices."""
    mask = np.zeros(shape, np.uint16)
    cy, cx = centre or ((shape[1] - 1) / 2, (shape[2] - 1) / 2)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    disc = np.hypot(yy - cy, xx - cx) <= radius_px
    for z in slices:
        mask[z][disc] = 1
    return mask


def _series(folder: Path, volume: np.ndarray, *, sop_class: str, description: str, number: int, common: dict,
            iop, spacing, origin, mask_shift_mm: float = 0.0) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series_uid = generate_uid()
    row, col = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row, col)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(volume.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for kw, v in common.items():
            setattr(ds, kw, v)
        ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber = series_uid, description, number
        ds.Modality, ds.InstanceNumber = "MR", k + 1
        ds.ImageOrientationPatient = [float(v) for v in iop]
        position = np.asarray(origin, float) + normal * (k * spacing[0] + mask_shift_mm)
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness, ds.SpacingBetweenSlices = float(spacing[0]) * 0.75, float(spacing[0])
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.PixelData = np.ascontiguousarray(volume[k].astype(np.uint16)).tobytes()
        ds.save_as(folder / f"{k:06d}.dcm", enforce_file_format=True)


def write_study(folder: Path, mask: np.ndarray, *, date: str | None, time: str | None = "120000",
                patient_id: str | None = "SYN-1", patient_name: str = "Syn^Pat", iop=AXIAL,
                spacing=(5.0, 0.5, 0.5), origin=(-16.0, -16.0, 0.0), mask_description: str = "Mask_Tumor",
                with_image: bool = True, with_mask: bool = True, mask_shift_mm: float = 0.0,
                also_masks: tuple[str, ...] = ()) -> Path:
    """Write one study: ``T1post`` (unless ``with_image`` is False) and a mask series.

    Args:
        folder: the study folder (its name means nothing: the reader orders by date).
        mask: (slices, rows, cols) values {0, 1}; the image gets the same shape.
        date, time: StudyDate and StudyTime (None leaves them out).
        mask_shift_mm: moves the mask's slices along the normal (a mask off its image's slices).
        mask_description: the mask's SeriesDescription (anything not naming a mask: no mask).
        with_mask: write the mask series (False: only the image, for a SEG written afterwards).
        also_masks: descriptions of further mask series in the study (the same voxels, emptied).
    """
    from pydicom.uid import MRImageStorage, SecondaryCaptureImageStorage, generate_uid

    common = {"PatientName": patient_name, "PatientID": patient_id or "", "PatientBirthDate": "19600101",
              "PatientSex": "O", "StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
              "StudyDate": date or "", "StudyTime": time or "", "AccessionNumber": "A1", "StudyID": "1",
              "ReferringPhysicianName": ""}
    geometry = dict(iop=iop, spacing=spacing, origin=origin)
    if with_image:
        image = (100 + 500 * mask).astype(np.uint16)
        _series(folder / "11-T1post", image, sop_class=MRImageStorage, description="T1post", number=11,
                common=common, **geometry)
    if with_mask:
        _series(folder / "5000-Mask", mask, sop_class=SecondaryCaptureImageStorage, description=mask_description,
                number=5000, common=common, mask_shift_mm=mask_shift_mm, **geometry)
    for k, description in enumerate(also_masks, start=1):
        _series(folder / f"{5000 + k}-Mask", np.zeros_like(mask), sop_class=SecondaryCaptureImageStorage,
                description=description, number=5000 + k, common=common, **geometry)
    return folder
