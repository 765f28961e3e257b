"""Tiny synthetic chest CTs for the detection tests: a LUNA16-style data set, a training config
that trains in seconds, and a probability "oracle" that stands in for a trained network.

A model trained for a few steps detects nothing useful, so tests that need real detections
replace the network's probability map (``medsight.tasks.detection.detect.nodule_probability``)
with :func:`oracle`: balls of the given probability at the given world positions, per scan (a
scan is known by its origin). Everything after the map (candidates, measurements, lung filter,
threshold, results, writers, FROC) is the real code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Small scans: 40 slices of 96 x 96 (a ~60 mm field of view), lungs found.
SHAPE = (40, 96, 96)
#: Two nodules of 6-12 mm per scan.
OPTIONS: dict[str, Any] = {"shape_zyx": SHAPE, "n_nodules": 2, "diameter_range_mm": (6.0, 12.0)}


def synthetic_luna(folder: Path, n: int = 5, seed: int = 500, *, fmt: str = "nifti", **options: Any) -> Path:
    """``n`` scans and LUNA16 CSVs (:func:`medsight.data.synthetic_ct.write_dataset`)."""
    from medsight.data.synthetic_ct import write_dataset

    return write_dataset(folder, n=n, seed=seed, fmt=fmt, **{**OPTIONS, **options})


def tiny_config(data: Path, name: str = "tiny-nodules") -> dict[str, Any]:
    """A detection config that trains in a few seconds on 2 CPU cores (detects nothing useful)."""
    return {"task": "detection", "name": name,
            "data": {"source": str(data), "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0},
            "model": {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
            "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "threads": 1},
            "detection": {"spacing_mm": 2.0, "patch_size": [16, 16, 16], "infer_patch_size": [32, 32, 32],
                          "val_cases": 1}}


def truth_of(folder: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Series UID → its annotated nodules ``(x, y, z, diameter_mm)`` from ``annotations.csv``."""
    from medsight.metrics.luna16_csv import read_annotations

    out: dict[str, list] = {}
    for n in read_annotations(folder / "annotations.csv"):
        out.setdefault(n.seriesuid, []).append((*n.center_mm, n.diameter_mm))
    return out


def oracle(monkeypatch, scans: Sequence[tuple[Sequence[float], Sequence[Sequence[float]]]]) -> None:
    """Replace the network's probability map: for the scan whose origin is ``origin``, a ball of
    each ``(x, y, z, diameter_mm, p)`` (world LPS mm) where the probability is ``p``; elsewhere 0."""
    from medsight.tasks.detection import detect as detect_module

    table = [(np.asarray(o, float), [tuple(float(v) for v in b) for b in balls]) for o, balls in scans]

    def fake(forward, scan, settings):
        prob = np.zeros(scan.x.shape[1:], np.float32)
        balls = next((b for o, b in table if np.allclose(o, scan.source.origin, atol=1e-3)), [])
        grids = np.ogrid[tuple(slice(0, n) for n in prob.shape)]
        for x, y, z, d, peak in balls:
            c = scan.to_grid([[x, y, z]])[0]
            r = d / 2.0 / np.asarray(scan.grid.spacing, float)
            d2 = sum(((g - ca) / ra) ** 2 for g, ca, ra in zip(grids, c, r))
            prob = np.maximum(prob, np.where(d2 <= 1.0, peak, 0.0).astype(np.float32))
        return prob

    monkeypatch.setattr(detect_module, "nodule_probability", fake)


def with_threshold(model_dir: Path, out: Path, threshold: float) -> Path:
    """A copy of a saved model folder whose operating threshold is ``threshold``."""
    import json
    import shutil

    shutil.copytree(model_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["threshold"] = threshold
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
