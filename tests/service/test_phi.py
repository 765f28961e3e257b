"""PHI hygiene and authentication limits: no patient identifier or third-party error text in
logs, error fields or HTTP bodies; identifiers fit their columns on SQLite and PostgreSQL;
failed authentications are audited and limited per client address."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.service.conftest import TOKENS, drain

from medsight.service.db import AuditEvent, Instance, Job, Series

CANARY_ID = "PHI-CANARY-ID-" + "7" * 70  # 84 characters: over the 64 of PatientID's column
CANARY_NAME = "CANARYSURNAME^SECRETGIVEN"
CANARY_BIRTH = "19XX-07-PHI"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_ctx(request, make_cfg):
    from medsight.service.context import build_context

    over = {}
    if request.param == "postgresql":
        over["database"] = {"url": request.getfixturevalue("postgres_url")}
    c = build_context(make_cfg(**over))
    yield c
    c.db.dispose()


def _client(ctx):
    from medsight.service.app import create_app

    return TestClient(create_app(ctx))


def test_an_over_long_patient_id_is_stored_cut_to_its_column_on_both_databases(any_db_ctx, xray):
    ds, data = xray(patient_id=CANARY_ID, patient_name=CANARY_NAME * 8)
    assert any_db_ctx.ingestor.ingest(data, actor="http:test").status == "stored"
    with any_db_ctx.db.read() as s:
        inst = s.scalar(select(Instance))
        series = s.scalar(select(Series))
    assert inst.patient_id == series.patient_id == CANARY_ID[:64]
    assert series.patient_name == (CANARY_NAME * 8)[:128]


def test_database_errors_never_carry_the_statement_values(any_db_ctx):
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    row = dict(sop_uid="1.2.3", sop_class_uid="1.2", series_uid="1.2.4", study_uid="1.2.5", patient_id="PHI-CANARY",
               modality="CR", path="/x", sha256="0" * 64, size=1, source="t", received_at=0.0)
    with any_db_ctx.db.session() as s:
        s.execute(insert(Instance).values(**row))
    with pytest.raises(IntegrityError) as err:
        with any_db_ctx.db.session() as s:
            s.execute(insert(Instance).values(**row))
    assert "PHI-CANARY" not in str(err.value)


def test_a_worker_failure_stores_and_logs_the_error_type_not_its_text(ctx, xray, caplog, monkeypatch):
    ds, data = xray()
    ctx.ingestor.ingest(data, actor="http:test")

    def boom(*_a, **_k):
        raise ValueError(f"Unable to convert '{CANARY_BIRTH}' to 'DA' object")

    monkeypatch.setattr("medsight.service.process.Processor.run_instances", boom)
    caplog.set_level(logging.INFO)
    drain(ctx, ctx.cfg.model_copy(update={"workers": ctx.cfg.workers.model_copy(update={"max_attempts": 1})}))
    with ctx.db.read() as s:
        job = s.scalar(select(Job).where(Job.kind == "instance"))
    assert job.status == "failed" and job.error == "ValueError"
    from medsight.service.logs import OneLineFormatter

    lines = [OneLineFormatter().format(r) for r in caplog.records]  # as the service writes them
    assert any("batch of 1 failed" in line and "ValueError" in line for line in lines)
    assert not [line for line in lines if CANARY_BIRTH in line]


def test_safe_error_keeps_medsight_text_and_withholds_what_it_quotes():
    from medsight.errors import CorruptFileError, RefusedInputError
    from medsight.service.logs import safe_error

    try:
        try:
            try:
                raise ValueError(f"Invalid value for VR DA: '{CANARY_BIRTH}'\nsecond line {CANARY_NAME}")
            except ValueError as exc:
                raise CorruptFileError(f"DICOM is truncated or damaged (ValueError: {exc})") from exc
        except CorruptFileError as exc:
            raise RefusedInputError(f"expected a DICOM instance; {exc}", code="corrupt") from None
    except RefusedInputError as exc:
        text = safe_error(exc)
    assert text.startswith("expected a DICOM instance; DICOM is truncated or damaged (ValueError:")
    assert CANARY_BIRTH not in text and CANARY_NAME not in text and "\n" not in text
    assert safe_error(KeyError(CANARY_NAME)) == "KeyError"


def test_log_records_are_one_line_and_tracebacks_hold_no_values():
    from medsight.service.logs import OneLineFormatter

    fmt = OneLineFormatter()
    try:
        raise RuntimeError(f"value {CANARY_NAME}")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("medsight.x", logging.ERROR, __file__, 1, "failed on\n%s", ("two lines",),
                                sys.exc_info())
    line = fmt.format(rec)
    assert "\n" not in line and "failed on two lines" in line
    assert "RuntimeError" in line and "test_phi.py" in line and CANARY_NAME not in line
    warn = logging.LogRecord("pydicom", logging.WARNING, __file__, 1, "Invalid value for VR DA: %r", (CANARY_BIRTH,),
                             None)
    assert CANARY_BIRTH not in fmt.format(warn)
    captured = logging.LogRecord("py.warnings", logging.WARNING, __file__, 1, "%s",
                                 (f"valuerep.py:440: UserWarning: Invalid value for VR DA: '{CANARY_BIRTH}'\n  x",),
                                 None)
    line = fmt.format(captured)
    assert CANARY_BIRTH not in line and "UserWarning" in line


def test_an_auth_refusal_logs_the_route_template_and_is_audited_without_the_token(ctx, caplog):
    client = _client(ctx)
    caplog.set_level(logging.WARNING)
    r = client.get(f"/api/v1/patients/{CANARY_ID}/timeline", headers={"Authorization": "Bearer wrong-secret-x"})
    assert r.status_code == 401 and CANARY_ID not in r.text
    assert "/api/v1/patients/{patient_id}/timeline" in caplog.text
    assert CANARY_ID not in caplog.text and "wrong-secret-x" not in caplog.text
    with ctx.db.read() as s:
        (ev,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth_failed"))
    assert ev.object_id == "/api/v1/patients/{patient_id}/timeline" and ev.details["client"] == "testclient"
    assert len(ev.details["token_sha256_prefix"]) == 8 and "wrong-secret-x" not in str(ev.details)


def test_repeated_failures_from_one_address_are_locked_out_with_429(make_cfg):
    from medsight.service.context import build_context

    cfg = make_cfg()
    cfg.auth.max_failures, cfg.auth.lockout_s = 3, 600
    ctx = build_context(cfg)
    client = _client(ctx)
    codes = [client.get("/api/v1/worklist", headers={"Authorization": "Bearer nope"}).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    good = client.get("/api/v1/worklist", headers={"Authorization": f"Bearer {TOKENS['reader']}"})
    assert good.status_code == 429 and int(good.headers["retry-after"]) > 0
    assert client.get("/health").status_code == 200  # health needs no token and is never locked
    with ctx.db.read() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "auth_failed")))
    assert len(rows) == 3 and rows[-1].details["locked_out"] is True
    ctx.db.dispose()


def test_a_lockout_ends_after_its_time_and_counts_only_recent_failures():
    from medsight.service.auth import FailureLimiter

    now = [0.0]
    lim = FailureLimiter(3, window_s=10, lockout_s=60, clock=lambda: now[0])
    assert not lim.failed("a") and not lim.failed("a")
    now[0] = 11  # the first two fell out of the window
    assert not lim.failed("a") and not lim.failed("a") and lim.failed("a")
    assert lim.retry_after("a") == 60 and lim.retry_after("b") == 0
    now[0] = 72
    assert lim.retry_after("a") == 0


def test_duplicate_tokens_are_a_config_error_and_short_ones_a_warning(make_cfg, caplog, monkeypatch):
    from medsight.errors import ConfigError
    from medsight.service.auth import TokenAuth
    from medsight.service.config import TokenConfig

    with pytest.raises(ConfigError, match="same secret"):
        make_cfg(auth={"tokens": [{"name": "a", "role": "admin", "token": "x" * 32},
                                  {"name": "b", "role": "reader", "token": "x" * 32}]})
    monkeypatch.setenv("MEDSIGHT_TEST_TOKEN", "x" * 32)
    with pytest.raises(ConfigError, match="same secret"):
        TokenAuth([TokenConfig(name="a", role="admin", token="x" * 32),
                   TokenConfig(name="b", role="reader", token_env="MEDSIGHT_TEST_TOKEN")])
    caplog.set_level(logging.WARNING)
    TokenAuth([TokenConfig(name="short", role="reader", token="abc123")])
    assert "token 'short' is 6 characters" in caplog.text and "abc123" not in caplog.text


def test_viewing_a_timeline_is_audited_without_the_patient_id(ctx, xray):
    from medsight.service.audit import patient_ref

    ds, data = xray(patient_id="PHI-CANARY-TL")
    ctx.ingestor.ingest(data, actor="http:test")
    drain(ctx)
    r = _client(ctx).get("/api/v1/patients/PHI-CANARY-TL/timeline",
                         headers={"Authorization": f"Bearer {TOKENS['reader']}"})
    assert r.status_code == 200
    with ctx.db.read() as s:
        (ev,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "viewed"))
        rows = [str((e.actor, e.object_id, e.details)) for e in s.scalars(select(AuditEvent))]
    assert ev.object_type == "patient" and ev.object_id == patient_ref("PHI-CANARY-TL")
    assert [row for row in rows if "PHI-CANARY" in row] == []
