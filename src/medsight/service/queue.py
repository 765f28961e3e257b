"""The durable job queue, in the service's database.

Delivery is at least once: a claimed job holds a lease; a worker that dies (SIGKILL, power
loss) leaves its lease to expire, and :func:`requeue_expired` hands the job out again.
Processing is idempotent because every effect is keyed (results by input + model + version,
outputs by SOPInstanceUID), so a job run twice leaves one set of effects.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` (workers never wait on each other);
SQLite runs the same statements inside ``BEGIN IMMEDIATE`` (one writer at a time).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from medsight.service.db import Database, Job, now

__all__ = ["enqueue", "claim", "complete", "fail", "requeue_expired", "queue_counts"]

log = logging.getLogger(__name__)


def enqueue(session: Session, kind: str, key: str, payload: dict[str, Any] | None = None, *, priority: int = 0,
            delay_s: float = 0.0, max_attempts: int | None = None) -> bool:
    """Add a job unless one with ``key`` exists (then nothing happens).

    Returns:
        True when a new job was added.
    """
    values = {"kind": kind, "key": key, "payload": {**(payload or {}), **({"max_attempts": max_attempts}
                                                                          if max_attempts else {})},
              "status": "pending", "priority": priority, "attempts": 0, "available_at": now() + delay_s,
              "created_at": now()}
    dialect = session.get_bind().dialect.name
    ins = pg_insert(Job) if dialect == "postgresql" else sqlite_insert(Job)
    new_id = session.execute(ins.values(**values).on_conflict_do_nothing(index_elements=["key"])
                             .returning(Job.id)).scalar()
    return new_id is not None


def claim(db: Database, worker: str, *, limit: int = 1, lease_s: float = 120.0,
          kinds: tuple[str, ...] | None = None) -> list[Job]:
    """Take up to ``limit`` due jobs (highest priority, then oldest) and lease them."""
    t = now()
    with db.session() as s:
        q = select(Job).where(Job.status == "pending", Job.available_at <= t)
        if kinds:
            q = q.where(Job.kind.in_(kinds))
        q = q.order_by(Job.priority.desc(), Job.id).limit(limit).with_for_update(skip_locked=True)
        jobs = list(s.scalars(q))
        for j in jobs:
            j.status, j.worker, j.lease_until, j.attempts = "running", worker, t + lease_s, j.attempts + 1
        s.flush()
        for j in jobs:
            s.expunge(j)
    return jobs


def complete(session: Session, job: Job) -> None:
    """Mark a job done (call inside the transaction that stores its effects)."""
    session.execute(update(Job).where(Job.id == job.id).values(status="done", finished_at=now(), lease_until=None,
                                                                 error=None))


def fail(db: Database, job: Job, error: str, *, max_attempts: int, backoff_s: float, permanent: bool = False,
         retry_for_s: float | None = None, max_backoff_s: float | None = None) -> str:
    """Record a failure: retry later with exponential backoff, or give up.

    Args:
        retry_for_s: give up once this long has passed since the job was created (or re-driven:
            ``payload["retry_from"]``) instead of after ``max_attempts`` (deliveries to a PACS or
            webhook that may be down for hours).
        max_backoff_s: the longest wait between two attempts.

    Returns:
        The job's new status (``pending`` or ``failed``).
    """
    if retry_for_s is not None:
        final = permanent or now() >= float(job.payload.get("retry_from") or job.created_at) + retry_for_s
    else:
        final = permanent or job.attempts >= int(job.payload.get("max_attempts") or max_attempts)
    status = "failed" if final else "pending"
    delay = backoff_s * (2 ** min(max(job.attempts - 1, 0), 40))
    if max_backoff_s is not None:
        delay = min(delay, max_backoff_s)
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job.id).values(
            status=status, error=error[:2000], lease_until=None, available_at=now() + (0 if final else delay),
            finished_at=now() if final else None))
    log.warning("job %s (%s) attempt %d failed%s: %s", job.id, job.kind, job.attempts,
                " permanently" if final else f"; retry in {delay:.1f} s", error)
    return status


def requeue_expired(db: Database) -> int:
    """Hand out again jobs whose worker's lease ran out (the worker died). Returns how many."""
    with db.session() as s:
        res = s.execute(update(Job).where(Job.status == "running", Job.lease_until < now())
                        .values(status="pending", worker=None, lease_until=None, available_at=now()))
        n = res.rowcount or 0
    if n:
        log.warning("requeued %d job(s) whose worker lease expired", n)
    return n


def queue_counts(session: Session) -> dict[str, dict[str, int]]:
    """``{kind: {status: count}}`` for metrics and readiness."""
    from sqlalchemy import func

    out: dict[str, dict[str, int]] = {}
    for kind, status, n in session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)):
        out.setdefault(kind, {})[status] = int(n)
    return out
