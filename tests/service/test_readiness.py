"""Readiness and shutdown: ``/health/ready`` answers 200 only once every worker process has
loaded and warmed up its models, and 503 again when a worker process dies; SIGTERM to the
service stops it and its worker processes gracefully."""

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


def test_sigterm_stops_the_service_and_its_worker_processes_gracefully(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import httpx
    import yaml

    from support.peers import free_port

    port = free_port()
    cfg = {"storage": {"path": str(tmp_path / "data")}, "dicom": {"port": 0}, "http": {"port": port},
           "workers": {"processes": 1}}
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(cfg))
    log = tmp_path / "service.log"
    exe = Path(sys.executable).parent / "medsight"
    proc = subprocess.Popen([str(exe), "serve", "--config", str(tmp_path / "service.yaml")],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        worker_pid = int(re.search(r"started worker process (\d+)", log.read_text()).group(1))
        proc.send_signal(signal.SIGTERM)  # the service process only, as `kill <pid>` or systemd would
        assert proc.wait(60) == 0  # not killed by the signal: it stopped itself
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "service stopped" in text and "leaked semaphore" not in text
    try:
        os.kill(worker_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the worker process outlived the service"
