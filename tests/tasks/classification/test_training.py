"""Training behaviour on tiny synthetic data (two classes: bright centre vs none)."""

import csv
import json

import numpy as np
import pytest
import torch

import medsight
from medsight.config import config_from_dict
from medsight.models.weights import load_weights
from medsight.tasks.base import get_task


def cfg(source, run_overrides=None, **top):
    d = {"task": "classification", "name": "tiny", "data": {"source": str(source)},
         "preprocessing": {"spatial_size": [28, 28]}, "augmentation": "xray",
         "model": {"name": "resnet-small", "params": {"width": 8}},
         "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "threads": 1, **(run_overrides or {})},
         "evaluation": {"bootstrap": 200}}
    d.update(top)
    return config_from_dict(d)


def train(c, run_dir, **kw):
    return get_task("classification").train(c, run_dir=run_dir, **kw)


def test_learns_separable_data_and_writes_a_complete_run(tiny_npz, tmp_path):
    model = train(cfg(tiny_npz, {"epochs": 4}, intended_use=["Bright-centre detection on test images."],
                      out_of_scope=["Anything clinical."]), tmp_path / "run")
    run = tmp_path / "run"
    for f in ("config.yaml", "metrics.csv", "learning_curves.png", "summary.json", "model/manifest.json",
              "model/weights.safetensors", "model/MODEL_CARD.md", "evaluation/test.json", "evaluation/report.html"):
        assert (run / f).is_file(), f
    test = json.loads((run / "evaluation/test.json").read_text())
    assert test["auc"] > 0.9 and test["n"] == 20
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    m = model.manifest
    assert 0 < m["threshold"] < 1 and m["threshold_rule"] == "youden"
    assert m["preprocessing"]["normalize_std"] > 0 and m["training"]["data"]["n"]["train"] == 60
    html = (run / "evaluation/report.html").read_text()
    assert "data:image/png;base64" in html and "ROC curve" in html and "confusion matrix" in html
    # the config's card statements reach the manifest and the card
    assert m["intended_use"] == ["Bright-centre detection on test images."]
    assert m["out_of_scope"] == ["Anything clinical."]
    card = (run / "model/MODEL_CARD.md").read_text()
    assert "## Intended use\n- Bright-centre detection on test images.\n" in card
    assert "## Out-of-scope use\n- Anything clinical.\n" in card
    for heading in ("Training fingerprint", "Calibration", "Refer rule"):
        section = card.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
        assert section.startswith("- ") and "Not stated" not in section, heading


