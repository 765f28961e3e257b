"""The durable queue: keyed enqueue, leases, redelivery after a worker dies, retries, no job
handed to two workers at once, and poison jobs isolated: the jobs of a dead worker become
suspects claimed one at a time, the one that keeps killing its worker is failed as poison, and
the leases of dead worker processes are released at once (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from medsight.service.db import Database, Job
from medsight.service.queue import POISON, claim, complete, enqueue, fail, release_workers, requeue_expired
from support.facts import says


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
    assert requeue_expired(db, max_attempts=5) == 0
    time.sleep(0.3)
    assert requeue_expired(db, max_attempts=5) == 1
    (again,) = claim(db, "survivor")
    assert again.id == job.id and again.attempts == 2


def test_failures_retry_with_backoff_then_give_up(db, monkeypatch):
    clock = [1_000_000.0]  # the queue's clock, moved by hand: a loaded machine cannot overrun the backoff
    monkeypatch.setattr("medsight.service.queue.now", lambda: clock[0])
    with db.session() as s:
        enqueue(s, "send", "k")
    (job,) = claim(db, "w")
    assert fail(db, job, "PACS down", max_attempts=2, backoff_s=30) == "pending"
    clock[0] += 29
    assert claim(db, "w") == []  # backing off
    clock[0] += 2
    (job,) = claim(db, "w")
    assert fail(db, job, "PACS down", max_attempts=2, backoff_s=30) == "failed"
    with db.read() as s:
        row = s.scalar(select(Job))
        assert row.status == "failed" and "PACS down" in row.error


def test_concurrent_claimers_never_share_a_job(db):
    with db.session() as s:
        for i in range(120):
            enqueue(s, "instance", f"k{i}")
    taken: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)  # all claim from the same moment: a thread started first could drain the queue alone

    def run(k):
        start.wait()
        while True:
            jobs = claim(db, f"w{k}", limit=3)
            if not jobs:
                return
            taken[k].extend(j.id for j in jobs)
            time.sleep(0.005)  # a worker works on what it claimed; without it one thread can win every lock in turn

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for t in taken for i in t]
    assert len(ids) == 120 and len(set(ids)) == 120
    assert sum(1 for t in taken if t) >= 2  # the work was really shared


def _rows(db) -> dict[str, Job]:
    with db.read() as s:
        return {j.key: j for j in s.scalars(select(Job))}


def test_a_job_that_keeps_killing_its_worker_is_failed_as_poison(db):
    with db.session() as s:
        enqueue(s, "instance", "bad", max_attempts=2)
    (job,) = claim(db, "h:1:w0", lease_s=0.2)
    time.sleep(0.3)
    assert requeue_expired(db, max_attempts=5) == 1  # the job's own max_attempts (2) counts, not 5
    assert _rows(db)["bad"].status == "pending"
    (job,) = claim(db, "h:2:w0", lease_s=0.2)
    time.sleep(0.3)
    assert requeue_expired(db, max_attempts=5) == 1
    row = _rows(db)["bad"]
    assert row.status == "failed" and row.attempts == 2 and row.crashes == 2 and row.finished_at is not None
    assert row.error.startswith(POISON)  # the machine-readable mark of a poison job
    says(row.error, "died", "2 of 2")  # why it failed, and the attempts spent
    assert claim(db, "h:3:w0") == []  # never handed out again


def test_after_a_crash_the_batch_is_claimed_one_at_a_time_and_only_the_culprit_is_poison(db):
    with db.session() as s:
        for k in "abcd":
            enqueue(s, "instance", k)
    assert len(claim(db, "h:1:w0", limit=8)) == 4
    # the process died holding all four: none is known to be the culprit, even at max_attempts 1
    assert release_workers(db, ["h:1:"], max_attempts=1) == 4
    assert {j.status for j in _rows(db).values()} == {"pending"}
    with db.session() as s:
        enqueue(s, "instance", "e")  # a job that was never near the crash
    done = []
    while jobs := claim(db, "h:2:w0", limit=8):
        if jobs[0].key == "b":  # the culprit kills its worker again
            assert len(jobs) == 1
            assert release_workers(db, ["h:2:"], max_attempts=1) == 1
            continue
        assert len(jobs) == 1 or all(not j.crashes for j in jobs)
        with db.session() as s:
            for j in jobs:
                complete(s, j)
        done.append([j.key for j in jobs])
    assert done == [["a"], ["c"], ["d"], ["e"]]
    rows = _rows(db)
    assert rows["b"].status == "failed" and rows["b"].error.startswith(POISON)
    assert [rows[k].status for k in "acde"] == ["done"] * 4


def test_one_suspect_at_a_time_per_worker_process(db):
    with db.session() as s:
        for k in ("s1", "s2", "s3"):
            enqueue(s, "instance", k)
    claim(db, "h:1:w0", limit=8)
    release_workers(db, ["h:1:"], max_attempts=5)
    with db.session() as s:
        enqueue(s, "send", "n1")
        enqueue(s, "send", "n2")
    assert [j.key for j in claim(db, "h:2:w0", limit=8)] == ["s1"]  # a suspect goes alone
    # another thread of the same process leaves the suspects alone while s1 runs
    assert [j.key for j in claim(db, "h:2:out0", limit=8)] == ["n1", "n2"]
    assert [j.key for j in claim(db, "h:3:w0", limit=8)] == ["s2"]  # another process may take one


def test_release_workers_matches_whole_name_prefixes_only(db):
    with db.session() as s:
        for k in ("a", "b", "c", "d"):
            enqueue(s, "instance", k)
    for k, worker in zip("abcd", ("a_b:12:w0", "a_b:12:out0", "a_b:123:w0", "axb:12:w0")):
        (j,) = claim(db, worker)
        assert j.key == k
    assert release_workers(db, ["a_b:12:"], max_attempts=5) == 2  # "_" is not a wildcard, 123 is not 12
    assert {k: j.status for k, j in _rows(db).items()} == {"a": "pending", "b": "pending", "c": "running",
                                                            "d": "running"}
    assert release_workers(db, [], max_attempts=5) == 0


def test_dead_local_workers_names_the_processes_of_this_host_that_are_gone():
    import os
    import socket
    import subprocess
    import sys

    from medsight.service.runner import dead_local_workers

    host = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = {f"{host}:{gone.pid}:w0", f"{host}:{gone.pid}:out0", f"{host}:{os.getppid()}:w0",
             f"{host}:{os.getpid()}:w0", f"other-host:{gone.pid}:w0", "test-worker"}
    assert dead_local_workers(names) == [f"{host}:{gone.pid}:"]
    assert dead_local_workers(names, this_process_too=True) == sorted([f"{host}:{gone.pid}:",
                                                                       f"{host}:{os.getpid()}:"])


def test_a_job_running_past_its_lease_keeps_it_while_its_worker_renews(db):
    """A slow job (a send hanging on a PACS that is just back) is not handed to a second
    worker: the first renews its lease while it runs, so the job runs, and is done, once."""
    from medsight.service.queue import Held

    with db.session() as s:
        enqueue(s, "send", "send:slow")
    (job,) = claim(db, "h:1:out0", lease_s=0.3)
    with Held(db, [job], 0.3):
        time.sleep(1.0)  # over three leases
        assert requeue_expired(db, max_attempts=5) == 0
        assert claim(db, "h:2:out0") == []
        with db.session() as s:
            complete(s, job)
    with db.read() as s:
        row = s.scalar(select(Job))
    assert (row.status, row.attempts, row.crashes or 0) == ("done", 1, 0)
    # once its worker stops renewing (it died), the lease runs out and the job is released
    with db.session() as s:
        enqueue(s, "send", "send:dies")
    (dies,) = claim(db, "h:1:out0", lease_s=0.2)
    time.sleep(0.3)
    assert requeue_expired(db, max_attempts=5) == 1


def test_a_worker_that_lost_its_lease_records_nothing(db):
    """The failure a worker reports after its lease was lost and the job taken by another does
    not overwrite the other's run: the job stays the other worker's."""
    with db.session() as s:
        enqueue(s, "send", "send:k")
    (first,) = claim(db, "h:1:out0", lease_s=0.1)
    time.sleep(0.2)
    assert requeue_expired(db, max_attempts=5) == 1
    (second,) = claim(db, "h:2:out0")
    assert fail(db, first, "PACS down", max_attempts=5, backoff_s=0, retry_for_s=3600) == "lost"
    with db.read() as s:
        row = s.scalar(select(Job))
    assert (row.status, row.worker, row.error) == ("running", "h:2:out0", None)
    assert fail(db, second, "PACS down", max_attempts=5, backoff_s=0, retry_for_s=3600) == "pending"


def test_a_delivery_always_gets_a_second_attempt_after_its_window(db):
    """A first attempt that outlived ``retry_for_s`` is retried once more, not failed for good:
    nothing would re-drive it, since its destination answers."""
    with db.session() as s:
        enqueue(s, "send", "send:late")
    (job,) = claim(db, "w")
    job.payload = {**job.payload, "retry_from": time.time() - 100}
    assert fail(db, job, "timed out", max_attempts=5, backoff_s=0, retry_for_s=10) == "pending"
    (job,) = claim(db, "w")
    job.payload = {**job.payload, "retry_from": time.time() - 100}
    assert fail(db, job, "timed out", max_attempts=5, backoff_s=0, retry_for_s=10) == "failed"
