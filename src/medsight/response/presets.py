"""Named presets of a pydantic settings model, as the response criteria and policies keep them.

A preset is looked up by name; a caller may also pass the model itself, or a dict validated as
one, so a site's own settings go through the same door as the shipped presets.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from medsight.errors import ConfigError

__all__ = ["Presets"]

M = TypeVar("M", bound=BaseModel)


class Presets(Generic[M]):
    """Presets of ``model`` (which has a ``name`` field), called ``kind`` in messages."""

    def __init__(self, model: type[M], kind: str) -> None:
        self.model, self.kind = model, kind
        self._items: dict[str, M] = {}

    def register(self, item: M, *, replace: bool = False) -> M:
        name = item.name  # type: ignore[attr-defined]
        if name in self._items and not replace:
            raise ConfigError(f"a {self.kind} preset named {name!r} is already registered; pass replace=True")
        self._items[name] = item
        return item

    def get(self, item: str | M | dict[str, Any]) -> M:
        """Raises ConfigError: no preset of that name (the message lists them), or an invalid dict."""
        if isinstance(item, self.model):
            return item
        if isinstance(item, dict):
            try:
                return self.model.model_validate(item)
            except ValidationError as exc:
                problems = "; ".join((".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "") + e["msg"]
                                     for e in exc.errors())
                raise ConfigError(f"invalid {self.kind}: {problems}") from None
        if item not in self._items:
            raise ConfigError(f"no {self.kind} named {item!r}; the presets are {', '.join(self.names())}")
        return self._items[item]

    def names(self) -> list[str]:
        return sorted(self._items)
