"""From a response category to a treatment-adjustment suggestion, through a named policy.

A suggestion is decision support for the treating team, never an order: each policy maps the
four categories (and the cases with no category: a baseline only, or a case the criteria
cannot assess) to a sentence, and the reasons say which policy and category gave it.

Presets: ``default`` (progressive disease → escalate or review treatment; stable → maintain;
partial or complete response → maintain, consider de-escalation per protocol) and
``reference``, the reference design's wording (progression → "Intensify treatment", anything
else → "Maintain or reduce treatment", taken from :class:`~medsight.response.TreatmentPolicy`'s
defaults so that the two never drift apart).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from medsight.response.criteria import CATEGORIES, COMPLETE, PARTIAL, PROGRESSIVE, STABLE, Assessment
from medsight.response.policy import TreatmentPolicy
from medsight.response.presets import Presets

__all__ = ["ResponsePolicy", "suggest_adjustment", "register_policy", "get_policy", "list_policies",
           "DEFAULT_POLICY"]


class ResponsePolicy(BaseModel):
    """Suggestions by response category.

    Attributes:
        name: the registry key.
        suggestions: one sentence for each of the four categories.
        baseline_only: the suggestion when there is no follow-up yet.
        not_evaluable: the suggestion when the criteria cannot assess the case.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    suggestions: dict[str, str]
    baseline_only: str = "no adjustment suggested: baseline only, a response needs a follow-up study"
    not_evaluable: str = "review: the response cannot be assessed under these criteria"

    @model_validator(mode="after")
    def _every_category(self) -> ResponsePolicy:
        missing = [c for c in CATEGORIES if c not in self.suggestions]
        unknown = [c for c in self.suggestions if c not in CATEGORIES]
        if missing or unknown:
            raise ValueError(f"suggestions must name exactly the categories {list(CATEGORIES)}; missing {missing}, "
                             f"unknown {unknown}")
        return self


def suggest_adjustment(policy: ResponsePolicy, assessment: Assessment) -> tuple[str, list[str]]:
    """The suggestion for an assessment, and why.

    Returns:
        ``(suggestion, reasons)``.
    """
    if assessment.category is not None:
        text = policy.suggestions[assessment.category]
        why = f"policy {policy.name}: {assessment.category} under {assessment.criteria} → '{text}'"
    elif assessment.rule == "baseline only":
        text = policy.baseline_only
        why = f"policy {policy.name}: baseline only → '{text}'"
    else:
        text = policy.not_evaluable
        why = f"policy {policy.name}: not evaluable under {assessment.criteria} → '{text}'"
    return text, [why, "a suggestion supports the treating team's decision; it is not a treatment order"]


_POLICIES = Presets(ResponsePolicy, "response policy")
DEFAULT_POLICY = "default"


def register_policy(policy: ResponsePolicy, *, replace: bool = False) -> ResponsePolicy:
    """Add a preset under ``policy.name`` (``replace`` to overwrite one)."""
    return _POLICIES.register(policy, replace=replace)


def get_policy(policy: str | ResponsePolicy | dict[str, Any]) -> ResponsePolicy:
    """A preset by name, a ResponsePolicy as it is, or a dict validated as one.

    Raises:
        ConfigError: no preset of that name (the message lists them), or an invalid dict.
    """
    return _POLICIES.get(policy)


def list_policies() -> list[str]:
    """The names of the registered presets."""
    return _POLICIES.names()


register_policy(ResponsePolicy(name="default", suggestions={
    PROGRESSIVE: "escalate or review treatment",
    STABLE: "maintain treatment",
    PARTIAL: "maintain treatment; consider de-escalation per protocol",
    COMPLETE: "maintain treatment; consider de-escalation per protocol",
}))
_reference = TreatmentPolicy()
register_policy(ResponsePolicy(name="reference", suggestions={
    PROGRESSIVE: _reference.rules[0].suggestion,
    STABLE: _reference.default,
    PARTIAL: _reference.default,
    COMPLETE: _reference.default,
}))
