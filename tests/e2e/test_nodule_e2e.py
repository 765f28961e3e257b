"""End to end with the shipped nodule detector: the real LIDC-IDRI-0001 slab (16 slices of
2.5 mm, BodyPartExamined CHEST) is sent by storescu to Orthanc, routed to MedSight, detected
once the series is complete, and comes back into its study as an SR with a measurement group
per nodule and an SC of the overlay; the nodule is on the API's study and worklist with its
crop, and its alert reaches the webhook.

The model is ``lung-nodule-ct`` (the zoo, or ``MEDSIGHT_MODEL_PATH``): the test is skipped
until it is installed, since only a trained detector finds the nodule."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from e2e.helpers import nodule_model, orthanc_instances, orthanc_study_modalities, storescu, wait_for
from medsight.io.dicom_out.sr import scoord_to_patient

LIDC = "lidc_idri_nodule_slabs/LIDC-IDRI-0001"
STUDY = "1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178"
SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"

pytestmark = pytest.mark.skipif(nodule_model() is None, reason="the lung-nodule-ct model is not installed (not in "
                                "src/medsight/zoo/ nor on MEDSIGHT_MODEL_PATH): only a trained detector finds the "
                                "LIDC-IDRI-0001 nodule")


def stack_overrides(stack):
    cfg = stack._base_config()
    # a detection job runs longer than an X-ray's: keep the lease well above it (no lease renewal)
    return {"workers": {**cfg["workers"], "lease_s": 600},
            "alerts": {"webhook": {"url": stack.webhook_url},
                       "rules": [{"name": "suspicious-nodule", "kind": "nodule", "model": "lung-nodule-ct",
                                  "value": 8, "category": "4A", "priority": "high"}]}}


def _annotated(shared_data):
    """The slab's LUNA16 nodule (centre in LPS mm, diameter)."""
    from medsight.metrics import read_annotations

    (n,) = [a for a in read_annotations(shared_data("lidc_idri_nodule_slabs/luna16/annotations.csv"))
            if a.seriesuid == SERIES]
    return np.asarray(n.center_mm, float), float(n.diameter_mm)


def _sr_nodules(sr) -> dict[str, dict]:
    """The SR's nodule groups as highdicom reads them: tracking identifier → diameter (mm), the
    centre's SCOORD point, the slice it is on and the group's category."""
    import highdicom as hd
    from pydicom.filebase import DicomBytesIO

    buf = DicomBytesIO()
    sr.save_as(buf, enforce_file_format=True)
    content = hd.sr.srread(io.BytesIO(buf.getvalue())).content
    out = {}
    for g in content.get_planar_roi_measurement_groups():
        if g.finding_type is None:
            continue  # the whole-slab group, drawn on its middle slice
        numbers = {m.name.meaning: (float(m.value), m.unit.value) for m in g.get_measurements()}
        texts = {q.name.meaning: q.value.meaning for q in g.get_qualitative_evaluations()}
        out[g.tracking_identifier] = {"diameter": numbers.get("Diameter"), "finding": g.finding_type.meaning,
                                      "point": np.asarray(g.roi.value, float).ravel(),  # SCOORD on its slice
                                      "on": str(g.roi.ContentSequence[0].ReferencedSOPSequence[0]
                                                .ReferencedSOPInstanceUID),
                                      "category": texts.get("Lung-RADS category")}
    return out


def _processed(stack, shared_data) -> dict:
    """Send the slab through Orthanc (once per stack: a second copy starts no work) and wait for
    its result, stored and sent as SR and SC."""
    def sent():
        rs = stack.service.get(f"/api/v1/results?study_uid={STUDY}", role="reader").json()
        return rs if rs and {o["kind"] for o in rs[0]["sent"]} >= {"SR", "SC"} else None

    if stack.service.get(f"/api/v1/studies/{STUDY}", role="reader").status_code == 404:
        files = sorted(shared_data(LIDC).rglob("*.dcm"))  # absolute paths: the names start with '-'
        assert len(files) == 16
        out = storescu(stack.orthanc.dicom_port, files, aec="ORTHANC")
        assert out.returncode == 0, out.stdout + out.stderr
    (res,) = wait_for(sent, timeout=600, interval=1, what="the CT slab detected and its SR and SC sent")
    return res


