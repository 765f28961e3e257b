"""The model zoo's architectures: a registry and one factory.

Every architecture is registered with the tasks and dimensions it supports and is built by
:func:`create_model` with the same keyword arguments, so code never needs to know which
network it holds.

Example:
    >>> from medsight.models import create_model, list_models
    >>> net = create_model("resnet-small", spatial_dims=2, in_channels=1, num_classes=2)
    >>> "classic-cnn" in list_models()
    True
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from medsight.errors import ConfigError

__all__ = ["ArchitectureSpec", "register_model", "list_models", "create_model", "get_spec"]


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    factory: Callable[..., nn.Module]
    tasks: tuple[str, ...]
    dims: tuple[int, ...]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ArchitectureSpec] = {}


def register_model(name: str, *, tasks: tuple[str, ...], dims: tuple[int, ...], description: str,
                   **defaults: Any) -> Callable:
    """Decorator registering an architecture factory under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ArchitectureSpec(name, fn, tasks, dims, description, dict(defaults))
        return fn

    return deco


def _ensure_loaded() -> None:
    from medsight.models import architectures  # noqa: F401  (registers on import)


def get_spec(name: str) -> ArchitectureSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def list_models(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Names of registered architectures matching a glob ``pattern`` (and ``task``)."""
    _ensure_loaded()
    return sorted(n for n, s in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or task in s.tasks))


def create_model(name: str, *, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 **params: Any) -> nn.Module:
    """Build architecture ``name``.

    Args:
        name: a registered architecture (see :func:`list_models`).
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_classes: outputs (classes, labels, or segmentation labels including background).
        **params: architecture-specific settings (``input_size`` for ``classic-cnn``, ...).

    Raises:
        ConfigError: unknown name, unsupported dimension, or bad parameters.
    """
    spec = get_spec(name)
    if spatial_dims not in spec.dims:
        raise ConfigError(f"model {name!r} supports {' or '.join(f'{d}D' for d in spec.dims)}; got {spatial_dims}D")
    kwargs = {**spec.defaults, **params}
    try:
        return spec.factory(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad parameters {sorted(params)}: {exc}") from None
