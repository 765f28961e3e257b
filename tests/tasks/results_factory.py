"""One example of every result type, on a tiny synthetic CT series written with pydicom."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medsight.tasks.results import ClassificationResult, PredictionError, Provenance, SegmentationResult

#: What a result's CSV columns and writers read of a model.
MODEL = SimpleNamespace(name="m", version="1.0.0", labels=["background", "Anterior", "Posterior"],
                        manifest={"label_values": [0, 1, 2]})
CLASS_MODEL = SimpleNamespace(name="c", version="1.0.0", labels=["normal", "pneumonia"], manifest={})


def ct_series(folder: Path, n: int = 4, rows: int = 12, cols: int = 10) -> Path:
    """``n`` CT slices 2 mm apart in one study; returns the folder."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.StudyTime = "Syn^Pat", "SYN-1", "20200102", "101010"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "A1", "1", "Doc"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-10.0, -20.0, 2.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.8], 2.0
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = 15, 1, 1.0, -1024.0
        ds.PixelData = np.full((rows, cols), 1000 + k, np.int16).tobytes()
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def provenance(image=None) -> Provenance:
    return Provenance(model="m", model_version="1.0.0", weights_sha256="0" * 64, input_sha256="1" * 64,
                      series_uid=None if image is None else image.series_uid,
                      sop_uids=[] if image is None else list(image.sop_uids))


def segmentation(image) -> SegmentationResult:
    """A two-structure mask on ``image``'s grid."""
    values = np.zeros(image.shape, np.uint8)
    values[1:3, 2:6, 2:5] = 1
    values[1:2, 7:10, 5:8] = 2
    mask = image.with_array(values[None])
    voxel_ml = image.voxel_volume_mm3 / 1000
    return SegmentationResult(input=str(image.source or "case"), mask=mask, labels={1: "Anterior", 2: "Posterior"},
                              volumes_ml={"Anterior": float((values == 1).sum() * voxel_ml),
                                          "Posterior": float((values == 2).sum() * voxel_ml)},
                              provenance=provenance(image))


def examples(image) -> dict[type, list]:
    """Result type → example results (and the model their CSV columns are for)."""
    return {
        ClassificationResult: [ClassificationResult(input="a.png", probabilities={"normal": 0.2, "pneumonia": 0.8},
                                                    label="pneumonia", score=0.8, threshold=0.5, positive=True,
                                                    provenance=provenance(image))],
        SegmentationResult: [segmentation(image)],
        PredictionError: [PredictionError(input="bad.png", error="not an image", error_type="UnsupportedFormatError")],
    }


def model_for(result) -> SimpleNamespace:
    return CLASS_MODEL if isinstance(result, ClassificationResult) else MODEL
