"""A service config around any models and routes, for the example task's service test."""

from __future__ import annotations

import pytest


@pytest.fixture
def make_service_cfg(tmp_path):
    from medsight.service.config import service_config_from_dict

    def make(*, models: dict, routing: list, **over):
        data = {"storage": {"path": str(tmp_path / "data")}, "dicom": {"port": 0}, "http": {"port": 0},
                "auth": {"tokens": [{"name": "u-admin", "role": "admin", "token": "t-admin-0123456789"}]},
                "workers": {"processes": 0, "batch_size": 8, "lease_s": 30, "retry_backoff_s": 0},
                "models": models, "routing": routing, **over}
        return service_config_from_dict(data)

    return make
