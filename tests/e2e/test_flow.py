"""End to end: images reach MedSight through Orthanc's routing, straight by C-STORE and by
STOW-RS; results come back to Orthanc as SR + SC in the source study; the CT slab is one
complete series ("no model routed" until lung-nodule-ct is installed); an MR hippocampus
series is segmented and comes back as SEG + SR; positive cases alert and reach the webhook."""

from __future__ import annotations

import pytest

from e2e.helpers import check_seg_and_sr, nodule_model, orthanc_study_modalities, storescu, wait_for
from e2e.stack import TOKENS

LIDC = "lidc_idri_nodule_slabs/LIDC-IDRI-0001"


def _result(stack, sop_uid):
    r = stack.service.get(f"/api/v1/results?sop_uid={sop_uid}", role="reader").json()
    return r[0] if r and r[0]["sent"] and len(r[0]["sent"]) >= 2 else None


def _check_xray(stack, webhook, ds, *, positive: bool, source_prefix: str) -> None:
    res = wait_for(lambda: _result(stack, ds.SOPInstanceUID), timeout=90, what="result stored and sent")
    assert res["status"] == "ok" and res["positive"] is positive
    assert res["model_version"] and res["weights_sha256"] and res["input_sha256"]
    assert {o["kind"] for o in res["sent"]} == {"SR", "SC"}
    expected = {"SR": 1, "OT": 1, **({"CR": 1} if source_prefix.startswith("dicom:ORTHANC") else {})}
    # the SR and the SC (modality OT) sit in the source's study
    wait_for(lambda: orthanc_study_modalities(stack.orthanc, ds.StudyInstanceUID) == expected, timeout=30,
             what=f"{expected} in the study in Orthanc")
    audit = stack.service.get(f"/api/v1/audit?object_id={ds.SOPInstanceUID}&action=received").json()
    assert audit and audit[0]["actor"].startswith(source_prefix)
    if positive:
        assert res["alerts"] and res["alerts"][0]["priority"] == "high"
        body = wait_for(lambda: [b for b in webhook.bodies if b["study_uid"] == ds.StudyInstanceUID],
                        timeout=30, what="webhook")
        assert body[0]["sop_uid"] == ds.SOPInstanceUID and "patient_id" not in body[0]
        assert res["suggestion"]["suggestion"] == "Intensify treatment"
    else:
        assert res["alerts"] == []
        assert res["suggestion"]["suggestion"] == "Maintain or reduce treatment"


@pytest.mark.db  # the series row is upserted by 16 instances arriving together
def test_storescu_to_orthanc_routes_xray_and_ct_slab(stack, webhook, xray_file, shared_data):
    pos_path, pos = xray_file("positive", patient_id="E2E-ROUTE")
    neg_path, neg = xray_file("negative", patient_id="E2E-ROUTE")
    ct_dir = shared_data(LIDC)
    out = storescu(stack.orthanc.dicom_port, [pos_path, neg_path], aec="ORTHANC")
    assert out.returncode == 0, out.stdout + out.stderr
    ct_files = sorted(ct_dir.rglob("*.dcm"))  # absolute paths: the names start with '-'
    assert len(ct_files) == 16
    out = storescu(stack.orthanc.dicom_port, ct_files, aec="ORTHANC")
    assert out.returncode == 0, out.stdout + out.stderr
    _check_xray(stack, webhook, pos, positive=True, source_prefix="dicom:ORTHANC")
    _check_xray(stack, webhook, neg, positive=False, source_prefix="dicom:ORTHANC")
    ct_uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178"

    def ct_done():
        s = stack.service.get(f"/api/v1/studies/{ct_uid}", role="reader")
        return s.status_code == 200 and s.json()["series"][0]["outcome"] and s.json()
    detector = nodule_model()
    study = wait_for(ct_done, timeout=300 if detector else 60, what="CT series complete")
    (series,) = study["series"]
    assert series["n_instances"] == 16 and series["status"] == "complete"
    if detector is None:  # the route names lung-nodule-ct, which is not installed
        assert series["outcome"].startswith("no model routed")
        assert study["results"] == []
    else:  # the shipped detector ran on it (what it sends is checked in test_nodule_e2e.py)
        assert series["outcome"] == "processed by lung-nodule-ct"
        assert [r["model"] for r in study["results"]] == ["lung-nodule-ct"]
    jobs = stack.service.get("/api/v1/queue", role="reader").json()
    assert "failed" not in jobs.get("series", {})


