"""The monitoring policy: a treatment suggestion for a new score, with its reasons.

This is the reference design's monitoring loop (acquire → predict → adjust → log). Until a
treatment model exists the policy is a list of score thresholds; the reference default is
"probability > 0.5 → Intensify treatment, otherwise Maintain or reduce treatment". Every
suggestion comes with its reasons, so that whoever stores it can audit it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from medsight.response.trend import trend

__all__ = ["PolicyRule", "TreatmentPolicy", "suggest"]


class PolicyRule(BaseModel):
    """Suggest ``suggestion`` when the score is above ``above``."""

    model_config = ConfigDict(extra="forbid")

    above: float
    suggestion: str


class TreatmentPolicy(BaseModel):
    """The monitoring policy: the first rule whose ``above`` the score exceeds wins."""

    model_config = ConfigDict(extra="forbid")

    rules: list[PolicyRule] = Field(default_factory=lambda: [PolicyRule(above=0.5, suggestion="Intensify treatment")])
    default: str = "Maintain or reduce treatment"


def suggest(policy: TreatmentPolicy, score: float, *, label: str, model: str,
            history: Sequence[float]) -> tuple[str, list[str]]:
    """The suggestion for a new score, and why.

    Args:
        policy: the policy (the service's ``treatment`` section).
        score: the new result's score (probability of the positive class).
        label: the positive class's name, for the reasons.
        model: the model's name, for the reasons.
        history: the patient's earlier scores of this model, oldest first.

    Returns:
        ``(suggestion, reasons)``.
    """
    reasons: list[str] = []
    chosen = None
    for rule in policy.rules:
        if score > rule.above:
            chosen = rule.suggestion
            reasons.append(f"P({label}) by {model} = {score:.3f} > {rule.above:.2f}: policy rule '{rule.suggestion}'")
            break
    if chosen is None:
        lowest = min((r.above for r in policy.rules), default=None)
        chosen = policy.default
        bound = f" ≤ {lowest:.2f}" if lowest is not None else ""
        reasons.append(f"P({label}) by {model} = {score:.3f}{bound}: policy default '{policy.default}'")
    t = trend([*history, score])
    if t["n"] >= 2:
        reasons.append(f"trend over {t['n']} results: {t['direction']} ({t['first']:.3f} → {t['last']:.3f}, "
                       f"change {t['delta']:+.3f})")
    else:
        reasons.append("first result for this patient and model: no trend yet")
    return chosen, reasons