@pytest.mark.db  # series upserts, then one result with a finding per nodule and an alert per suspicious one
def test_the_lidc_slab_comes_back_with_its_nodule_in_an_sr_and_an_sc_and_on_the_api(stack, webhook, shared_data):
    res = _processed(stack, shared_data)
    centre, diameter = _annotated(shared_data)
    assert res["status"] == "ok" and res["model"] == "lung-nodule-ct" and res["sop_uid"] is None, res["error"]
    study = stack.service.get(f"/api/v1/studies/{STUDY}", role="reader").json()
    (series,) = study["series"]
    assert series["n_instances"] == 16 and series["outcome"] == "processed by lung-nodule-ct"

    # the nodule the API shows: the one within the annotated nodule's radius
    def hit(lesion):
        return lesion["region"] and np.linalg.norm(np.asarray(lesion["region"]["center_mm"]) - centre) < diameter / 2

    lesions = res["lesions"]
    assert lesions and hit(lesions[0]), f"the top finding is not the LUNA16 nodule: {lesions[:3]}"
    top = lesions[0]
    values = {f["name"]: f["value"] if f["text"] is None else f["text"] for f in top["findings"]}
    # the service reports what the model measures (15.8 mm, -32 %: issue 10's 30 % criterion is
    # tracked, unmet, by tests/tasks/detection/test_real_slabs.py); here: the same nodule, not another
    assert abs(values["nodule_diameter_mm"] - diameter) <= 0.4 * diameter, values
    crop = stack.service.get(top["crop_url"], role="reader")
    assert crop.status_code == 200 and crop.content[:8] == b"\x89PNG\r\n\x1a\n"
    (row,) = [s for s in stack.service.get("/api/v1/worklist", role="reader").json() if s["study_uid"] == STUDY]
    assert [le["lesion_id"] for le in row["lesions"]][:1] == [top["lesion_id"]] and row["priority"] == "high"

    # what arrived in the source study in Orthanc: the 16 slices, the SR, the SC (modality OT)
    expected = {"CT": 16, "SR": 1, "OT": 1}
    wait_for(lambda: orthanc_study_modalities(stack.orthanc, STUDY) == expected, timeout=60,
             what=f"{expected} in the study in Orthanc")
    (sr,) = orthanc_instances(stack.orthanc, STUDY, "SR")
    (sc,) = orthanc_instances(stack.orthanc, STUDY, "OT")
    cts = orthanc_instances(stack.orthanc, STUDY, "CT")
    sent_uids = {o["kind"]: o["sop_uid"] for o in res["sent"]}
    assert sr.SOPInstanceUID == sent_uids["SR"] and sc.SOPInstanceUID == sent_uids["SC"]
    groups = _sr_nodules(sr)
    assert set(groups) == {f"Nodule {le['lesion_id']}" for le in lesions}  # a measurement group per nodule
    g = groups[f"Nodule {top['lesion_id']}"]
    (on,) = [ct for ct in cts if ct.SOPInstanceUID == g["on"]]  # a slice of the slab
    assert g["finding"] == "Nodule" and on.FrameOfReferenceUID == cts[0].FrameOfReferenceUID
    assert g["diameter"] == (pytest.approx(values["nodule_diameter_mm"], abs=1e-3), "mm")
    # the SR points at the annotated nodule, on a slice through it
    assert np.linalg.norm(scoord_to_patient(on, *g["point"]) - centre) < diameter / 2
    assert g["category"] == values["nodule_category"]
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in {ct.SOPInstanceUID for ct in cts}
    assert sc.pixel_array.shape == (512, 512, 3) and list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert sc.SeriesDescription == "MedSight lung-nodule-ct overlay (not for diagnosis)"

    # one alert for the annotated (23 mm) nodule, delivered to the webhook with its lesion id
    alerts = [a for a in res["alerts"] if a["lesion_id"] == top["lesion_id"]]
    assert len(alerts) == 1 and alerts[0]["rule"] == "suspicious-nodule"
    body = wait_for(lambda: [b for b in webhook.bodies if b["study_uid"] == STUDY and
                             b["lesion_id"] == top["lesion_id"]], timeout=60, what="the nodule's webhook")
    assert body[0]["rule"] == "suspicious-nodule" and "patient_id" not in body[0]


