"""Alert rules: which results call for someone's attention, decided from a result's findings.

Pure functions over a result's decision and findings and a typed rule list; no database,
HTTP or files. The service records and delivers what they return
(:mod:`medsight.service.alerts`); the CLI and the Python API can call them directly::

    >>> from medsight.alerts import AlertRule, evaluate_rules
    >>> from medsight.tasks.results import Finding
    >>> rules = [AlertRule(name="big nodule", kind="nodule_mm", value=8)]
    >>> [f.message for f in evaluate_rules(rules, model="m", positive=None, score=None, label=None,
    ...                                    threshold=None, findings=[Finding("nodule_diameter_mm", 9.5, "mm")])]
    ['m: nodule of 9.5 mm (≥ 8 mm)']
"""

from __future__ import annotations

from medsight.alerts.rules import PRIORITY_RANK, AlertRule, Firing, evaluate_rules, response_firing

__all__ = ["PRIORITY_RANK", "AlertRule", "Firing", "evaluate_rules", "response_firing"]
