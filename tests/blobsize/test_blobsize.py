"""The example plug-in task of docs/extending.md, run through MedSight's generic paths only:
``medsight train / evaluate / predict`` (the CLI), ``medsight.load`` (the Python API) and the
service's worker (received DICOM → stored result with its findings). Nothing in MedSight's
package knows the task: it is registered from ``$MEDSIGHT_PLUGINS`` (set by tests/conftest.py).

Data: synthetic (PNG discs of known diameter, ``blobsize/data.py``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from blobsize.data import blob_image, make_blobs
from support.cli import invoke


@pytest.fixture(scope="module")
def plugin():
    """The task is registered from ``$MEDSIGHT_PLUGINS`` (tests/conftest.py sets it for the session)."""
    import os

    assert "blobsize" in os.environ["MEDSIGHT_PLUGINS"].split(",")


@pytest.fixture(scope="module")
def run(plugin, tmp_path_factory) -> Path:
    """``medsight train`` of the blob-size task (a few seconds: 96 images of 32x32)."""
    root = tmp_path_factory.mktemp("blobs")
    manifest = make_blobs(root / "data", 120, seed=1)
    cfg = root / "blobs.yaml"
    cfg.write_text(f"task: blob-size\nname: blob-size\ndata: {{source: {manifest}}}\n"
                   "model: {name: resnet-small, params: {width: 8}}\n"
                   "train: {epochs: 20, lr: 0.01, threads: 2}\n")
    result = invoke("train", cfg, "--out", root / "run")
    assert result.exit_code == 0, result.stdout + (result.stderr or "")
    return root / "run"


def test_train_writes_the_whole_run_folder_and_learns(run):
    for name in ("config.yaml", "metrics.csv", "learning_curves.png", "summary.json", "model/manifest.json",
                 "model/weights.safetensors", "model/MODEL_CARD.md", "evaluation/val.json", "evaluation/test.json",
                 "evaluation/report.html"):
        assert (run / name).is_file(), name
    test = json.loads((run / "evaluation" / "test.json").read_text())
    truth = np.array([c["truth_mm"] for c in test["cases"]])
    baseline = float(np.abs(truth - truth.mean()).mean())  # always answering the mean diameter
    assert test["n"] == 24 and test["mae_mm"] < 0.5 * baseline, (test["mae_mm"], baseline)
    assert test["r"] > 0.8
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["task"] == "blob-size" and manifest["metrics"]["test"]["mae_mm"] == test["mae_mm"]
    card = (run / "model" / "MODEL_CARD.md").read_text()
    assert "diameter of the bright disc" in card and "medsight train" in card
    assert "Blob size evaluation" in (run / "evaluation" / "report.html").read_text()


def test_evaluate_and_predict_through_the_cli(run, tmp_path):
    manifest = next((run.parent / "data").glob("*.csv"))
    out = tmp_path / "ev.json"
    assert invoke("evaluate", "--model", run / "model", "--data", manifest, "--json", out,
                  "--report", tmp_path / "r.html").exit_code == 0
    assert json.loads(out.read_text())["mae_mm"] == json.loads((run / "evaluation" / "test.json").read_text())["mae_mm"]
    assert (tmp_path / "r.html").is_file()

    from PIL import Image as PILImage

    PILImage.fromarray(blob_image(16.0, 32, np.random.default_rng(5))).save(tmp_path / "big.png")
    PILImage.fromarray(blob_image(5.0, 32, np.random.default_rng(6))).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = invoke("predict", "--model", run / "model", tmp_path / "big.png", tmp_path / "small.png",
                    tmp_path / "broken.png", "--csv", tmp_path / "p.csv", "--json", tmp_path / "p.json")
    assert result.exit_code == 1  # one bad input, listed; the others predicted
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["input"].rsplit("/", 1)[-1] for r in rows] == ["big.png", "small.png", "broken.png"]
    big, small = float(rows[0]["diameter_mm"]), float(rows[1]["diameter_mm"])
    assert big > small + 5 and rows[2]["error"]
    results = json.loads((tmp_path / "p.json").read_text())
    assert results[0]["task"] == "blob-size" and results[0]["provenance"]["weights_sha256"]


def test_the_python_front_door_loads_it(run, tmp_path):
    from PIL import Image as PILImage

    import medsight
    from medsight.tasks.front import FrontDoor

    PILImage.fromarray(blob_image(12.0, 32, np.random.default_rng(7))).save(tmp_path / "b.png")
    door = medsight.load(run / "model")
    assert type(door) is FrontDoor  # the task has no front door of its own: the generic one
    (r,) = door.predict(tmp_path / "b.png")
    f = r.findings()[0]
    assert f.name == "blob_diameter_mm" and f.unit == "mm" and 6 < f.value < 18


def test_a_section_the_task_does_not_read_is_a_user_error(plugin, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("task: blob-size\ndata: {source: x.csv}\nsegmentation: {patch_size: auto}\n")
    result = invoke("train", cfg, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "'segmentation' is not read by task 'blob-size'" in result.stderr


def test_the_service_runs_it_on_received_dicom_and_stores_its_findings(run, make_service_cfg, rng):
    from sqlalchemy import select
    from tests.service.conftest import dicom_bytes, drain

    from medsight.service.context import build_context
    from medsight.service.db import Result, ResultFinding
    from support.xray_dicom import xray_dataset

    cfg = make_service_cfg(models={"blob": {"path": str(run / "model")}},
                           routing=[{"name": "blobs", "modalities": ["OT"], "models": ["blob"]}],
                           alerts={"rules": []})
    ctx = build_context(cfg)
    try:
        ds = xray_dataset(blob_image(14.0, 32, rng), patient_id="PID-BLOB", modality="OT")
        assert ctx.ingestor.ingest(dicom_bytes(ds), actor="http:test").status == "stored"
        drain(ctx)
        with ctx.db.read() as s:
            r = s.scalar(select(Result))
            findings = list(s.scalars(select(ResultFinding)))
    finally:
        ctx.db.dispose()
    assert r.status == "ok" and r.model == "blob-size" and r.sop_uid == ds.SOPInstanceUID
    assert [(f.name, f.unit) for f in findings] == [("blob_diameter_mm", "mm")]
    spacing = float(ds.ImagerPixelSpacing[1])  # the diameter is in mm: 14 pixels of 6.4 mm
    assert 8 * spacing < findings[0].value < 20 * spacing, findings[0].value
