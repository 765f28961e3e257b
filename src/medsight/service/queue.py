"""The durable job queue, in the service's database.

Delivery is at least once: a claimed job holds a lease, which its worker renews while it runs
the job (:class:`Held`); a worker that dies (SIGKILL, power loss) leaves its lease to expire,
and :func:`requeue_expired` hands the job out again (or
:func:`release_workers` at once, for a worker known to be dead). Processing is idempotent
because every effect is keyed (results by input + model + version, outputs by SOPInstanceUID),
so a job run twice leaves one set of effects.

Poison jobs are isolated: each job a dead worker held counts a crash and becomes a suspect;
suspects are claimed one at a time (one per worker process), so the job that kills its worker
is soon the only one it holds, and once it has used its attempts it is failed as poison
(``error`` starts with :data:`POISON`) while the others of its batch go on.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` (workers never wait on each other);
SQLite runs the same statements inside ``BEGIN IMMEDIATE`` (one writer at a time).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from medsight.service.db import Database, Job, now

__all__ = ["enqueue", "claim", "renew", "Held", "complete", "fail", "requeue_expired", "release_workers",
           "leased_workers", "queue_counts", "POISON"]

log = logging.getLogger(__name__)

POISON = "poison: "  # how the error of a job failed as poison begins


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
          kinds: tuple[str, ...] | None = None, key_prefix: str | None = None) -> list[Job]:
    """Take up to ``limit`` due jobs (highest priority, then oldest) and lease them; only jobs
    of ``kinds``, and whose key starts with ``key_prefix``, when given.

    A suspect (a job held by a worker that died) is taken alone, and not while another thread
    of the same worker process (``host:pid:thread``) runs one, so that a death names its job.
    """
    t = now()
    with db.session() as s:
        q = select(Job).where(Job.status == "pending", Job.available_at <= t)
        if kinds:
            q = q.where(Job.kind.in_(kinds))
        if key_prefix:
            q = q.where(Job.key.startswith(key_prefix, autoescape=True))
        q = q.order_by(Job.priority.desc(), Job.id).limit(limit).with_for_update(skip_locked=True)
        jobs = list(s.scalars(q))
        if any(j.crashes for j in jobs) and ":" in worker and s.scalar(select(Job.id).where(
                Job.status == "running", Job.crashes > 0,
                Job.worker.startswith(worker.rsplit(":", 1)[0] + ":", autoescape=True)).limit(1)) is not None:
            jobs = [j for j in jobs if not j.crashes]  # this process already runs a suspect
        # a suspect first in line goes alone; otherwise the batch leaves the suspects for later
        jobs = jobs[:1] if jobs and jobs[0].crashes else [j for j in jobs if not j.crashes]
        for j in jobs:
            j.status, j.worker, j.lease_until, j.attempts = "running", worker, t + lease_s, j.attempts + 1
        s.flush()
        for j in jobs:
            s.expunge(j)
    return jobs


def renew(db: Database, jobs: list[Job], lease_s: float) -> int:
    """Extend the leases of ``jobs`` that their worker still holds; returns how many it extended.

    A job whose lease was already lost (released, or expired and taken by another worker) is
    left alone: it is no longer this worker's.
    """
    if not jobs:
        return 0
    with db.session() as s:
        return s.execute(update(Job).where(Job.id.in_([j.id for j in jobs]), Job.status == "running",
                                           Job.worker == jobs[0].worker)
                         .values(lease_until=now() + lease_s)).rowcount or 0


class Held:
    """Keep the leases of claimed jobs while they run: renew them every third of ``lease_s``.

    A job that runs longer than its lease (a slow send to a PACS that is just back, a long
    series) is therefore not taken by a second worker; only a worker that died (or hangs with
    its renewals stopped) loses its jobs. Use as ``with Held(db, jobs, lease_s): ...``.
    """

    def __init__(self, db: Database, jobs: list[Job], lease_s: float) -> None:
        self.db, self.jobs, self.lease_s = db, jobs, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medsight-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                renew(self.db, self.jobs, self.lease_s)
            except Exception:  # noqa: BLE001 - the database briefly unreachable: try at the next beat
                log.warning("could not renew the leases of %d job(s); retrying", len(self.jobs))

    def __enter__(self) -> Held:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
            webhook that may be down for hours). A job always has a second attempt, so that a
            first attempt that outlived the window (a send hanging on a PACS just back) is retried.
        max_backoff_s: the longest wait between two attempts.

    Returns:
        The job's new status (``pending`` or ``failed``), or ``lost`` when the job was no longer
        this worker's (its lease was lost): then nothing is recorded.
    """
    if retry_for_s is not None:
        final = permanent or (job.attempts > 1 and
                              now() >= float(job.payload.get("retry_from") or job.created_at) + retry_for_s)
    else:
        final = permanent or job.attempts >= int(job.payload.get("max_attempts") or max_attempts)
    status = "failed" if final else "pending"
    delay = backoff_s * (2 ** min(max(job.attempts - 1, 0), 40))
    if max_backoff_s is not None:
        delay = min(delay, max_backoff_s)
    with db.session() as s:
        owned = s.execute(update(Job).where(Job.id == job.id, Job.status == "running", Job.worker == job.worker)
                          .values(status=status, error=error[:2000], lease_until=None,
                                  available_at=now() + (0 if final else delay),
                                  finished_at=now() if final else None)).rowcount
    if not owned:  # its lease was lost: the job is pending again or another worker's now
        log.warning("job %s (%s) attempt %d failed after its lease was lost: %s", job.id, job.kind, job.attempts,
                    error)
        return "lost"
    log.warning("job %s (%s) attempt %d failed%s: %s", job.id, job.kind, job.attempts,
                " permanently" if final else f"; retry in {delay:.1f} s", error)
    return status


