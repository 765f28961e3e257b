"""Treatment response: the monitoring policy's suggestion and the trend of a patient's results.

Pure functions over numbers and a typed policy; no database, HTTP or files. The service stores
what they return (``medsight.service.timeline``); the CLI and the Python API can call them
directly::

    >>> from medsight.response import TreatmentPolicy, suggest, trend
    >>> suggest(TreatmentPolicy(), 0.83, label="pneumonia", model="m", history=[0.41])[0]
    'Intensify treatment'
    >>> trend([0.41, 0.83])["direction"]
    'rising'
"""

from __future__ import annotations

from medsight.response.policy import PolicyRule, TreatmentPolicy, suggest
from medsight.response.trend import trend

__all__ = ["PolicyRule", "TreatmentPolicy", "suggest", "trend"]
