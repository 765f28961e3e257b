"""Workers: take jobs from the durable queue and carry them out.

Each worker thread loops: housekeeping (complete the series that went quiet, re-queue jobs
whose worker died), claim a batch, run it, acknowledge it in the same transaction that
stores its effects. Any number of workers, in any number of processes or machines, can share
one PostgreSQL queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from medsight.errors import MedSightError, ServiceError
from medsight.service import audit
from medsight.service.catalog import ModelCatalog
from medsight.service.config import ServiceConfig, StowDestination
from medsight.service.db import Alert, Database, Instance, Job, ResponseAssessment, Result, ResultOutput, Series, now
from medsight.service.logs import safe_error
from medsight.service.process import Processor
from medsight.service.queue import Held, claim, complete, enqueue, fail, requeue_expired
from medsight.service.routing import Router

__all__ = ["Worker", "sweep_series", "run_workers"]

log = logging.getLogger(__name__)


def sweep_series(db: Database, complete_after_s: float, *, limit: int = 200) -> int:
    """Mark series complete once no instance came for ``complete_after_s``; enqueue their job.

    Safe to run in several processes at once (row locks on PostgreSQL, one writer on SQLite).
    """
    cutoff = now() - complete_after_s
    with db.session() as s:
        rows = list(s.scalars(select(Series).where(Series.status == "receiving", Series.last_at < cutoff)
                              .limit(limit).with_for_update(skip_locked=True)))
        for r in rows:
            r.status, r.completed_at = "complete", now()
            enqueue(s, "series", f"series:{r.series_uid}:{r.n_instances}",
                    {"series_uid": r.series_uid, "n_instances": r.n_instances}, priority=1)
    return len(rows)


class Worker:
    """One worker thread's logic (use :meth:`run` as the thread target).

    Args:
        cfg: the service config.
        db: the database.
        catalog: the models.
        name: a unique worker name (host, pid, thread).
    """

    def __init__(self, cfg: ServiceConfig, db: Database, catalog: ModelCatalog, name: str | None = None, *,
                 kinds: tuple[str, ...] | None = None) -> None:
        self.kinds = kinds
        self.cfg = cfg
        self.db = db
        self.catalog = catalog
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"
        self.router = Router(cfg.routing, catalog.dims())
        self.processor = Processor(cfg, catalog, self.name)
        self._last_housekeeping = 0.0

    # -- loop ------------------------------------------------------------------------------
    def housekeeping(self) -> None:
        if time.monotonic() - self._last_housekeeping < self.cfg.series.sweep_interval_s:
            return
        self._last_housekeeping = time.monotonic()
        requeue_expired(self.db, max_attempts=self.cfg.workers.max_attempts)
        sweep_series(self.db, self.cfg.series.complete_after_s)

    def run_once(self) -> int:
        """Claim and run one batch; returns how many jobs it took."""
        self.housekeeping()
        jobs = claim(self.db, self.name, limit=self.cfg.workers.batch_size, lease_s=self.cfg.workers.lease_s,
                     kinds=self.kinds)
        if not jobs:
            return 0
        with Held(self.db, jobs, self.cfg.workers.lease_s):  # renewed while they run
            self._run_batch(jobs)
        return len(jobs)

    def _run_batch(self, jobs: list[Job]) -> None:
        by_kind: dict[str, list[Job]] = {}
        for j in jobs:
            by_kind.setdefault(j.kind, []).append(j)
        for kind, group in by_kind.items():
            handler = getattr(self, f"_run_{kind}", None)
            if handler is None:
                for j in group:
                    fail(self.db, j, f"unknown job kind {kind!r}", max_attempts=1, backoff_s=0, permanent=True)
                continue
            try:
                handler(group)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the worker
                log.exception("%s batch of %d failed", kind, len(group))
                # a delivery keeps its retry window (outputs.retry_for_s), not max_attempts
                record = self._fail_delivery if kind in ("send", "webhook") else self._fail
                for j in group:
                    record(j, safe_error(exc))

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set."""
        log.info("worker %s started", self.name)
        while not stop.is_set():
            try:
                n = self.run_once()
            except Exception:  # noqa: BLE001 - database briefly unreachable: wait and go on
                log.exception("worker %s: loop error; retrying", self.name)
                n = 0
                stop.wait(1.0)
            if n == 0:
                stop.wait(self.cfg.workers.poll_interval_s)
        log.info("worker %s stopped", self.name)

    def _fail(self, job: Job, error: str, *, permanent: bool = False) -> None:
        fail(self.db, job, error, max_attempts=self.cfg.workers.max_attempts,
             backoff_s=self.cfg.workers.retry_backoff_s, permanent=permanent)

    # -- kinds -----------------------------------------------------------------------------
    def _run_instance(self, jobs: list[Job]) -> None:
        outcomes = self.processor.run_instances(self.db.read, jobs)
        with self.db.session() as s:
            self.processor.store(s, outcomes)
            for j in jobs:
                complete(s, j)

    def _run_series(self, jobs: list[Job]) -> None:
        for job in jobs:
            outcome, results = self.processor.run_series(self.db.session, job, self.router)
            with self.db.session() as s:
                self.processor.store(s, results)
                s.execute(update(Series).where(Series.series_uid == job.payload["series_uid"]).values(outcome=outcome))
                action = "no_model" if outcome.startswith("no model") else "processed"
                audit.record(s, self.processor.actor, action, "series", job.payload["series_uid"], outcome=outcome,
                             n_instances=job.payload.get("n_instances"))
                self.processor.response.schedule(s, job.payload["series_uid"])  # after the models' masks are stored
                complete(s, job)
            log.info("series %s complete (%s instances): %s", job.payload["series_uid"],
                     job.payload.get("n_instances"), outcome)

    def _run_response(self, jobs: list[Job]) -> None:
        """Assess the response of each job's patient (:mod:`medsight.service.response`)."""
        for job in jobs:
            what = self.processor.response.run(self.db, job)
            log.info("response job for series %s: %s", job.payload["series_uid"], what)

    def _run_send(self, jobs: list[Job]) -> None:
        """Build the result objects of every job, send them over one association per
        destination, record what each destination confirmed (``sent``) and, for the others,
        the attempt and its reason (``retrying``, then ``failed`` once the retry window is over)."""
        from medsight.io.dicom import read_dataset
        from medsight.service.results_out import build_outputs, send_dicom, send_stow, source_sop_uids

        out_cfg = self.cfg.outputs
        targets: list[tuple[str, Any]] = [(d.name, d) for d in out_cfg.dicom] + [(d.name, d) for d in out_cfg.stow_rs]
        pending: list[tuple[Job, Any, list[Any], set[str]]] = []
        for job in jobs:
            with self.db.read() as s:
                result = s.get(Result, job.payload["result_id"])
                if result is not None:
                    uids = source_sop_uids(result)
                    col = (Instance.sop_uid == result.sop_uid if result.sop_uid
                           else Instance.sop_uid.in_(uids) if uids else Instance.series_uid == result.series_uid)
                    srcs = list(s.scalars(select(Instance.path).where(col)))
                    sent = set(s.scalars(select(ResultOutput.sop_uid + "|" + ResultOutput.destination)
                                         .where(ResultOutput.result_id == result.id, ResultOutput.status == "sent")))
                    s.expunge(result)
            if result is None or result.status != "ok":
                with self.db.session() as s:
                    complete(s, job)
                continue
            try:
                objects = build_outputs(result, [read_dataset(Path(p), headers_only=True) for p in srcs], out_cfg)
            except MedSightError as exc:
                self._fail(job, f"cannot build result objects: {safe_error(exc)}", permanent=True)
                continue
            self._announce(result.id, objects, [n for n, _ in targets], sent)
            pending.append((job, result, objects, sent))
        errors: dict[int, list[str]] = {job.id: [] for job, *_ in pending}
        accepted: list[tuple[Any, Any, str]] = []
        refused: list[tuple[Job, Any, str, str]] = []  # (job, object, destination, reason)
        for name, dest in targets:
            todo = [(job, result, o) for job, result, objects, sent in pending for o in objects
                    if f"{o.sop_uid}|{name}" not in sent]
            if not todo:
                continue
            stow = isinstance(dest, StowDestination)
            try:
                objs = [o for _, _, o in todo]
                statuses = (send_stow(dest, objs) if stow
                            else send_dicom(dest, objs, calling_aet=self.cfg.dicom.ae_title))
            except ServiceError as exc:  # our own words: destination and what failed
                statuses, reason = {}, safe_error(exc)
            except (OSError, RuntimeError, ValueError) as exc:  # third-party text may echo values: its type only
                statuses, reason = {}, f"{type(exc).__name__} while sending"
            else:
                reason = "not listed in the STOW-RS answer" if stow else "no answer: the association was lost"
            for job, result, o in todo:
                st = statuses.get(o.sop_uid)
                if st in (0x0000, 0xB000, 0xB006, 0xB007):
                    accepted.append((result, o, name))
                    continue
                why = reason if st is None else f"{o.kind} refused with status 0x{st:04X}"
                refused.append((job, o, name, why))
                if f"{name}: {why}" not in errors[job.id]:
                    errors[job.id].append(f"{name}: {why}")
        with self.db.session() as s:
            for result, o, name in accepted:
                s.execute(update(ResultOutput).where(ResultOutput.sop_uid == o.sop_uid,
                                                     ResultOutput.destination == name)
                          .values(status="sent", sent_at=now(), updated_at=now(), last_error=None,
                                  attempts=ResultOutput.attempts + 1))
                audit.record(s, self.processor.actor, "sent", "result", str(result.id), kind=o.kind, destination=name,
                             sop_uid=o.sop_uid)
            for _, o, name, why in refused:
                s.execute(update(ResultOutput).where(ResultOutput.sop_uid == o.sop_uid,
                                                     ResultOutput.destination == name)
                          .values(status="retrying", updated_at=now(), last_error=why[:300],
                                  attempts=ResultOutput.attempts + 1))
            for job, *_ in pending:
                if not errors[job.id]:
                    complete(s, job)
        for job, *_ in pending:
            if errors[job.id] and self._fail_delivery(job, "; ".join(errors[job.id])) == "failed":
                with self.db.session() as s:
                    s.execute(update(ResultOutput).where(ResultOutput.result_id == job.payload["result_id"],
                                                         ResultOutput.status != "sent")
                              .values(status="failed", updated_at=now()))

    def _fail_delivery(self, job: Job, error: str) -> str:
        """A send or webhook failed: retry with capped backoff for ``outputs.retry_for_s``."""
        return fail(self.db, job, error, max_attempts=self.cfg.workers.max_attempts,
                    backoff_s=self.cfg.workers.retry_backoff_s, retry_for_s=self.cfg.outputs.retry_for_s,
                    max_backoff_s=self.cfg.outputs.max_backoff_s)

    def _announce(self, result_id: int, objects: list[Any], destinations: list[str], sent: set[str]) -> None:
        """Record the objects about to be sent (``pending``, no ``sent_at``), so that a copy coming
        back (routing, catch-up) is known as MedSight's own before the PACS even has it."""
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        with self.db.session() as s:
            ins = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            for o in objects:
                for name in destinations:
                    if f"{o.sop_uid}|{name}" in sent:
                        continue
                    s.execute(ins(ResultOutput).values(result_id=result_id, kind=o.kind, sop_uid=o.sop_uid,
                                                       series_uid=o.series_uid, destination=name, status="pending",
                                                       attempts=0, updated_at=now(), sent_at=None)
                              .on_conflict_do_nothing(index_elements=["sop_uid", "destination"]))

    def _run_webhook(self, jobs: list[Job]) -> None:
        from medsight.service.alerts import post_webhook, webhook_payload

        hook = self.cfg.alerts.webhook
        for job in jobs:
            with self.db.session() as s:
                alert = s.get(Alert, job.payload["alert_id"])
                result = s.get(Result, alert.result_id) if alert and alert.result_id is not None else None
                assessed = (s.get(ResponseAssessment, alert.assessment_id)
                            if alert and alert.assessment_id is not None else None)
                body = webhook_payload(alert, result, include_patient_id=bool(hook and hook.include_patient_id),
                                       public_url=self.cfg.http.public_url,
                                       assessment=assessed) if alert and (result or assessed) else None
            if hook is None or body is None:
                with self.db.session() as s:
                    complete(s, job)
                continue
            try:
                status = post_webhook(hook, body)
                error = None if 200 <= status < 300 else f"webhook answered HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - network errors of any kind: retry later
                error = f"webhook unreachable: {type(exc).__name__}"
            with self.db.session() as s:
                if error is None:
                    s.execute(update(Alert).where(Alert.id == alert.id).values(
                        webhook_status="sent", webhook_error=None, webhook_attempts=Alert.webhook_attempts + 1))
                    audit.record(s, self.processor.actor, "webhook", "alert", str(alert.id), status=status)
                    complete(s, job)
                else:
                    s.execute(update(Alert).where(Alert.id == alert.id).values(
                        webhook_status="retrying", webhook_error=error, webhook_attempts=Alert.webhook_attempts + 1))
            if error is not None and self._fail_delivery(job, error) == "failed":
                with self.db.session() as s:
                    s.execute(update(Alert).where(Alert.id == alert.id).values(webhook_status="failed"))