def requeue_expired(db: Database, *, max_attempts: int) -> int:
    """Release the jobs whose lease ran out (their worker died, see :func:`release_workers`).

    Returns:
        How many jobs were released (handed out again or failed as poison).
    """
    return _release(db, Job.lease_until < now(), max_attempts, "whose lease expired")


def release_workers(db: Database, prefixes: list[str], *, max_attempts: int) -> int:
    """Release at once the jobs of workers known to be dead, instead of waiting out their lease.

    Args:
        prefixes: worker names or name prefixes (``host:pid:`` for every thread of a process).

    Returns:
        How many jobs were released.
    """
    if not prefixes:
        return 0
    return _release(db, or_(*(Job.worker.startswith(p, autoescape=True) for p in prefixes)), max_attempts,
                    "of a dead worker")


def leased_workers(db: Database) -> set[str]:
    """The names of the workers holding running jobs."""
    with db.read() as s:
        return set(s.scalars(select(Job.worker).where(Job.status == "running", Job.worker.is_not(None)).distinct()))


def _release(db: Database, where: ColumnElement[bool], max_attempts: int, what: str) -> int:
    """Each running job matching ``where`` counts a crash: it is pending again (a suspect), or
    failed as poison when it was its worker's only job (the culprit) and has used its attempts."""
    t = now()
    poison: list[Job] = []
    with db.session() as s:
        rows = list(s.scalars(select(Job).where(Job.status == "running", where).with_for_update(skip_locked=True)))
        batch = Counter(j.worker for j in rows)
        for j in rows:
            limit = int(j.payload.get("max_attempts") or max_attempts)
            j.crashes = (j.crashes or 0) + 1
            if batch[j.worker] == 1 and j.attempts >= limit:
                j.status, j.finished_at = "failed", t
                j.error = (f"{POISON}the worker died while running it {j.crashes} time(s), "
                           f"attempt {j.attempts} of {limit}")
                poison.append(j)
            else:
                j.status, j.available_at = "pending", t
            j.worker, j.lease_until = None, None
    if rows:
        log.warning("released %d job(s) %s; %d failed as poison", len(rows), what, len(poison))
    for j in poison:
        log.error("job %s (%s) failed as poison: %s", j.id, j.kind, j.error)
    return len(rows)


def queue_counts(session: Session) -> dict[str, dict[str, int]]:
    """``{kind: {status: count}}`` for metrics and readiness."""
    from sqlalchemy import func

    out: dict[str, dict[str, int]] = {}
    for kind, status, n in session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)):
        out.setdefault(kind, {})[status] = int(n)
    return out
