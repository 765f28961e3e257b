"""A segmentation config the task cannot honour leaves `medsight train` with one line and exit 2,
before any training; the reproduce command never depends on the working directory."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medsight.cli.main import app
from medsight.config import config_from_dict, load_config
from medsight.tasks.base import get_task

runner = CliRunner()

MODEL = "model: {name: unet, params: {channels: [8, 16], strides: [2], num_res_units: 1}}"


def train_error(cfg_path, run_dir) -> str:
    r = runner.invoke(app, ["train", str(cfg_path), "--out", str(run_dir)], catch_exceptions=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert not (run_dir / "model").exists()
    return lines[0]


@pytest.mark.parametrize("extra, words", [
    ("preprocessing: {spatial_size: [16, 16, 16]}", ["'preprocessing'", "segmentation"]),
    ("evaluation: {threshold_rule: youden}", ["'evaluation'", "segmentation"]),
    ("train: {epochs: 1, steps_per_epoch: 1, ensemble: 2}", ["'train.ensemble'"]),
    ("train: {epochs: 1, steps_per_epoch: 1, monitor: val_auc}", ["train.monitor", "val_auc", "val_dice"]),
    ("train: {epochs: 1, steps_per_epoch: 1, monitor: val_dice_Middle}", ["val_dice_Middle", "val_dice_Left"]),
])
def test_train_refuses_what_segmentation_does_not_read_or_report(tiny_decathlon, tmp_path, extra, words):
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(f"task: segmentation\ndata: {{source: {tiny_decathlon}}}\n{MODEL}\naugmentation: none\n"
                   f"{extra}\n" + ("" if extra.startswith("train") else "train: {epochs: 1, steps_per_epoch: 1}\n"))
    line = train_error(cfg, tmp_path / "run")
    for w in words:
        assert w in line, line


def test_reproduce_command_comes_from_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "blobs.yaml").write_text("task: segmentation\nname: blobs\ndata: {source: d}\n")
    monkeypatch.chdir(tmp_path)  # a configs/blobs.yaml here must not be claimed for a config built in Python
    built = config_from_dict({"task": "segmentation", "name": "blobs", "data": {"source": "d"}})
    assert "configs/blobs.yaml" not in get_task("segmentation").reproduce(built)
    loaded = load_config(tmp_path / "configs" / "blobs.yaml", ["train.epochs=3"])
    assert get_task("segmentation").reproduce(loaded) == (f"medsight train {tmp_path / 'configs' / 'blobs.yaml'} "
                                                                  "--set train.epochs=3 --out runs/blobs")
