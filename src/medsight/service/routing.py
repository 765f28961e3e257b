"""Routing: from an instance's modality, body part and series description to the models
that run on it.

2D models run on each instance as it arrives; 3D models run once its series is complete.
A route naming a model that is not installed still matches: the series is then recorded
as "no model routed" (with the missing model named), which is not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medsight.service.config import RouteConfig

__all__ = ["InstanceFacts", "RouteMatch", "Router"]


@dataclass(frozen=True)
class InstanceFacts:
    """What routing looks at (no patient identifiers)."""

    modality: str
    body_part: str | None = None
    series_description: str | None = None


@dataclass
class RouteMatch:
    """The outcome of routing one instance."""

    routes: list[str] = field(default_factory=list)
    instance_models: list[str] = field(default_factory=list)  # 2D, available
    series_models: list[str] = field(default_factory=list)  # 3D, available
    missing_models: list[str] = field(default_factory=list)  # configured but not installed


class Router:
    """Match instances against the configured routes.

    Args:
        routes: the ``routing`` section.
        model_dims: spatial dims (2 or 3) of each *available* model by config name; models
            absent from it are configured but not installed.
    """

    def __init__(self, routes: list[RouteConfig], model_dims: dict[str, int]) -> None:
        self.routes = routes
        self.model_dims = dict(model_dims)
        self._regex = {r.name: re.compile(r.series_description, re.IGNORECASE) if r.series_description else None
                       for r in routes}

    def _matches(self, route: RouteConfig, facts: InstanceFacts) -> bool:
        if route.modalities and facts.modality.upper() not in {m.upper() for m in route.modalities}:
            return False
        if route.body_parts and (facts.body_part or "").upper() not in {b.upper() for b in route.body_parts}:
            return False
        rx = self._regex[route.name]
        return not (rx is not None and not rx.search(facts.series_description or ""))

    def match(self, facts: InstanceFacts) -> RouteMatch:
        """All routes that match, and their models split by how they run."""
        out = RouteMatch()
        for route in self.routes:
            if not self._matches(route, facts):
                continue
            out.routes.append(route.name)
            for name in route.models:
                dims = self.model_dims.get(name)
                target = (out.missing_models if dims is None else
                          out.instance_models if dims == 2 else out.series_models)
                if name not in target:
                    target.append(name)
        return out
