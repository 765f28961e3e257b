"""Drift: do the inputs a model sees now still look like its validation data?

A classifier's manifest carries a *drift reference*, measured on its validation split when it
is trained or recalibrated (:func:`reference`):

* ``distance``: the distribution of the inputs' distance from the training fingerprint
  (:mod:`medsight.metrics.ood`), as bins at the validation deciles with the share of
  validation inputs in each;
* ``score``: likewise for the score (P(positive) of a binary model, else the top probability);
* ``refer`` and ``positive``: the validation rates of referral and of positive decisions.

:func:`check` compares a window of recent predictions with it, one test per statistic:

* a distribution: Pearson's chi-square of the window's counts in the reference bins against
  the reference shares, with the population stability index (PSI) as the effect size;
* the refer rate: a one-sided exact binomial test (more referrals than validation had);
* the positive rate: a two-sided exact binomial test.

The window drifts when a test of the input side (``distance``, ``refer``: :data:`ALARM_ON`)
has a p-value under ``alpha`` divided by the number of those tests (Bonferroni), so ``alpha``
bounds the chance that one check of an in-distribution window raises the alarm, and its shift
is at least a stated size (PSI 0.25, or 0.10 in a rate). PSI alone is not used as the rule:
its expectation under no drift grows as the window shrinks (about (bins - 1) / n: 0.18 for 10
bins and 50 inputs), so a fixed PSI cut-off such as 0.25 fires on small windows of perfectly
ordinary input.

Example:
    >>> ref = reference(distance=val_d, score=val_p, threshold=0.66, refer_threshold=21.3)  # doctest: +SKIP
    >>> check({"distance": d, "score": p, "refer": r, "positive": pos}, ref).drift            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["reference", "check", "DriftCheck", "DISTRIBUTIONS", "RATES", "ALARM_ON"]

#: The statistics compared as distributions, and those compared as rates.
DISTRIBUTIONS = ("distance", "score")
RATES = ("refer", "positive")
#: What raises the alarm by default: the input side. The output side (score distribution,
#: positive rate) is tested and reported too, but a case mix unlike the validation split's moves
#: it without anything being wrong with the input: PneumoniaMNIST's own test split has a score
#: distribution apart from its validation split's (PSI 0.17 over its 624 images, p 3e-23).
ALARM_ON = ("distance", "refer")


def _bins(values: np.ndarray, bins: int) -> tuple[list[float], list[float]]:
    """Inner edges at the quantiles of ``values`` (repeated edges merged, as saturated scores
    give) and the share of ``values`` in each bin, bin ``i`` holding ``edges[i-1] <= v < edges[i]``."""
    edges = sorted({round(float(e), 6) for e in np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])})
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return edges, [round(float(c) / len(values), 6) for c in counts]


def reference(*, distance: Sequence[float] | None, score: Sequence[float], threshold: float | None,
              refer_threshold: float | None, bins: int = 10) -> dict[str, Any]:
    """The drift reference of a model, from its validation split.

    Args:
        distance: each validation input's distance from the training fingerprint (None: the
            model has no fingerprint).
        score: each validation input's score (P(positive), or the top class probability).
        threshold: the operating threshold on ``score`` (binary models), for the positive rate.
        refer_threshold: the distance beyond which an input is referred, for the refer rate.
        bins: how many quantile bins a distribution is cut into.

    Raises:
        ValueError: fewer validation inputs than bins, or non-finite values.
    """
    s = np.asarray(score, dtype=np.float64)
    if len(s) < bins or not np.isfinite(s).all():
        raise ValueError(f"a drift reference needs at least {bins} finite validation scores; got {len(s)}")
    out: dict[str, Any] = {"n": int(len(s)), "bins": bins, "split": "validation", "distributions": {}, "rates": {}}
    out["distributions"]["score"] = dict(zip(("edges", "shares"), _bins(s, bins)))
    if distance is not None:
        d = np.asarray(distance, dtype=np.float64)
        if d.shape != s.shape or not np.isfinite(d).all():
            raise ValueError("distance needs one finite value per validation score")
        out["distributions"]["distance"] = dict(zip(("edges", "shares"), _bins(d, bins)))
        if refer_threshold is not None:
            out["rates"]["refer"] = round(float((d > refer_threshold).mean()), 6)
    if threshold is not None:
        out["rates"]["positive"] = round(float((s >= threshold).mean()), 6)
    return out


@dataclass
class DriftCheck:
    """The outcome of :func:`check`.

    Attributes:
        n: the window's size.
        drift: the alarm: whether a test of ``alarm_on`` found a shift.
        level: the per-test significance level (``alpha`` / number of alarming tests).
        tests: per statistic: ``p`` (p-value), ``drift`` (significant and large enough),
            ``alarms`` (whether it is one of the alarm's tests) and the numbers behind it
            (``psi``, ``chi2`` and ``counts`` for a distribution; ``rate``, ``reference`` and ``k``
            for a rate).
    """

    n: int
    drift: bool
    level: float
    alpha: float
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """One line per test that found a shift, e.g. ``refer rate 0.46 against 0.01 in
        validation (p 2e-30)``; a test outside the alarm's says so."""
        out = []
        for name, t in self.tests.items():
            if not t["drift"]:
                continue
            if "rate" in t:
                line = f"{name} rate {t['rate']:.2f} against {t['reference']:.2f} in validation (p {t['p']:.1g})"
            else:
                line = f"{name} distribution apart from validation: PSI {t['psi']:.2f} (p {t['p']:.1g})"
            out.append(line if t["alarms"] else line + "; not an alarm by itself")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "drift": self.drift, "level": self.level, "alpha": self.alpha, "tests": self.tests,
                "reasons": self.reasons}


