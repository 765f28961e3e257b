"""DDP training launched by torchrun (gloo, CPU): two processes train the same model as one
process does, within a stated tolerance; a run stopped part-way resumes exactly under DDP; two
"machines" (two torchrun nodes on 127.0.0.1) train together. Real data: a 1,000-image slice of
PneumoniaMNIST's training split, its official validation and test images (first 200 each)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.models.weights import load_weights

#: |test AUC (2 processes) - test AUC (1 process)|: the two runs see the samples in another order
#: (each process shuffles its share) and batch norm sees half a batch, so the weights differ.
AUC_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def data(tmp_path_factory, request):
    from support.data import shared

    src = shared("pneumoniamnist/pneumoniamnist.npz")
    out = tmp_path_factory.mktemp("ddp") / "pneumonia-slice.npz"
    with np.load(src) as z:
        np.savez(out, train_images=z["train_images"][:1000], train_labels=z["train_labels"][:1000],
                 val_images=z["val_images"][:200], val_labels=z["val_labels"][:200],
                 test_images=z["test_images"][:200], test_labels=z["test_labels"][:200])
    return out


def _config(tmp_path: Path, data: Path, **train) -> Path:
    import yaml

    cfg = {"task": "classification", "name": "ddp", "data": {"source": str(data), "positive_label": "1"},
           "preprocessing": {"spatial_size": [28, 28]}, "augmentation": "none",
           "model": {"name": "resnet-small", "params": {"width": 8}},
           "train": {"epochs": 4, "batch_size": 32, "lr": 0.003, "threads": 2, "schedule": "cosine", **train},
           "evaluation": {"bootstrap": 200}}
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "medsight", *args], capture_output=True, text=True, timeout=600,
                       env=env, **kw)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    return r


def _test_metrics(run: Path) -> dict:
    return json.loads((run / "evaluation" / "test.json").read_text())


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, data):
    """The same 4-epoch run in one process and in two: test 1 compares them, test 2 resumes the
    two-process run's config part-way and must end on its weights exactly."""
    tmp = tmp_path_factory.mktemp("one-two")
    cfg = _config(tmp, data)
    _train(["train", str(cfg), "--out", str(tmp / "one")])
    r = _train(["train", str(cfg), "--out", str(tmp / "two"), "--nproc", "2"])
    return tmp, cfg, r


def test_two_processes_train_what_one_process_trains(one_and_two):
    tmp, _, r = one_and_two
    assert "DDP over 2 processes" in r.stdout
    one, two = _test_metrics(tmp / "one"), _test_metrics(tmp / "two")
    assert abs(one["auc"] - two["auc"]) <= AUC_TOLERANCE, (one["auc"], two["auc"])
    assert two["auc"] > 0.9
    rows = (tmp / "two" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # one header and one row per epoch: rank 0 alone logs
    manifest = json.loads((tmp / "two" / "model" / "manifest.json").read_text())
    assert manifest["training"]["processes"] == 2
    assert json.loads((tmp / "one" / "model" / "manifest.json").read_text())["training"]["processes"] == 1


def test_a_ddp_run_stopped_part_way_resumes_exactly(tmp_path, data, one_and_two):
    full_dir, full, _ = one_and_two  # the uninterrupted 4-epoch run on 2 processes
    part = _config(tmp_path, data, max_minutes=1e-9)  # the same, but it stops after its first epoch
    _train(["train", str(part), "--out", str(tmp_path / "part"), "--nproc", "2"])
    assert len((tmp_path / "part" / "metrics.csv").read_text().splitlines()) == 2
    _train(["train", str(full), "--out", str(tmp_path / "part"), "--nproc", "2", "--resume"])
    assert len((tmp_path / "part" / "metrics.csv").read_text().splitlines()) == 1 + 4
    a = load_weights(full_dir / "two" / "model" / "weights.safetensors")
    b = load_weights(tmp_path / "part" / "model" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_train_one_model(tmp_path, data):
    cfg = _config(tmp_path, data, epochs=2)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def node(rank: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}",
                                 "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}",
                                 "-m", "medsight", "train", str(cfg), "--out", str(tmp_path / "run")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    nodes = [node(0), node(1)]
    outputs = [p.communicate(timeout=600) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [o[1][-3000:] for o in outputs]
    manifest = json.loads((tmp_path / "run" / "model" / "manifest.json").read_text())
    assert manifest["training"]["processes"] == 2 and _test_metrics(tmp_path / "run")["auc"] > 0.85


def test_a_segmentation_run_trains_under_ddp_like_one_process(tmp_path):
    """The segmentation task's patch sampler and sliding-window validation under DDP: synthetic
    blobs (tests/tasks/segmentation/seg_factory.py), a tiny 3D U-Net; test Dice within 0.05."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tasks" / "segmentation"))
    import seg_factory

    from medsight.config import config_from_dict, save_config

    data = seg_factory.decathlon(tmp_path / "data", n=12)
    cfg = config_from_dict(seg_factory.tiny_run_config(data))
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    _train(["train", str(path), "--out", str(tmp_path / "one")])
    _train(["train", str(path), "--out", str(tmp_path / "two"), "--nproc", "2"])
    one, two = (json.loads((tmp_path / r / "model" / "manifest.json").read_text()) for r in ("one", "two"))
    d1, d2 = one["metrics"]["test"]["mean_dice"], two["metrics"]["test"]["mean_dice"]
    assert d2 > 0.8 and abs(d1 - d2) <= 0.05, (d1, d2)
    assert two["training"]["processes"] == 2
