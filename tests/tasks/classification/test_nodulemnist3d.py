"""Nodule malignancy from a CT crop, from NoduleMNIST3D-format .npz files (28³ and 64³).

Synthetic data only: no NoduleMNIST3D copy is in ../shared/data. The crops are written with the
official key layout (``train_images`` (N, S, S, S) uint8, ``train_labels`` (N, 1), val, test) and
the official file names, so the MedMNIST catalogue entry (benign / malignant) applies. A
"malignant" crop holds a larger bright blob with a lobulated (spiculated-looking) surface, a
"benign" one a small smooth blob; both in noise.
"""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

import medsight
from medsight.cli.main import app
from medsight.config import load_config
from medsight.data.classification import open_classification_data
from medsight.errors import DataError, ShapeError
from medsight.io.image import Image
from medsight.models.saved import load_model
from medsight.tasks.base import get_task

CONFIG = Path(__file__).parents[3] / "configs" / "nodule-malignancy.yaml"
FAST = ["train.epochs=2", "train.batch_size=4", "train.lr=0.003", "train.threads=1", "model.params.width=8",
        "evaluation.bootstrap=200"]
runner = CliRunner()


def crops(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops of ``size``³ (labels alternate 0 benign / 1 malignant) and labels (n, 1) uint8."""
    c = (size - 1) / 2
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32) - c
    r = np.sqrt(z * z + y * y + x * x)
    azimuth, polar = np.arctan2(y, x), np.arccos(np.clip(z / np.maximum(r, 1e-6), -1, 1))
    scale = size / 28
    labels = np.arange(n) % 2
    images = np.empty((n, size, size, size), np.uint8)
    for i, malignant in enumerate(labels):
        if malignant:
            lobes = 1 + 0.35 * np.sin(5 * azimuth + rng.uniform(0, 2 * np.pi)) * np.sin(4 * polar)
            radius = (6 + rng.uniform(0, 1.5)) * scale * lobes
        else:
            radius = (3 + rng.uniform(0, 1.0)) * scale
        v = 40 + 160 / (1 + np.exp((r - radius) / (0.7 * scale))) + rng.normal(0, 20, r.shape)
        images[i] = np.clip(v, 0, 255).astype(np.uint8)
    return images, labels[:, None].astype(np.uint8)


def write_npz(path: Path, size: int, counts=(("train", 40), ("val", 16), ("test", 24)), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in counts:
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = crops(n, size, rng)
    np.savez_compressed(path, **arrays)
    return path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.stdout + (result.stderr or "")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The config's model trained 2 epochs on synthetic 28³ crops through ``medsight train``."""
    tmp = tmp_path_factory.mktemp("nodule")
    npz = write_npz(tmp / "nodulemnist3d.npz", 28)
    run = tmp / "run"
    sets = [a for o in [f"data.source={npz}", *FAST] for a in ("--set", o)]
    r = invoke("train", CONFIG, *sets, "--out", run)
    assert r.exit_code == 0, r.stdout + (r.stderr or "")
    return npz, run


def test_reads_the_official_layout_as_3d_benign_malignant(tmp_path):
    npz = write_npz(tmp_path / "nodulemnist3d.npz", 28, counts=(("train", 4), ("val", 2), ("test", 2)))
    data = open_classification_data(str(npz))
    assert data.spatial_dims == 3 and data.labels == ["benign", "malignant"] and not data.multilabel
    assert data.fingerprint["dataset"] == "nodulemnist3d" and data.fingerprint["official_md5"] is False
    assert data.fingerprint["n"] == {"train": 4, "val": 2, "test": 2}
    image = data.split("train")[1].image()
    assert image.shape == (28, 28, 28) and image.channels == 1 and data.split("train")[1].label == 1


def test_a_renamed_copy_takes_its_label_names_from_the_config(tmp_path):
    npz = write_npz(tmp_path / "my_nodules.npz", 28, counts=(("train", 4), ("val", 2), ("test", 2)))
    assert open_classification_data(str(npz)).labels == ["0", "1"]
    cfg = load_config(CONFIG, [f"data.source={npz}", "data.labels=[benign, malignant]"])
    data = open_classification_data(cfg.data)
    assert data.labels == ["benign", "malignant"] and data.spatial_dims == 3


def test_trains_a_3d_classifier_and_evaluates_with_auc_and_ci(trained):
    _, run = trained
    for f in ("config.yaml", "metrics.csv", "model/manifest.json", "model/weights.safetensors",
              "model/MODEL_CARD.md", "evaluation/test.json", "evaluation/report.html"):
        assert (run / f).is_file(), f
    m = json.loads((run / "model/manifest.json").read_text())
    assert m["architecture"]["spatial_dims"] == 3 and m["architecture"]["name"] == "resnet-small"
    assert m["preprocessing"]["spatial_size"] == [28, 28, 28] and m["modalities"] == ["CT"]
    assert m["labels"] == ["benign", "malignant"] and m["positive_label"] == "malignant"
    assert m["augmentation"] == "nodule"
    test = json.loads((run / "evaluation/test.json").read_text())
    assert test["n"] == 24 and test["positive_label"] == "malignant"
    assert test["auc"] > 0.8, test["auc"]  # chance is 0.5; the synthetic classes are separable
    lo, hi = test["auc_ci95"]
    assert lo <= test["auc"] <= hi


def test_predict_on_3d_crops_gives_benign_malignant_probabilities(trained, tmp_path):
    npz, run = trained
    with np.load(npz) as z:
        x, y = z["test_images"], z["test_labels"][:, 0]
    benign, malignant = x[np.flatnonzero(y == 0)[0]], x[np.flatnonzero(y == 1)[0]]
    np.save(tmp_path / "benign.npy", benign)
    nib.save(nib.Nifti1Image(malignant.astype(np.int16), np.eye(4)), tmp_path / "malignant.nii.gz")
    out = tmp_path / "p.json"
    r = invoke("predict", "--model", run / "model", tmp_path / "benign.npy", tmp_path / "malignant.nii.gz",
               "--json", out)
    assert r.exit_code == 0, r.stdout + (r.stderr or "")
    rows = json.loads(out.read_text())
    for row in rows:
        assert set(row["probabilities"]) == {"benign", "malignant"}
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert rows[1]["probabilities"]["malignant"] > rows[0]["probabilities"]["malignant"]


def test_a_2d_image_given_to_the_3d_model_is_a_shape_error(trained, tmp_path):
    _, run = trained
    model = load_model(run / "model")
    flat = Image(array=np.full((1, 28, 28), 90, np.uint8), spacing=(1.0, 1.0))
    with pytest.raises(ShapeError, match="takes 3D images; got a 2D image"):
        get_task("classification").infer(model, [flat])
    np.save(tmp_path / "slice.npy", np.full((28, 28), 90, np.uint8))
    out = tmp_path / "p.json"
    r = invoke("predict", "--model", run / "model", tmp_path / "slice.npy", "--json", out)
    assert r.exit_code == 1
    error = json.loads(out.read_text())[0]["error"]
    assert "\n" not in error and "takes 3D images; got a 2D image of shape (28, 28)" in error


def test_an_npz_with_another_key_layout_is_a_data_error_naming_the_keys(tmp_path):
    x, y = crops(4, 28, np.random.default_rng(0))
    bad = tmp_path / "nodulemnist3d.npz"
    np.savez(bad, x_train=x, y_train=y)
    expected = r"expected keys like train_images/train_labels; found \['x_train', 'y_train'\]"
    with pytest.raises(DataError, match=expected):
        open_classification_data(str(bad))
    r = invoke("train", CONFIG, "--set", f"data.source={bad}", "--out", tmp_path / "run")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "x_train" in lines[0] and "train_images" in lines[0]


def test_64_cubed_file_loads_and_trains_one_step(tmp_path):
    npz = write_npz(tmp_path / "nodulemnist3d_64.npz", 64, counts=(("train", 4), ("val", 2), ("test", 2)))
    data = open_classification_data(str(npz))
    assert data.spatial_dims == 3 and data.labels == ["benign", "malignant"]
    assert data.split("val")[0].image().shape == (64, 64, 64)
    model = medsight.train(CONFIG, run_dir=tmp_path / "run", overrides=[
        f"data.source={npz}", "train.epochs=1", "train.batch_size=4", "train.threads=1", "model.params.width=4",
        "evaluation.bootstrap=100"])
    assert model.manifest["preprocessing"]["spatial_size"] == [64, 64, 64]
    assert model.manifest["architecture"]["spatial_dims"] == 3
    assert json.loads((tmp_path / "run/evaluation/test.json").read_text())["n"] == 2
