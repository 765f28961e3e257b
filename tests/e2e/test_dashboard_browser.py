"""The dashboard in a real browser (Debian's chromium driven by Playwright): sign in, see the
positive study at the top of the worklist, open it, see the heatmap; a segmented MR study shows
its structure volumes; the API page (Swagger UI) loads the OpenAPI document with the signed-in
token; the Content-Security-Policy blocks nothing either needs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e.helpers import storescu, wait_for
from e2e.stack import TOKENS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("MEDSIGHT_E2E_ARTIFACTS", "/tmp/medsight-e2e/artifacts"))


def test_dashboard_signin_worklist_study_heatmap(stack, xray_file, mr_series):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (run `make peers`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    neg_path, neg = xray_file("negative", patient_id="E2E-UI-NEG", name="UI^NEGATIVE")
    pos_path, pos = xray_file("positive", patient_id="E2E-UI-POS", name="UI^POSITIVE")
    assert storescu(stack.service.dicom_port, [neg_path, pos_path]).returncode == 0
    mr = mr_series(patient_id="E2E-UI-MR")
    assert storescu(stack.service.dicom_port, mr["paths"]).returncode == 0
    for ds in (neg, pos):
        wait_for(lambda ds=ds: stack.service.get(f"/api/v1/results?sop_uid={ds.SOPInstanceUID}").json(),
                 timeout=60, what="results")
    (mr_result,) = wait_for(lambda: stack.service.get(f"/api/v1/results?study_uid={mr['study']}").json(),
                            timeout=120, what="the MR series' segmentation result")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        blocked = []  # what the Content-Security-Policy refused (the dashboard and Swagger UI must need nothing)
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(stack.service.http + "/")
        page.fill("#token", "not-a-token")
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#signin-error:has-text('not accepted')")
        page.fill("#token", TOKENS["reader"])
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#worklist tbody tr")
        assert not page.is_visible("#signin")
        first = page.locator("#worklist tbody tr").first
        assert first.get_attribute("data-study") == pos.StudyInstanceUID
        assert first.locator(".badge").inner_text() == "high"
        page.screenshot(path=str(SHOTS / "worklist.png"), full_page=True)
        first.click()
        page.wait_for_function("() => { const i = document.querySelector('img.heatmap');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=20000)
        width = page.evaluate("() => document.querySelector('img.heatmap').naturalWidth")
        assert width == pos.Columns  # the overlay is in the source image's geometry
        assert "Intensify treatment" in page.inner_text("#view")
        page.screenshot(path=str(SHOTS / "study.png"), full_page=True)
        # a segmentation result: the study page gives the structure volumes as stored
        page.goto(stack.service.http + f"/ui/#/study/{mr['study']}")
        page.wait_for_selector("#view :text('Volumes:')", timeout=20000)
        shown = page.inner_text("#view")
        for name, ml in mr_result["outputs"]["volumes_ml"].items():
            assert f"{name} {ml:.2f} mL" in shown, (name, ml, shown)
        # and the mask over the slice with the most labelled voxels, in the series' geometry
        page.wait_for_function("() => { const i = document.querySelector('img.heatmap');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=20000)
        import pydicom

        columns = pydicom.dcmread(mr["paths"][0], stop_before_pixels=True).Columns
        assert page.evaluate("() => document.querySelector('img.heatmap').naturalWidth") == columns
        slice_shown = mr_result["outputs"]["mask"]["overlay_slice"]
        assert f"Mask on slice {slice_shown + 1}: Anterior Posterior" in page.inner_text("#view")
        page.screenshot(path=str(SHOTS / "segmentation.png"), full_page=True)
        page.goto(stack.service.http + "/ui/#/worklist")
        page.wait_for_selector("#worklist tbody tr")
        page.click("nav a[href='api.html']")  # Swagger UI, from local files, with the signed-in token
        page.wait_for_selector(".opblock-summary-path", timeout=20000)
        assert "/api/v1/results" in page.inner_text("#swagger-ui")
        page.screenshot(path=str(SHOTS / "api.png"))
        browser.close()
    assert blocked == []
    viewed = stack.service.get(f"/api/v1/audit?action=viewed&object_id={pos.StudyInstanceUID}").json()
    assert viewed and viewed[0]["actor"] == "http:e2e-reader"
