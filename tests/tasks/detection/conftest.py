"""Fixtures of the detection tests: a small synthetic LUNA16-style data set and a tiny model
trained on it through ``medsight train`` (once per session; it detects nothing useful, see
support/chest_ct.py for the probability oracle that stands in for a trained network)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from medsight.cli.main import app
from support.chest_ct import synthetic_luna, tiny_config


@pytest.fixture(scope="session")
def luna(tmp_path_factory):
    """5 synthetic scans (NIfTI named by series UID) with annotations.csv, annotations_excluded.csv
    and seriesuids.csv."""
    return synthetic_luna(tmp_path_factory.mktemp("luna") / "data", n=5, seed=500)


@pytest.fixture(scope="session")
def tiny_run(luna, tmp_path_factory):
    """The run folder of a tiny detector trained by ``medsight train`` on ``luna``."""
    root = tmp_path_factory.mktemp("tiny-det")
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(luna)))
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.stdout + (r.stderr or "")
    return root / "run"


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    return tiny_run / "model"
