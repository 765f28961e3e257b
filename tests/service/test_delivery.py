"""Delivery means delivered: a result object is ``sent`` only once the PACS confirmed it; while
the PACS is down it is ``retrying`` (attempts, last error) for ``outputs.retry_for_s``, not
5 attempts, then ``failed``; when the PACS answers a C-ECHO again its waiting and failed sends
are re-driven at once. The alert webhook likewise. Against a real pynetdicom Storage SCP and
HTTP server on 127.0.0.1, started and stopped by the tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.service.conftest import TOKENS, drain

from medsight.service.db import Alert, Job, ResultOutput, now
from support.peers import free_port


class FakePacs:
    """A Storage SCP (and C-ECHO) on 127.0.0.1 that records the SOPInstanceUIDs it stored."""

    def __init__(self) -> None:
        self.port = free_port()
        self.stored: list[str] = []
        self.server = None

    def start(self) -> FakePacs:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        def on_store(event):
            self.stored.append(str(event.dataset.SOPInstanceUID))
            return 0x0000

        ae = AE(ae_title="FAKEPACS")
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


class Hook:
    """A webhook receiver on 127.0.0.1 (answers 204), started and stopped on one port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[bytes] = []
        self.server = None

    def start(self) -> Hook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                hook.bodies.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(405)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def pacs():
    p = FakePacs()
    yield p
    p.stop()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.stop()


@pytest.fixture
def dctx(make_cfg, pacs, hook):
    """A context sending to the fake PACS and webhook; a failed send waits 1000 s (backoff) so
    that only a re-drive brings it back within a test."""
    from medsight.service.context import build_context

    def make(**outputs):
        cfg = make_cfg(outputs={"dicom": [{"name": "pacs", "ae_title": "FAKEPACS", "port": pacs.port, "timeout_s": 5}],
                                **outputs},
                       alerts={"webhook": {"url": f"http://127.0.0.1:{hook.port}/alerts", "timeout_s": 5},
                               "rules": [{"name": "positive", "kind": "above_threshold", "priority": "high"}]},
                       workers={"processes": 0, "batch_size": 8, "lease_s": 30, "retry_backoff_s": 1000,
                                "max_attempts": 2})
        c = build_context(cfg)
        made.append(c)
        return c

    made: list = []
    yield make
    for c in made:
        c.db.dispose()


def _outputs(ctx) -> list[ResultOutput]:
    with ctx.db.read() as s:
        return list(s.scalars(select(ResultOutput).order_by(ResultOutput.id)))


def _due_now(ctx, kind: str) -> None:
    """Let the backoff pass (as time would) for jobs of ``kind``."""
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.kind == kind, Job.status == "pending").values(available_at=now()))


def _api_result(ctx) -> dict:
    from medsight.service.app import create_app

    client = TestClient(create_app(ctx))
    (r,) = client.get("/api/v1/results", headers={"Authorization": f"Bearer {TOKENS['reader']}"}).json()
    return r


def test_an_object_the_pacs_did_not_confirm_is_retrying_not_sent(dctx, xray):
    ctx = dctx()
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)  # the PACS is down: the send fails once and waits out its backoff
    outs = _outputs(ctx)
    assert {o.kind for o in outs} == {"SR", "SC"}
    for o in outs:
        assert o.status == "retrying" and o.attempts == 1 and o.sent_at is None
        assert "unreachable" in o.last_error and "PID-CANARY-7" not in o.last_error
    r = _api_result(ctx)
    assert r["sent"] == []
    assert {(d["kind"], d["status"], d["attempts"]) for d in r["deliveries"]} == {("SR", "retrying", 1),
                                                                                 ("SC", "retrying", 1)}
    assert all(d["sent_at"] is None and d["last_error"] for d in r["deliveries"])


