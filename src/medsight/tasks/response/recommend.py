"""From the ensemble's predicted response under every treatment to a recommendation, or a refusal.

Pure rules over numbers, so they are tested without a network:

1. **Distance from the training data.** The Mahalanobis distance of the patient's representation
   (image features and covariates of ensemble member 0) from the training patients' (mean and
   Ledoit-Wolf precision stored in the model; :mod:`medsight.metrics.ood`, as a classifier's)
   is compared with the distance that ``ood_quantile`` of the held-out validation patients stay
   under; farther is ``refer: input unlike training data``.
2. **Uncertainty.** For each treatment: the ensemble's mean probability, its standard deviation
   over members and an interval (mean ± 1.96 SD, clipped to [0, 1]). An SD over ``max_sd``
   on the leading option is ``refer: uncertain``.
3. **Margin.** The leading option is recommended only when it beats the runner-up by more than
   ``margin_sd`` standard deviations of their difference over the members, and by at least
   ``min_margin`` (a difference too small to act on); otherwise ``refer: uncertain``.

Every decision carries its reasons, with the numbers that decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Recommendation", "recommend", "RECOMMEND", "REFER_UNCERTAIN", "REFER_UNLIKE"]

RECOMMEND = "recommend"
REFER_UNCERTAIN = "refer: uncertain"
REFER_UNLIKE = "refer: input unlike training data"
Z95 = 1.959964


@dataclass
class Recommendation:
    """What the rules decided for one patient."""

    status: str
    recommended: str | None
    leading: str
    options: list[dict[str, Any]]
    margin: float
    margin_sd: float
    distance: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status == RECOMMEND


def recommend(member_probs: np.ndarray, treatments: Sequence[str], *, distance: float | None = None,
              ood_threshold: float | None = None, margin_sd: float = 0.5, min_margin: float = 0.02,
              max_sd: float = 0.15) -> Recommendation:
    """Apply the rules (module docstring) to ``member_probs`` ``(members, treatments)``."""
    p = np.atleast_2d(np.asarray(member_probs, dtype=np.float64))
    if p.shape[1] != len(treatments) or len(treatments) < 2:
        raise ValueError(f"member_probs must be (members, {len(treatments)}) for treatments {list(treatments)}; "
                         f"got {p.shape}")
    mean, sd = p.mean(axis=0), p.std(axis=0, ddof=1) if len(p) > 1 else np.zeros(p.shape[1])
    order = np.argsort(-mean, kind="stable")
    lead, second = int(order[0]), int(order[1])
    diff = p[:, lead] - p[:, second]
    margin = float(diff.mean())
    diff_sd = float(diff.std(ddof=1)) if len(p) > 1 else 0.0
    options = [{"treatment": t, "probability": round(float(mean[k]), 4), "sd": round(float(sd[k]), 4),
                "interval": [round(float(max(0.0, mean[k] - Z95 * sd[k])), 4),
                             round(float(min(1.0, mean[k] + Z95 * sd[k])), 4)]}
               for k, t in enumerate(treatments)]
    name, runner = treatments[lead], treatments[second]
    reasons = ["predicted response: " + ", ".join(f"{o['treatment']} {o['probability']:.2f} "
                                                   f"(95% interval {o['interval'][0]:.2f}-{o['interval'][1]:.2f})"
                                                   for o in options)
               + f" over {len(p)} ensemble member{'s' if len(p) > 1 else ''}"]

    def out(status: str, why: str) -> Recommendation:
        return Recommendation(status=status, recommended=name if status == RECOMMEND else None, leading=name,
                              options=options, margin=round(margin, 4), margin_sd=round(diff_sd, 4),
                              distance=None if distance is None else round(float(distance), 3),
                              reasons=[*reasons, why])

    if distance is not None and ood_threshold is not None and distance > ood_threshold:
        return out(REFER_UNLIKE, f"the input's distance from the training data is {distance:.2f}, beyond "
                                 f"{ood_threshold:.2f} (what held-out training-like patients stay under)")
    if sd[lead] > max_sd:
        return out(REFER_UNCERTAIN, f"the ensemble disagrees on {name}: SD {sd[lead]:.2f} > {max_sd:.2f}")
    needed = max(min_margin, margin_sd * diff_sd)
    if margin <= needed:
        return out(REFER_UNCERTAIN, f"{name} leads {runner} by {margin:.3f}, not more than its uncertainty "
                                    f"({needed:.3f}: max of {margin_sd:g} SD of the difference = "
                                    f"{margin_sd * diff_sd:.3f} and the smallest margin acted on, {min_margin:g})")
    return out(RECOMMEND, f"{name} leads {runner} by {margin:.3f}, more than its uncertainty ({needed:.3f})")
