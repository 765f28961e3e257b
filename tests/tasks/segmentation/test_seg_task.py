"""The segmentation task end to end on a tiny synthetic 3D dataset: train → save → load →
evaluate → predict → write, through the Python API and the CLI, and what bad input gets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import seg_factory
from typer.testing import CliRunner

import medsight
from medsight.cli.main import app
from medsight.io.image import Image
from medsight.models.saved import load_model
from medsight.tasks.base import get_task
from medsight.tasks.results import PredictionError, SegmentationResult
from support.facts import says

runner = CliRunner()


def test_training_writes_a_complete_run_and_a_self_describing_model(trained):
    model_dir, _, run = trained
    for name in ("config.yaml", "plan.json", "metrics.csv", "summary.json", "learning_curves.png",
                 "evaluation/test.json", "evaluation/test_cases.csv", "evaluation/report.html",
                 "model/manifest.json", "model/weights.safetensors", "model/MODEL_CARD.md"):
        assert (run / name).is_file(), name
    m = json.loads((model_dir / "manifest.json").read_text())
    assert m["task"] == "segmentation"
    assert m["labels"] == ["background", "Left", "Right"] and m["label_values"] == [0, 1, 2]
    assert m["preprocessing"]["target_spacing"] == [1.0, 1.0, 1.0]
    divisor = 4  # the U-Net's two stride-2 levels
    for p, size in zip(m["inference"]["patch_size"], seg_factory.SHAPE):  # the cases' shape, rounded up
        assert p % divisor == 0 and size <= p < size + divisor
    assert m["preprocessing"]["normalization"] == [{"scheme": "zscore"}] and "MR" in m["plan"]["rules"]["normalization"]
    assert sorted(sum(m["training"]["split"].values(), [])) == [f"case_{i:03d}" for i in range(12)]
    assert "Dice" in (model_dir / "MODEL_CARD.md").read_text()
    # the report shows the two test cases re-segmented (worst and median = best), embedded
    assert (run / "evaluation" / "report.html").read_text().count('<img alt="overlay case_') == 2


def test_trained_model_segments_held_out_cases_well(trained):
    _, data, run = trained
    ev = json.loads((run / "evaluation" / "test.json").read_text())
    assert ev["n"] == 2 and ev["split"] == "test"
    assert min(ev["dice"].values()) > 0.8, ev["dice"]
    assert all(v is not None and v < 3.0 for v in ev["hd95_mm"].values())


def test_load_returns_a_segmenter_whose_results_keep_the_input_geometry(trained, tmp_path, rng):
    model_dir, _, _ = trained
    seg = medsight.load(model_dir)
    assert isinstance(seg, medsight.Segmenter)
    img, lab = seg_factory.blobs(rng, shape=(14, 26, 18))  # a size the model never saw
    aff = seg_factory.affine(spacing=(1.0, 1.0, 1.0), origin=(-12.0, 30.0, 7.5))
    path = seg_factory.save_nifti(tmp_path / "new_case.nii.gz", img, aff)
    (res,) = seg.predict(path)
    assert isinstance(res, SegmentationResult)
    assert res.mask.shape == (14, 26, 18) and res.mask.array.dtype == np.uint8
    assert set(res.volumes_ml) == {"Left", "Right"}
    ref_ml = float((lab == 1).sum()) / 1000
    assert res.volumes_ml["Left"] == pytest.approx(ref_ml, rel=0.25)
    out = get_task("segmentation").write_output(res, tmp_path / "out")
    written = nib.load(str(out))
    assert out.name == "new_case_seg.nii.gz"
    assert np.allclose(written.affine, aff) and written.shape == (18, 26, 14)
    assert np.array_equal(np.asarray(written.dataobj).T, res.mask.array[0])


def test_anisotropic_input_is_resampled_and_the_mask_returned_on_its_grid(trained, rng):
    model_dir, _, _ = trained
    img, _ = seg_factory.blobs(rng, shape=(8, 20, 16))
    image = Image(img[None], spacing=(2.0, 1.0, 1.0), origin=(1.0, 2.0, 3.0))
    (res,) = medsight.load(model_dir).predict(image)
    assert res.mask.shape == (8, 20, 16)
    assert res.mask.spacing == (2.0, 1.0, 1.0) and res.mask.origin == (1.0, 2.0, 3.0)
    assert res.volumes_ml["Left"] > 0


def test_a_2d_image_given_to_the_3d_model_is_an_error_naming_it(trained, tmp_path):
    from PIL import Image as PILImage

    model_dir, _, _ = trained
    png = tmp_path / "slice.png"
    PILImage.fromarray(np.zeros((20, 16), np.uint8)).save(png)
    (res,) = medsight.load(model_dir).predict([png])
    assert isinstance(res, PredictionError)
    assert res.error_type == "ShapeError"
    assert "slice.png" in res.error and "takes 3D images; got a 2D image" in res.error


def test_evaluate_cli_scores_every_labelled_case_by_default_and_split_narrows(trained, tmp_path):
    model_dir, data, _ = trained
    out = tmp_path / "ev.json"
    r = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--data", str(data), "--json", str(out),
                            "--csv", str(tmp_path / "cases.csv")])
    assert r.exit_code == 0, r.output
    ev = json.loads(out.read_text())
    assert ev["n"] == 12 and len(ev["cases"]) == 12 and ev["split"] == "all"
    assert set(ev["dice"]) == set(ev["hd95_mm"]) == {"Left", "Right"}
    assert all(0 <= v <= 1 for v in ev["dice"].values())
    assert (tmp_path / "cases.csv").read_text().splitlines()[0].startswith("case,dice_Left,hd95_mm_Left")
    r = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--data", str(data), "--split", "test",
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    recorded = json.loads((model_dir / "manifest.json").read_text())["training"]["split"]["test"]
    assert sorted(c["case"] for c in json.loads(out.read_text())["cases"]) == sorted(recorded)


def test_evaluate_skips_a_bad_case_with_its_reason_and_scores_the_others(trained, tmp_path):
    model_dir, _, _ = trained
    data = seg_factory.decathlon(tmp_path / "bad", n=3)
    lab = np.asarray(nib.load(str(data / "labelsTr" / "case_001.nii.gz")).dataobj).copy()
    lab[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(lab, seg_factory.affine()), str(data / "labelsTr" / "case_001.nii.gz"))
    ev = get_task("segmentation").evaluate(load_model(model_dir), str(data))
    assert ev["n"] == 2
    assert ev["skipped"] == [{"input": "case_001", "error": "case case_001: label values [5] are not declared labels "
                                                             "(0 background, 1 Left, 2 Right)"}]


def test_evaluate_refuses_data_with_labels_the_model_does_not_know(trained, tmp_path):
    from medsight.errors import DataError

    model_dir, _, _ = trained
    data = seg_factory.decathlon(tmp_path / "more", n=2, labels={"0": "background", "1": "Left", "2": "Right",
                                                                 "3": "Extra"})
    with pytest.raises(DataError, match="blobs-seg") as info:
        get_task("segmentation").evaluate(load_model(model_dir), str(data))
    says(info, "[3]", "blobs-seg")  # the values the model does not know, and the model


def test_predict_cli_writes_one_mask_per_input_and_prints_volumes(trained, tmp_path):
    model_dir, data, _ = trained
    inputs = [str(data / "imagesTr" / f"case_00{i}.nii.gz") for i in range(2)]
    r = runner.invoke(app, ["predict", "--model", str(model_dir), *inputs, "--out", str(tmp_path / "masks"),
                            "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["case_000_seg.nii.gz", "case_001_seg.nii.gz"]
    assert "Left" in r.output and "mL" in r.output
    rows = json.loads((tmp_path / "r.json").read_text())
    assert rows[0]["output"].endswith("case_000_seg.nii.gz") and rows[0]["volumes_ml"]["Right"] > 0


def test_dicom_input_gets_a_dicom_seg_in_the_source_study(trained, tmp_path, rng):
    import pydicom

    model_dir, _, _ = trained
    img, _ = seg_factory.blobs(rng)
    seg_factory.dicom_series(tmp_path / "series", np.round(img).astype(np.int16))
    r = runner.invoke(app, ["predict", "--model", str(model_dir), str(tmp_path / "series"), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    seg = pydicom.dcmread(tmp_path / "o" / "series_seg.dcm")
    src = pydicom.dcmread(tmp_path / "series" / "000.dcm")
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == src.StudyInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Left", "Right"]
    assert (tmp_path / "o" / "series_seg.nii.gz").is_file()
