"""A batch run in the service's database: any number of workers, on any number of machines,
take its chunks from the service's durable queue and store each result there.

``medsight batch --db URL --run NAME --model M INPUTS`` records the run (its model and input
list, in ``kv``) and enqueues one ``batch`` job per chunk, keyed ``batch:NAME:FIRST``, so
starting the same run again adds nothing. Every ``medsight batch --db URL --run NAME`` (the
starting one, and any other, on any machine that sees the inputs and the model) is a worker:
it claims one chunk at a time under a lease that it renews while it predicts
(:class:`~medsight.service.queue.Held`), and stores the chunk's rows in ``batch_items``
(unique per run and position) in the same transaction that completes the job.

What the service's queue gives the workers (:mod:`medsight.service.queue`):

* a worker killed mid-chunk (SIGKILL, a machine lost) leaves its lease to expire; any other
  worker then takes the chunk again. Rows are inserted with "on conflict do nothing", so a
  chunk predicted twice still leaves one row per input.
* a chunk that kills its worker each time is failed as poison after its attempts; its inputs
  then get an error row each, so every input of a finished run has exactly one row.
* PostgreSQL hands chunks out with ``FOR UPDATE SKIP LOCKED`` (workers never wait on each
  other); SQLite works for the workers of one machine.

A worker stops when the run has no chunk pending or running. ``--out FILE`` then writes the
run's rows as JSON lines in input order, the same file the file mode writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medsight.batch.predict import chunks, make_predictor, peak_rss_mb, predict_rows
from medsight.errors import ConfigError, DataError

__all__ = ["RunSpec", "start_run", "work", "run_status", "finish_run", "export_run", "work_in_processes"]

log = logging.getLogger(__name__)

KIND = "batch"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


@dataclass(frozen=True)
class RunSpec:
    """What a run predicts: recorded when it starts, read by every worker."""

    run: str
    model: str
    backend: str
    n: int
    names_sha256: str
    chunk: int
    accept_modalities: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "accept_modalities": list(self.accept_modalities)}, sort_keys=True)


def _key(run: str) -> str:
    return f"batch-run:{run}"


def _check_name(run: str) -> str:
    if not _NAME.match(run or ""):
        raise ConfigError(f"--run must be 1-60 letters, digits, '.', '_' or '-' (starting with a letter or digit); "
                          f"got {run!r}")
    return run


def _digest(names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def read_spec(db: Any, run: str) -> RunSpec:
    """The run's record.

    Raises:
        DataError: no run of that name in this database.
    """
    from medsight.service.db import KeyValue

    with db.read() as s:
        kv = s.get(KeyValue, _key(_check_name(run)))
    if kv is None:
        raise DataError(f"no batch run {run!r} in this database: start it with --model and its inputs")
    data = json.loads(kv.value)
    return RunSpec(**{**data, "accept_modalities": tuple(data.get("accept_modalities") or ())})


def start_run(db: Any, run: str, model: str, names: Sequence[str], *, chunk: int, backend: str = "torch",
              accept_modalities: Sequence[str] | None = None) -> int:
    """Record the run and enqueue its chunks (again: nothing new).

    Returns:
        How many chunks were enqueued now.

    Raises:
        DataError: the database holds a run of this name with another model or input list.
    """
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from medsight.service.db import KeyValue

    spec = RunSpec(run=_check_name(run), model=str(model), backend=backend, n=len(names), names_sha256=_digest(names),
                   chunk=chunk, accept_modalities=tuple(accept_modalities or ()))
    with db.session() as s:
        ins = pg_insert(KeyValue) if s.get_bind().dialect.name == "postgresql" else sqlite_insert(KeyValue)
        s.execute(ins.values(key=_key(run), value=spec.to_json()).on_conflict_do_nothing(index_elements=["key"]))
    have = read_spec(db, run)
    if (have.model, have.backend, have.n, have.names_sha256) != (spec.model, spec.backend, spec.n, spec.names_sha256):
        raise DataError(f"batch run {run!r} in this database has another model or input list "
                        f"({have.model}, {have.n} inputs); give another --run")
    added = 0
    todo = list(range(len(names)))
    batch: list[list[tuple[int, str]]] = []
    for c in chunks(todo, names, have.chunk):
        batch.append(c)
        if len(batch) == 200:
            added += _enqueue(db, run, batch)
            batch = []
    if batch:
        added += _enqueue(db, run, batch)
    return added


def _enqueue(db: Any, run: str, batch: list[list[tuple[int, str]]]) -> int:
    from medsight.service.queue import enqueue

    with db.session() as s:
        return sum(enqueue(s, KIND, f"batch:{run}:{c[0][0]}", {"run": run, "items": [list(x) for x in c]})
                   for c in batch)


@dataclass
class WorkSummary:
    """What one worker did."""

    worker: str
    chunks: int = 0
    predicted: int = 0
    failed: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def work(db: Any, run: str, *, worker: str | None = None, lease_s: float = 60.0, poll_s: float = 0.5,
         max_attempts: int = 3, stop: threading.Event | None = None,
         progress: Callable[[int], None] | None = None) -> WorkSummary:
    """Take the run's chunks one at a time and store their rows until none is pending or running.

    Args:
        lease_s: how long a chunk stays this worker's without a renewal (a dead worker's chunk is
            taken again after it).
        max_attempts: a chunk whose worker died this many times is failed as poison.
        stop: set it to stop after the chunk in hand.
    """
    from medsight.service.queue import Held, claim, fail, requeue_expired

    spec = read_spec(db, run)
    name = worker or f"{socket.gethostname()}:{os.getpid()}:batch"
    predictor = make_predictor(spec.model, spec.backend, spec.accept_modalities, threads=None)
    summary = WorkSummary(worker=name)
    t0 = time.perf_counter()
    prefix = f"batch:{run}:"
    while stop is None or not stop.is_set():
        requeue_expired(db, max_attempts=max_attempts)
        jobs = claim(db, name, limit=1, lease_s=lease_s, kinds=(KIND,), key_prefix=prefix)
        if not jobs:
            status = run_status(db, run)
            if status["chunks_pending"] == 0 and status["chunks_running"] == 0:
                break
            time.sleep(poll_s)  # others hold the rest: wait for them to finish, or for a lease to expire
            continue
        job = jobs[0]
        try:
            with Held(db, jobs, lease_s):
                rows = predict_rows(predictor, [(int(i), str(n)) for i, n in job.payload["items"]])
                _store(db, run, name, rows, job)
        except Exception as exc:  # noqa: BLE001 - this chunk failed (the database, a bug): retry it later
            from medsight.service.logs import safe_error

            fail(db, job, safe_error(exc), max_attempts=max_attempts, backoff_s=1.0)
            continue
        summary.chunks += 1
        summary.predicted += len(rows)
        summary.failed += sum(1 for r in rows if not r["ok"])
        if progress is not None:
            progress(len(rows))
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.peak_rss_mb = peak_rss_mb()
    return summary


def _store(db: Any, run: str, worker: str, rows: list[dict[str, Any]], job: Any) -> None:
    from medsight.service.queue import complete

    with db.session() as s:
        _insert_rows(s, [{"run": run, "item": r["index"], "input": r["input"], "ok": r["ok"], "row": r,
                          "worker": worker} for r in rows])
        complete(s, job)


def _insert_rows(s: Any, values: list[dict[str, Any]]) -> None:
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from medsight.service.db import BatchItem

    if not values:
        return
    ins = pg_insert(BatchItem) if s.get_bind().dialect.name == "postgresql" else sqlite_insert(BatchItem)
    s.execute(ins.values(values).on_conflict_do_nothing(index_elements=["run", "item"]))


def run_status(db: Any, run: str) -> dict[str, int]:
    """The run's counts: inputs, rows stored (and failed among them), chunks by status."""
    from sqlalchemy import func, select

    from medsight.service.db import BatchItem, Job

    spec = read_spec(db, run)
    with db.read() as s:
        by_status = dict(s.execute(select(Job.status, func.count()).where(
            Job.kind == KIND, Job.key.startswith(f"batch:{run}:", autoescape=True)).group_by(Job.status)).all())
        done, bad = s.execute(select(func.count(), func.count().filter(BatchItem.ok.is_(False)))
                              .where(BatchItem.run == run)).one()
    return {"n": spec.n, "rows": int(done), "rows_failed": int(bad),
            **{f"chunks_{k}": int(by_status.get(k, 0)) for k in ("pending", "running", "done", "failed")}}