def run_workers(cfg: ServiceConfig, stop: threading.Event, *, threads: int | None = None) -> list[threading.Thread]:
    """Start worker threads sharing one model catalog; returns the threads."""
    import torch

    torch.set_num_threads(cfg.workers.torch_threads)
    db = Database(cfg.database_url)
    catalog = ModelCatalog(cfg.models)
    for name in catalog.available:
        catalog.warm_up(name, explain=cfg.models[name].explain)
    out = []
    # inference threads never wait behind a batch of PACS sends: outputs have their own thread
    roles = [(f"w{i}", ("instance", "series", "response")) for i in range(threads or cfg.workers.threads)]
    roles += [(f"out{i}", ("send", "webhook")) for i in range(cfg.workers.output_threads)]
    for suffix, kinds in roles:
        w = Worker(cfg, db, catalog, name=f"{socket.gethostname()}:{os.getpid()}:{suffix}", kinds=kinds)
        t = threading.Thread(target=w.run, args=(stop,), name=f"medsight-worker-{suffix}", daemon=True)
        t.start()
        out.append(t)
    if cfg.outputs.dicom or cfg.outputs.stow_rs or cfg.alerts.webhook is not None:
        from medsight.service.delivery import DeliveryMonitor  # re-drives deliveries when a destination is back

        t = threading.Thread(target=DeliveryMonitor(cfg, db).run, args=(stop,), name="medsight-delivery", daemon=True)
        t.start()
        out.append(t)
    return out
