"""What the task contract (test_task_contract.py) needs of each registered task: a tiny training
config on synthetic data it writes itself, the data to evaluate on, and images to predict.

A new task adds a function here and an entry in EXAMPLES; the contract fails for a registered
task without one. Keep each example to a second or two of training on 2 CPU cores.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.io.image import Image

sys.path.insert(0, str(Path(__file__).parent / "segmentation"))

import seg_factory  # noqa: E402


@dataclass
class TaskExample:
    """config: a training config (a dict, as a YAML file holds); data: what ``evaluate`` reads;
    images: inputs for ``infer``; evaluate: options for ``evaluate`` (e.g. fewer bootstrap rounds)."""

    config: dict[str, Any]
    data: Path
    images: list[Image]
    evaluate: dict[str, Any] = field(default_factory=dict)


def classification(root: Path) -> TaskExample:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 80, (60, 28, 28)).astype(np.uint8)
    y = (np.arange(60) % 2).astype(np.uint8)
    x[y == 1, 8:20, 8:20] += 150
    data = root / "tiny.npz"
    np.savez(data, train_images=x[:32], train_labels=y[:32], val_images=x[32:46], val_labels=y[32:46],
             test_images=x[46:], test_labels=y[46:])
    config = {"task": "classification", "name": "contract-xray", "modalities": ["CR", "DX"],
              "data": {"source": str(data), "labels": ["normal", "pneumonia"]},
              "model": {"name": "resnet-small", "params": {"width": 4}},
              "train": {"epochs": 1, "batch_size": 16, "lr": 0.01, "threads": 1},
              "evaluation": {"bootstrap": 100}}
    images = [Image(x[i][None].astype(np.float32), spacing=(0.2, 0.2), modality="CR", source=f"xray{i}.png")
              for i in (46, 47)]
    return TaskExample(config, data, images, evaluate={"n_boot": 100})


def segmentation(root: Path) -> TaskExample:
    data = seg_factory.decathlon(root / "dec", n=6)
    config = {"task": "segmentation", "name": "contract-blobs", "modalities": ["MR"],
              "data": {"source": str(data), "val_fraction": 0.17, "test_fraction": 0.17, "split_seed": 0},
              "model": {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
              "train": {"epochs": 1, "lr": 0.01, "steps_per_epoch": 2, "batch_size": 2, "threads": 1},
              "segmentation": {"samples_per_volume": 1}}
    rng = np.random.default_rng(5)
    img, _ = seg_factory.blobs(rng, shape=(12, 18, 14))  # a shape the model never saw
    images = [Image(img[None], spacing=(1.0, 1.2, 0.9), origin=(3.0, -4.0, 5.0), modality="MR", source="case.nii.gz")]
    return TaskExample(config, data, images)


def blob_size(root: Path) -> TaskExample:
    """The example plug-in task of docs/extending.md (tests/blobsize)."""
    from blobsize.data import blob_image, make_blobs

    data = make_blobs(root / "blobs", 40, seed=3)
    config = {"task": "blob-size", "name": "contract-blobs", "data": {"source": str(data)},
              "model": {"name": "resnet-small", "params": {"width": 4}}, "train": {"epochs": 1, "threads": 1}}
    rng = np.random.default_rng(4)
    images = [Image(blob_image(d, 32, rng)[None].astype(np.float32), spacing=(0.5, 0.5), source=f"blob{d}.png")
              for d in (6.0, 14.0)]
    return TaskExample(config, data, images, evaluate={"n_boot": 100})


def detection(root: Path) -> TaskExample:
    """Five small synthetic chest CTs (support/chest_ct.py); the images to infer are two scans the
    model never saw, one without nodules and one stored superior to inferior."""
    from medsight.data.synthetic_ct import make_chest_ct
    from support.chest_ct import SHAPE, synthetic_luna, tiny_config

    data = synthetic_luna(root / "luna", n=5, seed=700)
    config = tiny_config(data, name="contract-nodules")
    images = [make_chest_ct(900, shape_zyx=SHAPE, n_nodules=0)[0],
              make_chest_ct(901, shape_zyx=SHAPE, n_nodules=1, flip_z=True)[0]]
    return TaskExample(config, data, images, evaluate={"n_boot": 20})


def response(root: Path) -> TaskExample:
    """A small simulated cohort (synthetic), no covariates, so that images alone can be inferred."""
    from medsight.data.synthetic_cohort import simulate, write_cohort

    data = write_cohort(root / "cohort", 60, seed=1)
    config = {"task": "response", "name": "contract-response", "data": {"source": str(data)},
              "model": {"name": "resnet-small", "params": {"width": 4}},
              "response": {"covariates": [], "features": 4, "hidden": 4},
              "train": {"epochs": 1, "batch_size": 16, "threads": 1, "ensemble": 2}}
    images = [Image(p.image[None].astype(np.float32), spacing=(1.0, 1.0), source=f"{p.patient}.png")
              for p in simulate(3, seed=99)[:2]]
    return TaskExample(config, data, images, evaluate={"n_boot": 100})


EXAMPLES: dict[str, Callable[[Path], TaskExample]] = {"classification": classification, "segmentation": segmentation,
                                                      "blob-size": blob_size, "detection": detection,
                                                      "response": response}
