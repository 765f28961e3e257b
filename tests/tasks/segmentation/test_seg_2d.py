"""2D segmentation: PNG image/mask folder pairs (8-bit 0/255 masks) through the same pipeline."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

import medsight
from medsight.api import Segmenter
from medsight.config import config_from_dict


def _disk_pairs(root, rng, n=10, size=32):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        c = rng.uniform(10, 22, 2)
        m = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) < 6 ** 2
        img = np.clip(rng.normal(60, 15, (size, size)) + 120 * m, 0, 255).astype(np.uint8)
        PILImage.fromarray(img).save(root / "images" / f"s{i:02d}.png")
        PILImage.fromarray((m * 255).astype(np.uint8)).save(root / "masks" / f"s{i:02d}.png")
    return root


def test_2d_png_pairs_train_evaluate_and_predict(tmp_path, rng):
    root = _disk_pairs(tmp_path / "pairs", rng)
    cfg = config_from_dict({
        "task": "segmentation", "name": "disk-2d",
        "data": {"source": str(root), "labels": ["background", "lesion"], "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"name": "unet", "params": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}},
        "train": {"epochs": 8, "lr": 0.01, "steps_per_epoch": 4, "batch_size": 4},
        "segmentation": {"samples_per_volume": 2},
    })
    seg = Segmenter().fit(cfg, run_dir=tmp_path / "run")
    m = seg.manifest
    assert m["architecture"]["spatial_dims"] == 2
    assert all(p % 4 == 0 and 32 <= p < 36 for p in m["inference"]["patch_size"])  # the images, divisible by 4
    ev = seg.evaluate(root)  # every labelled case; masks stored as 0/255 are read as 0/1
    assert ev["n"] == 10 and ev["dice"]["lesion"] > 0.8, ev["dice"]
    (res,) = medsight.load(tmp_path / "run" / "model").predict(root / "images" / "s00.png")
    assert res.mask.shape == (32, 32) and res.volumes_ml["lesion"] > 0
