"""Export (ONNX, TorchScript) and the ONNX Runtime backend: parity with torch on real data,
the metadata a runtime needs, and a clear error for every export that is missing, changed or
not ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.errors import ConfigError, ModelFileError
from medsight.io.image import Image
from medsight.models.export import export_model
from medsight.models.saved import SavedModel, load_model
from medsight.tasks.base import get_task


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random resnet-small classifier (synthetic) with a fingerprint, exported as ONNX."""
    from medsight.models.registry import create_model

    torch.manual_seed(0)
    net = create_model("resnet-small", spatial_dims=2, in_channels=1, num_classes=2, width=4)
    manifest = {"name": "tiny", "version": "1", "task": "classification",
                "architecture": {"name": "resnet-small", "params": {"width": 4}, "spatial_dims": 2, "in_channels": 1,
                                 "num_classes": 2},
                "preprocessing": {"spatial_size": [28, 28], "channels": 1, "intensity": "minmax"},
                "labels": ["normal", "pneumonia"], "positive_index": 1, "threshold": 0.4, "temperature": 0.8}
    root = tmp_path_factory.mktemp("export")
    SavedModel(network=net, manifest=manifest).save(root / "torch")
    export_model(load_model(root / "torch"), root / "onnx")
    return root


def _images(arrays):
    return [Image(array=a[None].astype(np.float32), spacing=(1.0, 1.0)) for a in arrays]


def test_the_onnx_file_sits_beside_the_model_with_its_metadata_and_checksum(tiny):
    import onnx

    folder = tiny / "onnx"
    manifest = json.loads((folder / "manifest.json").read_text())
    record = manifest["exports"]["onnx"]
    assert record["file"] == "model.onnx" and record["outputs"] == ["logits", "features"]
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    assert meta["medsight.threshold"] == 0.4 and meta["medsight.temperature"] == 0.8
    assert meta["medsight.preprocessing"] == manifest["preprocessing"] and meta["medsight.labels"] == manifest["labels"]
    m = load_model(folder, backend="onnxruntime")
    assert type(m.backend).__name__ == "OnnxRuntimeBackend" and m.network is not None


def test_onnx_runtime_gives_the_torch_probabilities_and_features_on_any_batch_size(tiny, rng):
    t, o = load_model(tiny / "onnx"), load_model(tiny / "onnx", backend="onnxruntime")
    task = get_task("classification")
    for n in (1, 7):
        ims = _images(rng.uniform(0, 1, (n, 28, 28)))
        pt, po = task.probabilities(t, ims), task.probabilities(o, ims)
        assert po.shape == (n, 2) and np.abs(pt - po).max() <= 1e-5
        x = torch.stack([t.preprocessor(im) for im in ims])
        assert torch.allclose(t.features(x), o.features(x), atol=1e-5)


def test_a_missing_changed_or_foreign_export_is_a_clear_error(tiny, tmp_path):
    import shutil

    with pytest.raises(ModelFileError, match="no ONNX export.*medsight export"):
        load_model(tiny / "torch", backend="onnxruntime")
    with pytest.raises(ConfigError, match="backend takes torch or onnxruntime"):
        load_model(tiny / "torch", backend="tensorrt")
    bad = tmp_path / "changed"
    shutil.copytree(tiny / "onnx", bad)
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes()[:-10])  # truncated
    with pytest.raises(ModelFileError, match="does not match the checksum"):
        load_model(bad, backend="onnxruntime")
    (bad / "model.onnx").unlink()
    with pytest.raises(ModelFileError, match="is missing"):
        load_model(bad, backend="onnxruntime")
    # a file that is not ONNX, with its checksum recorded: ONNX Runtime's refusal, in one line
    (bad / "model.onnx").write_bytes(b"not a protobuf at all" * 10)
    manifest = json.loads((bad / "manifest.json").read_text())
    import hashlib

    manifest["exports"]["onnx"]["sha256"] = hashlib.sha256((bad / "model.onnx").read_bytes()).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        load_model(bad, backend="onnxruntime")
    manifest["exports"]["onnx"]["file"] = "../weights.safetensors"  # a path out of the folder
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="is missing"):
        load_model(bad, backend="onnxruntime")


