"""The shipped ``hippocampus-mri`` model on a few real held-out cases (skipped without
../shared/data), and its card and manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import medsight
from medsight.cli.main import app
from medsight.models.saved import list_zoo, load_model

REPO = Path(__file__).resolve().parents[3]
TEST_CASES = json.loads((REPO / "configs" / "hippocampus-split.json").read_text())["test"][:3]


def test_shipped_model_records_its_structures_split_and_plan():
    # what every shipped model must be (small, checksummed, a card saying how to retrain it) is
    # tests/models/test_zoo_contract.py
    (entry,) = [z for z in list_zoo() if z["name"] == "hippocampus-mri"]
    assert entry["task"] == "segmentation" and entry["labels"] == ["background", "Anterior", "Posterior"]
    card = (Path(entry["path"]) / "MODEL_CARD.md").read_text()
    assert "Dice" in card
    m = load_model("hippocampus-mri").manifest
    assert m["training"]["split"]["test"][:3] == TEST_CASES  # held-out cases are recorded with the model
    assert m["preprocessing"]["target_spacing"] == [1.0, 1.0, 1.0]


def test_shipped_model_on_real_held_out_cases(shared_data, tmp_path):
    root = shared_data("msd_hippocampus")
    entries = [{"image": str(root / "imagesTr" / f"{c}.nii.gz"), "label": str(root / "labelsTr" / f"{c}.nii.gz")}
               for c in TEST_CASES]
    (tmp_path / "dataset.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}, "modality": {"0": "MRI"},
        "training": entries}))
    out = tmp_path / "ev.json"
    r = CliRunner().invoke(app, ["evaluate", "--model", "hippocampus-mri", "--data", str(tmp_path), "--json", str(out)])
    assert r.exit_code == 0, r.output
    ev = json.loads(out.read_text())
    assert ev["n"] == 3 and set(ev["dice"]) == {"Anterior", "Posterior"}
    assert all(min(c["dice"].values()) > 0.75 for c in ev["cases"]), [c["dice"] for c in ev["cases"]]
    assert all(v < 5.0 for v in ev["hd95_mm"].values())


def test_shipped_model_predicts_volumes_close_to_the_reference(shared_data):
    from medsight.io import read

    root = shared_data("msd_hippocampus")
    case = TEST_CASES[0]
    (res,) = medsight.load("hippocampus-mri").predict(root / "imagesTr" / f"{case}.nii.gz")
    ref = read(root / "labelsTr" / f"{case}.nii.gz").array[0]
    for value, name in ((1, "Anterior"), (2, "Posterior")):
        ref_ml = float(np.count_nonzero(ref == value)) / 1000.0  # 1 mm³ voxels
        assert abs(res.volumes_ml[name] - ref_ml) < 0.25 * ref_ml, (name, res.volumes_ml[name], ref_ml)
    assert res.mask.same_geometry(read(root / "imagesTr" / f"{case}.nii.gz"))
