"""Fixtures of the segmentation tests: tiny synthetic datasets and one model trained on them
once per session (a few seconds on 2 CPU cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import seg_factory  # noqa: E402


@pytest.fixture
def tiny_decathlon(tmp_path):
    return seg_factory.decathlon(tmp_path / "dec", n=6)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(model_dir, data_dir, run_dir)`` of a tiny 3D U-Net trained on 12 synthetic cases."""
    from medsight.api import train
    from medsight.config import config_from_dict, save_config

    root = tmp_path_factory.mktemp("segrun")
    data = seg_factory.decathlon(root / "data", n=12)
    cfg = config_from_dict(seg_factory.tiny_run_config(data))
    path = root / "config.yaml"
    save_config(cfg, path)
    run = root / "run"
    train(path, run_dir=run)
    return run / "model", data, run