def test_the_dashboard_shows_the_nodule_with_its_crop(stack, shared_data):
    import shutil
    from pathlib import Path

    from e2e.stack import TOKENS

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (run `make peers`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    res = _processed(stack, shared_data)
    top = res["lesions"][0]
    diameter = next(f["value"] for f in top["findings"] if f["name"] == "nodule_diameter_mm")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        blocked = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(stack.service.http + "/")
        page.fill("#token", TOKENS["reader"])
        page.click("#signin button[type=submit]")
        row = page.locator(f"#worklist tbody tr[data-study='{STUDY}']")
        row.wait_for(timeout=20000)
        assert f"nodule {top['lesion_id']}:" in row.inner_text() and f"{diameter:.1f} mm" in row.inner_text()
        row.click()
        crop = f"tr[data-lesion='{top['lesion_id']}'] img.crop"
        page.wait_for_function(f"() => {{ const i = document.querySelector(\"{crop}\");"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=20000)
        page.wait_for_function("() => { const i = document.querySelector('img.heatmap');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=20000)
        assert page.evaluate("() => document.querySelector('img.heatmap').naturalWidth") == 512  # the CT slice
        text = page.inner_text("table.lesions")
        assert f"{diameter:.1f} mm" in text and "Lung-RADS category" in text
        shots = Path(os.environ.get("MEDSIGHT_E2E_ARTIFACTS", "/tmp/medsight-e2e/artifacts"))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "nodule-study.png"), full_page=True)
        browser.close()
    assert blocked == []


def test_the_nodule_sr_is_drawn_in_the_viewer(stack, shared_data):
    """The radiologist opens the slab's result in OHIF: the SR's nodules are drawn with their
    diameter in mm."""
    from e2e.stack import TOKENS
    from e2e.test_viewer_browser import CHROMIUM, FLAGS, SHOTS, _dismiss, _need_viewer, _show_sr

    _need_viewer()
    sync_api = pytest.importorskip("playwright.sync_api")
    _processed(stack, shared_data)
    base = stack.service.http
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(base + "/ui/?next=/viewer/")
        page.fill("#token", TOKENS["reader"])
        page.click("#signin button[type=submit]")
        page.wait_for_url(base + "/viewer/**", timeout=30000)
        page.goto(base + f"/ui/#/study/{STUDY}")
        page.click(".result h3 a.viewer", timeout=30000)
        page.wait_for_url(f"{base}/viewer/viewer?StudyInstanceUIDs={STUDY}*", timeout=30000)
        page.wait_for_selector("text=MedSight lung-nodule-ct overlay (not for diagnosis)", timeout=90000)
        page.wait_for_function("() => [...document.querySelectorAll('canvas')].some(c => c.width > 100)",
                               timeout=60000)
        page.wait_for_timeout(2000)
        _dismiss(page)
        # the SR opens on its first group (the whole slab, on its middle slice); its arrows step
        # through the groups, to each nodule's slice
        shown = _show_sr(page, "text=S:901", "Nodules", "text=S:3000566")  # the SR; the CT's series
        for _ in range(6):
            if not shown or page.locator("tspan:has-text('Diameter')").count():
                break
            page.click("[data-cy=viewport-action-arrows-right] svg")
            page.wait_for_timeout(2000)
        page.screenshot(path=str(SHOTS / "viewer-ct-nodule-sr.png"))
        drawn = " ".join(page.locator("tspan").all_text_contents())
        browser.close()
    assert shown, "the nodule SR was not drawn"
    assert "Diameter" in drawn and "mm" in drawn, drawn
