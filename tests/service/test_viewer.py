"""``/viewer``: OHIF's files served by the service (a stand-in folder here, laid out as
scripts/install_viewer.sh leaves it; the real viewer runs in tests/e2e/test_viewer_browser.py):
the page and its own routes, MedSight's app-config.js (this service's /dicom-web, the token
bridge, no secret), a CSP with the inline scripts' hashes on every file, no path out of the
folder, and a clear 404 when the viewer is not installed."""

from __future__ import annotations

import base64
import hashlib

import pytest
from fastapi.testclient import TestClient

INLINE = 'console.time("scriptToView"),window.PUBLIC_URL="/viewer/"'


@pytest.fixture
def ohif(tmp_path):
    folder = tmp_path / "ohif-3.13.2"
    folder.mkdir()
    (folder / "index.html").write_text(f'<!doctype html><html><head><script>{INLINE}</script>'
                                       '<script src="/viewer/app-config.js"></script></head>'
                                       '<body><div id="root"></div></body></html>')
    (folder / "app.bundle.0123.js").write_text("console.log('ohif');")
    (folder / "x.wasm").write_bytes(b"\0asm\1\0\0\0")
    (folder / ".installed").write_text("3.13.2 sha512-...")
    (tmp_path / "secret.txt").write_text("outside the viewer")
    return folder


def _client(make_cfg, **viewer):
    from medsight.service.app import create_app
    from medsight.service.context import build_context

    return TestClient(create_app(build_context(make_cfg(viewer=viewer))))


def test_the_page_its_routes_and_files_are_served_with_the_viewers_csp(make_cfg, ohif):
    client = _client(make_cfg, ohif_dir=str(ohif), dicomweb_url="http://127.0.0.1:1/dicom-web")
    assert client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"
    page = client.get("/viewer/")
    assert page.status_code == 200 and INLINE in page.text
    digest = base64.b64encode(hashlib.sha256(INLINE.encode()).digest()).decode()
    csp = page.headers["content-security-policy"]
    assert f"'sha256-{digest}'" in csp and "'wasm-unsafe-eval'" in csp and "'unsafe-inline'" not in csp.split(
        "script-src")[1].split(";")[0] and "frame-ancestors 'none'" in csp
    route = client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")  # OHIF's own route: its page
    assert route.status_code == 200 and route.text == page.text
    js = client.get("/viewer/app.bundle.0123.js")
    assert js.status_code == 200 and js.text == "console.log('ohif');" and js.headers["content-security-policy"] == csp
    assert client.get("/viewer/x.wasm").content.startswith(b"\0asm")


def test_app_config_points_at_this_services_dicomweb_and_carries_no_secret(make_cfg, ohif):
    client = _client(make_cfg, ohif_dir=str(ohif), dicomweb_url="http://127.0.0.1:1/dicom-web", username="u",
                     password="pacs-secret")
    js = client.get("/viewer/app-config.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    text = js.text
    assert 'window.location.origin + "/dicom-web"' in text and '"qidoRoot": root' in text
    assert 'sessionStorage.getItem("medsight-token")' in text and "XMLHttpRequest.prototype" in text
    assert '"Bearer " + token' in text and 'indexOf("/dicom-web/") === 0' in text  # only to this service's proxy
    assert "pacs-secret" not in text and "127.0.0.1:1" not in text  # the PACS stays behind the proxy
    assert '"routerBasename": "/viewer"' in text and text.count("dataSourcesModule") == 1
    assert '"whiteLabeling": whiteLabeling' in text and '"/ui/#/study/" + study' in text  # the link back


@pytest.mark.parametrize("path", ["/viewer/../secret.txt", "/viewer/%2e%2e/secret.txt", "/viewer/..%2Fsecret.txt",
                                  "/viewer/.installed"])
def test_nothing_outside_the_viewers_files_is_served(make_cfg, ohif, path):
    r = _client(make_cfg, ohif_dir=str(ohif)).get(path)
    assert "outside the viewer" not in r.text and "sha512" not in r.text


def test_a_viewer_not_installed_is_a_404_naming_the_install_script(make_cfg, tmp_path):
    r = _client(make_cfg, ohif_dir=str(tmp_path / "none")).get("/viewer/")
    assert r.status_code == 404 and "scripts/install_viewer.sh" in r.json()["error"]


@pytest.mark.parametrize("viewer", [True, False])
def test_the_dashboards_study_worklist_and_results_link_to_the_viewer(make_cfg, xray, viewer):
    """``viewer_url``: the study opens on its images, a result on the series it was computed on;
    null when no viewer is configured (the dashboard then shows no link)."""
    from urllib.parse import parse_qs, urlsplit

    from tests.service.conftest import TOKENS, drain

    from medsight.service.app import create_app
    from medsight.service.context import build_context

    ctx = build_context(make_cfg(viewer={"dicomweb_url": "http://127.0.0.1:1/dicom-web"} if viewer else {}))
    ds, data = xray()
    ctx.ingestor.ingest(data, actor="http:test")
    drain(ctx)
    client = TestClient(create_app(ctx))
    h = {"Authorization": f"Bearer {TOKENS['reader']}"}
    study = client.get(f"/api/v1/studies/{ds.StudyInstanceUID}", headers=h).json()
    (row,) = client.get("/api/v1/worklist", headers=h).json()
    (result,) = study["results"]
    if not viewer:
        assert study["viewer_url"] is None and row["viewer_url"] is None and result["viewer_url"] is None
        return
    for url, series in ((study["viewer_url"], None), (row["viewer_url"], None), (result["viewer_url"],
                                                                                 ds.SeriesInstanceUID)):
        parts = urlsplit(url)
        assert parts.path == "/viewer/viewer" and not parts.netloc
        query = parse_qs(parts.query)
        assert query["StudyInstanceUIDs"] == [ds.StudyInstanceUID]
        assert query.get("initialSeriesInstanceUID") == ([series] if series else None)
    ctx.db.dispose()
