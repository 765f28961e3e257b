"""A detection model for the output and service tests: the real task and saved-model format
with random weights, and a stand-in for the detector's candidate stage that puts nodules where
a test wants them (random weights find nothing useful; the shipped ``lung-nodule-ct`` is what
finds real nodules)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: nodules a fake detector reports: (slice, row, column) voxel centre, diameter mm, type, score
BIG_AND_SMALL = (((8.0, 300.0, 160.0), 23.0, "solid", 0.95), ((10.0, 200.0, 380.0), 4.5, "solid", 0.7))


def save_detection_model(folder: Path, *, name: str = "tiny-nodule", threshold: float = 0.5) -> str:
    """A detection model (3D U-Net, random weights) saved as a MedSight model folder."""
    import torch

    from medsight.models.registry import create_model
    from medsight.models.saved import SavedModel
    from medsight.tasks.detection.scan import preprocessing_spec

    params = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}
    torch.manual_seed(0)
    net = create_model("unet", spatial_dims=3, in_channels=1, num_classes=2, **params)
    manifest = {"name": name, "version": "0.1.0", "task": "detection",
                "architecture": {"name": "unet", "params": params, "spatial_dims": 3, "in_channels": 1,
                                 "num_classes": 2},
                "preprocessing": preprocessing_spec(2.0, (-1000.0, 400.0)),
                "detection": {"patch_size": [32, 32, 32], "hu_window": [-1000.0, 400.0]},
                "modalities": ["CT"], "labels": ["background", "nodule"], "threshold": threshold}
    SavedModel(network=net, manifest=manifest).save(folder)
    return str(folder)


def fixed_detections(nodules: Sequence[tuple[Sequence[float], float, str, float]] = BIG_AND_SMALL) -> Any:
    """A stand-in for :func:`medsight.tasks.detection.detect.detect` that reports ``nodules``
    (voxel centre in the input's array, diameter, type, score), measured in the scan's own
    geometry and categorised by the Lung-RADS table, whatever the network says."""
    from medsight.metrics.lungrads import lung_rads_category
    from medsight.tasks.detection.detect import Detected

    def detect(forward: Any, scan: Any, settings: Any) -> tuple[list[Any], np.ndarray]:
        out = []
        for voxel, d, kind, score in nodules:
            world = scan.source.index_to_world(np.asarray([voxel], float))[0]
            out.append(Detected(center_mm=[round(float(t), 3) for t in world], center_voxel=list(voxel),
                                grid_index=(0.0, 0.0, 0.0), score=score, diameter_mm=d,
                                volume_ml=round(np.pi / 6 * d**3 / 1000, 5), type=kind,
                                solid_diameter_mm=d if kind == "solid" else 0.0,
                                category=lung_rads_category(kind, d), size_mm=[d, d, d], inside_lungs=True))
        return out, np.zeros((1, 1, 1), np.float32)

    return detect
