"""The bad inputs a new user tries: each gives a one-line error and a non-zero exit, never a traceback."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medsight.cli.main import app
from support.bad_inputs import dicom_without_pixels, png_bomb_header, truncated_png, xray_dicom

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    text = result.stdout + (result.stderr or "")
    assert "Traceback" not in text
    return result


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_predict_reports_each_bad_input_and_still_predicts_the_good(tiny_model_dir, tmp_path):
    good = xray_dicom(tmp_path / "good.dcm", np.full((28, 28), 90, np.uint8))
    bad = {
        "missing": tmp_path / "missing.png",
        "text": tmp_path / "notes.png",
        "truncated": truncated_png(tmp_path / "cut.png"),
        "nopixels": dicom_without_pixels(tmp_path / "report.dcm"),
        "bomb": png_bomb_header(tmp_path / "huge.png"),
    }
    bad["text"].write_text("this is not an image\n")
    out = tmp_path / "p.json"
    r = invoke("predict", "--model", tiny_model_dir, good, *bad.values(), "--json", out)
    assert r.exit_code == 1
    rows = json.loads(out.read_text())
    assert [row["input"] for row in rows] == [str(good), *map(str, bad.values())]
    # a flat image is unlike the training images: it may be referred, its probabilities still given
    assert set(rows[0]["probabilities"]) == {"normal", "pneumonia"}
    assert rows[0]["label"] in ("normal", "pneumonia", "refer")
    errors = {k: row["error"] for k, row in zip(bad, rows[1:])}
    assert "no such file" in errors["missing"]
    assert "not a recognised image" in errors["text"]
    assert "truncated" in errors["truncated"] or "damaged" in errors["truncated"]
    assert "pixel data" in errors["nopixels"]
    assert "limit" in errors["bomb"] and ("60000x60000" in errors["bomb"] or "3600000000" in errors["bomb"])


def test_predict_refuses_a_ct_for_an_xray_model(tiny_model_dir, tmp_path):
    ct = xray_dicom(tmp_path / "ct.dcm", np.zeros((28, 28), np.uint8), modality="CT")
    r = invoke("predict", "--model", tiny_model_dir, ct, "--json", tmp_path / "p.json")
    assert r.exit_code == 1
    assert "takes CR/DX images; this one is CT" in json.loads((tmp_path / "p.json").read_text())[0]["error"]


def test_pickle_passed_as_model(tmp_path):
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    r = invoke("predict", "--model", p, tmp_path / "x.png")
    assert r.exit_code == 2 and "pickle" in one_line_error(r)


def test_config_with_unknown_key(tmp_path, tiny_npz):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: classification\ndata: {{source: {tiny_npz}}}\ntrain: {{epochs: 1, learnin_rate: 0.1}}\n")
    r = invoke("train", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "unknown key 'train.learnin_rate'" in one_line_error(r)


def test_empty_class_folder(tmp_path, tiny_class_folder):
    (tiny_class_folder / "covid").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: classification\ndata: {{source: {tiny_class_folder}}}\ntrain: {{epochs: 1}}\n")
    r = invoke("train", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "covid is empty" in one_line_error(r)


def test_labels_out_of_range(tmp_path, tiny_model_dir):
    x = np.zeros((6, 28, 28), np.uint8)
    np.savez(tmp_path / "d.npz", test_images=x, test_labels=np.array([0, 1, 2, 0, 1, 5]), train_images=x,
             train_labels=np.zeros(6), val_images=x, val_labels=np.zeros(6))
    r = invoke("evaluate", "--model", tiny_model_dir, "--data", tmp_path / "d.npz", "--json", tmp_path / "e.json")
    assert r.exit_code == 2 and "labels go up to 5" in one_line_error(r)


def test_missing_data_path_and_missing_config(tmp_path, tiny_model_dir):
    r = invoke("evaluate", "--model", tiny_model_dir, "--data", tmp_path / "nowhere")
    assert r.exit_code == 2 and "not found" in one_line_error(r)
    r = invoke("train", tmp_path / "nope.yaml", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "config file not found" in one_line_error(r)


def test_evaluate_writes_the_interface_keys_and_a_report(tiny_model_dir, tmp_path):
    data = tiny_model_dir.parents[1] / "tiny.npz"
    r = invoke("evaluate", "--model", tiny_model_dir, "--data", data, "--split", "test", "--json", tmp_path / "e.json",
               "--report", tmp_path / "r.html")
    assert r.exit_code == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    for key in ("auc", "auc_ci95", "accuracy", "sensitivity", "specificity", "threshold", "n"):
        assert key in ev, key
    assert ev["n"] == 20 and len(ev["auc_ci95"]) == 2 and ev["auc_ci95"][0] <= ev["auc"] <= ev["auc_ci95"][1]
    assert "<html" in (tmp_path / "r.html").read_text()


def test_predict_csv_and_folder_expansion(tiny_model_dir, tmp_path):
    from support.bad_inputs import write_png

    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    write_png(d / "a.png", np.zeros((28, 28), np.uint8))
    write_png(d / "sub" / "b.png", np.full((56, 56), 200, np.uint8))
    r = invoke("predict", "--model", tiny_model_dir, d, "--csv", tmp_path / "p.csv")
    assert r.exit_code == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "input,label,p_normal,p_pneumonia,error" and len(lines) == 3
    assert lines[1].startswith(str(d / "a.png")) and lines[2].startswith(str(d / "sub" / "b.png"))


def test_models_list_shows_registry(tmp_path):
    r = invoke("models", "list", "--json", tmp_path / "m.json")
    assert r.exit_code == 0
    names = {a["name"] for a in json.loads((tmp_path / "m.json").read_text())["architectures"]}
    assert {"classic-cnn", "resnet18", "resnet50", "densenet121", "resnet-small", "unet"} <= names


@pytest.mark.parametrize("args", [["--help"], ["version"]])
def test_help_and_version(args):
    assert invoke(*args).exit_code == 0


def _train_config(tmp_path, tiny_npz, extra: str = "", train: str = "epochs: 1, batch_size: 16") -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: classification\ndata: {{source: {tiny_npz}}}\nmodel: {{name: resnet-small, params: "
                   f"{{width: 8}}}}\ntrain: {{{train}, threads: 1}}\nevaluation: {{bootstrap: 100}}\n{extra}")
    return cfg


def test_train_with_an_unknown_monitor_names_the_metrics_it_could_monitor(tmp_path, tiny_npz):
    r = invoke("train", _train_config(tmp_path, tiny_npz, train="epochs: 1, monitor: val_acc"), "--out",
               tmp_path / "run")
    line = one_line_error(r)
    assert r.exit_code == 2 and "train.monitor" in line and "val_acc" in line and "val_accuracy" in line


def test_train_whose_loss_becomes_nan_stops_with_a_user_error(tmp_path, tiny_npz):
    cfg = _train_config(tmp_path, tiny_npz, train="epochs: 1, batch_size: 16, lr: 1.0e+30, schedule: none")
    r = invoke("train", cfg, "--out", tmp_path / "run")
    line = one_line_error(r)
    assert r.exit_code == 2 and "loss became" in line and "train.lr" in line


@pytest.mark.parametrize("value", ["abc", "-5", "0"])
def test_a_bad_limit_in_the_environment_is_one_error_not_a_crash(tiny_model_dir, tmp_path, monkeypatch, value):
    from support.bad_inputs import write_png

    write_png(tmp_path / "a.png", np.zeros((28, 28), np.uint8))
    monkeypatch.setenv("MEDSIGHT_MAX_PIXELS", value)
    for args in (["predict", "--model", tiny_model_dir, tmp_path / "a.png"],
                 ["evaluate", "--model", tiny_model_dir, "--data", tiny_model_dir.parents[1] / "tiny.npz"]):
        r = invoke(*args)
        line = one_line_error(r)
        assert r.exit_code == 2 and "MEDSIGHT_MAX_PIXELS" in line and repr(value) in line


def test_train_refuses_a_section_the_task_does_not_read(tmp_path, tiny_npz):
    cfg = _train_config(tmp_path, tiny_npz, "segmentation: {patch_size: [16, 16]}\n")
    r = invoke("train", cfg, "--out", tmp_path / "run")
    line = one_line_error(r)
    assert r.exit_code == 2 and "'segmentation'" in line and "classification" in line
    assert not (tmp_path / "run" / "model").exists()


def test_an_output_path_that_cannot_be_written_is_a_user_error(tiny_model_dir, tmp_path):
    from support.bad_inputs import write_png

    write_png(tmp_path / "a.png", np.zeros((28, 28), np.uint8))
    (tmp_path / "file").write_text("a file, not a folder")
    blocked = tmp_path / "file" / "out.json"
    for args in (["predict", "--model", tiny_model_dir, tmp_path / "a.png", "--json", blocked],
                 ["evaluate", "--model", tiny_model_dir, "--data", tiny_model_dir.parents[1] / "tiny.npz",
                  "--report", tmp_path / "file" / "r.html"]):
        r = invoke(*args)
        assert r.exit_code == 2 and str(tmp_path / "file") in one_line_error(r)


def test_resume_with_other_settings_than_the_run_started_with_is_a_user_error(tmp_path, tiny_npz):
    cfg = _train_config(tmp_path, tiny_npz)
    assert invoke("train", cfg, "--out", tmp_path / "run").exit_code == 0
    for change, words in ((["--set", "train.epochs=2"], ["train.epochs", "2", "1"]),
                          (["--set", "model.params.width=16"], ["--resume", "does not fit"])):
        r = invoke("train", cfg, "--out", tmp_path / "run", "--resume", *change)
        line = one_line_error(r)
        assert r.exit_code == 2 and all(w in line for w in words), line
    assert invoke("train", cfg, "--out", tmp_path / "run", "--resume", "--set", "train.threads=2").exit_code == 0
