"""Response assessment end to end: TCIA's PGBM-001 (two MRI exams of one glioblastoma patient,
1991-11-19 and 1992-04-02, each with a Mask_Tumor series) sent by storescu in reverse date
order, the later exam first. The service assesses the later exam alone (a baseline), then,
once the earlier exam has settled, both in date order: progressive disease with its suggestion,
an alert delivered to the webhook, and the dashboard's patient page with the size-over-time plot.

Skipped with its reason when the shared data is absent. Run alone:
``bash scripts/e2e.sh -k test_pgbm001_sent_latest_first``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e.helpers import storescu, wait_for
from e2e.stack import TOKENS

PATIENT = "PGBM-001"
EARLY, LATE = "1991-11-19", "1992-04-02"
PROGRESSIVE = "progressive disease"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("MEDSIGHT_E2E_ARTIFACTS", "/tmp/medsight-e2e/artifacts"))


def stack_overrides(stack) -> dict:
    # the shared config, with response assessment on: the default criteria (recist-like) and
    # policy (default), masks found by track's own SeriesDescription pattern, a short settle time
    return {"response": {"settle_s": 2}}


def _timeline(stack) -> dict | None:
    r = stack.service.get(f"/api/v1/patients/{PATIENT}/timeline", role="reader")
    return r.json() if r.status_code == 200 else None


def _timepoints(stack, dates: list[str]) -> dict | None:
    t = _timeline(stack)
    resp = (t or {}).get("response") or {}
    return t if [p["date"] for p in resp.get("timepoints", [])] == dates else None


@pytest.mark.db  # superseding assessments and alerts without a result: run on PostgreSQL too
def test_pgbm001_sent_latest_first_ends_in_date_order_with_progression_suggestion_and_alert(stack, webhook,
                                                                                            shared_data):
    root = shared_data("brain_tumor_progression/PGBM-001")
    late, early = sorted((root / LATE).rglob("*.dcm")), sorted((root / EARLY).rglob("*.dcm"))
    out = storescu(stack.service.dicom_port, late)  # the later exam first
    assert out.returncode == 0, out.stdout + out.stderr
    first = wait_for(lambda: _timepoints(stack, [LATE]), timeout=120, what="the 1992 exam assessed alone")
    (baseline,) = first["response"]["timepoints"]
    assert baseline["category"] is None and baseline["suggestion"].startswith("no adjustment suggested")

    out = storescu(stack.service.dicom_port, early)  # then the earlier one
    assert out.returncode == 0, out.stdout + out.stderr
    t = wait_for(lambda: _timepoints(stack, [EARLY, LATE]), timeout=120, what="both exams on the timeline")

    resp = t["response"]
    points = resp["timepoints"]
    assert [p["date"] for p in points] == [EARLY, LATE]  # by StudyDate, not by arrival
    assert [p["category"] for p in points] == [None, PROGRESSIVE]
    assert resp["category"] == PROGRESSIVE and resp["criteria"] == "recist-like" and resp["policy"] == "default"
    assert resp["suggestion"] == points[-1]["suggestion"] == "escalate or review treatment"
    assert points[0]["volume_ml"] == pytest.approx(8.11, rel=0.02)
    assert points[1]["volume_ml"] == pytest.approx(20.92, rel=0.02)
    assert 34.5 <= points[0]["longest_diameter_mm"] <= 36.5 and 45.5 <= points[1]["longest_diameter_mm"] <= 47.5
    assert any("progression needs" in x and x.endswith("met") for x in resp["reasons"])
    assert resp["n_assessments"] >= 2  # assessed again when the earlier exam came

    (alert,) = [a for a in t["alerts"] if a["rule"] == "response"]
    assert alert["priority"] == "high" and f"{PROGRESSIVE} at {LATE}" in alert["message"]
    listed = stack.service.get("/api/v1/alerts", role="reader").json()
    assert any(a["id"] == alert["id"] and a["study_uid"] == points[-1]["study_uid"] for a in listed)
    # the webhook receiver outlives this module's stack (and its database): match the rule too, since
    # an earlier module's alert may have had the same id
    body = wait_for(lambda: next((b for b in webhook.bodies if b.get("alert_id") == alert["id"]
                                  and b.get("rule") == "response"), None),
                    timeout=60, what="the progression alert at the webhook")
    assert body["response"]["category"] == PROGRESSIVE and "patient_id" not in body

    png = stack.service.get(resp["plot_url"], role="reader")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    log = stack.service.log_path.read_text(errors="replace")
    assert PATIENT not in log  # the log names the patient by its hash only

    _patient_page_shows_the_plot(stack, points)


def _patient_page_shows_the_plot(stack, points: list[dict]) -> None:
    """The dashboard's patient page, in chromium: the time points in date order and the plot loaded."""
    if not Path(CHROMIUM).exists():
        return  # the API checks above stand; test_dashboard_browser.py skips with its reason
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(stack.service.http + "/")
        page.fill("#token", TOKENS["reader"])
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#worklist tbody tr")
        page.goto(stack.service.http + f"/ui/#/patient/{PATIENT}")
        page.wait_for_selector("#response-timepoints tbody tr")
        rows = page.locator("#response-timepoints tbody tr").all_inner_texts()
        assert [r.split("\t")[0] for r in rows] == [p["date"] for p in points]
        assert PROGRESSIVE in rows[-1] and "escalate or review treatment" in page.inner_text("#response")
        page.wait_for_function("() => { const i = document.querySelector('img.response-plot');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=20000)
        page.screenshot(path=str(SHOTS / "response-patient.png"), full_page=True)
        browser.close()
