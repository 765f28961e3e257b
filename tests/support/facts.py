"""Checking an error message by the facts it states, not by its wording."""

from __future__ import annotations

from typing import Any


def says(error: Any, *facts: str) -> None:
    """Assert that ``error`` (an exception, a ``pytest.raises`` info, or a message) states every one
    of ``facts`` (a path, a value, the allowed choices), however the sentence around them is worded."""
    text = str(getattr(error, "value", error))
    missing = [f for f in facts if f not in text]
    assert not missing, f"the message {text!r} does not state {missing}"
