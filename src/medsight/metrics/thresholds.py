"""Operating thresholds chosen on a validation split.

Rules: ``youden`` (maximise sensitivity + specificity - 1), ``accuracy`` (maximise the
validation accuracy, i.e. weigh errors by the validation split's prevalence),
``sensitivity:X`` (the highest threshold whose sensitivity is at least X), ``specificity:X``
(the lowest threshold whose specificity is at least X), ``fixed:T``.
"""

from __future__ import annotations

import numpy as np

from medsight.errors import ConfigError, DataError

__all__ = ["parse_rule", "choose_threshold"]

_RULES = ("youden", "accuracy", "sensitivity", "specificity", "fixed")


def parse_rule(rule: str) -> tuple[str, float | None]:
    """Split ``"sensitivity:0.9"`` into ``("sensitivity", 0.9)``; validate it."""
    name, _, value = rule.strip().lower().partition(":")
    if name not in _RULES:
        raise ConfigError("threshold rule must be one of youden, accuracy, sensitivity:X, specificity:X, fixed:T; "
                          f"got {rule!r}")
    if name in ("youden", "accuracy"):
        if value:
            raise ConfigError(f"threshold rule {name!r} takes no value; got {rule!r}")
        return name, None
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"threshold rule {rule!r} needs a number after ':'") from None
    if not 0.0 <= x <= 1.0:
        raise ConfigError(f"threshold rule {rule!r}: the value must be between 0 and 1")
    return name, x


def choose_threshold(y_true: np.ndarray, score: np.ndarray, rule: str = "youden") -> float:
    """Choose the decision threshold (predict positive when ``score >= threshold``).

    Args:
        y_true: 0/1 labels of the validation split, shape (N,).
        score: predicted probability of the positive class, shape (N,).
        rule: see the module docstring.

    Returns:
        The threshold, placed midway between the two neighbouring scores it separates so that
        it does not sit on a validation sample.
    """
    name, value = parse_rule(rule)
    if name == "fixed":
        return float(value)  # type: ignore[arg-type]
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(score, dtype=float).ravel()
    if y.min(initial=1) == y.max(initial=0):
        raise DataError("the validation split holds only one class, so no threshold can be chosen from it")
    cuts = np.unique(s)[::-1]  # candidate thresholds, high to low
    pos, neg = y == 1, y == 0
    tpr = np.array([(s[pos] >= t).mean() for t in cuts]) if len(cuts) < 5000 else None
    if tpr is None:  # large N: vectorised via sorting
        order = np.argsort(-s, kind="stable")
        ys = y[order]
        tp = np.cumsum(ys)[np.r_[np.flatnonzero(np.diff(s[order])), len(ys) - 1]]
        fp = np.cumsum(1 - ys)[np.r_[np.flatnonzero(np.diff(s[order])), len(ys) - 1]]
        tpr, fpr = tp / pos.sum(), fp / neg.sum()
    else:
        fpr = np.array([(s[neg] >= t).mean() for t in cuts])
    if name == "youden":
        i = int(np.argmax(tpr - fpr))
    elif name == "accuracy":
        i = int(np.argmax(tpr * pos.sum() + (1 - fpr) * neg.sum()))
    elif name == "sensitivity":
        ok = np.flatnonzero(tpr >= value - 1e-12)
        i = int(ok[0])
    else:  # specificity
        ok = np.flatnonzero(1 - fpr >= value - 1e-12)
        i = int(ok[-1])
    upper = cuts[i]
    lower = cuts[i + 1] if i + 1 < len(cuts) else upper
    return float((upper + lower) / 2) if lower < upper else float(upper)
