"""Metrics of treatment recommendations: policy value, regret, uplift, and what the model learned.

A response model predicts, for each patient, the probability of response under every
treatment. Its recommendations form a *policy*: one treatment per patient. Where the true
response probability under every treatment is known (a simulated cohort keeps its
counterfactuals), a policy's value is exact: the mean true probability of the treatment it
picks. These functions score a policy against the oracle (the best treatment for each
patient) and against the best single treatment for everyone, with bootstrap confidence
intervals over patients, and split the regret between the cases the model accepted (it made a
recommendation) and those it referred.

Where only factual outcomes are known (each patient received one treatment), uplift is scored
with the Qini curve and the area under the uplift curve (AUUC), as in causal-ML toolkits
(scikit-uplift, CausalML): the patients are ranked by predicted benefit of a treatment over the
reference, and the observed response difference between the treated and the reference
patients is accumulated down the ranking. This is unbiased only when assignment was random;
on confounded data it is a description, not an estimate.

``feature_attribution`` says which features the model picked up as *prognostic* (they change
the outcome under every treatment: associated with the mean predicted probability) and which
as *predictive* (they change which treatment is best: associated with the predicted effect),
next to the same associations in the true probabilities.

Written here rather than taken from a library: scikit-uplift and CausalML score uplift on
factual data but have no policy value against known counterfactuals, no accepted-vs-referred
split and no coverage-risk curve, and each would pull in a large dependency tree for a few
lines of NumPy (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["policy_report", "uplift_report", "feature_attribution", "pehe", "policy_value"]


def _r(x: float) -> float:
    return round(float(x), 4)


def _ci(samples: np.ndarray, level: float) -> list[float]:
    a = (1 - level) / 2
    return [_r(np.quantile(samples, a)), _r(np.quantile(samples, 1 - a))]


def _check(true_probs: np.ndarray, choice: np.ndarray, treatments: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(true_probs, dtype=float)
    c = np.asarray(choice)
    if p.ndim != 2 or p.shape[1] != len(treatments):
        raise ValueError(f"true_probs must be (patients, {len(treatments)} treatments); got shape {p.shape}")
    if c.shape != (p.shape[0],):
        raise ValueError(f"choice must hold one treatment index per patient ({p.shape[0]}); got shape {c.shape}")
    if len(c) and (c.min() < 0 or c.max() >= p.shape[1] or not np.issubdtype(c.dtype, np.integer)):
        raise ValueError(f"choice must be treatment indices 0..{p.shape[1] - 1}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("true_probs must be probabilities in [0, 1]")
    return p, c.astype(int)


def policy_value(true_probs: np.ndarray, choice: np.ndarray) -> float:
    """The mean true response probability of the treatments ``choice`` picks."""
    p = np.asarray(true_probs, dtype=float)
    return float(p[np.arange(len(p)), np.asarray(choice, dtype=int)].mean())


def policy_report(true_probs: np.ndarray, choice: np.ndarray, *, treatments: Sequence[str],
                  accepted: np.ndarray | None = None, fallback: int | None = None,
                  confidence: np.ndarray | None = None, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> dict[str, Any]:
    """Score a recommendation policy against the known outcome probabilities under every treatment.

    Args:
        true_probs: ``(n, T)`` true response probability of each patient under each treatment.
        choice: ``(n,)`` index of the treatment the model ranks first for each patient.
        treatments: the treatment names, in column order.
        accepted: ``(n,)`` whether the model made a recommendation (True) or referred (False);
            None: every case accepted.
        fallback: the treatment a referred patient gets (e.g. the best single treatment on the
            training data); None: the model's ``choice`` (as if it had not referred).
        confidence: ``(n,)`` higher is surer; gives the coverage-risk curve (regret of the
            ``k`` surest cases for each coverage ``k / n``).

    Returns:
        JSON-ready: ``policy`` (accepted → choice, referred → fallback), ``model_all`` (choice
        for everyone), ``oracle``, ``best_single`` (its treatment), ``per_treatment``, each a
        value with its CI; ``fraction_of_oracle`` and ``vs_best_single`` (difference) of the
        policy with CIs; ``regret`` (mean oracle minus received, over all, accepted and
        referred cases, with counts); ``model_regret`` (the same for the model's ``choice``,
        had it not referred: whether it refers the cases it would get wrong); ``coverage``; ``coverage_risk``.
    """
    p, c = _check(true_probs, choice, treatments)
    n, t = p.shape
    if n == 0:
        raise ValueError("no patients to score")
    acc = np.ones(n, dtype=bool) if accepted is None else np.asarray(accepted, dtype=bool)
    if acc.shape != (n,):
        raise ValueError(f"accepted must hold one flag per patient ({n}); got shape {acc.shape}")
    if fallback is not None and not 0 <= int(fallback) < t:
        raise ValueError(f"fallback must be a treatment index 0..{t - 1}; got {fallback}")
    given = np.where(acc, c, c if fallback is None else int(fallback))
    rows = np.arange(n)
    got, model_all, best = p[rows, given], p[rows, c], p.max(axis=1)
    regret = best - got
    single = int(np.argmax(p.mean(axis=0)))

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    b_policy, b_oracle = got[idx].mean(axis=1), best[idx].mean(axis=1)
    b_single = p[:, single][idx].mean(axis=1)
    b_model = model_all[idx].mean(axis=1)
    b_each = np.stack([p[:, k][idx].mean(axis=1) for k in range(t)], axis=1)

    def value(x: np.ndarray, boot: np.ndarray) -> dict[str, Any]:
        return {"value": _r(x.mean()), "ci": _ci(boot, level)}

    model_gap = best - model_all

    def part(m: np.ndarray, gap: np.ndarray = regret) -> dict[str, Any]:
        if not m.any():
            return {"n": 0, "mean": None, "ci": None}
        r = gap[m]
        boot = r[rng.integers(0, len(r), size=(n_boot, len(r)))].mean(axis=1)
        return {"n": int(m.sum()), "mean": _r(r.mean()), "ci": _ci(boot, level)}

    out: dict[str, Any] = {
        "n": n,
        "treatments": list(treatments),
        "policy": value(got, b_policy),
        "model_all": value(model_all, b_model),
        "oracle": value(best, b_oracle),
        "best_single": {"treatment": treatments[single], **value(p[:, single], b_single)},
        "per_treatment": {name: value(p[:, k], b_each[:, k]) for k, name in enumerate(treatments)},
        "fraction_of_oracle": {"value": _r(got.mean() / best.mean()) if best.mean() > 0 else None,
                               "ci": _ci(b_policy / np.maximum(b_oracle, 1e-12), level)},
        "vs_best_single": {"difference": _r(got.mean() - p[:, single].mean()), "ci": _ci(b_policy - b_single, level)},
        "regret": {"all": part(np.ones(n, dtype=bool)), "accepted": part(acc), "referred": part(~acc)},
        "model_regret": {"all": part(np.ones(n, dtype=bool), model_gap), "accepted": part(acc, model_gap),
                         "referred": part(~acc, model_gap)},
        "coverage": _r(acc.mean()),
        "fallback": None if fallback is None else treatments[int(fallback)],
        "correct": _r((p[rows, c] >= best - 1e-12).mean()),
    }
    if confidence is not None:
        conf = np.asarray(confidence, dtype=float)
        if conf.shape != (n,):
            raise ValueError(f"confidence must hold one value per patient ({n}); got shape {conf.shape}")
        order = np.argsort(-conf, kind="stable")
        model_regret = (best - model_all)[order]
        cum = np.cumsum(model_regret) / np.arange(1, n + 1)
        out["coverage_risk"] = [{"coverage": _r(k / n), "regret": _r(cum[k - 1])}
                                for k in sorted({max(1, int(round(q * n))) for q in np.linspace(0.1, 1.0, 10)})]
    return out


def pehe(pred_probs: np.ndarray, true_probs: np.ndarray, reference: int = 0) -> float:
    """Precision in estimating heterogeneous effects: the root mean squared error of the predicted
    effect of each treatment over ``reference``, averaged over the other treatments."""
    pp, tp = np.asarray(pred_probs, dtype=float), np.asarray(true_probs, dtype=float)
    if pp.shape != tp.shape or pp.ndim != 2 or pp.shape[1] < 2:
        raise ValueError(f"pred_probs and true_probs must be the same (patients, treatments >= 2) shape; "
                         f"got {pp.shape} and {tp.shape}")
    others = [k for k in range(pp.shape[1]) if k != reference]
    de = (pp[:, others] - pp[:, [reference]]) - (tp[:, others] - tp[:, [reference]])
    return float(np.sqrt((de ** 2).mean(axis=0)).mean())


def _uplift_curve(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve points: for the top k patients by ``score``, the responders among the treated
    minus the responders among the reference scaled to the treated count."""
    order = np.argsort(-score, kind="stable")
    tr, yy = treated[order], y[order]
    nt, nc = np.cumsum(tr), np.cumsum(~tr)
    yt, yc = np.cumsum(yy * tr), np.cumsum(yy * ~tr)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = yt - np.where(nc > 0, yc * nt / nc, 0.0)
    x = np.arange(1, len(score) + 1) / len(score)
    return np.concatenate([[0.0], x]), np.concatenate([[0.0], q])


