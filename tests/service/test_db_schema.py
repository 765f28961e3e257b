"""A database made by an older MedSight gets the columns it lacks when the service starts
(``Database.create_all``), with existing rows kept and given the columns' defaults, on SQLite
and a real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text

from medsight.service.db import Database, Job, Result, ResultOutput


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("postgres_url")


def test_an_older_database_gets_the_new_columns_and_keeps_its_rows(url):
    db = Database(url)
    try:
        db.create_all()
        with db.engine.begin() as conn:  # make it look like the schema before issue 8
            conn.execute(text("ALTER TABLE jobs DROP COLUMN crashes"))
            conn.execute(text("ALTER TABLE alerts DROP COLUMN lesion_id"))  # before alerts per nodule (issue 10)
            conn.execute(text("DROP TABLE result_outputs"))  # as it was: sent_at required, no delivery columns
            serial = "SERIAL" if db.engine.dialect.name == "postgresql" else "INTEGER"
            conn.execute(text(f"CREATE TABLE result_outputs (id {serial} PRIMARY KEY, result_id INTEGER NOT NULL "
                              "REFERENCES results(id), kind VARCHAR(8) NOT NULL, sop_uid VARCHAR(64) NOT NULL, "
                              "series_uid VARCHAR(64) NOT NULL, destination VARCHAR(80) NOT NULL, "
                              "status VARCHAR(16) NOT NULL, sent_at FLOAT NOT NULL, "
                              "CONSTRAINT uq_output_dest UNIQUE (sop_uid, destination))"))
            conn.execute(text("CREATE INDEX ix_result_outputs_result_id ON result_outputs (result_id)"))
            conn.execute(text("INSERT INTO results (key, status, model, model_version, study_uid, series_uid, "
                              "outputs, timings, created_at) VALUES ('r', 'ok', 'm', '1', '1.2', '1.2.3', '{}', "
                              "'{}', 0)"))
            conn.execute(text("INSERT INTO result_outputs (result_id, kind, sop_uid, series_uid, destination, "
                              "status, sent_at) SELECT id, 'SR', '1.2.3.4', '1.2.3', 'pacs', 'sent', 5 FROM results"))
            conn.execute(text("INSERT INTO jobs (kind, key, payload, status, priority, attempts, available_at, "
                              "created_at) VALUES ('instance', 'old-job', '{}', 'pending', 0, 0, 0, 0)"))
        assert "crashes" not in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
        db.create_all()
        db.create_all()  # idempotent
        assert "crashes" in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
        assert "lesion_id" in {c["name"] for c in inspect(db.engine).get_columns("alerts")}
        with db.read() as s:
            job = s.scalar(select(Job).where(Job.key == "old-job"))
        assert job.status == "pending" and job.crashes == 0
        with db.session() as s:  # a new output is recorded unsent (sent_at NULL), as the delivery code does
            rid = s.scalar(select(Result.id))
            s.add(ResultOutput(result_id=rid, kind="SC", sop_uid="1.2.3.5", series_uid="1.2.3", destination="pacs",
                               status="pending", sent_at=None))
        with db.read() as s:
            outs = {o.sop_uid: (o.status, o.sent_at, o.attempts) for o in s.scalars(select(ResultOutput))}
        assert outs == {"1.2.3.4": ("sent", 5.0, 0), "1.2.3.5": ("pending", None, 0)}
        assert {i["name"] for i in inspect(db.engine).get_indexes("result_outputs")} >= {"ix_result_outputs_result_id"}
    finally:
        db.dispose()


def test_an_older_alerts_table_takes_response_alerts_without_a_result(url):
    """Before response assessment, every alert had a result (alerts.result_id NOT NULL) and no
    assessment_id: at start the column is added, result_id may be null, and old alerts stay."""
    from medsight.service.db import Alert, ResponseAssessment

    db = Database(url)
    try:
        db.create_all()
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE alerts"))
            serial = "SERIAL" if db.engine.dialect.name == "postgresql" else "INTEGER"
            conn.execute(text(f"CREATE TABLE alerts (id {serial} PRIMARY KEY, key VARCHAR(200) NOT NULL UNIQUE, "
                              "result_id INTEGER NOT NULL REFERENCES results(id), rule VARCHAR(80) NOT NULL, "
                              "lesion_id VARCHAR(64), priority VARCHAR(16) NOT NULL, rank INTEGER NOT NULL, "
                              "message TEXT NOT NULL, study_uid VARCHAR(64) NOT NULL, patient_id VARCHAR(64), "
                              "webhook_status VARCHAR(16) NOT NULL, webhook_attempts INTEGER NOT NULL, "
                              "webhook_error VARCHAR(300), acknowledged_by VARCHAR(80), created_at FLOAT NOT NULL)"))
            conn.execute(text("CREATE INDEX ix_alerts_result_id ON alerts (result_id)"))
            conn.execute(text("CREATE INDEX ix_alerts_study_uid ON alerts (study_uid)"))
            conn.execute(text("INSERT INTO results (key, status, model, model_version, study_uid, series_uid, "
                              "outputs, timings, created_at) VALUES ('r', 'ok', 'm', '1', '1.2', '1.2.3', '{}', "
                              "'{}', 0)"))
            conn.execute(text("INSERT INTO alerts (key, result_id, rule, priority, rank, message, study_uid, "
                              "webhook_status, webhook_attempts, created_at) SELECT 'old', id, 'positive', 'high', "
                              "3, 'm: positive', '1.2', 'none', 0, 0 FROM results"))
        db.create_all()
        db.create_all()  # idempotent
        cols = {c["name"]: c for c in inspect(db.engine).get_columns("alerts")}
        assert "assessment_id" in cols and cols["result_id"]["nullable"]
        with db.session() as s:
            row = ResponseAssessment(key="run|1.2", run="run", patient_id="P", study_uid="1.2", status="ok",
                                     criteria="recist-like", policy="default", created_at=0)
            s.add(row)
            s.flush()
            s.add(Alert(key="new", result_id=None, assessment_id=row.id, rule="response", priority="high", rank=3,
                        message="response (recist-like): progressive disease", study_uid="1.2", created_at=1))
        with db.read() as s:
            alerts = {a.key: (a.result_id is not None, a.assessment_id is not None) for a in s.scalars(select(Alert))}
        assert alerts == {"old": (True, False), "new": (False, True)}
    finally:
        db.dispose()