def test_sends_retry_for_the_retry_window_not_max_attempts_then_fail(dctx, xray):
    from medsight.service.worker import Worker

    ctx = dctx(retry_for_s=3600, max_backoff_s=1000)
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)
    w = Worker(ctx.cfg, ctx.db, ctx.catalog, name="t")
    for _ in range(4):  # max_attempts is 2: the old code gave up after the second
        _due_now(ctx, "send")
        w.run_once()
    with ctx.db.read() as s:
        job = s.scalar(select(Job).where(Job.kind == "send"))
    assert job.status == "pending" and job.attempts == 5
    # the backoff doubles from 1000 s but never exceeds max_backoff_s
    assert job.available_at - now() <= 1000 + 1
    assert {(o.status, o.attempts) for o in _outputs(ctx)} == {("retrying", 5)}
    # once the window has passed, the next failure is final
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job.id).values(created_at=now() - 3601, available_at=now()))
    w.run_once()
    with ctx.db.read() as s:
        assert s.get(Job, job.id).status == "failed"
    assert {(o.status, o.attempts) for o in _outputs(ctx)} == {("failed", 6)}
    assert {d["status"] for d in _api_result(ctx)["deliveries"]} == {"failed"}


def test_a_send_batch_that_raises_unexpectedly_keeps_its_retry_window(dctx, xray, monkeypatch):
    from medsight.service import results_out
    from medsight.service.worker import Worker

    ctx = dctx(retry_for_s=3600)
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)

    def broken(*args, **kwargs):
        raise KeyError("unexpected")

    monkeypatch.setattr(results_out, "build_outputs", broken)
    w = Worker(ctx.cfg, ctx.db, ctx.catalog, name="t")
    for _ in range(4):  # max_attempts is 2: the generic batch handler gave up after the second
        _due_now(ctx, "send")
        w.run_once()
    with ctx.db.read() as s:
        job = s.scalar(select(Job).where(Job.kind == "send"))
    assert job.status == "pending" and job.attempts == 5 and "KeyError" in job.error


def test_a_pacs_that_answers_again_gets_its_waiting_and_failed_sends_at_once(dctx, xray, pacs):
    from medsight.service.delivery import DeliveryMonitor

    ctx = dctx()
    for _ in range(2):
        ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)
    with ctx.db.session() as s:  # one of the two sends has given up already
        first = s.scalar(select(Job).where(Job.kind == "send").order_by(Job.id).limit(1))
        first.status = "failed"
        s.execute(update(ResultOutput).where(ResultOutput.result_id == first.payload["result_id"])
                  .values(status="failed"))
    monitor = DeliveryMonitor(ctx.cfg, ctx.db)
    assert monitor.check_once() == {"pacs": False, "webhook": False}
    drain(ctx)
    assert pacs.stored == []  # nothing due: the backoff is 1000 s
    pacs.start()
    assert monitor.check_once()["pacs"] is True
    drain(ctx)
    outs = _outputs(ctx)
    assert len(outs) == 4 and {o.status for o in outs} == {"sent"}
    assert sorted(pacs.stored) == sorted(o.sop_uid for o in outs)  # each object once
    assert all(o.sent_at is not None and o.last_error is None and o.attempts == 2 for o in outs)
    with ctx.db.read() as s:
        assert {j.status for j in s.scalars(select(Job).where(Job.kind == "send"))} == {"done"}
    # a later check finds no backlog: nothing is re-driven or re-sent
    assert "pacs" not in monitor.check_once()


