"""Where the real data lives (../shared/data), and a skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(sub: str) -> Path:
    """Path of a real-data folder or file, or skip the test with a clear reason."""
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (set MEDSIGHT_SHARED_DATA to the shared data folder)")
    return p
