"""Drift end to end (issue 12): one sender's stream changes kind and the service notices.

dcmtk's storescu sends, in one association, 80 PneumoniaMNIST test X-rays and then 20 BreastMNIST
ultrasound test images, every one as a CR chest instance (a misconfigured modality, or a new
device, whose images the router sends to ``pneumonia-xray``). Real images, de-identified.

With the default drift settings (window 50, alpha 0.001, alarm on fingerprint distance and
refer rate), the X-rays raise no drift alert, and the ultrasound images raise exactly one, within
6 images of the switch (benchmarks/bench_drift.py measured the same bound offline over 200
random streams: docs/benchmarks.md). The webhook receives it, the dashboard's drift API shows
the episode with its trend, and ``/metrics`` its gauge.

Run alone: ``bash scripts/e2e.sh -k test_drift``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from e2e.helpers import storescu, wait_for
from support.xray_dicom import pneumonia_test_images, write_xray

N_XRAY, N_US, MAX_DELAY = 80, 20, 6


def stack_overrides(stack) -> dict:
    return {"outputs": {"dicom": []}}  # nothing goes back to the PACS: this test is about the stream


def _results(stack):
    from medsight.service.db import Result

    db = stack.database()
    try:
        with db.read() as s:
            return list(s.scalars(select(Result).where(Result.model == "pneumonia-xray").order_by(Result.id)))
    finally:
        db.dispose()


@pytest.mark.db  # the drift state is locked per model and sender: run on PostgreSQL too
def test_drift_alert_fires_within_6_ultrasound_images_of_the_switch_and_not_before(stack, webhook, e2e_model,
                                                                                      pneumonia_npz, shared_data,
                                                                                      tmp_path):
    import numpy as np

    from medsight.models.saved import load_model

    if not load_model(e2e_model).manifest.get("drift"):
        pytest.skip(f"{e2e_model} has no drift reference (manifest.drift)")
    xrays, _ = pneumonia_test_images(pneumonia_npz)
    with np.load(shared_data("breastmnist/breastmnist.npz")) as z:
        ultrasound = z["test_images"][:N_US]
    paths = [write_xray(tmp_path / f"x{i:03d}.dcm", xrays[i], patient_id=f"DRIFT-X{i:03d}", index=i)
             for i in range(N_XRAY)]
    paths += [write_xray(tmp_path / f"u{i:03d}.dcm", im, patient_id=f"DRIFT-U{i:03d}", index=i)
              for i, im in enumerate(ultrasound)]
    sops = []
    import pydicom

    for p in paths:
        sops.append(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID))
    out = storescu(stack.service.dicom_port, paths)
    assert out.returncode == 0, out.stdout + out.stderr

    rows = wait_for(lambda: (r := _results(stack)) and len(r) >= N_XRAY + N_US and r, timeout=240,
                    what=f"{N_XRAY + N_US} results")
    order = {sop: i for i, sop in enumerate(sops)}
    assert [order[r.sop_uid] for r in rows] == list(range(N_XRAY + N_US)), "results stored in arrival order"
    assert all(r.source == "dicom:STORESCU" for r in rows)
    alerts = [a for a in stack.service.get("/api/v1/alerts", role="reader").json() if a["rule"] == "drift"]
    assert len(alerts) == 1, [a["message"] for a in alerts]
    tipped = next(r for r in rows if r.study_uid == alerts[0]["study_uid"])
    position = order[tipped.sop_uid]
    assert position >= N_XRAY, f"drift alert on X-ray {position}, before the switch"
    assert position - N_XRAY + 1 <= MAX_DELAY, f"the alarm took {position - N_XRAY + 1} ultrasound images"
    assert "refer rate" in alerts[0]["message"] and "dicom:STORESCU" in alerts[0]["message"]
    assert "DRIFT-" not in alerts[0]["message"]  # no patient identifier in the alert text

    body = wait_for(lambda: next((b for b in webhook.bodies if b.get("alert_id") == alerts[0]["id"]
                                  and b.get("rule") == "drift"), None), timeout=30, what="the drift webhook")
    assert body["model"] == "pneumonia-xray" and "patient_id" not in body
    (state,) = [d for d in stack.service.get("/api/v1/drift", role="reader").json() if d["model"] == "pneumonia-xray"]
    assert state["status"] == "drift" and state["episodes"] == 1 and state["source"] == "dicom:STORESCU"
    assert state["checks"] == N_XRAY + N_US - 50 + 1
    assert state["history"][0]["drift"] is False and state["history"][-1]["drift"] is True
    metrics = stack.service.get("/metrics", role="reader").text
    assert 'medsight_drift{model="pneumonia-xray",source="dicom:STORESCU"} 1.0' in metrics
    _drift_page_shows_the_episode(stack)


def _drift_page_shows_the_episode(stack) -> None:
    """The dashboard's Drift page in chromium: the model and sender, drifting, the refer test
    flagged, and the refer-rate trend drawn (screenshot ``drift.png``)."""
    import os
    import shutil
    from pathlib import Path

    from e2e.stack import TOKENS

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return  # the API checks above stand; test_dashboard_browser.py skips with its reason
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("MEDSIGHT_E2E_ARTIFACTS", "/tmp/medsight-e2e/artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 700})
        page.goto(stack.service.http + "/")
        page.fill("#token", TOKENS["reader"])
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#worklist tbody tr")
        page.click("nav a[href='#/drift']")
        row = page.locator("#drift tbody tr[data-model='pneumonia-xray']")
        row.wait_for()
        text = row.inner_text()
        assert "dicom:STORESCU" in text and "drift" in text and "refer: rate" in text
        assert row.locator("div.error").count() >= 1  # the test that found the shift is flagged
        assert row.locator("svg.trend").count() == 2  # refer-rate and distance-PSI trends
        page.screenshot(path=str(shots / "drift.png"), full_page=True)
        browser.close()