def test_exports_of_both_formats_are_kept_and_torchscript_matches(tiny, rng):
    folder = tiny / "both"
    m = load_model(tiny / "torch")
    export_model(m, folder, fmt="onnx")
    ts = export_model(m, folder, fmt="torchscript")
    exports = json.loads((folder / "manifest.json").read_text())["exports"]
    assert set(exports) == {"onnx", "torchscript"}
    x = torch.from_numpy(rng.normal(size=(3, 1, 28, 28)).astype(np.float32))
    with torch.inference_mode():
        assert torch.allclose(torch.jit.load(str(ts))(x), m.network(x), atol=1e-5)
    with pytest.raises(ConfigError, match="onnx or torchscript"):
        export_model(m, folder, fmt="tflite")


def test_the_cli_exports_and_predicts_with_the_onnx_backend(tiny, tmp_path, rng):
    from PIL import Image as PILImage
    from typer.testing import CliRunner

    from medsight.cli.main import app

    png = tmp_path / "x.png"
    PILImage.fromarray(rng.integers(0, 255, (28, 28)).astype(np.uint8)).save(png)
    r = CliRunner().invoke(app, ["export", "--model", str(tiny / "torch"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    out = {}
    for backend in ("torch", "onnxruntime"):
        js = tmp_path / f"{backend}.json"
        r = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "m"), "--backend", backend, str(png),
                                     "--json", str(js)])
        assert r.exit_code == 0, r.output
        out[backend] = json.loads(js.read_text())[0]
    assert out["torch"]["label"] == out["onnxruntime"]["label"]
    for k, v in out["torch"]["probabilities"].items():
        assert abs(v - out["onnxruntime"]["probabilities"][k]) <= 1e-5


def test_the_service_counts_a_model_without_its_export_as_missing():
    from medsight.service.catalog import ModelCatalog
    from medsight.service.config import ModelEntry

    cat = ModelCatalog({"x": ModelEntry(path="pneumonia-xray", backend="onnxruntime")})
    assert "x" in cat.missing and "no ONNX export" in cat.missing["x"]


@pytest.mark.realdata
def test_pneumonia_xray_on_onnx_runtime_matches_torch_on_the_real_test_split(shared_data, tmp_path):
    """Issue 13's parity bar: max |Δp| ≤ 1e-4 on real PneumoniaMNIST test images, with the same
    decisions and referrals (the fingerprint distance comes from the graph's features output)."""
    with np.load(shared_data("pneumoniamnist/pneumoniamnist.npz")) as z:
        arrays = z["test_images"][:300]
    export_model(load_model("pneumonia-xray"), tmp_path / "m")
    t, o = load_model(tmp_path / "m"), load_model(tmp_path / "m", backend="onnxruntime")
    task = get_task("classification")
    ims = _images(arrays)
    rt, ro = task.infer(t, ims), task.infer(o, ims)
    dp = max(abs(a.probabilities[k] - b.probabilities[k]) for a, b in zip(rt, ro) for k in a.probabilities)
    assert dp <= 1e-4, dp
    assert [r.label for r in rt] == [r.label for r in ro] and [r.refer for r in rt] == [r.refer for r in ro]
    assert max(abs(a.distance - b.distance) for a, b in zip(rt, ro)) < 1e-2


@pytest.mark.realdata
def test_hippocampus_mri_on_onnx_runtime_segments_as_torch_does(shared_data, tmp_path):
    """Dice ≥ 0.999 between the torch and ONNX Runtime masks of a real hippocampus volume."""
    from medsight.io import read

    case = sorted((shared_data("msd_hippocampus") / "imagesTr").glob("hippocampus_*.nii.gz"))[0]
    export_model(load_model("hippocampus-mri"), tmp_path / "m")
    image = read(case)
    seg = get_task("segmentation")
    a = seg.segment(load_model(tmp_path / "m"), image)
    b = seg.segment(load_model(tmp_path / "m", backend="onnxruntime"), image)
    for v in np.unique(a[a > 0]):
        inter = np.sum((a == v) & (b == v))
        dice = 2 * inter / (np.sum(a == v) + np.sum(b == v))
        assert dice >= 0.999, (v, dice)