def finish_run(db: Any, run: str) -> int:
    """Give each input of a failed (poison) chunk an error row, once the run has no chunk
    pending or running; returns how many rows were added."""
    from sqlalchemy import select

    from medsight.service.db import Job

    status = run_status(db, run)
    if status["chunks_pending"] or status["chunks_running"] or not status["chunks_failed"]:
        return 0
    with db.read() as s:
        failed = list(s.execute(select(Job.payload, Job.error).where(
            Job.kind == KIND, Job.status == "failed", Job.key.startswith(f"batch:{run}:", autoescape=True))).all())
    added = 0
    with db.session() as s:
        for payload, error in failed:
            values = [{"run": run, "item": int(i), "input": str(n), "ok": False, "worker": None,
                       "row": {"index": int(i), "error": f"its chunk failed: {error}", "input": str(n), "ok": False}}
                      for i, n in payload["items"]]
            _insert_rows(s, values)
            added += len(values)
    return added


def export_run(db: Any, run: str, out: str | Path) -> int:
    """Write the run's rows to ``out`` as JSON lines in input order (streamed); returns how many.

    Raises:
        DataError: the run is not finished (some input has no row yet).
    """
    from sqlalchemy import select

    from medsight.service.db import BatchItem

    status = run_status(db, run)
    if status["rows"] < status["n"]:
        raise DataError(f"batch run {run!r} is not finished: {status['rows']} of {status['n']} inputs have a "
                        f"result ({status['chunks_pending']} chunk(s) pending, {status['chunks_running']} running)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    n = 0
    with db.read() as s, tmp.open("w", encoding="utf-8") as f:
        for row in s.scalars(select(BatchItem.row).where(BatchItem.run == run).order_by(BatchItem.item)
                             .execution_options(yield_per=1000)):
            f.write(json.dumps(row) + "\n")
            n += 1
    tmp.replace(out)
    return n


# -- several workers on this machine ----------------------------------------------------------
def _work_process(url: str, run: str, lease_s: float, poll_s: float) -> None:
    import torch

    from medsight.service.db import Database

    torch.set_num_threads(1)
    db = Database(url)
    try:
        work(db, run, lease_s=lease_s, poll_s=poll_s,
             worker=f"{socket.gethostname()}:{os.getpid()}:batch")
    finally:
        db.dispose()


def work_in_processes(url: str, run: str, workers: int, *, lease_s: float = 60.0, poll_s: float = 0.5,
                      progress: Callable[[int], None] | None = None) -> list[int]:
    """Run ``workers`` worker processes (``spawn``, one torch thread each) until the run is done;
    report the rows stored as they grow. Returns the processes' exit codes."""
    import multiprocessing as mp

    from medsight.service.db import Database

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_work_process, args=(url, run, lease_s, poll_s), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    db = Database(url)
    seen = run_status(db, run)["rows"]
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            rows = run_status(db, run)["rows"]
            if progress is not None and rows > seen:
                progress(rows - seen)
            seen = rows
        for p in procs:
            p.join()
        rows = run_status(db, run)["rows"]
        if progress is not None and rows > seen:
            progress(rows - seen)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
        db.dispose()
    return [p.exitcode if p.exitcode is not None else -1 for p in procs]