@pytest.mark.db  # series upserts, then one result and its findings for the whole series
def test_mr_series_through_orthanc_comes_back_as_seg_and_sr(stack, mr_series):
    series = mr_series(patient_id="E2E-HIPPO")
    out = storescu(stack.orthanc.dicom_port, series["paths"], aec="ORTHANC")
    assert out.returncode == 0, out.stdout + out.stderr
    check_seg_and_sr(stack, series, destination="orthanc")
    study = stack.service.get(f"/api/v1/studies/{series['study']}", role="reader").json()
    (s,) = study["series"]
    assert s["n_instances"] == len(series["paths"]) and s["outcome"] == "processed by hippocampus-mri"


def test_storescu_straight_to_medsight(stack, webhook, xray_file, shared_data):
    pos_path, pos = xray_file("positive", patient_id="E2E-DIRECT")
    neg_path, neg = xray_file("negative", patient_id="E2E-DIRECT")
    out = storescu(stack.service.dicom_port, [pos_path, neg_path])
    assert out.returncode == 0, out.stdout + out.stderr
    _check_xray(stack, webhook, pos, positive=True, source_prefix="dicom:STORESCU")
    _check_xray(stack, webhook, neg, positive=False, source_prefix="dicom:STORESCU")


def test_stow_rs_to_medsight(stack, webhook, xray_file):
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    pos_path, pos = xray_file("positive", patient_id="E2E-STOW")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKENS['sender']}"
    client = DICOMwebClient(url=f"{stack.service.http}/dicom-web", session=session)
    answer = client.store_instances([pydicom.dcmread(pos_path)])
    assert len(answer.get("FailedSOPSequence", [])) == 0
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == pos.SOPInstanceUID
    _check_xray(stack, webhook, pos, positive=True, source_prefix="stow:e2e-sender")


@pytest.mark.db  # the instance insert that conflicts
def test_duplicate_send_is_processed_once(stack, xray_file):
    path, ds = xray_file("negative", patient_id="E2E-DUP")
    for _ in range(3):
        assert storescu(stack.service.dicom_port, [path]).returncode == 0
    wait_for(lambda: _result(stack, ds.SOPInstanceUID), timeout=60, what="result")
    assert len(stack.service.get(f"/api/v1/results?sop_uid={ds.SOPInstanceUID}").json()) == 1
    dups = stack.service.get(f"/api/v1/audit?object_id={ds.SOPInstanceUID}&action=duplicate").json()
    assert len(dups) == 2
    assert orthanc_study_modalities(stack.orthanc, ds.StudyInstanceUID).get("SR") == 1


@pytest.mark.parametrize("path", ["/api/v1/worklist", "/api/v1/alerts", "/metrics", "/openapi.json"])
def test_nothing_but_health_answers_without_a_token(stack, path):
    import httpx

    assert httpx.get(stack.service.http + "/health").status_code == 200
    assert httpx.get(stack.service.http + path).status_code == 401
    assert stack.service.get(path, role="reader").status_code == 200


@pytest.mark.db  # exactly once: what is known is decided by the database
def test_catchup_fetches_what_orthanc_got_while_medsight_was_down(stack, xray_file):
    path, ds = xray_file("negative", patient_id="E2E-CATCHUP")
    stack.service.stop()
    try:
        assert storescu(stack.orthanc.dicom_port, [path], aec="ORTHANC").returncode == 0
    finally:
        stack.service.start()
    res = wait_for(lambda: _result(stack, ds.SOPInstanceUID), timeout=60, what="caught-up result")
    assert res["status"] == "ok"
    audit = stack.service.get(f"/api/v1/audit?object_id={ds.SOPInstanceUID}&action=received").json()
    assert audit[0]["actor"] == "catchup:orthanc"
