"""The HTTP API: tokens and roles, upload and STOW-RS with their status codes, queries,
worklist ranking, audit of views, metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.service.conftest import TOKENS, dicom_bytes, drain

from medsight.service.db import AuditEvent


@pytest.fixture
def client(ctx):
    from medsight.service.app import create_app

    return TestClient(create_app(ctx))


def H(role):
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def test_nothing_but_health_answers_without_a_token(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health/ready").status_code == 200
    paths = client.app.openapi()["paths"]
    assert len(paths) >= 18
    for path, ops in paths.items():
        if path in ("/health", "/health/ready"):
            continue
        for method in ops:
            resp = client.request(method.upper(), path.replace("{", "").replace("}", ""))
            assert resp.status_code == 401, (method, path, resp.status_code)
            assert resp.headers["www-authenticate"] == "Bearer"
    ui = client.get("/ui/")  # the dashboard's static shell: a sign-in form, no data
    assert ui.status_code == 200 and 'id="signin"' in ui.text


def test_swagger_ui_is_served_locally_and_reads_the_spec_with_a_token(client):
    page = client.get("/docs")  # redirects to the static page
    assert page.status_code == 200 and page.url.path == "/ui/api.html"
    assert 'src="swagger/swagger-ui-bundle.js"' in page.text and "https://" not in page.text  # no CDN
    js = client.get("/ui/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text
    assert client.get("/openapi.json").status_code == 401
    spec = client.get("/openapi.json", headers=H("reader"))
    assert spec.status_code == 200 and "/api/v1/results" in "".join(spec.json()["paths"])


@pytest.mark.parametrize("role,path,method,status", [
    ("sender", "/api/v1/worklist", "GET", 403), ("reader", "/api/v1/audit", "GET", 403),
    ("reader", "/api/v1/instances", "POST", 403), ("admin", "/api/v1/audit", "GET", 200),
    ("reader", "/api/v1/worklist", "GET", 200), ("reader", "/metrics", "GET", 200)])
def test_roles(client, role, path, method, status):
    assert client.request(method, path, headers=H(role)).status_code == status


def test_wrong_tokens_are_401(client):
    for h in ({"Authorization": "Bearer nope"}, {"Authorization": "Basic dTpw"}, {"Authorization": "Bearer "}):
        assert client.get("/api/v1/worklist", headers=h).status_code == 401


def test_upload_status_codes(client, xray, ctx):
    ds, data = xray()
    r = client.post("/api/v1/instances", files={"f": ("x.dcm", data)}, headers=H("sender"))
    assert r.status_code == 200 and r.json()["instances"][0]["sop_uid"] == ds.SOPInstanceUID
    r = client.post("/api/v1/instances", files={"f": ("x.dcm", data)}, headers=H("sender"))
    assert r.json()["instances"][0]["status"] == "duplicate"
    assert client.post("/api/v1/instances", files={"f": ("j", b"junk" * 50)}, headers=H("sender")).status_code == 422
    odd, odd_data = xray(modality="ZZ")
    assert client.post("/api/v1/instances", files={"f": ("o", odd_data)}, headers=H("sender")).status_code == 422
    big = b"x" * 1_200_000
    assert client.post("/api/v1/instances", files={"f": ("b", big)}, headers=H("sender")).status_code == 413
    sr, _ = xray()
    del sr.PixelData
    r = client.post("/api/v1/instances", files={"f": ("sr", dicom_bytes(sr))}, headers=H("sender"))
    assert r.status_code == 415 and r.json()["instances"][0]["code"] == "not_image"


def _related(parts):
    boundary = "medsight-boundary"
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


def test_stow_rs(client, xray):
    ds, data = xray()
    body, headers = _related([data, b"not dicom"])
    r = client.post("/dicom-web/studies", content=body, headers={**headers, **H("sender")})
    assert r.status_code == 202  # one stored, one failed
    j = r.json()
    assert j["00081199"]["Value"][0]["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert j["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    body, headers = _related([b"junk"])
    assert client.post("/dicom-web/studies", content=body, headers={**headers, **H("sender")}).status_code == 422
    r = client.post("/dicom-web/studies", content=b"x", headers={"Content-Type": "application/dicom", **H("sender")})
    assert r.status_code == 422


def test_worklist_ranks_alerts_first_and_views_are_audited(client, ctx, xray, make_cfg):
    from medsight.service.context import build_context

    ds1, d1 = xray(patient_id="A")
    ds2, d2 = xray(patient_id="B")
    ctx.ingestor.ingest(d1, actor="t")
    # the second image meets a config without alert rules: no alert for it
    quiet = make_cfg(alerts={"rules": [{"name": "never", "kind": "probability_above", "value": 1.0}]})
    drain(ctx)
    ctx.ingestor.ingest(d2, actor="t")
    drain(build_context(quiet, db=ctx.db), quiet)
    wl = client.get("/api/v1/worklist", headers=H("reader")).json()
    assert [w["study_uid"] for w in wl] == [ds1.StudyInstanceUID, ds2.StudyInstanceUID]
    assert wl[0]["priority"] == "high" and wl[1]["priority"] == "routine"
    study = client.get(f"/api/v1/studies/{ds1.StudyInstanceUID}", headers=H("reader")).json()
    res = study["results"][0]
    assert res["overlay_url"] and client.get(res["overlay_url"], headers=H("reader")).content[:4] == b"\x89PNG"
    assert client.get(res["image_url"], headers=H("reader")).headers["content-type"] == "image/png"
    tl = client.get("/api/v1/patients/A/timeline", headers=H("reader")).json()
    assert tl["entries"][0]["result_id"] == res["id"] and tl["current_suggestion"] in (
        "Intensify treatment", "Maintain or reduce treatment")
    with ctx.db.read() as s:
        viewed = [(e.actor, e.object_type) for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "viewed"))]
    assert viewed == [("http:u-reader", "study"), ("http:u-reader", "patient")]
    ack = client.post(f"/api/v1/alerts/{res['alerts'][0]['id']}/ack", headers=H("reader")).json()
    assert ack["acknowledged_by"] == "u-reader"


def test_metrics_are_prometheus_text(client, ctx, xray):
    ctx.ingestor.ingest(xray()[1], actor="t")
    drain(ctx)
    text = client.get("/metrics", headers=H("reader")).text
    assert 'medsight_instances_received_total{modality="CR"} 1.0' in text
    assert 'medsight_results_total{model="tiny-xray",status="ok"} 1.0' in text
    assert 'medsight_latency_seconds{quantile="0.5"}' in text
