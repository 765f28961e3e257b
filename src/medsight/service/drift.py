"""Drift monitoring in the service: are the images a sender sends still like the model's
validation data?

After each result of a model whose manifest carries a drift reference (``manifest.drift``,
measured on its validation split), :class:`DriftMonitor` reads the last ``drift.window``
results of that model, at its version, from the same sender (the result's ``source``: the
calling AE, or the HTTP user), and tests them with :func:`medsight.metrics.drift.check`.
The state per model and sender (``drift_state``) is read ``FOR UPDATE``, in the transaction
that stores the result, so however many workers store results at once:

* the first check that finds drift opens an *episode*, raising one ``drift`` alert (webhook
  too, when configured) on the result that tipped it;
* further drifting checks raise nothing; the first check that finds none closes the episode
  and re-arms the alarm;
* every ``drift.snapshot_every`` checks, and at each change of state, a snapshot is kept
  (``drift_snapshots``) for the dashboard's trend and ``/metrics``.

The window is read from the database rather than kept in memory, so it spans worker
processes and restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from medsight.alerts import Firing
from medsight.metrics.drift import check
from medsight.service import audit
from medsight.service.alerts import record_alerts
from medsight.service.config import ServiceConfig
from medsight.service.db import DriftSnapshot, DriftState, Result, now
from medsight.service.outcome import Outcome

__all__ = ["DriftMonitor", "window_values", "DRIFT_RULE"]

log = logging.getLogger(__name__)

#: The rule name of a drift alert.
DRIFT_RULE = "drift"


def window_values(rows: list[Result]) -> dict[str, list[Any]]:
    """The statistics of stored results, as :func:`~medsight.metrics.drift.check` takes them:
    the fingerprint distance and refer flag (from the outputs), the score, and whether the score
    reached the threshold (a referred result is still counted by its score)."""
    out: dict[str, list[Any]] = {"distance": [], "score": [], "refer": [], "positive": []}
    for r in rows:
        o = r.outputs or {}
        out["distance"].append(o.get("distance"))
        out["refer"].append(o.get("refer"))
        out["score"].append(r.score)
        out["positive"].append(None if r.score is None or r.threshold is None else r.score >= r.threshold)
    return out


class DriftMonitor:
    """Checks each new result's window and keeps the per-model, per-sender state.

    Args:
        cfg: the service config (``drift`` and ``alerts.webhook``).
        actor: who stores the results (the worker), for the audit.
    """

    def __init__(self, cfg: ServiceConfig, actor: str) -> None:
        self.cfg = cfg
        self.actor = actor

    def observe(self, s: Session, o: Outcome, result_id: int) -> None:
        """Check the window that ends with this (just stored, ``ok``) result, in its transaction."""
        d = self.cfg.drift
        ref = o.info.drift
        if not d.enabled or not ref or o.status != "ok":
            return
        source = (o.source or "unknown")[:80]
        model = o.info.model_name
        rows = list(s.scalars(select(Result).where(
            Result.model == model, Result.model_version == o.info.version, Result.source == source,
            Result.status == "ok").order_by(Result.id.desc()).limit(d.window)))
        if len(rows) < d.window:
            return
        try:
            c = check(window_values(rows), ref, alpha=d.alpha, alarm_on=d.alarm_on, min_psi=d.min_psi,
                      min_rate_change=d.min_rate_change)
        except ValueError as exc:  # a reference without the statistics these results carry
            log.warning("drift check of %s skipped: %s", model, exc)
            return
        state = self._state(s, model, source)
        state.checks += 1
        state.model_version = o.info.version
        state.last = c.to_dict()
        state.updated_at = t = now()
        changed = c.drift != (state.status == "drift")
        if changed and c.drift:
            state.status, state.since = "drift", t
            state.episodes += 1
            self._alert(s, o, result_id, model, source, state.episodes, c)
        elif changed:
            state.status, state.since = "ok", t
            audit.record(s, self.actor, "drift_ended", "model", model, source=source, episode=state.episodes,
                         result_id=result_id)
        if changed or (state.checks - 1) % d.snapshot_every == 0:
            s.add(DriftSnapshot(model=model, source=source, result_id=result_id, drift=c.drift, n=c.n, at=t,
                                stats={k: {kk: v[kk] for kk in ("p", "psi", "rate", "reference", "drift", "alarms")
                                           if kk in v} for k, v in c.tests.items()}))

    def _state(self, s: Session, model: str, source: str) -> DriftState:
        """The state row, created if new, locked for this transaction (PostgreSQL; SQLite's
        writers are serialised by ``BEGIN IMMEDIATE``)."""
        dialect = s.get_bind().dialect.name
        ins = pg_insert(DriftState) if dialect == "postgresql" else sqlite_insert(DriftState)
        s.execute(ins.values(model=model, source=source, status="ok", episodes=0, checks=0, last={},
                             updated_at=now()).on_conflict_do_nothing(index_elements=["model", "source"]))
        return s.scalars(select(DriftState).where(DriftState.model == model, DriftState.source == source)
                         .with_for_update()).one()

    def _alert(self, s: Session, o: Outcome, result_id: int, model: str, source: str, episode: int,
               c: Any) -> None:
        d = self.cfg.drift
        msg = (f"drift: {model}'s last {c.n} results from {source} are unlike its validation data: "
               + "; ".join(c.reasons))
        firing = Firing(rule=DRIFT_RULE, priority=d.priority, message=msg[:1000])
        record_alerts(s, [firing], actor=self.actor, result_key=f"drift|{model}|{source}|{episode}",
                      result_id=result_id, study_uid=o.study_uid, patient_id=o.patient_id,
                      webhook=self.cfg.alerts.webhook is not None)
        log.warning("drift alarm for model %s from %s (episode %d): %s", model, source, episode,
                    "; ".join(c.reasons))
