"""The alert rules and their evaluation on one result.

A rule fires on one result: the model's own positive decision, a score above a value, a
nodule of at least N mm (any of the result's nodules: a study may hold several, each its own
finding with a lesion id), or a measurement that grew by at least X % since the patient's
previous result of the same model. Rules read the result's findings
(:meth:`medsight.tasks.results.Result.findings`), never its type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from medsight.tasks.results import Finding

__all__ = ["PRIORITY_RANK", "AlertRule", "Firing", "evaluate_rules"]

#: Worklist rank of each priority (higher first).
PRIORITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}


class AlertRule(BaseModel):
    """One alert rule.

    kinds: ``above_threshold`` (the model's own decision is positive), ``probability_above``
    (score above ``value``), ``nodule_mm`` (a finding ``nodule_diameter_mm`` of at least
    ``value``), ``growth_percent`` (the patient's measurement grew by at least ``value`` %
    since the previous result of the same model).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["above_threshold", "probability_above", "nodule_mm", "growth_percent"]
    model: str | None = None  # None: any model
    value: float | None = None
    measurement: str | None = None  # for growth_percent: the finding to compare (default: the score)
    priority: Literal["critical", "high", "medium", "low"] = "high"

    @model_validator(mode="after")
    def _needs_value(self) -> AlertRule:
        if self.kind != "above_threshold" and self.value is None:
            raise ValueError(f"alert rule '{self.name}' of kind {self.kind} needs a value")
        return self


@dataclass(frozen=True)
class Firing:
    """A rule that fired on one result: its name, priority and what it says."""

    rule: str
    priority: str
    message: str


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
    of at least its size.
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
