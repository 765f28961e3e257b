"""bf16 on a CPU that has no native bf16: training is refused at once, inference runs in fp32 (and says so)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import medsight
from medsight.engine import run, sliding
from medsight.errors import ConfigError

CONFIG = Path(__file__).parents[2] / "configs" / "pneumonia-xray.yaml"


def test_native_bf16_is_what_onednn_reports():
    assert sliding.native_bf16() is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_bf16_training_without_native_bf16_is_refused_before_the_data_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    missing = tmp_path / "no-such-data"  # a DataError if the data were read first
    with pytest.raises(ConfigError, match=r"train\.precision: bf16 needs a CPU with native bf16.*fp32"):
        medsight.train(CONFIG, run_dir=tmp_path / "run",
                       overrides=["train.precision=bf16", f"data.source={missing}"])
    assert not (tmp_path / "run").exists()


def test_bf16_inference_without_native_bf16_runs_in_fp32_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(sliding, "native_bf16", lambda: False)
    sliding._note_fp32_fallback.cache_clear()
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 1)
    x = torch.rand(1, 8, 8, 8)
    with caplog.at_level(logging.WARNING, logger="medsight.engine.sliding"):
        bf16 = [sliding.predict_probabilities(net, x, patch_size=(8, 8, 8), precision="bf16") for _ in range(2)]
    fp32 = sliding.predict_probabilities(net, x, patch_size=(8, 8, 8))
    assert sum("no native bf16" in r.getMessage() for r in caplog.records) == 1
    assert all(torch.equal(b, fp32) for b in bf16)
    sliding._note_fp32_fallback.cache_clear()


def test_bf16_inference_with_native_bf16_runs_in_bf16(monkeypatch):
    monkeypatch.setattr(sliding, "native_bf16", lambda: True)
    seen = []
    net = torch.nn.Conv3d(1, 2, 1)
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    sliding.predict_probabilities(net, torch.rand(1, 8, 8, 8), patch_size=(8, 8, 8), precision="bf16")
    assert seen and set(seen) == {torch.bfloat16}
