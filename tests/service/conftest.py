"""Fixtures for the service's tests: a tiny saved model, configs, a context, DICOM bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from support.xray_dicom import xray_dataset

TOKENS = {"admin": "t-admin", "reader": "t-reader", "sender": "t-sender"}


def _manifest(name: str, dims: int, threshold: float) -> dict:
    size = [28, 28] if dims == 2 else [8, 16, 16]
    return {"name": name, "version": "0.1.0", "task": "classification",
            "architecture": {"name": "resnet-small", "params": {"width": 4}, "spatial_dims": dims, "in_channels": 1,
                             "num_classes": 2},
            "preprocessing": {"spatial_size": size, "channels": 1, "intensity": "minmax"},
            "labels": ["normal", "pneumonia"], "positive_index": 1, "positive_label": "pneumonia",
            "threshold": threshold, "modalities": ["CR", "DX"] if dims == 2 else ["CT"]}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Randomly initialised resnet-small models saved as MedSight model folders (2D and 3D)."""
    import torch

    from medsight.models.registry import create_model
    from medsight.models.saved import SavedModel

    root = tmp_path_factory.mktemp("models")
    out = {}
    for key, dims in (("xray", 2), ("ct3d", 3)):
        torch.manual_seed(0)
        net = create_model("resnet-small", spatial_dims=dims, in_channels=1, num_classes=2, width=4)
        SavedModel(network=net, manifest=_manifest(f"tiny-{key}", dims, 0.0)).save(root / key)
        out[key] = str(root / key)
    return out


@pytest.fixture
def make_cfg(tmp_path, tiny_models):
    from medsight.service.config import service_config_from_dict

    def make(**over):
        data = {
            "storage": {"path": str(tmp_path / "data"), "max_instance_mb": 1},
            "dicom": {"port": 0, "allowed_calling_aets": ["GOODSCU"]},
            "http": {"port": 0, "max_upload_mb": 1},
            "auth": {"tokens": [{"name": f"u-{r}", "role": r, "token": t} for r, t in TOKENS.items()],
                     "max_failures": 1000},  # tests probe every route without a token
            "workers": {"processes": 0, "batch_size": 8, "lease_s": 30, "retry_backoff_s": 0},
            "series": {"complete_after_s": 0.2, "sweep_interval_s": 0.01},
            "models": {"pneumonia-xray": {"path": tiny_models["xray"]}, "ct-3d": {"path": tiny_models["ct3d"]},
                       "lung-nodule-ct": {"path": "no-such-model"}},
            "routing": [{"name": "chest-xray", "modalities": ["CR", "DX"], "models": ["pneumonia-xray"]},
                        {"name": "chest-ct", "modalities": ["CT"], "body_parts": ["CHEST"],
                         "models": ["lung-nodule-ct"]},
                        {"name": "abdomen-ct", "modalities": ["CT"], "body_parts": ["ABDOMEN"], "models": ["ct-3d"]}],
            "alerts": {"rules": [{"name": "positive", "kind": "above_threshold", "priority": "high"}]},
        }
        for k, v in over.items():
            data[k] = v
        return service_config_from_dict(data)

    return make


@pytest.fixture
def ctx(make_cfg):
    from medsight.service.context import build_context

    c = build_context(make_cfg())
    yield c
    c.db.dispose()


def dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def xray(rng):
    """``make(**tags)`` → (dataset, Part 10 bytes) of a synthetic 28x28 CR chest X-ray."""
    def make(**kw):
        kw.setdefault("patient_id", "PID-CANARY-7")
        kw.setdefault("patient_name", "CANARY^SECRET")
        ds = xray_dataset(rng.integers(0, 255, (28, 28)).astype(np.uint8), **kw)
        return ds, dicom_bytes(ds)
    return make


def drain(ctx, cfg=None, *, rounds: int = 50) -> None:
    """Run a worker until the queue is empty (series completion included)."""
    import time

    from medsight.service.worker import Worker

    w = Worker(cfg or ctx.cfg, ctx.db, ctx.catalog, name="test-worker")
    idle = 0
    for _ in range(rounds):
        w._last_housekeeping = 0
        if w.run_once() == 0:
            idle += 1
            if idle > 3:
                return
            time.sleep(0.1)
        else:
            idle = 0


def lidc_slab(shared_data) -> list[Path]:
    return sorted(shared_data("lidc_idri_nodule_slabs/LIDC-IDRI-0001").rglob("*.dcm"))
