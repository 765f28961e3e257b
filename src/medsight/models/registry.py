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

__all__ = ["ArchitectureSpec", "register_model", "list_models", "create_model", "get_spec", "check_params"]


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    factory: Callable[..., nn.Module]
    tasks: tuple[str, ...]
    dims: tuple[int, ...]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    params: tuple[str, ...] = ()  # the architecture parameters it accepts (besides dims, channels, classes)


_REGISTRY: dict[str, ArchitectureSpec] = {}


def register_model(name: str, *, tasks: tuple[str, ...], dims: tuple[int, ...], description: str,
                   params: tuple[str, ...] = (), **defaults: Any) -> Callable:
    """Decorator registering an architecture factory under ``name``.

    Args:
        params: the parameters the architecture accepts (those with a default included);
            :func:`create_model` refuses any other.
        **defaults: default values of some of ``params``.
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        accepted = tuple(dict.fromkeys((*params, *defaults)))
        _REGISTRY[name] = ArchitectureSpec(name, fn, tasks, dims, description, dict(defaults), accepted)
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


def _path_like(value: Any) -> bool:
    if isinstance(value, str):
        return "/" in value or "\\" in value or value.startswith((".", "~"))
    if isinstance(value, (list, tuple)):
        return any(_path_like(v) for v in value)
    if isinstance(value, dict):
        return any(_path_like(v) for v in value.values())
    return hasattr(value, "__fspath__")


def check_params(spec: ArchitectureSpec, params: dict[str, Any]) -> None:
    """Refuse parameters an architecture does not declare, ``pretrained``, and path-valued ones.

    A model's manifest must not make loading fetch or read anything outside its folder: MONAI's
    ``pretrained`` downloads weights (or ``torch.load``-s a path given as its value).

    Raises:
        ConfigError: naming the parameter and what the architecture accepts.
    """
    if "pretrained" in params:
        raise ConfigError(f"model {spec.name!r}: bad parameters ['pretrained']: refused, since pretrained weights "
                          "are downloaded or read from outside the model folder; a MedSight model holds its own "
                          "weights.safetensors")
    unknown = sorted(k for k in params if k not in spec.params)
    if unknown:
        raise ConfigError(f"model {spec.name!r}: bad parameters {unknown}: it accepts "
                          f"{', '.join(spec.params) or 'none'}")
    paths = sorted(k for k, v in params.items() if _path_like(v))
    if paths:
        raise ConfigError(f"model {spec.name!r}: bad parameters {paths}: expected numbers, names or lists of them; "
                          "found a file path")


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
        ConfigError: unknown name, unsupported dimension, or bad parameters: one the
            architecture does not declare, ``pretrained`` (a download, or a file read from
            anywhere), or a value that looks like a file path.
    """
    spec = get_spec(name)
    if spatial_dims not in spec.dims:
        raise ConfigError(f"model {name!r} supports {' or '.join(f'{d}D' for d in spec.dims)}; got {spatial_dims}D")
    check_params(spec, params)
    kwargs = {**spec.defaults, **params}
    try:
        return spec.factory(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:  # MONAI checks its arguments with all three
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"model {name!r} cannot be built with parameters {params}: {detail}") from None
