"""``medsight predict`` of a segmentation model: the CSV holds the volume of each structure,
the JSON and the CSV say the same, and ``--out`` writes the mask (shipped model, real case)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from medsight.cli.main import app

REPO = Path(__file__).resolve().parents[3]
CASE = json.loads((REPO / "configs" / "hippocampus-split.json").read_text())["test"][0]


def test_predict_csv_of_a_segmentation_model_holds_the_volumes_per_structure(shared_data, tmp_path):
    image = shared_data("msd_hippocampus") / "imagesTr" / f"{CASE}.nii.gz"
    missing = tmp_path / "missing.nii.gz"
    r = CliRunner().invoke(app, ["predict", "--model", "hippocampus-mri", str(image), str(missing),
                                 "--csv", str(tmp_path / "p.csv"), "--json", str(tmp_path / "p.json"),
                                 "--out", str(tmp_path / "masks")])
    assert r.exit_code == 1, r.output  # one input is missing
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert list(rows[0]) == ["input", "volume_ml_Anterior", "volume_ml_Posterior", "output", "error"]
    (ok,) = [x for x in json.loads((tmp_path / "p.json").read_text()) if "volumes_ml" in x]
    assert rows[0]["input"] == str(image) and rows[0]["error"] == ""
    for name, v in ok["volumes_ml"].items():
        assert float(rows[0][f"volume_ml_{name}"]) == v and v > 0.3
    assert rows[0]["output"] == ok["output"] and Path(ok["output"]).is_file()
    assert rows[1]["input"] == str(missing) and rows[1]["error"] and rows[1]["volume_ml_Anterior"] == ""
