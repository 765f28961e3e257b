"""Readiness: ``/health/ready`` answers 200 only once every worker process has loaded and
warmed up its models, and 503 again when a worker process dies."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient


def test_ready_only_once_the_worker_processes_have_loaded_their_models(make_cfg):
    from medsight.service.app import create_app
    from medsight.service.runner import Service

    cfg = make_cfg(roles=["api", "worker"],
                   workers={"processes": 1, "batch_size": 8, "lease_s": 30, "retry_backoff_s": 0})
    svc = Service(cfg).start()
    try:
        client = TestClient(create_app(svc.ctx))
        # the worker process has just been spawned: it still has to import torch and load and
        # warm up two models, which takes seconds, while this request takes milliseconds
        first = client.get("/health/ready")
        assert first.status_code == 503
        assert first.json()["checks"] == {"database": True, "workers": False}
        deadline = time.monotonic() + 120
        while (r := client.get("/health/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["checks"] == {"database": True, "workers": True}
        # a worker process that dies makes the service not ready until its replacement has loaded
        dead = svc._procs[0]
        dead.kill()
        dead.join(10)
        r = client.get("/health/ready")
        assert r.status_code == 503 and r.json()["checks"]["workers"] is False
    finally:
        svc.stop()
