"""What the HTTP app shares with the rest of a running service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medsight.service.auth import FailureLimiter, TokenAuth
from medsight.service.catalog import ModelCatalog
from medsight.service.config import ServiceConfig
from medsight.service.db import Database
from medsight.service.ingest import Ingestor
from medsight.service.routing import Router

__all__ = ["ServiceContext", "build_context"]


@dataclass
class ServiceContext:
    """The parts of a running service.

    Attributes:
        cfg: the config.
        db: the database.
        ingestor: the receive path shared by DICOM, upload, STOW-RS and catch-up.
        auth: token checks.
        catalog: configured models (manifests).
        checks: readiness checks by name (each returns True when healthy).
        catchup: runs one reconciliation now (None without catch-up).
    """

    cfg: ServiceConfig
    db: Database
    ingestor: Ingestor
    auth: TokenAuth
    catalog: ModelCatalog
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    catchup: Callable[[], dict[str, Any]] | None = None


def build_context(cfg: ServiceConfig, *, db: Database | None = None) -> ServiceContext:
    """Open the database (creating tables), read the model manifests, build the receive path."""
    cfg.storage_path.mkdir(parents=True, exist_ok=True)
    db = db or Database(cfg.database_url, echo=cfg.database.echo)
    db.create_all()
    catalog = ModelCatalog(cfg.models)
    router = Router(cfg.routing, catalog.dims())
    limit = int(cfg.storage.max_instance_mb * 1e6)
    ingestor = Ingestor(db, cfg.storage_path, router, accept_modalities=cfg.dicom.accept_modalities, max_bytes=limit)
    limiter = FailureLimiter(cfg.auth.max_failures, cfg.auth.failure_window_s, cfg.auth.lockout_s)
    return ServiceContext(cfg=cfg, db=db, ingestor=ingestor, auth=TokenAuth(cfg.auth.tokens, limiter),
                          catalog=catalog)
