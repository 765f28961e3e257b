"""``GET /dicom-web/...``: a real Orthanc's DICOMweb through MedSight, behind the reader token.
GET only, DICOMweb resources only (path tricks and Orthanc's own REST API never reach it), the
answers equal Orthanc's own, and a PACS that is down is a 502 while the service goes on."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from tests.service.conftest import TOKENS, dicom_bytes

from medsight.io.multipart import split_related
from support.peers import Orthanc
from support.xray_dicom import xray_dataset


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    with Orthanc(tmp_path_factory.mktemp("orthanc-proxy")) as orthanc:
        uids = []
        for i in range(3):
            ds = xray_dataset(np.full((28, 28), 40 * i, np.uint8), patient_id=f"PROXY-{i}", index=i)
            assert orthanc.upload(dicom_bytes(ds))["Status"] == "Success"
            uids.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
        orthanc.uids = uids
        yield orthanc


@pytest.fixture
def client(make_cfg, pacs):
    from medsight.service.app import create_app
    from medsight.service.context import build_context

    ctx = build_context(make_cfg(viewer={"dicomweb_url": f"{pacs.url}/dicom-web", "username": pacs.user,
                                         "password": pacs.password}))
    yield TestClient(create_app(ctx))
    ctx.db.dispose()


def H(role):
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def test_qido_and_wado_need_a_reader_token_and_equal_orthancs_answers(client, pacs):
    assert client.get("/dicom-web/studies").status_code == 401
    assert client.get("/dicom-web/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/dicom-web/studies", headers=H("sender")).status_code == 403
    r = client.get("/dicom-web/studies", headers=H("reader"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom+json")
    assert r.headers["cache-control"] == "no-store"
    assert sorted(s["0020000D"]["Value"][0] for s in r.json()) == sorted(u[0] for u in pacs.uids)
    st, se, sop = pacs.uids[1]
    q = client.get("/dicom-web/studies?PatientID=PROXY-1", headers=H("reader"))
    assert [s["0020000D"]["Value"][0] for s in q.json()] == [st]  # the query string is passed on
    meta = client.get(f"/dicom-web/studies/{st}/series/{se}/metadata", headers=H("reader"))
    assert meta.status_code == 200 and meta.json()[0]["00080018"]["Value"] == [sop]
    wado = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}",
                      headers={**H("reader"), "Accept": 'multipart/related; type="application/dicom"'})
    assert wado.status_code == 200
    (ctype, payload), = split_related(wado.headers["content-type"], wado.content)
    ds = pydicom.dcmread(io.BytesIO(payload), force=True)
    assert ctype == "application/dicom" and ds.SOPInstanceUID == sop and int(ds.pixel_array.max()) == 40
    missing = client.get(f"/dicom-web/studies/{st}/series/1.2.3/metadata", headers=H("reader"))
    assert missing.status_code == 404  # Orthanc's own status, passed through


@pytest.mark.parametrize("path", [
    "/dicom-web/..%2F..%2Fsystem", "/dicom-web/%2e%2e/%2e%2e/instances", "/dicom-web/studies/..%2F..%2Ftools%2Ffind",
    "/dicom-web/tools/find", "/dicom-web/studies/1.2.3/../../../system", "/dicom-web/studies/1.2.x",
    "/dicom-web/studies/1.2/series/3.4/instances/5.6/file", "/dicom-web/servers", "/dicom-web/studies/1.2/archive"])
def test_paths_outside_dicomweb_are_refused_before_the_pacs(client, path):
    r = client.get(path, headers=H("reader"))
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert "DICOMweb" in r.json().get("error", "") or r.json().get("detail") == "Not Found"


def test_only_get_is_forwarded_and_nothing_is_deleted(client, pacs):
    st, se, sop = pacs.uids[0]
    for method in ("DELETE", "PUT", "PATCH"):
        assert client.request(method, f"/dicom-web/studies/{st}", headers=H("admin")).status_code == 405
    assert client.post(f"/dicom-web/studies/{st}/series", headers=H("admin")).status_code == 405
    assert len(pacs.get("/instances")) == 3  # nothing reached Orthanc's REST API


def test_a_pacs_that_is_down_is_a_502_and_the_service_goes_on(make_cfg):
    from medsight.service.app import create_app
    from medsight.service.context import build_context
    from support.peers import free_port

    ctx = build_context(make_cfg(viewer={"dicomweb_url": f"http://127.0.0.1:{free_port()}/dicom-web",
                                         "timeout_s": 2}))
    client = TestClient(create_app(ctx))
    r = client.get("/dicom-web/studies", headers=H("reader"))
    assert r.status_code == 502 and "did not answer" in r.json()["error"]
    assert client.get("/api/v1/worklist", headers=H("reader")).status_code == 200
    unconfigured = TestClient(create_app(build_context(make_cfg())))
    assert unconfigured.get("/dicom-web/studies", headers=H("reader")).status_code == 404
    ctx.db.dispose()


def _bulk_uris(value) -> list[str]:
    if isinstance(value, dict):
        return ([value["BulkDataURI"]] if "BulkDataURI" in value else []) + [u for v in value.values()
                                                                             for u in _bulk_uris(v)]
    return [u for v in value for u in _bulk_uris(v)] if isinstance(value, list) else []


@pytest.mark.parametrize("public_url", [None, "https://medsight.hospital.example/"])
def test_bulk_data_uris_point_at_the_proxy_and_are_fetched_through_it(make_cfg, pacs, public_url):
    """Orthanc writes its own address into metadata (``http://127.0.0.1:<port>/dicom-web/.../bulk/7fe00010``):
    a browser could not follow it, and should not learn it. Through the proxy every such URI is
    this service's ``/dicom-web`` (behind ``http.public_url`` when set), and it answers."""
    from medsight.service.app import create_app
    from medsight.service.context import build_context

    ctx = build_context(make_cfg(viewer={"dicomweb_url": f"{pacs.url}/dicom-web", "username": pacs.user,
                                         "password": pacs.password}, http={"public_url": public_url}))
    client = TestClient(create_app(ctx))
    st, se, sop = pacs.uids[2]
    direct = pacs.get(f"/dicom-web/studies/{st}/series/{se}/metadata")
    assert any(pacs.url in u for u in _bulk_uris(direct))  # what the PACS itself says
    meta = client.get(f"/dicom-web/studies/{st}/series/{se}/metadata", headers=H("reader"))
    text, uris = meta.text, _bulk_uris(meta.json())
    root = f"{public_url.rstrip('/')}/dicom-web" if public_url else "/dicom-web"
    assert uris and all(u.startswith(f"{root}/studies/{st}/series/{se}/instances/{sop}/bulk/") for u in uris)
    assert pacs.url not in text
    pixels = next(u for u in uris if u.endswith("7fe00010"))
    bulk = client.get(pixels.removeprefix(public_url.rstrip("/")) if public_url else pixels,
                      headers={**H("reader"), "Accept": 'multipart/related; type="application/octet-stream"'})
    assert bulk.status_code == 200
    (_, payload), = split_related(bulk.headers["content-type"], bulk.content)
    assert payload == np.full((28, 28), 80, np.uint8).tobytes()  # the X-ray's pixels, through the proxy
    ctx.db.dispose()


def test_a_uri_split_across_chunks_is_still_replaced():
    import asyncio

    from medsight.service.api_dicomweb import replace_streamed

    old, new = b"http://pacs:8042/dicom-web", b"/dicom-web"
    body = b'[{"7FE00010": {"BulkDataURI": "http://pacs:8042/dicom-web/studies/1/bulk"}}, "http://pacs:8042/dicom-web"]'

    async def run(size: int) -> bytes:
        async def chunks():
            for i in range(0, len(body), size):
                yield body[i:i + size]
        return b"".join([c async for c in replace_streamed(chunks(), old, new)])

    want = body.replace(old, new)
    assert want.count(new) == 2
    for size in (1, 2, 5, len(old) - 1, len(old), len(old) + 1, 64, len(body)):
        assert asyncio.run(run(size)) == want, size


def test_a_pacs_that_writes_a_name_of_its_own_is_rewritten_with_pacs_public_root(make_cfg, tmp_path):
    """Orthanc with ``DicomWeb.Host`` set writes that name, not the address the proxy calls."""
    from medsight.service.app import create_app
    from medsight.service.context import build_context

    class NamedOrthanc(Orthanc):
        def config(self):
            cfg = super().config()
            cfg["DicomWeb"]["Host"] = "pacs.hospital.example"
            return cfg

    with NamedOrthanc(tmp_path / "orthanc") as pacs:
        ds = xray_dataset(np.full((28, 28), 7, np.uint8), patient_id="PROXY-NAMED", index=9)
        pacs.upload(dicom_bytes(ds))
        path = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
        assert "http://pacs.hospital.example/dicom-web/" in str(pacs.get(path))
        for root, leaked in ((None, True), ("http://pacs.hospital.example/dicom-web", False)):
            ctx = build_context(make_cfg(viewer={"dicomweb_url": f"{pacs.url}/dicom-web", "username": pacs.user,
                                                 "password": pacs.password, "pacs_public_root": root}))
            meta = TestClient(create_app(ctx)).get(path, headers=H("reader"))
            assert ("pacs.hospital.example" in meta.text) is leaked
            assert all(u.startswith("/dicom-web/studies/") for u in _bulk_uris(meta.json())) is not leaked
            ctx.db.dispose()
