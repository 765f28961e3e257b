"""HTTP limits hold while a body streams in: size and part counts of uploads and STOW-RS, a
STOW-RS to a study URL stores only that study, truncated bodies store nothing, huge ids are
404, and every response carries the security headers."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.service.conftest import TOKENS

from medsight.service.db import AuditEvent, Instance

BOUNDARY = "medsight-boundary"


def H(role="sender"):
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def client(ctx):
    from medsight.service.app import create_app

    return TestClient(create_app(ctx))


def _client(make_cfg, **http):
    from medsight.service.app import create_app
    from medsight.service.context import build_context

    ctx = build_context(make_cfg(http={"port": 0, "max_upload_mb": 1, **http}))
    return ctx, TestClient(create_app(ctx))


def _related(parts, *, close=True):
    b = BOUNDARY.encode()
    body = b"".join(b"--" + b + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts)
    if close:
        body += b"--" + b + b"--\r\n"
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}', **H()}


def _counts(ctx):
    with ctx.db.read() as s:
        return (s.scalar(select(func.count(Instance.id))),
                s.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action.in_(["refused", "received"]))))


def _stream(app, path: str, headers: dict[str, str], chunks) -> tuple[int, int]:
    """POST ``chunks`` to the ASGI ``app`` as a server does (one receive() per chunk, no
    Content-Length); returns (status, chunks the app pulled). TestClient would read the whole
    body before calling the app."""
    import asyncio

    pulled, status = 0, None

    async def receive():
        nonlocal pulled
        chunk = next(chunks, None)
        pulled += chunk is not None
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
    asyncio.run(app(scope, receive, send))
    return status, pulled


def test_a_chunked_upload_without_content_length_is_refused_at_the_limit_as_it_streams(ctx):
    from medsight.service.app import create_app

    def body():  # 200 chunks of 64 KiB (12.8 MB) against the 1 MB limit, sent without a Content-Length
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big.dcm\"\r\n"
               "Content-Type: application/dicom\r\n\r\n").encode()
        for _ in range(200):
            yield b"\0" * 65536

    for path, ctype in (("/api/v1/instances", f"multipart/form-data; boundary={BOUNDARY}"),
                        ("/dicom-web/studies", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}')):
        status, pulled = _stream(create_app(ctx), path, {"Content-Type": ctype, **H()}, body())
        assert status == 413
        assert pulled <= 17, path  # stopped reading at the limit (16 chunks), not after the whole body
    assert _counts(ctx) == (0, 0)


def test_an_upload_with_more_files_than_max_parts_is_413_and_stores_nothing(make_cfg, xray):
    ctx, client = _client(make_cfg, max_parts=3)
    files = [("f", (f"{i}.dcm", xray()[1])) for i in range(4)]
    r = client.post("/api/v1/instances", files=files, headers=H())
    assert r.status_code == 413 and "at most 3 parts" in r.json()["error"]
    assert client.post("/api/v1/instances", files=files[:3], headers=H()).status_code == 200
    assert _counts(ctx) == (3, 3)
    ctx.db.dispose()


def test_a_stow_with_20000_parts_is_413_before_any_is_processed(make_cfg):
    ctx, client = _client(make_cfg, max_upload_mb=2)
    body, headers = _related([b""] * 20_000)  # 1.2 MB: under the size limit, over max_parts (1000)
    r = client.post("/dicom-web/studies", content=body, headers=headers)
    assert r.status_code == 413 and "at most 1000 parts" in r.json()["error"]
    assert _counts(ctx) == (0, 0)  # no audit row per part
    ctx.db.dispose()


def test_a_stow_to_a_study_url_refuses_and_does_not_store_an_instance_of_another_study(client, ctx, xray):
    ds, data = xray()
    other, other_data = xray()
    assert other.StudyInstanceUID != ds.StudyInstanceUID
    body, headers = _related([data, other_data])
    r = client.post(f"/dicom-web/studies/{ds.StudyInstanceUID}", content=body, headers=headers)
    assert r.status_code == 202
    failed = r.json()["00081198"]["Value"]
    assert [f["00081155"]["Value"] for f in failed] == [[other.SOPInstanceUID]]
    assert failed[0]["00081197"]["Value"] == [0xA900]
    with ctx.db.read() as s:
        assert list(s.scalars(select(Instance.sop_uid))) == [ds.SOPInstanceUID]
    body, headers = _related([other_data])
    assert client.post(f"/dicom-web/studies/{ds.StudyInstanceUID}", content=body, headers=headers).status_code == 409


def test_stow_stores_exactly_the_parts_bytes_and_nothing_from_a_truncated_body(client, ctx, xray):
    ds, data = xray()
    body, headers = _related([data], close=False)
    for cut in (body, body + b"--", body + f"--{BOUNDARY}".encode()):  # ends without the closing delimiter
        r = client.post("/dicom-web/studies", content=cut, headers=headers)
        assert r.status_code == 422 and "closing boundary" in r.json()["error"]
    assert _counts(ctx) == (0, 0)
    body, headers = _related([data])
    assert client.post("/dicom-web/studies", content=body, headers=headers).status_code == 200
    with ctx.db.read() as s:
        inst = s.scalar(select(Instance))
    assert inst.size == len(data) and inst.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_out_of_range_ids_are_404(make_cfg, request, database):
    from medsight.service.app import create_app
    from medsight.service.context import build_context

    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    ctx = build_context(make_cfg(database={"url": url}))
    client = TestClient(create_app(ctx))
    for path, method in (("/api/v1/results/{}", "get"), ("/api/v1/results/{}/overlay.png", "get"),
                         ("/api/v1/results/{}/mask.nii.gz", "get"), ("/api/v1/alerts/{}/ack", "post")):
        for big in (2**31, 2**63, 10**30):  # past PostgreSQL's INTEGER, SQLite's 64-bit integer, both
            assert getattr(client, method)(path.format(big), headers=H("reader")).status_code == 404, (path, big)
    ctx.db.dispose()


def test_every_response_has_security_headers_and_api_json_is_not_cached(client):
    for r in (client.get("/health"), client.get("/api/v1/worklist", headers=H("reader")), client.get("/ui/"),
              client.get("/ui/api.html"), client.get("/api/v1/worklist")):
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/api/v1/worklist", headers=H("reader")).headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/worklist").headers["Cache-Control"] == "no-store"  # the 401 too
    page = client.get("/ui/api.html").text
    assert "<script>" not in page  # script-src 'self' allows no inline script: Swagger UI starts from api.js
    assert client.get("/ui/api.js").status_code == 200
