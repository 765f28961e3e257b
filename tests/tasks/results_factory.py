"""One example of every result type, on a tiny synthetic CT series written with pydicom."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from blobsize import BlobSizeResult
from medsight.tasks.detection import DetectionResult, NoduleFinding
from medsight.tasks.response import ResponseResult, recommend
from medsight.tasks.results import ClassificationResult, PredictionError, Provenance, SegmentationResult
from support.series_dicom import write_series

#: What a result's CSV columns and writers read of a model.
MODEL = SimpleNamespace(name="m", version="1.0.0", labels=["background", "Anterior", "Posterior"],
                        manifest={"label_values": [0, 1, 2]})
RESPONSE_MODEL = SimpleNamespace(name="r", version="1.0.0", labels=["standard", "targeted"],
                                 manifest={"response": {"treatments": ["standard", "targeted"]}})
CLASS_MODEL = SimpleNamespace(name="c", version="1.0.0", labels=["normal", "pneumonia"], manifest={})


def ct_series(folder: Path, n: int = 4, rows: int = 12, cols: int = 10) -> Path:
    """``n`` CT slices 2 mm apart in one study (slice k holds 1000 + k, i.e. k - 24 HU); returns the folder."""
    volume = np.stack([np.full((rows, cols), 1000 + k, np.int16) for k in range(n)])
    write_series(folder, volume, modality="CT", spacing=(2.0, 0.7, 0.8), origin=(-10.0, -20.0, 0.0),
                 rescale_intercept=-1024.0)
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


def detection(image) -> DetectionResult:
    """Two nodules on ``image`` (each with its crop) and the overlay of the top one's slice."""
    centre_voxel = [[2.0, 5.0, 4.0], [1.0, 8.0, 7.0]]
    nodules = []
    for i, (v, d, kind, cat) in enumerate(zip(centre_voxel, (9.5, 4.2), ("solid", "ground-glass"), ("4A", "2"))):
        world = image.affine @ [*v, 1.0]  # array index (slice, row, column) → LPS mm
        crop = np.zeros((8, 8, 3), np.uint8)
        crop[2:6, 2:6] = (255, 64, 64) if i == 0 else (255, 200, 0)
        nodules.append(NoduleFinding(lesion_id=str(i + 1), center_mm=[float(t) for t in world[:3]], center_voxel=v,
                                     diameter_mm=d, volume_ml=round(np.pi / 6 * d**3 / 1000, 5), score=0.9 - 0.3 * i,
                                     type=kind, solid_diameter_mm=d if kind == "solid" else 0.0, category=cat,
                                     size_mm=[d, d, d], crop=crop))
    overlay = np.zeros((*image.shape[-2:], 3), np.uint8)
    overlay[4:7, 3:6] = (255, 64, 64)
    z = 2
    return DetectionResult(input=str(image.source or "ct"), nodules=nodules, threshold=0.5, n_candidates=7,
                           lungs={"found": True, "volumes_ml": {"left": 1.0, "right": 1.1}, "reason": None},
                           provenance=provenance(image), overlay=overlay, overlay_slice=z,
                           overlay_source=image.meta["source_files"][z])


def response(image, members) -> ResponseResult:
    rec = recommend(np.array(members), ["standard", "targeted"], distance=1.5, ood_threshold=4.0)
    return ResponseResult(input="pt1.png", options=rec.options, status=rec.status, recommended=rec.recommended,
                          leading=rec.leading, margin=rec.margin, margin_sd=rec.margin_sd, distance=rec.distance,
                          reasons=rec.reasons, provenance=provenance(image), received="standard")


def examples(image) -> dict[type, list]:
    """Result type → example results (and the model their CSV columns are for)."""
    return {
        ClassificationResult: [ClassificationResult(input="a.png", probabilities={"normal": 0.2, "pneumonia": 0.8},
                                                    label="pneumonia", score=0.8, threshold=0.5, positive=True,
                                                    provenance=provenance(image))],
        SegmentationResult: [segmentation(image)],
        ResponseResult: [response(image, [[0.3, 0.8], [0.35, 0.75], [0.3, 0.82]]),
                         response(image, [[0.5, 0.52], [0.55, 0.5], [0.5, 0.5]])],
        BlobSizeResult: [BlobSizeResult(input="blob.png", diameter_mm=12.5, provenance=provenance(image))],
        PredictionError: [PredictionError(input="bad.png", error="not an image", error_type="UnsupportedFormatError")],
        DetectionResult: [detection(image), DetectionResult(input="empty-ct", nodules=[], threshold=0.5,
                                                            n_candidates=0, lungs={"found": False}, provenance=
                                                            provenance(image),
                                                            warnings=["1 missing slice(s) filled at indices [2]"])],
    }


def model_for(result) -> SimpleNamespace:
    if isinstance(result, ResponseResult):
        return RESPONSE_MODEL
    return CLASS_MODEL if isinstance(result, ClassificationResult) else MODEL
