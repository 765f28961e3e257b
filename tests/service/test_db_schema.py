"""A database made by an older MedSight gets the columns it lacks when the service starts
(``Database.create_all``), with existing rows kept and given the columns' defaults, on SQLite
and a real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text

from medsight.service.db import Database, Job


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
            conn.execute(text("INSERT INTO jobs (kind, key, payload, status, priority, attempts, available_at, "
                              "created_at) VALUES ('instance', 'old-job', '{}', 'pending', 0, 0, 0, 0)"))
        assert "crashes" not in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
        db.create_all()
        db.create_all()  # idempotent
        assert "crashes" in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
        with db.read() as s:
            job = s.scalar(select(Job).where(Job.key == "old-job"))
        assert job.status == "pending" and job.crashes == 0
    finally:
        db.dispose()
