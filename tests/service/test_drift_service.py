"""The service's drift monitor over stored results (synthetic results of a synthetic reference):
one alert per episode, re-armed when the window is normal again, windows per sender, snapshots
and gauges. The real-model stream over DICOM is tests/e2e/test_drift_e2e.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sqlalchemy import select

from medsight.metrics.drift import reference
from medsight.service.catalog import ModelInfo
from medsight.service.db import Alert, AuditEvent, Database, DriftSnapshot, DriftState, Result
from medsight.service.outcome import Outcome
from medsight.service.result_store import ResultStore
from medsight.tasks.results import ClassificationResult, Provenance

_ids = itertools.count()


@pytest.fixture
def ref():
    rng = np.random.default_rng(1)
    d = rng.normal(10, 1, 500)
    return reference(distance=d, score=rng.uniform(0, 1, 500), threshold=0.5,
                     refer_threshold=float(np.quantile(d, 0.99)))


@pytest.fixture
def setup(make_cfg, tmp_path, ref):
    cfg = make_cfg(drift={"window": 30, "snapshot_every": 5})
    db = Database(f"sqlite:///{tmp_path / 'drift.sqlite'}")
    db.create_all()
    info = ModelInfo(name="pneumonia-xray", model_name="tiny-xray", version="0.1.0", task="classification",
                     spatial_dims=2, path="-", drift=ref)
    yield cfg, db, info
    db.dispose()


def _outcome(info, rng, *, far: bool, source: str) -> Outcome:
    d = float(rng.normal(25 if far else 10, 1))
    score = float(rng.uniform(0, 1))
    n = next(_ids)
    r = ClassificationResult(input=f"sop{n}", probabilities={"normal": 1 - score, "pneumonia": score},
                             label="refer" if far else ("pneumonia" if score >= 0.5 else "normal"), score=score,
                             threshold=0.5, positive=None if far else score >= 0.5,
                             provenance=Provenance(model=info.model_name, model_version=info.version,
                                                   weights_sha256=None, input_sha256=None),
                             refer=d > 12.3, reasons=[], distance=d)
    return Outcome(key=f"sop{n}|{info.model_name}|{info.version}", model="pneumonia-xray", info=info, status="ok",
                   study_uid=f"st{n}", series_uid=f"se{n}", sop_uid=f"sop{n}", patient_id=None, received_at=None,
                   result=r, source=source)


def _send(db, store, info, rng, n, *, far, source="dicom:XR1"):
    for _ in range(n):
        with db.session() as s:
            store.store(s, [_outcome(info, rng, far=far, source=source)])


def _drift_alerts(db):
    with db.read() as s:
        return list(s.scalars(select(Alert).where(Alert.rule == "drift").order_by(Alert.id)))


def test_one_alert_per_episode_and_the_alarm_rearms(setup):
    cfg, db, info = setup
    store, rng = ResultStore(cfg, "worker:test"), np.random.default_rng(0)
    _send(db, store, info, rng, 60, far=False)
    assert _drift_alerts(db) == []
    with db.read() as s:
        st = s.scalars(select(DriftState)).one()
        assert (st.status, st.checks, st.episodes) == ("ok", 31, 0)  # a check per result once 30 are stored
    _send(db, store, info, rng, 20, far=True)
    alerts = _drift_alerts(db)
    assert len(alerts) == 1, "a drifting window alerts once, not at every result"
    with db.read() as s:
        st = s.scalars(select(DriftState)).one()
        tipped = s.get(Result, alerts[0].result_id)
        first_far = s.scalars(select(Result).order_by(Result.id).offset(60).limit(1)).one()
    delay = tipped.id - first_far.id + 1
    assert 1 <= delay <= 6, f"the alarm came {delay} results after the switch"
    assert st.status == "drift" and st.episodes == 1
    assert "refer rate" in alerts[0].message and "dicom:XR1" in alerts[0].message
    _send(db, store, info, rng, 40, far=False)  # the window is normal again: the episode ends
    with db.read() as s:
        assert s.scalars(select(DriftState)).one().status == "ok"
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "drift_ended")).all()
    _send(db, store, info, rng, 20, far=True)
    assert len(_drift_alerts(db)) == 2, "a new episode alerts again"
    with db.read() as s:
        snaps = list(s.scalars(select(DriftSnapshot).order_by(DriftSnapshot.id)))
    assert any(x.drift for x in snaps) and any(not x.drift for x in snaps)
    assert {"distance", "score", "refer", "positive"} <= set(snaps[-1].stats)


def test_windows_are_per_sender(setup):
    cfg, db, info = setup
    store, rng = ResultStore(cfg, "worker:test"), np.random.default_rng(2)
    _send(db, store, info, rng, 30, far=False, source="dicom:WARD")
    _send(db, store, info, rng, 30, far=True, source="dicom:ECHO")
    with db.read() as s:
        states = {x.source: x.status for x in s.scalars(select(DriftState))}
    assert states == {"dicom:WARD": "ok", "dicom:ECHO": "drift"}
    assert len(_drift_alerts(db)) == 1


def test_a_model_without_a_reference_or_a_disabled_monitor_checks_nothing(setup, make_cfg):
    cfg, db, info = setup
    rng = np.random.default_rng(3)
    bare = ModelInfo(**{**info.__dict__, "drift": None})
    _send(db, ResultStore(cfg, "w"), bare, rng, 40, far=True)
    off = make_cfg(drift={"enabled": False, "window": 30})
    _send(db, ResultStore(off, "w"), info, rng, 40, far=True)
    with db.read() as s:
        assert s.scalars(select(DriftState)).all() == []
    assert _drift_alerts(db) == []


def test_the_drift_config_refuses_bad_values(make_cfg):
    from medsight.errors import ConfigError

    with pytest.raises(ConfigError, match="drift.window"):
        make_cfg(drift={"window": 2})
    with pytest.raises(ConfigError, match="alarm_on"):
        make_cfg(drift={"alarm_on": ["entropy"]})


def test_the_api_and_metrics_show_the_state_and_its_trend(make_cfg, ref):
    from fastapi.testclient import TestClient
    from tests.service.conftest import TOKENS

    from medsight.service.app import create_app
    from medsight.service.context import build_context

    ctx = build_context(make_cfg(drift={"window": 30, "snapshot_every": 5}))
    try:
        info = ModelInfo(name="pneumonia-xray", model_name="tiny-xray", version="0.1.0", task="classification",
                         spatial_dims=2, path="-", drift=ref)
        rng = np.random.default_rng(4)
        store = ResultStore(ctx.cfg, "worker:test")
        _send(ctx.db, store, info, rng, 40, far=False)
        _send(ctx.db, store, info, rng, 15, far=True)
        client = TestClient(create_app(ctx))
        auth = {"Authorization": f"Bearer {TOKENS['reader']}"}
        assert client.get("/api/v1/drift").status_code == 401
        (row,) = client.get("/api/v1/drift", headers=auth).json()
        assert row["model"] == "tiny-xray" and row["source"] == "dicom:XR1" and row["status"] == "drift"
        assert row["episodes"] == 1 and row["checks"] == 26
        assert row["last"]["tests"]["refer"]["drift"] and row["last"]["reasons"]
        assert row["history"] and row["history"][-1]["drift"] and not row["history"][0]["drift"]
        text = client.get("/metrics", headers=auth).text
        assert 'medsight_drift{model="tiny-xray",source="dicom:XR1"} 1.0' in text
        assert 'medsight_drift_episodes_total{model="tiny-xray",source="dicom:XR1"} 1.0' in text
        assert 'medsight_drift_statistic{measure="rate",model="tiny-xray",source="dicom:XR1",statistic="refer"}' in text
    finally:
        ctx.db.dispose()