def test_a_webhook_is_retrying_then_failed_then_redriven_when_it_answers(dctx, xray, hook):
    from medsight.service.delivery import DeliveryMonitor

    ctx = dctx(retry_for_s=1)
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)
    with ctx.db.read() as s:
        a = s.scalar(select(Alert))
    assert (a.webhook_status, a.webhook_attempts) == ("retrying", 1) and "unreachable" in a.webhook_error
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.kind == "webhook").values(created_at=now() - 10, available_at=now()))
    drain(ctx)
    with ctx.db.read() as s:
        a = s.scalar(select(Alert))
    assert (a.webhook_status, a.webhook_attempts) == ("failed", 2)
    from medsight.service.app import create_app

    client = TestClient(create_app(ctx))
    (shown,) = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {TOKENS['reader']}"}).json()
    assert shown["webhook_status"] == "failed" and shown["webhook_attempts"] == 2 and shown["webhook_error"]
    hook.start()
    assert DeliveryMonitor(ctx.cfg, ctx.db).check_once()["webhook"] is True
    drain(ctx)
    with ctx.db.read() as s:
        a = s.scalar(select(Alert))
    assert (a.webhook_status, a.webhook_attempts, a.webhook_error) == ("sent", 3, None)
    assert len(hook.bodies) == 1


def test_ready_and_metrics_report_the_backlog_per_destination(dctx, xray):
    from medsight.service.app import create_app
    from medsight.service.delivery import DeliveryMonitor

    ctx = dctx()
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)
    DeliveryMonitor(ctx.cfg, ctx.db).check_once()
    client = TestClient(create_app(ctx))
    r = client.get("/health/ready")
    assert r.status_code == 200  # a backlog does not make the service unready: it still receives
    body = r.json()["outputs"]
    assert body["pacs"]["outputs"] == {"retrying": 2} and body["pacs"]["last_check"]["answers"] is False
    assert body["webhook"]["outputs"] == {"retrying": 1}
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKENS['reader']}"}).text
    assert 'medsight_outputs{destination="pacs",status="retrying"} 2.0' in text
    assert 'medsight_outputs{destination="webhook",status="retrying"} 1.0' in text


def test_backoff_is_capped_and_other_kinds_keep_max_attempts(ctx):
    from medsight.service.queue import claim, enqueue, fail

    with ctx.db.session() as s:
        enqueue(s, "send", "send:x", {"result_id": 1})
        enqueue(s, "instance", "instance:x", {})
    jobs = {j.kind: j for j in claim(ctx.db, "t", limit=2)}
    jobs["send"].attempts = 30
    assert fail(ctx.db, jobs["send"], "down", max_attempts=5, backoff_s=2, retry_for_s=86400,
                max_backoff_s=60) == "pending"
    with ctx.db.read() as s:
        assert 59 <= s.scalar(select(Job.available_at).where(Job.key == "send:x")) - now() <= 60
    jobs["instance"].attempts = 5
    assert fail(ctx.db, jobs["instance"], "boom", max_attempts=5, backoff_s=2) == "failed"


class Stow:
    """A STOW-RS endpoint on 127.0.0.1 answering each POST with a fixed status and body."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/dicom+json") -> None:
        answer = (status, body, content_type)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(answer[0])
                self.send_header("Content-Type", answer[2])
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status,body,reason", [
    (200, b"{}", "not listed in the STOW-RS answer"),  # an answer confirming nothing confirms nothing
    (503, b"PACS overloaded while storing PID-CANARY-7", "HTTPError (HTTP 503)"),
])
def test_a_stow_answer_that_does_not_confirm_an_object_leaves_it_unsent_with_a_scrubbed_reason(
        make_cfg, xray, status, body, reason):
    from medsight.service.context import build_context

    stow = Stow(status, body)
    try:
        ctx = build_context(make_cfg(outputs={"stow_rs": [{"name": "web", "url": stow.url, "timeout_s": 5}]},
                                     workers={"processes": 0, "batch_size": 8, "lease_s": 30,
                                              "retry_backoff_s": 1000}))
        ctx.ingestor.ingest(xray()[1], actor="http:test")
        drain(ctx)
        outs = _outputs(ctx)
        assert outs and all(o.status == "retrying" and o.sent_at is None for o in outs)
        assert all(reason in o.last_error and "PID-CANARY-7" not in o.last_error for o in outs)
        with ctx.db.read() as s:
            assert "PID-CANARY-7" not in s.scalar(select(Job.error).where(Job.kind == "send"))
        ctx.db.dispose()
    finally:
        stow.close()
