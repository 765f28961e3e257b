"""The alert rules and their evaluation on one result.

A rule fires on one result: the model's own positive decision, a score above a value, a
nodule of at least N mm (any of the result's nodules: a study may hold several, each its own
finding with a lesion id), a nodule of at least N mm or of at least a Lung-RADS category (one
firing per nodule), or a measurement that grew by at least X % since the patient's previous
result of the same model. Rules read the result's findings
(:meth:`medsight.tasks.results.Result.findings`), never its type.

A response assessment of a patient's serial studies (:func:`medsight.response.track_studies`)
raises an alert when its latest time point's category is one that asks for attention
(:func:`response_firing`; progressive disease by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from medsight.tasks.results import Finding

__all__ = ["PRIORITY_RANK", "AlertRule", "Firing", "evaluate_rules", "response_firing"]

#: Worklist rank of each priority (higher first).
PRIORITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}


class AlertRule(BaseModel):
    """One alert rule.

    kinds: ``above_threshold`` (the model's own decision is positive), ``probability_above``
    (score above ``value``), ``nodule_mm`` (a finding ``nodule_diameter_mm`` of at least
    ``value``; one firing per result naming every such nodule), ``nodule`` (a nodule whose
    ``nodule_diameter_mm`` is at least ``value`` mm or whose ``nodule_category`` is at least
    the Lung-RADS ``category``, e.g. ``value: 8, category: 4A``; one firing per nodule, with its
    lesion id), ``growth_percent`` (the patient's measurement grew by at least ``value`` %
    since the previous result of the same model).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["above_threshold", "probability_above", "nodule_mm", "nodule", "growth_percent"]
    model: str | None = None  # None: any model
    value: float | None = None
    category: str | None = None  # for nodule: the Lung-RADS category (1, 2, 3, 4A, 4B, 4X) that alerts, and above
    measurement: str | None = None  # for growth_percent: the finding to compare (default: the score)
    priority: Literal["critical", "high", "medium", "low"] = "high"

    @model_validator(mode="after")
    def _needs_value(self) -> AlertRule:
        from medsight.metrics.lungrads import CATEGORY_ORDER

        if self.kind == "nodule":
            if self.value is None and self.category is None:
                raise ValueError(f"alert rule '{self.name}' of kind nodule needs a value (mm), a category, or both")
        elif self.kind != "above_threshold" and self.value is None:
            raise ValueError(f"alert rule '{self.name}' of kind {self.kind} needs a value")
        if self.category is not None and self.kind != "nodule":
            raise ValueError(f"alert rule '{self.name}': category is read by kind nodule only, not {self.kind}")
        if self.category is not None and self.category not in CATEGORY_ORDER:
            raise ValueError(f"alert rule '{self.name}': category must be one of {', '.join(CATEGORY_ORDER)}; "
                             f"got {self.category!r}")
        return self


@dataclass(frozen=True)
class Firing:
    """A rule that fired on one result: its name, priority and what it says, and the lesion it
    is about when it fires once per lesion (``nodule`` rules)."""

    rule: str
    priority: str
    message: str
    lesion_id: str | None = None


def _nodules(items: Sequence[Finding]) -> dict[str | None, dict[str, Finding]]:
    """The nodule findings of a result by lesion id (None: findings without one), each lesion's
    ``nodule_*`` findings by name (the first of each name)."""
    out: dict[str | None, dict[str, Finding]] = {}
    for f in items:
        if f.name.startswith("nodule_") and f.name != "nodule_count":
            out.setdefault(f.lesion_id, {}).setdefault(f.name, f)
    return out


def _nodule_firing(r: AlertRule, model: str, lesion: str | None, fs: dict[str, Finding]) -> Firing | None:
    """A ``nodule`` rule on one nodule: fires at ``value`` mm or more, or at ``category`` or above."""
    from medsight.errors import ConfigError
    from medsight.metrics.lungrads import category_at_least

    d = fs.get("nodule_diameter_mm")
    mm = None if d is None or d.value is None else float(d.value)
    c = fs.get("nodule_category")
    cat = None if c is None or not c.text else str(c.text)
    by_size = r.value is not None and mm is not None and mm >= r.value
    try:
        by_category = r.category is not None and cat is not None and category_at_least(cat, r.category)
    except ConfigError:  # a category outside Lung-RADS' (another table's name): not comparable
        by_category = False
    if not (by_size or by_category):
        return None
    kind = fs.get("nodule_type")
    what = ", ".join(x for x in (None if mm is None else f"{mm:.1f} mm", None if kind is None else kind.text,
                                 None if cat is None else f"Lung-RADS {cat}") if x)
    rule = " or ".join(x for x in (None if r.value is None else f"≥ {r.value:g} mm",
                                   None if r.category is None else f"≥ {r.category}") if x)
    name = "nodule" if lesion is None else f"nodule {lesion}"
    return Firing(r.name, r.priority, f"{model}: {name}: {what} ({rule})", lesion_id=lesion)


def evaluate_rules(rules: list[AlertRule], *, model: str, positive: bool | None, score: float | None,
                   label: str | None, threshold: float | None, findings: Sequence[Finding] | Mapping[str, float],
                   previous: dict[str, float] | None) -> list[Firing]:
    """The rules that fire on one result.

    Args:
        rules: the ``alerts.rules`` section.
        model: the config name of the model that made the result.
        positive, score, label, threshold: the result's decision.
        findings: the result's findings; several may share a name, one per lesion
            (``nodule_diameter_mm`` of each nodule). A mapping name → value is taken as one
            finding per name.
        previous: the same patient's previous measurements for this model by finding name
            (``score`` included), or None when this is the first.

    A ``growth_percent`` rule compares the first finding of its ``measurement`` name with the
    previous value of that name; a ``nodule_mm`` rule fires once per result, for every nodule
    of at least its size; a ``nodule`` rule fires once per nodule (lesion id) of at least its
    size or category, each firing naming its lesion.
    """
    items = ([Finding(k, float(v)) for k, v in findings.items()] if isinstance(findings, Mapping)
             else list(findings))
    values: dict[str, float] = {}
    for f in items:
        if f.value is not None:
            values.setdefault(f.name, float(f.value))
    out: list[Firing] = []
    for r in rules:
        if r.model is not None and r.model != model:
            continue
        if r.kind == "above_threshold" and positive:
            out.append(Firing(r.name, r.priority, f"{model}: {label} (score {score:.3f} ≥ threshold {threshold:.3f})"))
        elif r.kind == "probability_above" and score is not None and r.value is not None and score > r.value:
            out.append(Firing(r.name, r.priority, f"{model}: score {score:.3f} > {r.value:.3f}"))
        elif r.kind == "nodule_mm" and r.value is not None:
            big = [f for f in items if f.name == "nodule_diameter_mm" and f.value is not None and f.value >= r.value]
            if len(big) == 1:
                out.append(Firing(r.name, r.priority, f"{model}: nodule of {big[0].value:.1f} mm (≥ {r.value:g} mm)"))
            elif big:
                largest = max(float(f.value) for f in big)  # type: ignore[arg-type]
                lesions = ", ".join(f.lesion_id or "?" for f in big)
                out.append(Firing(r.name, r.priority, f"{model}: {len(big)} nodules of ≥ {r.value:g} mm, the largest "
                                                      f"{largest:.1f} mm (lesions {lesions})"))
        elif r.kind == "nodule":
            for lesion, fs in _nodules(items).items():
                firing = _nodule_firing(r, model, lesion, fs)
                if firing is not None:
                    out.append(firing)
        elif r.kind == "growth_percent" and previous and r.value is not None:
            key = r.measurement or "score"
            now_v = score if key == "score" else values.get(key)
            before = previous.get(key)
            if now_v is not None and before not in (None, 0):
                growth = 100.0 * (now_v - before) / abs(before)  # type: ignore[operator]
                if growth >= r.value:
                    out.append(Firing(r.name, r.priority, f"{model}: {key} grew {growth:.0f}% "
                                                          f"({before:.3g} → {now_v:.3g}; rule ≥ {r.value:g}%)"))
    return out


def response_firing(assessment: Any, *, date: str | None, suggestion: str, alert_on: Sequence[str],
                    priority: str = "high", rule: str = "response") -> Firing | None:
    """The alert of a response assessment, or None when its category is not in ``alert_on``.

    Args:
        assessment: the latest time point's :class:`~medsight.response.criteria.Assessment`.
        date: that time point's date (``YYYY-MM-DD``), for the message.
        suggestion: the policy's suggestion, for the message.
        alert_on: the categories that alert (the service's ``response.alert_on``).
        priority: the alert's priority.
        rule: the alert's rule name.

    Example:
        >>> from medsight.response import assess, get_criteria
        >>> a = assess(get_criteria("volumetric"), [8.11, 20.92], any_lesion=[True, True])
        >>> response_firing(a, date="1992-04-02", suggestion="escalate or review treatment",
        ...                 alert_on=["progressive disease"]).message  # doctest: +ELLIPSIS
        'response (volumetric): progressive disease at 1992-04-02: 8.11 → 20.92 mL, +158.0 % from the nadir; ...'
    """
    if assessment.category is None or assessment.category not in alert_on:
        return None
    unit = assessment.unit
    digits = {"mm": 1, "mm²": 0, "mL": 2}.get(unit, 2)
    change = ""
    if assessment.nadir is not None:
        pct = assessment.change_from_nadir_pct
        what = "new measurable disease" if pct is None or math.isinf(pct) else f"{pct:+.1f} % from the nadir"
        change = f": {assessment.nadir:.{digits}f} → {assessment.values[-1]:.{digits}f} {unit}, {what}"
    return Firing(rule, priority, f"response ({assessment.criteria}): {assessment.category} at {date or '?'}"
                                  f"{change}; suggestion: {suggestion}")
