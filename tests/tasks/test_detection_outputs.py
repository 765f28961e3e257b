"""``medsight predict --out`` of a detection model on a real DICOM series: the overlay as PNG and
as a Secondary Capture on the slice it shows, and a crop per nodule as ``<case>_nodule<id>.png``.

The model is the real task and saved-model format with random weights, its candidate stage
replaced by two nodules placed on the LIDC-IDRI-0001 slab (support/detection_model.py)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
from typer.testing import CliRunner

from medsight.cli.main import app
from support.detection_model import fixed_detections, save_detection_model


def test_predict_out_writes_the_overlay_as_png_and_sc_and_a_crop_per_nodule(shared_data, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    import medsight.tasks.detection.detect as detect_module

    monkeypatch.setattr(detect_module, "detect", fixed_detections())
    model = save_detection_model(tmp_path / "model")
    (series,) = {p.parent for p in shared_data("lidc_idri_nodule_slabs/LIDC-IDRI-0001").rglob("*.dcm")}
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["predict", "--model", model, str(series), "--out", str(out),
                                 "--json", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    (res,) = json.loads((tmp_path / "p.json").read_text())
    case = series.name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{case}_overlay.png", f"{case}_overlay.dcm", f"{case}_nodule1.png", f"{case}_nodule2.png"])
    assert res["output"] == str(out / f"{case}_overlay.png") and len(res["findings"]) == 2
    sc = pydicom.dcmread(out / f"{case}_overlay.dcm")
    top = round(res["findings"][0]["center_voxel"][0])  # the overlay is the slice through the top nodule
    by_position = sorted(series.glob("*.dcm"), key=lambda p: float(p.stem))
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(
        by_position[top], stop_before_pixels=True).SOPInstanceUID
    with PILImage.open(out / f"{case}_overlay.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), sc.pixel_array) and im.size == (512, 512)
    with PILImage.open(out / f"{case}_nodule1.png") as im:
        crop = np.asarray(im.convert("RGB"))
    assert crop.shape[2] == 3 and (crop == (255, 64, 64)).all(axis=2).any()  # the nodule circled in red
