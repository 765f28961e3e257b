"""Response assessment in the service (``response`` section): a patient's stored serial studies
assessed by medsight.response's own code when a study settles, stored per time point, re-assessed
when an earlier-dated study arrives later, progression alerted, and shown on the timeline.

The serial studies are TCIA's PGBM-001 (two MRI exams, each with a Mask_Tumor series; skipped
when the shared data is absent) and the synthetic serial studies of tests/support.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.service.conftest import TOKENS, drain

from medsight.response.criteria import PROGRESSIVE
from medsight.service.db import Alert, AuditEvent, Job, ResponseAssessment
from support.data import shared

PATIENT = "brain_tumor_progression/PGBM-001"
EARLY, LATE = "1991-11-19", "1992-04-02"


def _exam(date: str) -> list[Path]:
    return sorted((shared(PATIENT) / date).rglob("*.dcm"))


@pytest.fixture
def response_ctx(make_cfg):
    """A service context with response assessment on (no settle time) and a webhook configured."""
    from medsight.service.context import build_context

    def make(**response):
        cfg = make_cfg(response={"settle_s": 0, **response},
                       alerts={"rules": [], "webhook": {"url": "http://127.0.0.1:9/hook"}})
        return build_context(cfg)
    made = []

    def factory(**response):
        made.append(make(**response))
        return made[-1]
    yield factory
    for c in made:
        c.db.dispose()


def _send(ctx, paths: list[Path]) -> None:
    for p in paths:
        assert ctx.ingestor.ingest(p, actor="dicom:TESTSCU").status == "stored"


def _current(ctx) -> list[ResponseAssessment]:
    from medsight.service.response import current_assessment

    with ctx.db.read() as s:
        return current_assessment(s, "PGBM-001")


def test_response_is_off_unless_configured_and_checks_its_presets(make_cfg):
    from medsight.errors import ConfigError

    assert make_cfg().response.enabled is False
    on = make_cfg(response={})
    assert on.response.enabled and (on.response.criteria, on.response.policy) == ("recist-like", "default")
    assert make_cfg(response={"policy": "reference"}).response.policy == "reference"
    for bad, says in (({"criteria": "recist"}, "response.criteria"), ({"policy": "probability"}, "response.policy"),
                      ({"mask_series": "("}, "response.mask_series"), ({"alert_on": ["worse"]}, "alert_on"),
                      ({"segmentation_model": "nope"}, "segmentation_model"), ({"settle": 3}, "response.settle")):
        with pytest.raises(ConfigError, match=says):
            make_cfg(response=bad)


def test_a_later_exam_first_then_the_earlier_one_ends_in_date_order_with_progression_and_one_alert(
        response_ctx, client_for, caplog):
    ctx = response_ctx()
    caplog.set_level(logging.INFO)
    _send(ctx, _exam(LATE))  # the later exam arrives first: it is the baseline until the earlier one comes
    drain(ctx)
    (only,) = _current(ctx)
    assert (only.study_date, only.position, only.category) == (LATE, 0, None)
    assert only.suggestion.startswith("no adjustment suggested: baseline only")
    _send(ctx, _exam(EARLY))
    drain(ctx)

    rows = _current(ctx)
    assert [r.study_date for r in rows] == [EARLY, LATE]  # by StudyDate, not by arrival
    assert [r.category for r in rows] == [None, PROGRESSIVE]
    assert rows[-1].suggestion == "escalate or review treatment"
    assert rows[0].volume_ml == pytest.approx(8.11, rel=0.02) and rows[1].volume_ml == pytest.approx(20.92, rel=0.02)
    assert 34.5 <= rows[0].longest_diameter_mm <= 36.5 and 45.5 <= rows[1].longest_diameter_mm <= 47.5
    assert all(r.perpendicular_diameter_mm <= r.longest_diameter_mm for r in rows)
    assert any("progression needs" in x and x.endswith("met") for x in rows[-1].reasons)
    assert rows[-1].criteria == "recist-like" and rows[-1].policy == "default"
    assert rows[-1].versions["medsight"] and rows[-1].inputs["n_instances"] == 196
    assert Path(rows[-1].plot_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with ctx.db.read() as s:
        history = list(s.scalars(select(ResponseAssessment).order_by(ResponseAssessment.id)))
        alerts = list(s.scalars(select(Alert)))
        hooks = list(s.scalars(select(Job).where(Job.kind == "webhook")))
        audit = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "assessed")))
    assert [(h.study_date, h.superseded_at is None) for h in history] == [(LATE, False), (EARLY, True), (LATE, True)]
    (alert,) = alerts  # progression of the 1992 exam, raised once
    assert (alert.result_id, alert.assessment_id, alert.study_uid) == (None, rows[-1].id, rows[-1].study_uid)
    assert alert.priority == "high" and "progressive disease at 1992-04-02" in alert.message
    assert [j.payload["alert_id"] for j in hooks] == [alert.id]
    assert len(audit) == 2 and all("PGBM-001" not in str(e.details) + e.object_id for e in audit)
    assert "PGBM-001" not in caplog.text

    client = client_for(ctx)
    t = client.get("/api/v1/patients/PGBM-001/timeline", headers={"Authorization": f"Bearer {TOKENS['reader']}"})
    assert t.status_code == 200, t.text
    body = t.json()
    assert body["entries"] == []  # no model result: the response assessment alone
    resp = body["response"]
    assert [p["date"] for p in resp["timepoints"]] == [EARLY, LATE]
    assert [p["category"] for p in resp["timepoints"]] == [None, PROGRESSIVE]
    assert resp["category"] == PROGRESSIVE and resp["suggestion"] == "escalate or review treatment"
    assert resp["criteria"] == "recist-like" and resp["n_assessments"] == 2
    assert set(resp["timepoints"][0]) >= {"date", "volume_ml", "longest_diameter_mm", "perpendicular_diameter_mm",
                                          "category", "suggestion", "reasons", "criteria"}
    assert [a["rule"] for a in body["alerts"]] == ["response"]
    png = client.get(resp["plot_url"], headers={"Authorization": f"Bearer {TOKENS['reader']}"})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_assessing_again_with_the_same_studies_stores_and_alerts_nothing_new(response_ctx):
    from medsight.service.queue import enqueue

    ctx = response_ctx()
    _send(ctx, _exam(EARLY) + _exam(LATE))
    drain(ctx)
    with ctx.db.read() as s:
        series_uid = s.scalar(select(ResponseAssessment.study_uid))
        before = (s.query(ResponseAssessment).count(), s.query(Alert).count())
        any_series = s.execute(select(Job.payload).where(Job.kind == "response")).first()[0]["series_uid"]
    assert series_uid and before == (2, 1)
    with ctx.db.session() as s:  # a job delivered twice, or queued again by a duplicate
        enqueue(s, "response", "response:again", {"series_uid": any_series})
    drain(ctx)
    with ctx.db.read() as s:
        assert (s.query(ResponseAssessment).count(), s.query(Alert).count()) == before


def test_the_reference_policy_is_a_preset_and_other_criteria_are_chosen_by_name(response_ctx):
    ctx = response_ctx(policy="reference", criteria="volumetric")
    _send(ctx, _exam(EARLY) + _exam(LATE))
    drain(ctx)
    rows = _current(ctx)
    assert [r.category for r in rows] == [None, PROGRESSIVE]
    assert (rows[-1].criteria, rows[-1].policy, rows[-1].suggestion) == ("volumetric", "reference",
                                                                         "Intensify treatment")
    assert rows[-1].assessment["unit"] == "mL"


def test_studies_without_a_lesion_mask_queue_no_assessment(response_ctx, xray):
    ctx = response_ctx()
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)
    with ctx.db.read() as s:
        assert s.query(Job).filter(Job.kind == "response").count() == 0
        assert s.query(ResponseAssessment).count() == 0


def test_the_assessment_waits_while_a_series_of_the_patient_is_still_arriving(response_ctx):
    from medsight.service.db import Series, now
    from medsight.service.queue import claim
    from medsight.service.response import ResponseAssessor

    ctx = response_ctx(settle_s=60)
    _send(ctx, _exam(LATE))
    with ctx.db.session() as s:  # every series complete, one of them only just
        for x in s.scalars(select(Series)):
            x.status, x.completed_at = "complete", now()
    with ctx.db.session() as s:
        from medsight.service.queue import enqueue

        uid = s.scalar(select(Series.series_uid).limit(1))
        enqueue(s, "response", "response:test", {"series_uid": uid})
    (job,) = claim(ctx.db, "test-worker", kinds=("response",))
    assert ResponseAssessor(ctx.cfg, "worker:test").run(ctx.db, job) == "waiting for the patient's other series"
    with ctx.db.read() as s:
        assert s.query(ResponseAssessment).count() == 0


def test_a_study_that_cannot_be_ordered_is_stored_as_an_error_with_its_reason(response_ctx, tmp_path):
    """Two studies at the same date and time cannot be put in order: the assessment says so."""
    import pydicom

    ctx = response_ctx()
    copies = []
    for p in _exam(LATE):
        ds = pydicom.dcmread(p)
        ds.StudyDate, ds.StudyTime = "19911119", "075331.765000"  # the same time as the earlier exam
        out = tmp_path / f"{len(copies)}.dcm"
        ds.save_as(out)
        copies.append(out)
    _send(ctx, _exam(EARLY) + copies)
    drain(ctx)
    (row,) = _current(ctx)
    assert row.status == "error" and "same date and time" in row.error
    assert str(ctx.cfg.storage_path) not in row.error
    with ctx.db.read() as s:
        assert s.query(Alert).count() == 0


@pytest.fixture
def client_for():
    from fastapi.testclient import TestClient

    from medsight.service.app import create_app

    return lambda ctx: TestClient(create_app(ctx))


def test_masks_can_come_from_a_segmentation_models_stored_results(make_cfg, tmp_path, tiny_models):
    """``response.segmentation_model``: each study's mask is that model's stored mask (NIfTI on
    the series' grid), here PGBM-001's own Mask_Tumor written as the model's output."""
    import medsight
    from medsight.io.nifti import write_nifti
    from medsight.service.context import build_context
    from medsight.service.db import Result, now

    models = {"pneumonia-xray": {"path": tiny_models["xray"]}, "tumour-seg": {"path": "no-such-model"}}
    ctx = build_context(make_cfg(models=models, routing=[], alerts={"rules": []},
                                 response={"settle_s": 0, "segmentation_model": "tumour-seg"}))
    try:
        masks = {}
        for date in (LATE, EARLY):
            exam = shared(PATIENT) / date
            (t1,) = [d for d in exam.iterdir() if "T1post" in d.name]
            (mask,) = [d for d in exam.iterdir() if "MaskTumor" in d.name]
            _send(ctx, sorted(t1.glob("*.dcm")))  # the image series only: no mask series is sent
            masks[date] = write_nifti(medsight.read(mask), tmp_path / f"{date}.nii.gz")
        with ctx.db.session() as s:
            from medsight.service.db import Series

            for x in s.scalars(select(Series)):
                date = f"{x.study_date[:4]}-{x.study_date[4:6]}-{x.study_date[6:]}"
                s.add(Result(key=f"seg:{x.series_uid}", status="ok", model="tumour-seg", model_version="0.1.0",
                             study_uid=x.study_uid, series_uid=x.series_uid, patient_id=x.patient_id,
                             outputs={"config_model": "tumour-seg", "mask": {"path": str(masks[date])}},
                             timings={}, created_at=now()))
        drain(ctx)
        rows = _current(ctx)
        assert [r.study_date for r in rows] == [EARLY, LATE]
        assert [r.category for r in rows] == [None, PROGRESSIVE]
        assert [r.volume_ml for r in rows] == pytest.approx([8.11, 20.92], rel=0.02)
        assert rows[-1].versions["segmentation_model"] == [{"model": "tumour-seg", "version": "0.1.0"}]
        assert any("mask from segment=" in x for x in rows[-1].reasons)
    finally:
        ctx.db.dispose()
