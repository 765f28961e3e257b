"""Prometheus metrics, computed from the database at scrape time.

Reading the database (not process-local counters) makes the numbers right however many
worker processes and machines share the queue.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

__all__ = ["render_metrics"]


def render_metrics(ctx: Any) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    import numpy as np
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

    from medsight.service.db import Alert, AuditEvent, DriftState, Instance, Job, Result, Series
    from medsight.service.queue import POISON, queue_counts

    class _Collector:
        def collect(self):  # noqa: ANN202 - prometheus_client protocol
            with ctx.db.read() as s:
                jobs = GaugeMetricFamily("medsight_jobs", "Jobs in the queue by kind and status",
                                         labels=["kind", "status"])
                for kind, by in queue_counts(s).items():
                    for status, n in by.items():
                        jobs.add_metric([kind, status], n)
                yield jobs
                poison = GaugeMetricFamily("medsight_poison_jobs", "Jobs failed as poison (their worker died running "
                                           "them until they had used their attempts) by kind", labels=["kind"])
                for kind, n in s.execute(select(Job.kind, func.count()).where(
                        Job.status == "failed", Job.error.startswith(POISON, autoescape=True)).group_by(Job.kind)):
                    poison.add_metric([kind], n)
                yield poison
                inst = CounterMetricFamily("medsight_instances_received", "Instances received", labels=["modality"])
                for mod, n in s.execute(select(Instance.modality, func.count()).group_by(Instance.modality)):
                    inst.add_metric([mod], n)
                yield inst
                res = CounterMetricFamily("medsight_results", "Results stored", labels=["model", "status"])
                for model, status, n in s.execute(select(Result.model, Result.status, func.count())
                                                  .group_by(Result.model, Result.status)):
                    res.add_metric([model, status], n)
                yield res
                al = CounterMetricFamily("medsight_alerts", "Alerts raised", labels=["priority"])
                for prio, n in s.execute(select(Alert.priority, func.count()).group_by(Alert.priority)):
                    al.add_metric([prio], n)
                yield al
                ref = CounterMetricFamily("medsight_refused", "Inputs or associations refused", labels=["object"])
                for obj, n in s.execute(select(AuditEvent.object_type, func.count())
                                        .where(AuditEvent.action == "refused").group_by(AuditEvent.object_type)):
                    ref.add_metric([obj], n)
                yield ref
                ser = GaugeMetricFamily("medsight_series", "Series by status", labels=["status"])
                for st, n in s.execute(select(Series.status, func.count()).group_by(Series.status)):
                    ser.add_metric([st], n)
                yield ser
                from medsight.service.delivery import WEBHOOK, backlog

                outs = GaugeMetricFamily("medsight_outputs", "Result objects by destination and delivery status "
                                         "(pending, retrying, sent, failed); the alert webhook is destination "
                                         f"'{WEBHOOK}'", labels=["destination", "status"])
                for dest, by in backlog(s).items():
                    for status, n in by.items():
                        outs.add_metric([dest, status], n)
                yield outs
                recent = [r for r in s.execute(select(Result.created_at - Result.received_at)
                                               .where(Result.received_at.is_not(None))
                                               .order_by(Result.id.desc()).limit(1000)).scalars()]
                lat = GaugeMetricFamily("medsight_latency_seconds", "Received-to-result-stored latency of the last "
                                        "1000 results", labels=["quantile"])
                if recent:
                    for q in (0.5, 0.95, 0.99):
                        lat.add_metric([str(q)], float(np.quantile(recent, q)))
                yield lat
                drift = GaugeMetricFamily("medsight_drift", "1 while the model's recent results from the sender are "
                                          "unlike its validation data (a drift episode), else 0",
                                          labels=["model", "source"])
                episodes = CounterMetricFamily("medsight_drift_episodes", "Drift episodes (each raised one alert)",
                                               labels=["model", "source"])
                stat = GaugeMetricFamily("medsight_drift_statistic", "The last drift check per statistic: its p-value, "
                                         "PSI (distributions) or rate and validation rate (rates)",
                                         labels=["model", "source", "statistic", "measure"])
                for st in s.scalars(select(DriftState)):
                    drift.add_metric([st.model, st.source], 1.0 if st.status == "drift" else 0.0)
                    episodes.add_metric([st.model, st.source], st.episodes)
                    for name, t in ((st.last or {}).get("tests") or {}).items():
                        for measure in ("p", "psi", "rate", "reference"):
                            if t.get(measure) is not None:
                                stat.add_metric([st.model, st.source, name, measure], float(t[measure]))
                yield drift
                yield episodes
                yield stat

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