def uplift_report(pred_probs: np.ndarray, treatment: np.ndarray, outcome: np.ndarray, *,
                  treatments: Sequence[str], reference: int = 0, points: int = 11) -> dict[str, Any]:
    """Qini / AUUC of each treatment against ``reference`` on factual outcomes.

    For each other treatment, the patients who received it or the reference are ranked by the
    predicted benefit ``p[:, k] - p[:, reference]``.

    Returns:
        ``{treatment: {"n", "qini" (area between the Qini curve and the random line, over n),
        "auuc" (area under the Qini curve, over n), "curve": [{"fraction", "gain"}, ...]}}``
        plus ``reference`` and ``randomised_assumption``.
    """
    pp = np.asarray(pred_probs, dtype=float)
    tr = np.asarray(treatment)
    y = np.asarray(outcome, dtype=float)
    if pp.ndim != 2 or pp.shape[1] != len(treatments) or tr.shape != (len(pp),) or y.shape != (len(pp),):
        raise ValueError(f"pred_probs (n, {len(treatments)}), treatment (n,) and outcome (n,) must agree; got "
                         f"{pp.shape}, {tr.shape}, {y.shape}")
    out: dict[str, Any] = {"reference": treatments[reference],
                           "randomised_assumption": "unbiased only when the treatment was assigned at random"}
    for k, name in enumerate(treatments):
        if k == reference:
            continue
        m = (tr == k) | (tr == reference)
        if (tr[m] == k).sum() == 0 or (tr[m] == reference).sum() == 0:
            out[name] = {"n": int(m.sum()), "qini": None, "auuc": None, "curve": []}
            continue
        x, q = _uplift_curve(pp[m, k] - pp[m, reference], tr[m] == k, y[m])
        n = int(m.sum())
        auuc = float(np.trapezoid(q, x)) / n
        random_line = float(q[-1]) / 2 / n  # the straight line from 0 to the total gain
        grid = np.linspace(0, 1, points)
        out[name] = {"n": n, "qini": _r(auuc - random_line), "auuc": _r(auuc),
                     "curve": [{"fraction": _r(g), "gain": _r(np.interp(g, x, q) / n)} for g in grid]}
    return out


