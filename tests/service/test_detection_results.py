"""A chest CT series through the service to the nodule detector: routed by body part, run once
the series is complete (an 11-slice slab too), stored with a finding per nodule and its crop,
one alert per suspicious nodule, an SR with a measurement group per nodule and an SC of the
overlay on the slice it shows, and the nodules on the API's result, study and worklist.

The detector is the real detection task and saved-model format with random weights, its
candidate stage replaced by nodules placed on the real LIDC-IDRI-0001 slab
(support/detection_model.py); tests/e2e/test_nodule_e2e.py runs the shipped model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from tests.service.conftest import TOKENS, drain, lidc_slab

from medsight.io.dicom_out.sr import on_nearest_slice, scoord_to_patient
from medsight.service.db import Alert, Instance, Job, Result, ResultFinding, Series
from support.detection_model import fixed_detections, save_detection_model

VOLUME_23MM = 3.141592653589793 / 6 * 23.0**3 / 1000  # the placed 23 mm nodule's sphere volume, mL


@pytest.fixture(scope="module")
def detection_model(tmp_path_factory) -> str:
    return save_detection_model(tmp_path_factory.mktemp("det") / "model")


@pytest.fixture
def det_ctx(make_cfg, detection_model, monkeypatch):
    import medsight.tasks.detection.detect as detect_module
    from medsight.service.context import build_context

    monkeypatch.setattr(detect_module, "detect", fixed_detections())
    cfg = make_cfg(models={"lung-nodule-ct": {"path": detection_model, "explain": "none"}},
                   routing=[{"name": "chest-ct", "modalities": ["CT"], "body_parts": ["CHEST", "LUNG", "THORAX"],
                             "models": ["lung-nodule-ct"]}],
                   alerts={"rules": [{"name": "suspicious-nodule", "kind": "nodule", "model": "lung-nodule-ct",
                                      "value": 8, "category": "4A", "priority": "high"}]})
    c = build_context(cfg)
    yield c
    c.db.dispose()


def _send(ctx, files) -> None:
    for f in files:
        assert ctx.ingestor.ingest(Path(f).read_bytes(), actor="dicom:CT").status == "stored"
    time.sleep(0.3)  # the series goes quiet: complete_after_s is 0.2 s in these tests
    drain(ctx)


def _sources(ctx, result):
    from medsight.io.dicom import read_dataset

    with ctx.db.read() as s:
        paths = list(s.scalars(select(Instance.path).where(Instance.series_uid == result.series_uid)))
    return [read_dataset(Path(p), headers_only=True) for p in paths]


def test_a_chest_ct_slab_gets_a_finding_per_nodule_its_crops_and_an_alert_per_suspicious_nodule(det_ctx,
                                                                                                 shared_data):
    _send(det_ctx, lidc_slab(shared_data))
    with det_ctx.db.read() as s:
        (r,) = s.scalars(select(Result))
        series = s.scalar(select(Series))
        rows = list(s.scalars(select(ResultFinding).order_by(ResultFinding.id)))
        alerts = list(s.scalars(select(Alert)))
    assert r.status == "ok" and r.sop_uid is None and r.model == "tiny-nodule", r.error
    assert series.outcome == "processed by lung-nodule-ct" and series.n_instances == 16
    assert r.label == "2 nodules, largest 23.0 mm (4B)" and r.score == 0.95 and r.positive is None
    lesions = {}
    for f in rows:
        lesions.setdefault(f.lesion_id, {})[f.name] = f
    assert set(lesions) == {None, "1", "2"} and lesions[None]["nodule_count"].value == 2
    one = lesions["1"]
    assert (one["nodule_diameter_mm"].value, one["nodule_diameter_mm"].unit) == (23.0, "mm")
    assert one["nodule_category"].text == "4B" and one["nodule_type"].text == "solid"
    assert len(one["nodule_diameter_mm"].region["center_mm"]) == 3
    # one alert, for the 23 mm 4B nodule; the 4.5 mm category-2 one is below both bounds
    (alert,) = alerts
    assert (alert.rule, alert.lesion_id, alert.priority) == ("suspicious-nodule", "1", "high")
    assert alert.message.startswith("lung-nodule-ct: nodule 1: 23.0 mm, solid, Lung-RADS 4B")
    # the crops and the overlay are files beside the result; the overlay knows its slice
    assert set(r.outputs["crops"]) == {"1", "2"} and all(Path(p).is_file() for p in r.outputs["crops"].values())
    assert Path(r.overlay_path).is_file()
    files = sorted(lidc_slab(shared_data), key=lambda p: float(p.stem))  # the slab's slices by position
    import pydicom

    assert r.outputs["overlay_sop_uid"] == pydicom.dcmread(files[8], stop_before_pixels=True).SOPInstanceUID


def test_a_redelivered_series_job_raises_each_nodule_alert_once(det_ctx, shared_data):
    _send(det_ctx, lidc_slab(shared_data))
    with det_ctx.db.session() as s:  # as if the worker died before acknowledging
        s.execute(update(Job).where(Job.kind == "series").values(status="pending", lease_until=None))
    drain(det_ctx)
    with det_ctx.db.read() as s:
        assert s.scalar(select(func.count(Result.id))) == 1
        assert list(s.scalars(select(Alert.key))) == [f"{s.scalar(select(Result.key))}|suspicious-nodule|1"]


def test_an_11_slice_slab_runs_too(det_ctx, shared_data):
    files = sorted(lidc_slab(shared_data), key=lambda p: float(p.stem))[:11]  # contiguous, as the LIDC slabs are
    _send(det_ctx, files)
    with det_ctx.db.read() as s:
        (r,) = s.scalars(select(Result))
        series = s.scalar(select(Series))
    assert series.n_instances == 11 and r.status == "ok", r.error
    assert r.outputs["overlay_sop_uid"] in {str(u) for u in [*_uids(files)]}


def _uids(files):
    import pydicom

    return [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]


def test_the_sr_has_a_group_per_nodule_and_the_sc_shows_the_overlay_on_its_slice(det_ctx, shared_data):
    import highdicom as hd
    import numpy as np
    from PIL import Image as PILImage

    from medsight.io.dicom_out import write_dicom
    from medsight.service.results_out import build_outputs

    _send(det_ctx, lidc_slab(shared_data))
    with det_ctx.db.read() as s:
        r = s.scalar(select(Result))
    sources = _sources(det_ctx, r)
    objects = {o.kind: o.dataset for o in build_outputs(r, sources, det_ctx.cfg.outputs)}
    assert set(objects) == {"SR", "SC"}  # no mask: no SEG
    sc = objects["SC"]
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == r.outputs["overlay_sop_uid"]
    assert sc.SeriesDescription == "MedSight tiny-nodule overlay (not for diagnosis)"
    assert sc.StudyInstanceUID == r.study_uid
    with PILImage.open(r.overlay_path) as im:
        assert np.array_equal(sc.pixel_array, np.asarray(im.convert("RGB")))
    path = write_dicom(objects["SR"], Path(r.overlay_path).with_name("sr.dcm"))
    content = hd.sr.srread(path).content
    groups = {g.tracking_identifier: g for g in content.get_planar_roi_measurement_groups()}
    assert set(groups) == {"Nodule 1", "Nodule 2", "MedSight tiny-nodule"}
    g = groups["Nodule 1"]
    assert g.finding_type.meaning == "Nodule" and [s.value.meaning for s in g.finding_sites] == ["Lung"]
    assert {m.name.meaning: (m.value, m.unit.value) for m in g.get_measurements()} == {
        "Diameter": (23.0, "mm"), "Volume": (pytest.approx(VOLUME_23MM), "mL"), "Nodule probability": (0.95, "1")}
    assert {q.name.meaning: q.value.meaning for q in g.get_qualitative_evaluations()} == {
        "Nodule type": "solid", "Lung-RADS category": "4B", "Geometric purpose of region": "Center"}
    centre = next(f for f in r.findings if f.lesion_id == "1").region["center_mm"]
    # on the slice nearest the centre (where a viewer draws it), at the centre's place in that plane
    on, at = on_nearest_slice(centre, sources)
    assert g.roi.graphic_type.value == "POINT" and np.allclose(g.roi.value[0], at, atol=1e-3)
    assert str(g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID) == on.SOPInstanceUID
    assert np.linalg.norm(scoord_to_patient(on, *at)[:2] - np.asarray(centre)[:2]) < 1e-3  # axial slices
    whole = groups["MedSight tiny-nodule"]  # what is not about one nodule: placed on the slab's middle slice
    assert [m.name.meaning for m in whole.get_measurements()] == ["Nodules found"]
    assert [s.value.meaning for s in whole.finding_sites] == ["Chest"]  # the slabs' BodyPartExamined
    assert whole.roi.graphic_type.value == "POLYLINE"


def test_the_api_shows_each_nodule_with_its_crop_on_the_result_study_and_worklist(det_ctx, shared_data):
    from medsight.service.app import create_app

    _send(det_ctx, lidc_slab(shared_data))
    client = TestClient(create_app(det_ctx))
    h = {"Authorization": f"Bearer {TOKENS['reader']}"}
    (res,) = client.get("/api/v1/results", headers=h).json()
    assert [le["lesion_id"] for le in res["lesions"]] == ["1", "2"]
    one = res["lesions"][0]
    assert {f["name"]: f["value"] if f["text"] is None else f["text"] for f in one["findings"]} == {
        "nodule_diameter_mm": 23.0, "nodule_volume_ml": pytest.approx(VOLUME_23MM), "nodule_score": 0.95,
        "nodule_type": "solid", "nodule_category": "4B"}
    assert "crops" not in res["outputs"]  # files by URL, never by their server path
    crop = client.get(one["crop_url"], headers=h)
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"
    assert client.get(one["crop_url"].replace("/lesions/1/", "/lesions/9/"), headers=h).status_code == 404
    assert client.get(res["overlay_url"], headers=h).status_code == 200
    assert res["alerts"][0]["lesion_id"] == "1"
    study = client.get(f"/api/v1/studies/{res['study_uid']}", headers=h).json()
    assert [le["lesion_id"] for le in study["results"][0]["lesions"]] == ["1", "2"]
    (row,) = client.get("/api/v1/worklist", headers=h).json()
    assert row["priority"] == "high" and row["top_label"] == "2 nodules, largest 23.0 mm (4B)"
    assert [(le["model"], le["lesion_id"]) for le in row["lesions"]] == [("tiny-nodule", "1"), ("tiny-nodule", "2")]
