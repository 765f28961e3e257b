"""A batch run on the service's database queue (``medsight batch --db``): workers in separate
processes share one PostgreSQL run, a killed worker's chunk is taken again after its lease, each
input ends with exactly one row, and the exported lines equal the file mode's. The shipped
pneumonia-xray model on synthetic 28x28 PNGs (their count and order matter here, not content)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select
from test_batch import MODEL, _lines, _pngs
from typer.testing import CliRunner

from medsight.batch import run_batch
from medsight.cli.main import app
from medsight.errors import DataError
from medsight.service import batch_runs
from medsight.service.db import BatchItem, Database, Job
from medsight.service.queue import claim, fail


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'medsight.db'}"
    return request.getfixturevalue("postgres_url")


def _db(url: str) -> Database:
    db = Database(url)
    db.create_all()
    return db


def test_a_dead_workers_chunk_is_taken_again_and_every_input_has_one_row(tmp_path, db_url):
    names = _pngs(tmp_path / "in", 40)
    db = _db(db_url)
    assert batch_runs.start_run(db, "r1", MODEL, names, chunk=8) == 5
    assert batch_runs.start_run(db, "r1", MODEL, names, chunk=8) == 0  # started again: nothing new
    dead = claim(db, "gone-host:1:batch", limit=1, lease_s=0.5, kinds=("batch",), key_prefix="batch:r1:")
    assert len(dead) == 1  # a worker took a chunk and died with it
    done = batch_runs.work(db, "r1", lease_s=5, poll_s=0.1)
    assert done.predicted == 40 and done.chunks == 5  # its own 4, then the dead one's after the lease
    with db.read() as s:
        items = sorted(s.scalars(select(BatchItem.item).where(BatchItem.run == "r1")))
        retaken = s.get(Job, dead[0].id)
    assert items == list(range(40)) and retaken.status == "done" and retaken.crashes == 1 and retaken.attempts == 2
    out = tmp_path / "r1.jsonl"
    assert batch_runs.export_run(db, "r1", out) == 40
    ref = tmp_path / "file.jsonl"
    run_batch(MODEL, names, ref, chunk=8)
    assert {r["index"]: r["score"] for r in _lines(out)} == {r["index"]: r["score"] for r in _lines(ref)}
    assert [r["index"] for r in _lines(out)] == list(range(40))
    db.dispose()


def test_another_list_under_the_same_name_is_refused_and_a_failed_chunk_gives_error_rows(tmp_path, db_url):
    names = _pngs(tmp_path / "in", 20)
    db = _db(db_url)
    batch_runs.start_run(db, "r2", MODEL, names, chunk=10)
    with pytest.raises(DataError, match="another model or input list"):
        batch_runs.start_run(db, "r2", MODEL, names[::-1], chunk=10)
    with pytest.raises(DataError, match="no batch run 'nope'"):
        batch_runs.work(db, "nope")
    poison = claim(db, "w:1:batch", limit=1, lease_s=60, kinds=("batch",), key_prefix="batch:r2:")[0]
    fail(db, poison, "poison: the worker died while running it 3 time(s)", max_attempts=1, backoff_s=0,
         permanent=True)
    with pytest.raises(DataError, match="not finished"):
        batch_runs.export_run(db, "r2", tmp_path / "early.jsonl")
    batch_runs.work(db, "r2", poll_s=0.1)
    assert batch_runs.finish_run(db, "r2") == 10
    status = batch_runs.run_status(db, "r2")
    assert status["rows"] == 20 and status["rows_failed"] == 10 and status["chunks_failed"] == 1
    rows = _lines(tmp_path / "r2.jsonl") if batch_runs.export_run(db, "r2", tmp_path / "r2.jsonl") else []
    bad = [r for r in rows if not r["ok"]]
    assert [r["index"] for r in rows] == list(range(20)) and len(bad) == 10
    assert all(r["error"].startswith("its chunk failed: poison:") for r in bad)
    db.dispose()


def test_two_worker_processes_on_one_postgresql_run_survive_a_sigkill(tmp_path, postgres_url):
    """Two ``medsight batch`` processes, as two machines would run them: one starts the run,
    the other joins it by name; the first is killed mid-run and the second finishes it."""
    names = _pngs(tmp_path / "in", 1200)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MEDSIGHT_BATCH_DB": postgres_url}
    start = [sys.executable, "-m", "medsight", "batch", "--model", MODEL, str(tmp_path / "in"), "--run", "arch",
             "--chunk", "8", "--lease-s", "3", "--quiet"]
    join = [sys.executable, "-m", "medsight", "batch", "--run", "arch", "--lease-s", "3", "--quiet"]
    first = subprocess.Popen(start, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    db = _db(postgres_url)
    deadline = time.monotonic() + 120
    second = None
    while time.monotonic() < deadline and first.poll() is None:
        with db.read() as s:
            by = dict(s.execute(select(BatchItem.worker, func.count()).where(BatchItem.run == "arch")
                                .group_by(BatchItem.worker)).all())
        if by and second is None:
            second = subprocess.Popen(join, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if (len(by) == 2 and sum(by.values()) >= 300) or sum(by.values()) >= 900:  # both at work, or far in
            break
        time.sleep(0.02)
    assert first.poll() is None, "the first worker ended before it could be killed: " + first.stderr.read().decode()
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert second is not None
    _, err = second.communicate(timeout=180)
    assert second.returncode == 0, err.decode()[-2000:]
    r = CliRunner().invoke(app, ["batch", "--db", postgres_url, "--run", "arch", "--out", str(tmp_path / "a.jsonl"),
                                 "--json", str(tmp_path / "summary.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _lines(tmp_path / "a.jsonl")
    assert [x["index"] for x in rows] == list(range(1200)) and all(x["ok"] for x in rows)
    assert [x["input"] for x in rows] == names
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"] == 1200 and summary["exported"] == 1200 and summary["rows_by_this_command"] == 0
    with db.read() as s:
        per_worker = dict(s.execute(select(BatchItem.worker, func.count()).where(BatchItem.run == "arch")
                                    .group_by(BatchItem.worker)).all())
        jobs = list(s.scalars(select(Job).where(Job.kind == "batch")))
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values())  # both did part of it
    assert all(j.status == "done" for j in jobs) and len(jobs) == 150
    db.dispose()


def test_cli_db_mode_refuses_what_does_not_fit(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    folder = str(tmp_path / "in")
    _pngs(tmp_path / "in", 2)
    runner = CliRunner()
    r = runner.invoke(app, ["batch", "--db", url, folder])
    assert r.exit_code != 0 and "--run" in r.output
    r = runner.invoke(app, ["batch", "--db", url, "--run", "a b", "--model", MODEL, folder])
    assert r.exit_code != 0 and "--run must be" in r.output
    r = runner.invoke(app, ["batch", "--db", url, "--run", "ok", "--part", "1/2", "--model", MODEL, folder])
    assert r.exit_code != 0 and "--part" in r.output
    r = runner.invoke(app, ["batch", "--db", url, "--run", "missing"])
    assert r.exit_code != 0 and "no batch run 'missing'" in r.output
