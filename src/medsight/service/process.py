"""What a worker does with ``instance`` and ``series`` jobs: read, predict, explain, and
store each result with its alerts, treatment suggestion, audit event and outgoing jobs in
the same transaction as the job's completion.

:class:`Processor` is the worker's one handle on it, over three parts:
:mod:`~medsight.service.inference` (reading the stored images and running the models),
:mod:`~medsight.service.artifacts` (mask files, mask pictures, heatmaps) and
:mod:`~medsight.service.result_store` (result, findings, alert and suggestion rows), and
:mod:`~medsight.service.response` (``response`` jobs: a patient's serial studies assessed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from medsight.service.artifacts import Artifacts
from medsight.service.catalog import ModelCatalog
from medsight.service.config import ServiceConfig
from medsight.service.inference import Inference
from medsight.service.outcome import Outcome
from medsight.service.response import ResponseAssessor
from medsight.service.result_store import ResultStore

__all__ = ["Processor"]


class Processor:
    """Runs models for jobs and stores what they find.

    Args:
        cfg: the service config.
        catalog: the configured models.
        worker_id: this worker's name (audit actor).
    """

    def __init__(self, cfg: ServiceConfig, catalog: ModelCatalog, worker_id: str) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.actor = f"worker:{worker_id}"
        self.artifacts = Artifacts(cfg, catalog)
        self.inference = Inference(cfg, catalog, self.artifacts)
        self.results = ResultStore(cfg, self.actor)
        self.response = ResponseAssessor(cfg, self.actor)

    def run_instances(self, session_factory: Any, jobs: list[Any]) -> list[Outcome]:
        """Predict every routed model on the instances of ``jobs``
        (:meth:`Inference.run_instances <medsight.service.inference.Inference.run_instances>`)."""
        return self.inference.run_instances(session_factory, jobs)

    def run_series(self, session_factory: Any, job: Any, router: Any) -> tuple[str, list[Outcome]]:
        """Run 3D models on a complete series; returns its outcome text and results."""
        return self.inference.run_series(session_factory, job, router)

    def store(self, s: Session, outcomes: list[Outcome]) -> list[int]:
        """Insert results with their alerts, suggestions, audit and outgoing jobs.

        Returns:
            Ids of the results inserted now (not those that already existed).
        """
        return self.results.store(s, outcomes)
