"""Batch inference over an archive (``medsight batch``): streamed to JSON lines, resumable after
a kill (a torn last line is cut off and redone), exactly one line per input, parallel workers,
a CSV manifest and one machine's part of the list. The shipped pneumonia-xray model on
synthetic 28x28 PNGs (the inputs' content does not matter here, their count and order do)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medsight.batch import inputs_from_manifest, list_inputs, read_done, run_batch
from medsight.cli.main import app
from medsight.errors import ConfigError, DataError

MODEL = "pneumonia-xray"


def _pngs(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:05d}.png"
        PILImage.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in out.read_text().splitlines() if x.strip()]


def test_every_input_gets_one_line_and_a_rerun_only_does_what_is_missing(tmp_path):
    names = _pngs(tmp_path / "in", 150)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)  # a truncated PNG
    names.append(str(tmp_path / "in" / "broken.png"))
    out = tmp_path / "results.jsonl"
    first = run_batch(MODEL, names, out, chunk=32)
    rows = _lines(out)
    assert [r["index"] for r in rows] == list(range(151)) and first.predicted == 151 and first.failed == 1
    assert rows[-1]["ok"] is False and "broken.png" in rows[-1]["error"] and all(r["ok"] for r in rows[:-1])
    assert all(0 <= r["score"] <= 1 for r in rows[:-1]) and first.peak_rss_mb > 0

    # a run killed part-way: the first 100 lines whole, the next one torn
    kept = out.read_text().splitlines(keepends=True)[:100]
    out.write_text("".join(kept) + '{"index": 100, "input": "' + names[100][:10])
    again = run_batch(MODEL, names, out, chunk=32)
    assert again.repaired and again.already_done == 100 and again.predicted == 51 and again.failed == 1
    rerun = _lines(out)
    assert sorted(r["index"] for r in rerun) == list(range(151))  # each input exactly once
    assert {r["index"]: r["score"] for r in rerun if r["ok"]} == {r["index"]: r["score"] for r in rows if r["ok"]}
    nothing = run_batch(MODEL, names, out)
    assert nothing.predicted == 0 and nothing.already_done == 151 and len(_lines(out)) == 151


def test_a_file_of_another_input_list_is_refused_and_left_as_it_is(tmp_path):
    names = _pngs(tmp_path / "in", 20)
    out = tmp_path / "results.jsonl"
    run_batch(MODEL, names, out)
    before = out.read_bytes()
    with pytest.raises(DataError, match="another input list"):
        run_batch(MODEL, list(reversed(names)), out)
    assert out.read_bytes() == before
    out.write_text("not json\n")
    with pytest.raises(DataError, match="line 1 is not a batch result"):
        read_done(out, names)


def test_two_worker_processes_give_the_lines_one_process_gives(tmp_path):
    names = _pngs(tmp_path / "in", 200)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run_batch(MODEL, names, one, chunk=16)
    summary = run_batch(MODEL, names, two, chunk=16, workers=2)
    assert summary.predicted == 200 and summary.failed == 0
    a = {r["index"]: r["score"] for r in _lines(one)}
    b = _lines(two)
    assert len(b) == 200 and {r["index"]: r["score"] for r in b} == a


def test_manifest_paths_are_beside_it_and_a_part_is_every_nth(tmp_path):
    names = _pngs(tmp_path / "in", 10)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,site\n" + "".join(f"in/{Path(n).name},A\n" for n in names))
    assert inputs_from_manifest(manifest) == [str(tmp_path / "in" / Path(n).name) for n in names]
    part = list_inputs(lambda x: x, [], manifest=manifest, part=(2, 3))
    assert [Path(p).name for p in part] == [Path(names[i]).name for i in (1, 4, 7)]
    with pytest.raises(ConfigError, match="K/N"):
        list_inputs(lambda x: x, [], manifest=manifest, part=(4, 3))
    (tmp_path / "bad.csv").write_text("file\nx.png\n")
    with pytest.raises(DataError, match="needs a 'path' column"):
        inputs_from_manifest(tmp_path / "bad.csv")


def test_cli_batch_after_a_sigkill_gives_every_input_exactly_one_result(tmp_path):
    _pngs(tmp_path / "in", 1500)
    out = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "medsight", "batch", "--model", MODEL, str(tmp_path / "in"), "--out", str(out),
           "--chunk", "8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size > 40_000:  # well into the run
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(out.read_bytes().splitlines())
    assert 0 < written < 1500
    r = CliRunner().invoke(app, ["batch", "--model", MODEL, str(tmp_path / "in"), "--out", str(out), "--json",
                                 str(tmp_path / "summary.json")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = _lines(out)
    assert sorted(x["index"] for x in rows) == list(range(1500)) and all(x["ok"] for x in rows)
    assert summary["already_done"] + summary["predicted"] == 1500 and summary["already_done"] >= written - 1


def test_a_model_the_caller_loaded_is_the_one_that_predicts(tmp_path, monkeypatch):
    """The CLI loads the model to list the inputs; run_batch predicts with that same object
    instead of loading it a second time."""
    import medsight.models.saved as saved

    names = _pngs(tmp_path / "in", 5)
    model = saved.load_model(MODEL)
    loads = []
    real = saved.load_model
    monkeypatch.setattr(saved, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    summary = run_batch(MODEL, names, tmp_path / "a.jsonl", loaded=model)
    assert summary.predicted == 5 and summary.failed == 0 and loads == []
    run_batch(MODEL, names, tmp_path / "b.jsonl")  # without it, the model is loaded
    assert len(loads) == 1
    assert [r["score"] for r in _lines(tmp_path / "a.jsonl")] == [r["score"] for r in _lines(tmp_path / "b.jsonl")]