def test_same_seed_same_weights_different_seed_different(tiny_npz, tmp_path):
    train(cfg(tiny_npz, {"epochs": 2}), tmp_path / "a")
    train(cfg(tiny_npz, {"epochs": 2}), tmp_path / "b")
    train(cfg(tiny_npz, {"epochs": 2, "seed": 1}), tmp_path / "c")
    wa, wb, wc = (load_weights(tmp_path / r / "model/weights.safetensors") for r in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_continues_exactly_as_an_uninterrupted_run(tiny_npz, tmp_path):
    full = train(cfg(tiny_npz, {"epochs": 4, "schedule": "cosine"}), tmp_path / "full")
    # max_minutes ~0: stops after epoch 1
    train(cfg(tiny_npz, {"epochs": 4, "schedule": "cosine", "max_minutes": 1e-9}), tmp_path / "part")
    assert len(list(csv.DictReader(open(tmp_path / "part/metrics.csv")))) == 1
    resumed = train(cfg(tiny_npz, {"epochs": 4, "schedule": "cosine"}), tmp_path / "part", resume=True)
    rows = list(csv.DictReader(open(tmp_path / "part/metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    full_rows = list(csv.DictReader(open(tmp_path / "full/metrics.csv")))
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in full_rows]
    sa, sb = full.network.state_dict(), resumed.network.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_early_stopping_stops_and_keeps_the_best_epoch(tiny_npz, tmp_path):
    c = cfg(tiny_npz, {"epochs": 30, "lr": 1e-7, "schedule": "none", "monitor": "val_loss", "monitor_mode": "min",
                       "early_stopping": {"patience": 2, "min_delta": 0.5}})
    model = train(c, tmp_path / "r")
    assert model.manifest["training"]["epochs_run"] == [3]
    assert model.manifest["training"]["best_epochs"] == [1]


def test_multiclass_and_balanced_sampler(tmp_path, rng):
    x = rng.integers(0, 60, (90, 28, 28)).astype(np.uint8)
    y = np.arange(90) % 3
    for k in range(3):
        x[y == k, 4 + 8 * k:10 + 8 * k, :] = 250
    np.savez(tmp_path / "three.npz", train_images=x[:60], train_labels=y[:60], val_images=x[60:75],
             val_labels=y[60:75], test_images=x[75:], test_labels=y[75:])
    model = train(cfg(tmp_path / "three.npz", {"epochs": 6, "sampler": "balanced"}, augmentation="none"),
                  tmp_path / "r")
    ev = json.loads((tmp_path / "r/evaluation/test.json").read_text())
    assert "threshold" not in model.manifest and len(ev["per_class"]) == 3
    assert ev["accuracy"] >= 0.6  # three stripes, learnable in a few epochs


def test_multilabel_from_a_csv(tmp_path, rng):
    from support.bad_inputs import write_png

    rows = ["path,label,split"]
    for i in range(80):
        a = rng.integers(0, 50, (28, 28)).astype(np.uint8)
        labels = []
        if i % 2:
            a[:, :8] = 250
            labels.append("left")
        if i % 3 == 0:
            a[:, 20:] = 250
            labels.append("right")
        write_png(tmp_path / f"{i}.png", a)
        rows.append(f"{i}.png,{'|'.join(labels)},{'train' if i < 56 else 'val' if i < 68 else 'test'}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    c = cfg(tmp_path / "m.csv", {"epochs": 5}, augmentation="none")
    c.data.labels = ["left", "right"]
    model = train(c, tmp_path / "r")
    assert model.manifest["multilabel"] and len(model.manifest["thresholds"]) == 2
    ev = json.loads((tmp_path / "r/evaluation/test.json").read_text())
    assert set(ev["per_label"]) == {"left", "right"} and ev["auc"] > 0.8


def test_keras_like_api_with_arrays(tmp_path, rng):
    x = rng.integers(0, 80, (80, 28, 28)).astype(np.uint8)
    y = np.arange(80) % 2
    x[y == 1, 8:20, 8:20] += 150
    clf = medsight.Classifier("classic-cnn", augmentation="none", labels=["no", "yes"], name="arrays")
    clf.fit(x[:60], y[:60], validation_data=(x[60:], y[60:]), epochs=3, batch_size=16, run_dir=tmp_path / "r",
            threads=1)
    saved = clf.save(tmp_path / "saved")
    again = medsight.load(saved)
    img = medsight.Image(array=x[60:61], spacing=(1.0, 1.0))
    assert np.allclose(clf.predict_proba([img]), again.predict_proba([img]))
    assert again.predict([img])[0].label in ("no", "yes")


def test_a_model_too_big_for_the_input_is_a_config_error(tiny_npz, tmp_path):
    from medsight.errors import ConfigError

    c = cfg(tiny_npz)
    c.model.name, c.model.params = "densenet121", {}
    with pytest.raises(ConfigError, match="densenet121.*28x28"):
        train(c, tmp_path / "r")


def test_temperature_is_fitted_on_validation_and_applied_with_before_and_after_in_the_evaluation(tiny_npz, tmp_path):
    from typer.testing import CliRunner

    from medsight.cli.main import app
    from medsight.models.saved import load_model

    model = train(cfg(tiny_npz, {"epochs": 3}), tmp_path / "run")
    m = model.manifest
    assert m["temperature"] > 0 and m["calibration"]["fitted_on"] == "validation split"
    assert m["calibration"]["nll_after"] <= m["calibration"]["nll_before"] + 1e-9
    ev = get_task("classification").evaluate(load_model(tmp_path / "run" / "model"), str(tiny_npz), n_boot=100)
    assert ev["temperature"] == m["temperature"] and "ece_uncalibrated" in ev
    card = (tmp_path / "run" / "model" / "MODEL_CARD.md").read_text()
    assert "temperature scaling" in card and "NLL" in card

    raw = train(cfg(tiny_npz, {"epochs": 3}, evaluation={"bootstrap": 200, "calibration": "none"}), tmp_path / "raw")
    assert raw.manifest.get("temperature", 1.0) == 1.0
    out = tmp_path / "calibrated"
    result = CliRunner().invoke(app, ["calibrate", "--model", str(tmp_path / "raw" / "model"), "--data",
                                      str(tiny_npz), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cal = load_model(out)
    assert cal.manifest["temperature"] != 1.0 and cal.manifest["calibration"]["fitted_on"].startswith("val split")
    task = get_task("classification")
    before, after = (task.evaluate(mm, str(tiny_npz), n_boot=100) for mm in (load_model(tmp_path / "raw/model"), cal))
    assert after["auc"] == pytest.approx(before["auc"], abs=1e-9)  # a monotone map of a binary score
    assert after["ece_uncalibrated"] == before["ece"]


def test_calibrate_refuses_a_task_without_class_probabilities(tmp_path):
    from medsight.errors import ConfigError
    from medsight.models.saved import load_model

    with pytest.raises(ConfigError, match="no calibration step"):
        get_task("segmentation").calibrate(load_model("hippocampus-mri"), str(tmp_path))


def test_a_trained_model_refers_inputs_unlike_its_training_data_and_says_why(tiny_npz, tmp_path):
    from medsight.io.image import Image
    from medsight.models.saved import load_model

    train(cfg(tiny_npz, {"epochs": 3}), tmp_path / "run")
    model = load_model(tmp_path / "run" / "model")
    fp = model.manifest["ood"]
    assert fp["threshold"] > 0 and fp["quantile"] == 0.99 and len(fp["mean"]) == fp["features"]
    with np.load(tiny_npz) as z:
        own = [Image(z["test_images"][i][None].astype(np.float32), spacing=(1.0, 1.0)) for i in range(20)]
    yy, xx = np.mgrid[0:28, 0:28]
    strange = [Image((((yy // 2 + xx // 2) % 2) * 255.0)[None].astype(np.float32), spacing=(1.0, 1.0))]
    task = get_task("classification")
    results = task.infer(model, own + strange)
    assert sum(r.refer for r in results[:20]) <= 2
    odd = results[-1]
    assert odd.refer and odd.label == "refer" and odd.positive is None and "unlike training data" in odd.reasons[0]
    assert abs(sum(odd.probabilities.values()) - 1) < 1e-5  # a referred prediction still shows its probabilities
    assert odd.to_dict()["refer"] is True
    ev = task.evaluate(model, str(tiny_npz), n_boot=100)
    assert 0 <= ev["refer_rate"] <= 0.1
