"""End to end over DICOMweb: results go back to Orthanc by STOW-RS (its DICOMweb plugin, with
authentication) and land in the source study, SEG included; and catch-up over QIDO-RS/WADO-RS
finds what Orthanc received while MedSight was down and processes it exactly once.

The module's stack is the shared one with two sections replaced: ``outputs`` (STOW-RS only,
no C-STORE destination) and ``catchup`` (``source: dicomweb``).
"""

from __future__ import annotations

from datetime import date

import pytest

from e2e.helpers import check_seg_and_sr, orthanc_study_modalities, storescu, wait_for
from e2e.stack import MANUFACTURER

STOW = "orthanc-web"


def stack_overrides(stack) -> dict:
    o = stack.orthanc
    web = f"{o.url}/dicom-web"
    return {"outputs": {"stow_rs": [{"name": STOW, "url": web, "username": o.user, "password": o.password}],
                        "manufacturer": MANUFACTURER},
            "catchup": {"source": "dicomweb", "url": web, "username": o.user, "password": o.password,
                        "interval_s": 3, "lookback_days": 1}}


def _sent_result(stack, sop_uid: str, kinds: set[str]):
    r = stack.service.get(f"/api/v1/results?sop_uid={sop_uid}", role="reader").json()
    return r[0] if r and {o["kind"] for o in r[0]["sent"]} >= kinds else None


def test_results_reach_the_source_study_by_stow_rs(stack, xray_file, mr_series):
    path, ds = xray_file("positive", patient_id="E2E-STOW-OUT")
    out = storescu(stack.service.dicom_port, [path])  # straight to MedSight: Orthanc gets only the results
    assert out.returncode == 0, out.stdout + out.stderr
    series = mr_series(patient_id="E2E-STOW-OUT")
    out = storescu(stack.orthanc.dicom_port, series["paths"], aec="ORTHANC")  # routed by Orthanc
    assert out.returncode == 0, out.stdout + out.stderr

    res = wait_for(lambda: _sent_result(stack, ds.SOPInstanceUID, {"SR", "SC"}), timeout=90,
                   what="X-ray result sent by STOW-RS")
    assert res["status"] == "ok" and {(o["kind"], o["destination"]) for o in res["sent"]} == {("SR", STOW),
                                                                                                ("SC", STOW)}
    wait_for(lambda: orthanc_study_modalities(stack.orthanc, ds.StudyInstanceUID) == {"SR": 1, "OT": 1},
             timeout=30, what="the SR and SC in the X-ray's study in Orthanc")
    check_seg_and_sr(stack, series, destination=STOW)
    sent = stack.service.get("/api/v1/audit?action=sent&limit=1000").json()
    assert {e["details"]["destination"] for e in sent} == {STOW}
    assert {e["details"]["kind"] for e in sent} >= {"SR", "SC", "SEG"}


@pytest.mark.db  # exactly once: what is known is decided by the database
def test_dicomweb_catchup_processes_what_orthanc_got_while_medsight_was_down_exactly_once(stack, xray_file,
                                                                                         mr_series):
    today = date.today().strftime("%Y%m%d")  # catch-up queries the studies of the last lookback_days
    path, ds = xray_file("negative", patient_id="E2E-DW-CATCHUP", study_date=today)
    series = mr_series(patient_id="E2E-DW-CATCHUP", study_date=today)
    stack.service.stop()
    try:  # Orthanc stores them; its routing to MedSight fails and is never retried
        out = storescu(stack.orthanc.dicom_port, [path, *series["paths"]], aec="ORTHANC")
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        stack.service.start()
    res = wait_for(lambda: _sent_result(stack, ds.SOPInstanceUID, {"SR", "SC"}), timeout=90,
                   what="the caught-up X-ray's result sent")
    assert res["status"] == "ok"
    check_seg_and_sr(stack, series, destination=STOW)
    # exactly once: each instance received once, through catch-up, never as a duplicate
    for sop in [ds.SOPInstanceUID, *series["sop_uids"]]:
        events = stack.service.get(f"/api/v1/audit?object_id={sop}").json()
        assert [(e["action"], e["actor"]) for e in events if e["action"] in ("received", "duplicate")] == [
            ("received", "catchup:dicomweb")], sop
    assert len(stack.service.get(f"/api/v1/results?sop_uid={ds.SOPInstanceUID}").json()) == 1
    assert len(stack.service.get(f"/api/v1/results?study_uid={series['study']}").json()) == 1
    # a further reconciliation finds everything known (sources and MedSight's own results)
    import httpx

    again = httpx.post(stack.service.http + "/api/v1/catchup", timeout=60,
                       headers={"Authorization": "Bearer e2e-admin-token"}).json()
    assert again["fetched"] == 0 and again["refused"] == 0
    assert again["seen"] >= 1 + len(series["sop_uids"]) + 4  # the sources, SR + SC, SEG + SR
    assert orthanc_study_modalities(stack.orthanc, ds.StudyInstanceUID) == {"CR": 1, "SR": 1, "OT": 1}
