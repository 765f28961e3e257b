"""Delivery to the PACS and the alert webhook: statuses, the backlog, and its re-drive.

A result object (:class:`~medsight.service.db.ResultOutput`) or an alert's webhook is ``sent``
only once its destination confirmed it; until then it is ``pending``, ``retrying`` (with its
attempts and last error) or ``failed``. Send and webhook jobs retry with capped exponential
backoff for ``outputs.retry_for_s`` (:func:`~medsight.service.queue.fail`).

While a destination has a backlog (objects retrying or failed), :class:`DeliveryMonitor`
checks it every ``outputs.probe_interval_s`` (C-ECHO for a DICOM destination, an HTTP GET of
the DICOMweb root or its ``health_url`` for STOW-RS, a GET of the webhook's URL). When it
answers after not answering (or on its first check), :func:`redrive` makes its waiting jobs due
at once and re-queues its failed ones, so that a PACS back after hours is served within one
check, not after the next backoff.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from sqlalchemy import func, select, update

from medsight.service.config import DicomDestination, ServiceConfig, StowDestination, WebhookConfig
from medsight.service.db import Alert, Database, Job, KeyValue, ResultOutput, now

__all__ = ["WEBHOOK", "backlog", "probe", "redrive", "DeliveryMonitor", "delivery_report"]

log = logging.getLogger(__name__)

#: The destination name under which the alert webhook is reported.
WEBHOOK = "webhook"
#: Statuses that are a backlog (an object the destination has not confirmed, tried at least once).
BACKLOG = ("retrying", "failed")


def backlog(session: Any) -> dict[str, dict[str, int]]:
    """``{destination: {status: count}}`` of result objects, and of webhooks under ``"webhook"``."""
    out: dict[str, dict[str, int]] = {}
    for dest, status, n in session.execute(select(ResultOutput.destination, ResultOutput.status, func.count())
                                           .group_by(ResultOutput.destination, ResultOutput.status)):
        out.setdefault(dest, {})[status] = int(n)
    for status, n in session.execute(select(Alert.webhook_status, func.count()).where(Alert.webhook_status != "none")
                                     .group_by(Alert.webhook_status)):
        out.setdefault(WEBHOOK, {})[status] = int(n)
    return out


def probe(dest: DicomDestination | StowDestination | WebhookConfig, *, calling_aet: str) -> bool:
    """Whether a destination answers: a C-ECHO, or any HTTP answer below 500 to a GET."""
    if isinstance(dest, DicomDestination):
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=dest.calling_ae_title or calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = min(dest.timeout_s, 10.0)
        ae.add_requested_context(Verification)
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            return False
        try:
            st = assoc.send_c_echo()
            return bool(st) and int(getattr(st, "Status", 0xFFFF)) == 0
        finally:
            if assoc.is_established:
                assoc.release()
    import httpx

    auth = None
    if isinstance(dest, StowDestination):
        url = dest.health_url or dest.url
        if dest.username:
            auth = (dest.username, dest.secret() or "")
    else:
        url = dest.url
    try:
        return httpx.get(url, auth=auth, timeout=min(dest.timeout_s, 10.0)).status_code < 500
    except httpx.HTTPError:
        return False


def redrive(db: Database, destination: str) -> int:
    """Make the jobs waiting on ``destination`` due now and re-queue its failed ones; returns
    how many jobs were re-driven."""
    t = now()
    with db.session() as s:
        if destination == WEBHOOK:
            ids = list(s.scalars(select(Alert.id).where(Alert.webhook_status.in_(BACKLOG))))
            keys = [f"webhook:{i}" for i in ids]
            s.execute(update(Alert).where(Alert.id.in_(ids), Alert.webhook_status == "failed")
                      .values(webhook_status="retrying"))
        else:
            ids = list(s.scalars(select(ResultOutput.result_id).distinct()
                                 .where(ResultOutput.destination == destination, ResultOutput.status.in_(BACKLOG))))
            keys = [f"send:{i}" for i in ids]
            s.execute(update(ResultOutput).where(ResultOutput.destination == destination,
                                                 ResultOutput.status == "failed")
                      .values(status="retrying", updated_at=t))
        n = 0
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            n += s.execute(update(Job).where(Job.key.in_(chunk), Job.status == "pending", Job.available_at > t)
                           .values(available_at=t)).rowcount or 0
            for job in s.scalars(select(Job).where(Job.key.in_(chunk), Job.status == "failed")):
                job.status, job.attempts, job.available_at, job.finished_at = "pending", 0, t, None
                job.payload = {**job.payload, "retry_from": t}  # a new retry window from now
                n += 1
    if n:
        log.info("destination %s answers again: %d delivery job(s) re-driven", destination, n)
    return n


class DeliveryMonitor:
    """Checks the destinations that have a backlog and re-drives them when they answer.

    Args:
        cfg: the service config.
        db: the database.
    """

    def __init__(self, cfg: ServiceConfig, db: Database) -> None:
        self.cfg = cfg
        self.db = db
        self.up: dict[str, bool] = {}  # the last check of each destination with a backlog

    def destinations(self) -> dict[str, Any]:
        out: dict[str, Any] = {d.name: d for d in self.cfg.outputs.dicom}
        out.update({d.name: d for d in self.cfg.outputs.stow_rs})
        if self.cfg.alerts.webhook is not None:
            out[WEBHOOK] = self.cfg.alerts.webhook
        return out

    def check_once(self) -> dict[str, bool]:
        """Check each destination with a backlog once; returns ``{destination: answered}``."""
        with self.db.read() as s:
            waiting = {d for d, by in backlog(s).items() if any(by.get(st) for st in BACKLOG)}
        seen: dict[str, bool] = {}
        for name, dest in self.destinations().items():
            if name not in waiting:
                self.up.pop(name, None)  # no backlog: the next one starts with a fresh check
                continue
            ok = probe(dest, calling_aet=self.cfg.dicom.ae_title)
            if ok and not self.up.get(name):
                redrive(self.db, name)
            if ok != self.up.get(name):
                log.info("destination %s %s", name, "answers" if ok else "does not answer")
            self.up[name] = seen[name] = ok
            with self.db.session() as s:
                s.merge(KeyValue(key=f"delivery:{name}"[:80], value=json.dumps({"answers": ok, "checked_at": now()})))
        return seen

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set."""
        while not stop.wait(self.cfg.outputs.probe_interval_s):
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - database or network briefly unavailable: check again later
                log.warning("delivery check failed (%s); trying again in %.0f s", type(exc).__name__,
                            self.cfg.outputs.probe_interval_s)


def delivery_report(session: Any) -> dict[str, Any]:
    """Per destination: objects by status and the last check (for ``/health/ready``)."""
    out: dict[str, Any] = {d: {"outputs": by} for d, by in backlog(session).items()}
    for kv in session.scalars(select(KeyValue).where(KeyValue.key.like("delivery:%"))):
        name = kv.key.split(":", 1)[1]
        if name in out:
            out[name]["last_check"] = json.loads(kv.value)
    return out
