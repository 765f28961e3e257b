"""A job that kills its worker cannot block the others: a real service with one worker
process, SIGKILLed each time it runs one given instance. That job is failed as poison after
``max_attempts``, and the three instances claimed in the same batch get their results within
``lease_s`` + 30 s."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from medsight.service.db import Job, Result
from medsight.service.queue import POISON


def test_a_job_that_kills_its_worker_is_failed_as_poison_and_its_batch_mates_get_results(make_cfg, xray,
                                                                                          monkeypatch, caplog):
    from medsight.service import runner
    from medsight.service.context import build_context
    from support.poison_worker import POISON_ENV, crashing_worker_process

    lease_s = 15
    cfg = make_cfg(roles=["worker"], workers={"processes": 1, "threads": 1, "batch_size": 8, "lease_s": lease_s,
                                              "max_attempts": 2, "retry_backoff_s": 0})
    ctx = build_context(cfg)
    sops = []
    for _ in range(4):  # all four are waiting when the worker starts: it claims them in one batch
        ds, data = xray()
        assert ctx.ingestor.ingest(data, actor="http:test").status == "stored"
        sops.append(ds.SOPInstanceUID)
    ctx.db.dispose()
    bad, good = sops[1], [sops[0], *sops[2:]]
    monkeypatch.setenv(POISON_ENV, bad)
    monkeypatch.setattr(runner, "_worker_process", crashing_worker_process)
    caplog.set_level(logging.WARNING, logger="medsight.service.runner")
    svc = runner.Service(cfg).start()
    try:
        deadline = time.monotonic() + 120
        while not svc.workers_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert svc.workers_ready(), "the worker process did not start"
        t0 = time.monotonic()
        while time.monotonic() < t0 + lease_s + 30:
            with svc.ctx.db.read() as s:
                results = set(s.scalars(select(Result.sop_uid)))
                job = s.scalar(select(Job).where(Job.key == f"instance:{bad}"))
            if set(good) <= results and job.status == "failed":
                break
            time.sleep(0.5)
        took = time.monotonic() - t0
    finally:
        svc.stop()
    assert set(good) <= results, f"batch-mates without a result after {took:.0f} s: {set(good) - results}"
    assert bad not in results
    assert job.status == "failed" and job.attempts == 2, (job.status, job.attempts, job.error)
    assert job.error == f"{POISON}the worker died while running it 2 time(s), attempt 2 of 2"
    deaths = [r for r in caplog.records if "exited with -9" in r.getMessage()]
    assert len(deaths) == 2  # really killed, twice: once with its batch, once alone
