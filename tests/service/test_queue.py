"""The durable queue: keyed enqueue, leases, redelivery after a worker dies, retries, and no
job handed to two workers at once (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from medsight.service.db import Database, Job
from medsight.service.queue import claim, complete, enqueue, fail, requeue_expired


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        d = Database(f"sqlite:///{tmp_path / 'q.db'}")
        d.create_all()
        yield d
        d.dispose()
        return
    d = Database(request.getfixturevalue("postgres_url"))
    d.create_all()
    yield d
    d.dispose()


def test_enqueue_is_keyed_and_claim_leases(db):
    with db.session() as s:
        assert enqueue(s, "instance", "k1", {"a": 1})
        assert not enqueue(s, "instance", "k1", {"a": 2})  # same key: nothing new
        enqueue(s, "send", "k2", priority=5)
    jobs = claim(db, "w1", limit=5, lease_s=30)
    assert [j.key for j in jobs] == ["k2", "k1"]  # priority first
    assert claim(db, "w2", limit=5) == []
    with db.session() as s:
        complete(s, jobs[0])
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.key == "k2")) == "done"


def test_a_dead_workers_jobs_are_handed_out_again(db):
    with db.session() as s:
        enqueue(s, "instance", "k")
    (job,) = claim(db, "dies", lease_s=0.2)
    assert requeue_expired(db) == 0
    time.sleep(0.3)
    assert requeue_expired(db) == 1
    (again,) = claim(db, "survivor")
    assert again.id == job.id and again.attempts == 2


def test_failures_retry_with_backoff_then_give_up(db):
    with db.session() as s:
        enqueue(s, "send", "k")
    (job,) = claim(db, "w")
    assert fail(db, job, "PACS down", max_attempts=2, backoff_s=0.2) == "pending"
    assert claim(db, "w") == []  # backing off
    time.sleep(0.25)
    (job,) = claim(db, "w")
    assert fail(db, job, "PACS down", max_attempts=2, backoff_s=0.2) == "failed"
    with db.read() as s:
        row = s.scalar(select(Job))
        assert row.status == "failed" and "PACS down" in row.error


def test_concurrent_claimers_never_share_a_job(db):
    with db.session() as s:
        for i in range(120):
            enqueue(s, "instance", f"k{i}")
    taken: list[list[int]] = [[] for _ in range(4)]

    def run(k):
        while True:
            jobs = claim(db, f"w{k}", limit=3)
            if not jobs:
                return
            taken[k].extend(j.id for j in jobs)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for t in taken for i in t]
    assert len(ids) == 120 and len(set(ids)) == 120
    assert sum(1 for t in taken if t) >= 2  # the work was really shared
