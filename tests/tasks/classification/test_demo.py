"""`make demo` runs end to end (with 15 training steps here, to stay fast)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.realdata
def test_demo_trains_evaluates_reports_and_predicts(tmp_path, shared_data):
    shared_data("pneumoniamnist/pneumoniamnist.npz")
    env = dict(os.environ, MEDSIGHT_DEMO_EPOCHS="1", MEDSIGHT_DEMO_QUICK="1", MEDSIGHT_DEMO_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr
    assert "What the demo did" in r.stdout and str(tmp_path / "report.html") in r.stdout
    ev = json.loads((tmp_path / "test.json").read_text())
    assert ev["n"] == 624 and ev["auc"] > 0.7  # 15 steps of one epoch already separate the classes
    preds = json.loads((tmp_path / "predictions.json").read_text())
    assert len(preds) == 5 and all("probabilities" in p for p in preds)
    assert "<html" in (tmp_path / "report.html").read_text()
