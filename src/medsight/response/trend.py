"""The trend of a series of values: its direction and the size of its change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["trend"]


def trend(values: Sequence[float], *, tolerance: float = 0.05) -> dict[str, Any]:
    """Direction and size of the change across a series of values (oldest first).

    Returns:
        ``{"n", "first", "last", "delta", "direction", "values"}``; ``direction`` is ``rising``
        or ``falling`` when the last value differs from the first by more than ``tolerance``,
        else ``stable``; an empty series gives ``{"n": 0, "direction": "none"}``.
    """
    if not values:
        return {"n": 0, "direction": "none"}
    first, last = float(values[0]), float(values[-1])
    delta = last - first
    direction = "rising" if delta > tolerance else "falling" if delta < -tolerance else "stable"
    return {"n": len(values), "first": first, "last": last, "delta": delta, "direction": direction,
            "values": [round(float(v), 6) for v in values]}
