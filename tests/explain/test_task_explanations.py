"""Segmentation and detection models are explained by what they computed: the foreground
probability map around the mask, and the findings drawn on the scan (real data: a hippocampus
MRI volume and an LIDC-IDRI CT slab)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medsight.cli.main import app


@pytest.mark.realdata
def test_a_segmentation_is_explained_by_its_probability_map_on_the_slice_it_labels_most(shared_data, tmp_path):
    from PIL import Image as PILImage

    from medsight.io import read
    from medsight.models import load_model
    from medsight.tasks.base import get_task

    case = sorted((shared_data("msd_hippocampus") / "imagesTr").glob("hippocampus_*.nii.gz"))[1]
    r = CliRunner().invoke(app, ["explain", "--model", "hippocampus-mri", str(case), "--out", str(tmp_path / "o"),
                                 "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    (res,) = json.loads((tmp_path / "r.json").read_text())
    h = res["heatmap"]
    assert h["method"] == "probability" and h["mean_inside_mask"] > 0.6 and h["max"] > 0.9
    files = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert any(f.endswith("_overlay.png") for f in files) and any(f.endswith("_seg.nii.gz") for f in files)
    # the slice shown is the one with the most labelled voxels, and the picture is that slice's
    model, image = load_model("hippocampus-mri"), read(case)
    (seg,) = get_task("segmentation").infer(model, [image])
    labels = np.asarray(seg.mask.array)[0]
    assert h["slice_index"] == int(np.argmax((labels > 0).reshape(labels.shape[0], -1).sum(1)))
    png = np.asarray(PILImage.open(next((tmp_path / "o").glob("*_overlay.png"))))
    assert png.shape[:2] == image.shape[1:] and png.shape[2] == 3
    # a plain predict is unchanged: no heatmap key
    plain = CliRunner().invoke(app, ["predict", "--model", "hippocampus-mri", str(case), "--json",
                                     str(tmp_path / "p.json")])
    assert plain.exit_code == 0 and "heatmap" not in json.loads((tmp_path / "p.json").read_text())[0]


def test_each_task_names_its_explanations_and_refuses_others(tmp_path):
    from medsight.engine.predictor import Predictor
    from medsight.errors import ConfigError
    from medsight.models import load_model
    from medsight.tasks.base import get_task

    for name, methods in (("pneumonia-xray", ("gradcam", "gradcampp", "occlusion")),
                          ("hippocampus-mri", ("probability",)), ("lung-nodule-ct", ("findings",))):
        m = load_model(name)
        task = get_task(m.task)
        assert task.explain_methods(m)[:len(methods)] == methods and task.explains(m)
        assert Predictor(m, task, explain="auto").explain == methods[0]
        with pytest.raises(ConfigError, match="is explained by"):
            Predictor(m, task, explain="saliency")


@pytest.mark.realdata
def test_a_detection_is_explained_by_its_findings_on_the_scan(shared_data, tmp_path):
    slab = shared_data("lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    r = CliRunner().invoke(app, ["explain", "--model", "lung-nodule-ct", str(slab), "--out", str(tmp_path / "o"),
                                 "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    (res,) = json.loads((tmp_path / "r.json").read_text())
    assert res["heatmap"]["method"] == "findings" and res["heatmap"]["findings"] == len(res["findings"]) >= 1
    assert any(p.name.endswith("_overlay.png") for p in (tmp_path / "o").iterdir())
