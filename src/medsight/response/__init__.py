"""Treatment response: serial-scan response assessment, the monitoring policy, and trends.

Pure rules over numbers and typed presets, plus :func:`track`, which reads one patient's serial
DICOM studies through :mod:`medsight.io` and applies them:

* :mod:`~medsight.response.measure`: lesion volume and in-plane diameters from a mask;
* :mod:`~medsight.response.criteria`: RECIST 1.1-like, RANO-like and volumetric presets;
* :mod:`~medsight.response.adjustment`: category → treatment-adjustment suggestion, by policy;
* :mod:`~medsight.response.longitudinal`: all of it over a patient's folder (``medsight track``);
* :mod:`~medsight.response.policy` and :mod:`~medsight.response.trend`: the service's monitoring
  policy on model scores (the reference design's rule) and the trend of a patient's results::

    >>> from medsight.response import TreatmentPolicy, suggest, trend
    >>> suggest(TreatmentPolicy(), 0.83, label="pneumonia", model="m", history=[0.41])[0]
    'Intensify treatment'
    >>> trend([0.41, 0.83])["direction"]
    'rising'
"""

from __future__ import annotations

from medsight.response.adjustment import ResponsePolicy, get_policy, list_policies, register_policy, suggest_adjustment
from medsight.response.criteria import (
    CATEGORIES,
    Assessment,
    ResponseCriteria,
    assess,
    get_criteria,
    list_criteria,
    register_criteria,
)
from medsight.response.measure import LesionMeasure, MaskMeasure, in_plane_diameters, measure_mask
from medsight.response.policy import PolicyRule, TreatmentPolicy, suggest
from medsight.response.trend import trend

__all__ = ["PolicyRule", "TreatmentPolicy", "suggest", "trend",
           "CATEGORIES", "Assessment", "ResponseCriteria", "assess", "get_criteria", "list_criteria",
           "register_criteria", "ResponsePolicy", "get_policy", "list_policies", "register_policy",
           "suggest_adjustment", "LesionMeasure", "MaskMeasure", "in_plane_diameters", "measure_mask",
           "track", "track_studies", "TrackResult"]


def __getattr__(name: str):
    # track reads files through medsight.io; loaded on first use so the rules stay light to import
    if name in ("track", "track_studies", "TrackResult"):
        from medsight.response import longitudinal

        return getattr(longitudinal, name)
    raise AttributeError(name)