def feature_attribution(pred_probs: np.ndarray, true_probs: np.ndarray,
                        features: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Which features are prognostic and which predictive, in the model and in the truth.

    For each feature: ``prognostic`` is the absolute Spearman correlation of the feature with the
    mean probability over treatments; ``predictive`` the largest absolute Spearman correlation
    with a treatment's effect (its probability minus the mean over treatments). Each is given
    for the model's predictions and for the true probabilities, with the role the larger of the
    two names (``prognostic``, ``predictive``, or ``neither`` below 0.1).
    """
    from scipy.stats import spearmanr

    pp, tp = np.asarray(pred_probs, dtype=float), np.asarray(true_probs, dtype=float)
    if pp.shape != tp.shape or pp.ndim != 2:
        raise ValueError(f"pred_probs and true_probs must have the same (patients, treatments) shape; got "
                         f"{pp.shape} and {tp.shape}")

    def assoc(p: np.ndarray, f: np.ndarray) -> dict[str, Any]:
        def rho(a: np.ndarray) -> float:
            if np.ptp(a) == 0 or np.ptp(f) == 0:
                return 0.0
            return abs(float(spearmanr(f, a).statistic))

        prog = rho(p.mean(axis=1))
        pred = max(rho(p[:, k] - p.mean(axis=1)) for k in range(p.shape[1]))
        role = "neither" if max(prog, pred) < 0.1 else ("prognostic" if prog >= pred else "predictive")
        return {"prognostic": _r(prog), "predictive": _r(pred), "role": role}

    out: dict[str, Any] = {}
    for name, values in features.items():
        f = np.asarray(values, dtype=float)
        if f.shape != (len(pp),):
            raise ValueError(f"feature {name!r} must hold one value per patient ({len(pp)}); got shape {f.shape}")
        model, truth = assoc(pp, f), assoc(tp, f)
        out[name] = {"model": model, "truth": truth, "agrees": model["role"] == truth["role"]}
    return out
