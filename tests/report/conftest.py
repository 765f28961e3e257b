"""Fixtures of the report tests: an HTML reader for rendered reports."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
