"""The real-time service: DICOM in, models, DICOM out, alerts, timelines, audit.

Nothing here is imported by ``import medsight``; FastAPI, SQLAlchemy and pynetdicom load only
when the service is used (``pip install 'medsight[service]'``).

Example:
    >>> from medsight.service import load_service_config, Service   # doctest: +SKIP
    >>> Service(load_service_config("configs/service.yaml")).start().run()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServiceConfig", "load_service_config", "Service", "serve", "create_app"]

_LAZY = {
    "ServiceConfig": ("medsight.service.config", "ServiceConfig"),
    "load_service_config": ("medsight.service.config", "load_service_config"),
    "Service": ("medsight.service.runner", "Service"),
    "serve": ("medsight.service.runner", "serve"),
    "create_app": ("medsight.service.app", "create_app"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'medsight.service' has no attribute {name!r}")
