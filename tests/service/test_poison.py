"""A job that kills its worker cannot block the others: a real service with one worker
process, SIGKILLed each time it runs one given instance. That job is failed as poison after
``max_attempts``, and the three instances claimed in the same batch get their results within
``lease_s`` + 30 s. The service releases the leases of dead worker processes when it starts;
poison jobs are listed with their reason by the API and the dashboard's queue panel, and
counted in ``/metrics``."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from medsight.service.db import Job, Result
from medsight.service.queue import POISON, claim, enqueue, fail, release_workers
from support.facts import says


def test_a_job_that_kills_its_worker_is_failed_as_poison_and_its_batch_mates_get_results(make_cfg, xray,
                                                                                          monkeypatch, caplog):
    from medsight.service import runner
    from medsight.service.context import build_context
    from support.poison_worker import POISON_ENV, crashing_worker_process

    lease_s = 30  # waiting out a lease would take too long: the supervisor releases a dead worker's jobs at once
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
    caplog.set_level(logging.WARNING, logger="medsight.service")
    svc = runner.Service(cfg).start()
    try:
        # the first worker process may claim the batch and die within milliseconds of being
        # ready, so its readiness is read from its event (which outlives it), not from
        # workers_ready() (alive and ready, which a poll can miss or see change between two calls)
        assert svc._ready[0].wait(120), "the worker process did not start"
        t0 = time.monotonic()
        while time.monotonic() < t0 + lease_s + 30:
            with svc.ctx.db.read() as s:
                results = set(s.scalars(select(Result.sop_uid)))
                job = s.scalar(select(Job).where(Job.key == f"instance:{bad}"))
            if set(good) <= results and job.status == "failed":
                break
            time.sleep(0.5)
        took = time.monotonic() - t0
        print(f"batch-mates' results and the poison verdict {took:.1f} s after the worker process was ready")
    finally:
        svc.stop()
    assert set(good) <= results, f"batch-mates without a result after {took:.0f} s: {set(good) - results}"
    assert bad not in results
    assert job.status == "failed" and job.attempts == 2, (job.status, job.attempts, job.error)
    assert job.error.startswith(POISON)  # the machine-readable mark of a poison job
    says(job.error, "died", "2 of 2")  # why it failed, and the attempts spent
    deaths = [r for r in caplog.records if "exited with -9" in r.getMessage()]
    assert len(deaths) == 2  # really killed, twice: once with its batch, once alone
    # by the supervisor, at once: the whole batch (the four instances and the series jobs claimed
    # with them), then the culprit alone
    released = [r.getMessage() for r in caplog.records if "of a dead worker" in r.getMessage()]
    counts = [[int(n) for n in re.findall(r"\d+", m)] for m in released]  # (jobs released, failed as poison)
    assert len(counts) == 2 and counts[1] == [1, 1], released
    assert counts[0][0] >= 4 and counts[0][1] == 0, released


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> dict:
    return {} if request.param == "sqlite" else {"database": {"url": request.getfixturevalue("postgres_url")}}


def test_on_start_the_leases_of_dead_worker_processes_are_released_at_once(make_cfg, database):
    from medsight.service.context import build_context
    from medsight.service.runner import Service

    cfg = make_cfg(roles=["api"], **database)
    ctx = build_context(cfg)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    holders = {"dead": f"{host}:{gone.pid}:w0", "alive": f"{host}:{os.getppid()}:w0",
               "elsewhere": f"another-host:{gone.pid}:w0"}
    with ctx.db.session() as s:
        for key in holders:
            enqueue(s, "instance", key)
    for key, worker in holders.items():
        (job,) = claim(ctx.db, worker, lease_s=120)
        assert job.key == key
    svc = Service(cfg).start()
    svc.stop()
    with ctx.db.read() as s:
        rows = {j.key: j for j in s.scalars(select(Job))}
    ctx.db.dispose()
    assert (rows["dead"].status, rows["dead"].worker, rows["dead"].crashes) == ("pending", None, 1)
    assert rows["alive"].status == rows["elsewhere"].status == "running"  # they may still be working


@pytest.fixture
def poisoned(ctx):
    """One instance job failed as poison, one send job failed for another reason."""
    with ctx.db.session() as s:
        enqueue(s, "instance", "instance:1.2.3")
        enqueue(s, "send", "send:7")
    for _ in range(2):
        (job,) = claim(ctx.db, "h:1:w0", kinds=("instance",))
        release_workers(ctx.db, ["h:1:"], max_attempts=2)
    (send,) = claim(ctx.db, "h:1:out0")
    fail(ctx.db, send, "PACS: refused with status 0xA700", max_attempts=5, backoff_s=0, permanent=True)
    return ctx


def test_failed_jobs_are_listed_with_their_reason_and_poison_counted_in_metrics(poisoned):
    from fastapi.testclient import TestClient
    from tests.service.conftest import TOKENS

    from medsight.service.app import create_app

    client = TestClient(create_app(poisoned))
    h = {"Authorization": f"Bearer {TOKENS['reader']}"}
    failed = client.get("/api/v1/queue/failed", headers=h).json()
    assert [(j["kind"], j["key"], j["poison"], j["attempts"], j["crashes"]) for j in failed] == [
        ("send", "send:7", False, 1, 0), ("instance", "instance:1.2.3", True, 2, 2)]
    assert failed[1]["error"].startswith(POISON)
    says(failed[1]["error"], "died", "2 of 2")
    assert [j["key"] for j in client.get("/api/v1/queue/failed?kind=send", headers=h).json()] == ["send:7"]
    text = client.get("/metrics", headers=h).text
    assert 'medsight_poison_jobs{kind="instance"} 1.0' in text
    assert 'medsight_poison_jobs{kind="send"}' not in text


def test_the_dashboard_queue_panel_shows_poison_jobs_with_their_reason(poisoned):
    import threading
    from pathlib import Path

    import uvicorn
    from tests.service.conftest import TOKENS

    from medsight.service.app import create_app
    from support.peers import free_port

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed (run `make peers`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(poisoned), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#token", TOKENS["reader"])
            page.click("#signin button[type=submit]")
            page.wait_for_selector("#worklist")
            page.click("nav a[href='#/queue']")
            page.wait_for_selector("#failed tbody tr")
            rows = page.locator("#failed tbody tr")
            assert rows.count() == 2
            poison_row = page.locator("#failed tbody tr:has(.badge.poison)")
            assert poison_row.count() == 1
            says(poison_row.inner_text(), "died", "2 of 2")  # the reason is shown
            assert "instance:1.2.3" in poison_row.inner_text()
            counts = page.inner_text("#queue")
            assert "instance" in counts and "send" in counts
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