def _distribution_test(values: np.ndarray, ref: Mapping[str, Any], n_ref: int) -> dict[str, Any]:
    from scipy.stats import chisquare

    counts = np.bincount(np.searchsorted(ref["edges"], values, side="right"), minlength=len(ref["shares"]))
    shares = np.maximum(np.asarray(ref["shares"], dtype=np.float64), 0.5 / n_ref)  # no bin is impossible
    shares /= shares.sum()
    q = np.maximum(counts / len(values), 0.5 / len(values))
    psi = float(np.sum((q - shares) * np.log(q / shares)))
    chi2, p = chisquare(counts, shares * len(values))
    return {"p": float(p), "chi2": round(float(chi2), 3), "psi": round(psi, 4), "counts": counts.tolist()}


def _rate_test(hits: np.ndarray, rate: float, n_ref: int, alternative: str) -> dict[str, Any]:
    from scipy.stats import binomtest

    p0 = min(max(rate, 1.0 / n_ref), 1.0 - 1.0 / n_ref)  # a rate of 0 in validation is "under 1 in n"
    k = int(hits.sum())
    return {"p": float(binomtest(k, len(hits), p0, alternative=alternative).pvalue),
            "rate": round(k / len(hits), 4), "reference": round(float(rate), 4), "k": k}


def check(window: Mapping[str, Sequence[Any]], ref: Mapping[str, Any], *, alpha: float = 0.001,
          alarm_on: Sequence[str] = ALARM_ON, min_psi: float = 0.25, min_rate_change: float = 0.10) -> DriftCheck:
    """Test a window of recent predictions against the model's drift reference.

    Args:
        window: per statistic, the window's values: ``distance`` and ``score`` (floats),
            ``refer`` and ``positive`` (booleans). A statistic missing from the window or from
            the reference is not tested; a value that is None (a prediction without it) is left out.
        ref: the manifest's drift reference (:func:`reference`).
        alpha: the family-wise chance that one check of an unchanged stream raises the alarm;
            each test runs at ``alpha`` / the number of alarming tests (Bonferroni).
        alarm_on: the statistics whose shift is the alarm; the others are tested and reported
            alike (each test's ``drift``) but do not raise it.
        min_psi, min_rate_change: the smallest shift that counts, however significant: a PSI for
            a distribution, an absolute change for a rate (a large window makes trivial shifts
            significant).

    Raises:
        ValueError: the window has nothing to test, or ``alarm_on`` names an unknown statistic.
    """
    unknown = set(alarm_on) - set(DISTRIBUTIONS) - set(RATES)
    if unknown:
        raise ValueError(f"alarm_on: unknown statistics {sorted(unknown)}; choose from {[*DISTRIBUTIONS, *RATES]}")
    jobs: list[tuple[str, np.ndarray]] = []
    for name in DISTRIBUTIONS:
        if name in ref.get("distributions", {}) and window.get(name) is not None:
            v = np.asarray([x for x in window[name] if x is not None], dtype=np.float64)
            if len(v):
                jobs.append((name, v))
    for name in RATES:
        if name in ref.get("rates", {}) and window.get(name) is not None:
            v = np.asarray([bool(x) for x in window[name] if x is not None])
            if len(v):
                jobs.append((name, v))
    if not jobs:
        raise ValueError("nothing to test: the window and the reference share no statistic")
    alarming = [name for name, _ in jobs if name in alarm_on]
    level = alpha / max(len(alarming), 1)
    n_ref = int(ref["n"])
    tests: dict[str, dict[str, Any]] = {}
    for name, v in jobs:
        if name in DISTRIBUTIONS:
            t = _distribution_test(v, ref["distributions"][name], n_ref)
        else:
            t = _rate_test(v, float(ref["rates"][name]), n_ref, "greater" if name == "refer" else "two-sided")
        t["n"] = int(len(v))
        big = t["psi"] >= min_psi if "psi" in t else abs(t["rate"] - t["reference"]) >= min_rate_change
        t["drift"] = bool(t["p"] < level and big)
        t["alarms"] = name in alarming
        tests[name] = t
    n = max(t["n"] for t in tests.values())
    return DriftCheck(n=n, drift=any(tests[k]["drift"] for k in alarming), level=level, alpha=alpha, tests=tests)
