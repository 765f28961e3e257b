"""Classification metrics with honest uncertainty.

ROC AUC comes with a stratified bootstrap confidence interval (cases resampled within each
class, so every resample keeps both classes); proportions (accuracy, sensitivity,
specificity, PPV, NPV) come with Wilson score intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["binary_report", "multiclass_report", "multilabel_report", "bootstrap_auc_ci", "wilson_ci", "calibration",
           "threshold_table", "subgroup_report", "subgroups", "THRESHOLD_GRID"]

#: The fixed thresholds of :func:`threshold_table` (the model's own operating point is added).
THRESHOLD_GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def wilson_ci(k: int, n: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval for k successes in n trials (None when n is 0)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def calibration(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """How far predicted probabilities are from observed frequencies.

    Returns:
        ``brier`` (mean squared error of p), ``ece`` (expected calibration error over
        ``n_bins`` equal-width bins, weighted by bin size) and ``bins`` (mean p, observed rate
        and count per non-empty bin, for a reliability diagram).
    """
    y = np.asarray(y, dtype=float).ravel()
    p = np.clip(np.asarray(p, dtype=float).ravel(), 0, 1)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            pm, yr = float(p[m].mean()), float(y[m].mean())
            ece += m.mean() * abs(pm - yr)
            bins.append({"p_mean": round(pm, 4), "y_rate": round(yr, 4), "n": int(m.sum())})
    return {"brier": round(float(np.mean((p - y) ** 2)), 4), "ece": round(float(ece), 4), "bins": bins}


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def bootstrap_auc_ci(y: np.ndarray, s: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> list[float]:
    """Percentile CI of the ROC AUC from a class-stratified bootstrap.

    Uses the Mann-Whitney form of the AUC on ranks, vectorised over resamples.
    """
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    n1, n0 = len(pos), len(neg)
    aucs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (n1 + n0))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        bp = pos[rng.integers(0, n1, size=(m, n1))]
        bn = neg[rng.integers(0, n0, size=(m, n0))]
        ranks = rankdata(np.concatenate([bp, bn], axis=1), axis=1)
        aucs[start:start + m] = (ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    alpha = (1 - level) / 2
    return [round(float(np.quantile(aucs, alpha)), 4), round(float(np.quantile(aucs, 1 - alpha)), 4)]


def _counts(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """``(TP, TN, FP, FN)`` of 0/1 labels ``y`` when ``s >= threshold`` is called positive."""
    pred = s >= threshold
    return (int(np.sum(pred & (y == 1))), int(np.sum(~pred & (y == 0))), int(np.sum(pred & (y == 0))),
            int(np.sum(~pred & (y == 1))))


def _ratio(a: int, b: int) -> float | None:
    """``a / b`` to 4 decimals; None when ``b`` is 0 (undefined, not 0)."""
    return round(a / b, 4) if b else None


def binary_report(y_true: np.ndarray, score: np.ndarray, threshold: float, *, n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0, roc_points: bool = True) -> dict[str, Any]:
    """All binary metrics at ``threshold`` (positive when ``score >= threshold``).

    Args:
        y_true: 0/1 labels, shape (N,).
        score: probability of the positive class, shape (N,).
        threshold: the operating threshold (chosen on validation data, never on this split).

    Returns:
        A JSON-ready dict: ``auc``, ``auc_ci95``, ``accuracy``, ``sensitivity``,
        ``specificity``, ``ppv``, ``npv``, ``f1`` (each proportion with a ``*_ci95``),
        ``confusion_matrix`` ([[TN, FP], [FN, TP]]), ``threshold``, ``n``, ``n_positive``,
        ``n_negative`` and the ROC curve.
    """
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(score, dtype=float).ravel()
    tp, tn, fp, fn = _counts(y, s, threshold)
    n = len(y)
    both = 0 < y.sum() < n
    out: dict[str, Any] = {
        "n": n,
        "n_positive": int(y.sum()),
        "n_negative": int(n - y.sum()),
        "threshold": round(float(threshold), 6),
        "auc": round(_auc(y, s), 4) if both else None,
        "auc_ci95": bootstrap_auc_ci(y, s, n_boot=n_boot, level=level, seed=seed) if both else None,
        "accuracy": _ratio(tp + tn, n),
        "accuracy_ci95": wilson_ci(tp + tn, n, level),
        "sensitivity": _ratio(tp, tp + fn),
        "sensitivity_ci95": wilson_ci(tp, tp + fn, level),
        "specificity": _ratio(tn, tn + fp),
        "specificity_ci95": wilson_ci(tn, tn + fp, level),
        "ppv": _ratio(tp, tp + fp),
        "ppv_ci95": wilson_ci(tp, tp + fp, level),
        "npv": _ratio(tn, tn + fn),
        "npv_ci95": wilson_ci(tn, tn + fn, level),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
    cal = calibration(y, s)
    out.update({"brier": cal["brier"], "ece": cal["ece"], "calibration_bins": cal["bins"]})
    if roc_points and both:
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(y, s)
        out["roc"] = {"fpr": np.round(fpr, 5).tolist(), "tpr": np.round(tpr, 5).tolist()}
    if both:
        from sklearn.metrics import average_precision_score, precision_recall_curve

        out["average_precision"] = round(float(average_precision_score(y, s)), 4)
        out["prevalence"] = round(float(y.mean()), 4)
        if roc_points:
            precision, recall, _ = precision_recall_curve(y, s)
            out["pr"] = {"precision": np.round(precision, 5).tolist(), "recall": np.round(recall, 5).tolist()}
    return out




def threshold_table(y_true: np.ndarray, score: np.ndarray, operating: float | None = None,
                    grid: tuple[float, ...] = THRESHOLD_GRID) -> list[dict[str, Any]]:
    """Sensitivity, specificity, PPV and NPV at each candidate threshold: the fixed ``grid`` and
    the model's ``operating`` threshold (marked ``operating: True``), in increasing order.

    The table describes this split; choosing a new operating point from it on a test split
    would be fitting to the test data (choose it on validation data: ``medsight calibrate``).
    """
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(score, dtype=float).ravel()
    points = sorted({round(float(t), 6) for t in grid} | ({round(float(operating), 6)} if operating is not None
                                                          else set()))
    rows = []
    for t in points:
        tp, tn, fp, fn = _counts(y, s, t)
        rows.append({"threshold": t, "operating": operating is not None and t == round(float(operating), 6),
                     "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
                     "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn), "called_positive": tp + fp})
    return rows


#: The metrics of each subgroup row (a binary report's, on the group's cases).
SUBGROUP_METRICS = ("auc", "auc_ci95", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95")

#: Covariates read as an age (binned into decades for the subgroup tables).
AGE_COLUMNS = ("age", "age_years", "patient_age", "patientage")
MAX_GROUPS = 12


def _age_band(v: Any) -> str | None:
    try:
        a = float(str(v).rstrip("Yy"))  # DICOM AgeString "065Y" as well as plain numbers
    except ValueError:
        return None
    if not np.isfinite(a) or a < 0:
        return None
    lo = int(a // 10) * 10
    return f"{lo}-{lo + 9}" if lo < 90 else "90+"


def subgroups(covariates: list[dict[str, Any]]) -> tuple[dict[str, list[str | None]], dict[str, str]]:
    """The subgroup columns of a split's covariates, one value (or None) per case.

    A column is used when it is categorical with 2 to ``MAX_GROUPS`` values (sex, site, scanner,
    view), or an age (``AGE_COLUMNS``), binned into decades. Continuous columns and identifiers
    are not: the second return value says why each unused column was left out.
    """
    names = sorted({k for c in covariates for k in c})
    used: dict[str, list[str | None]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        raw = [c.get(name) for c in covariates]
        if name.lower() in AGE_COLUMNS:
            used[f"{name} (decade)"] = [None if v is None else _age_band(v) for v in raw]
            continue
        values = {str(v) for v in raw if v is not None}
        if len(values) < 2:
            skipped[name] = "one value"
        elif len(values) > MAX_GROUPS:
            skipped[name] = f"{len(values)} distinct values (continuous or an identifier)"
        else:
            used[name] = [None if v is None else str(v) for v in raw]
    return used, skipped


def subgroup_report(y_true: np.ndarray, score: np.ndarray, threshold: float, groups: dict[str, list[str | None]],
                    *, n_boot: int = 500, level: float = 0.95, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """AUC (bootstrap CI where the group holds both classes), sensitivity and specificity (Wilson
    CIs) at the operating ``threshold``, per value of each column of ``groups`` (see
    :func:`subgroups`); cases without a value are the group ``(missing)``."""
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(score, dtype=float).ravel()
    out: dict[str, list[dict[str, Any]]] = {}
    for column, values in groups.items():
        v = np.array(["(missing)" if x is None else x for x in values], dtype=object)
        rows = []
        for g in sorted(set(v.tolist()), key=lambda x: (x == "(missing)", x)):
            m = v == g
            r = binary_report(y[m], s[m], threshold, n_boot=n_boot, level=level, seed=seed, roc_points=False)
            rows.append({"group": g, "n": r["n"], "n_positive": r["n_positive"],
                         **{k: r[k] for k in SUBGROUP_METRICS}})
        out[column] = rows
    return out


def multiclass_report(y_true: np.ndarray, probs: np.ndarray, labels: list[str], *, n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Accuracy, one-vs-rest AUC per class and macro AUC (bootstrap CI), confusion matrix."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probs, dtype=float)
    pred = p.argmax(1)
    k = p.shape[1]
    per_class = {}
    for c in range(k):
        yc = (y == c).astype(int)
        tp = int(np.sum((pred == c) & (yc == 1)))
        fn = int(np.sum((pred != c) & (yc == 1)))
        tn = int(np.sum((pred != c) & (yc == 0)))
        fp = int(np.sum((pred == c) & (yc == 0)))
        per_class[labels[c]] = {
            "auc": round(float(roc_auc_score(yc, p[:, c])), 4) if 0 < yc.sum() < len(yc) else None,
            "sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
            "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
            "n": int(yc.sum()),
        }
    present = [c for c in range(k) if 0 < np.sum(y == c) < len(y)]
    macro = None
    ci = None
    if len(present) == k:
        macro = round(float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k)))), 4)
        rng = np.random.default_rng(seed)
        vals = []
        idx_by_class = [np.flatnonzero(y == c) for c in range(k)]
        for _ in range(min(n_boot, 500)):
            idx = np.concatenate([rng.choice(ix, size=len(ix)) for ix in idx_by_class])
            vals.append(roc_auc_score(y[idx], p[idx], multi_class="ovr", average="macro", labels=list(range(k))))
        a = (1 - level) / 2
        ci = [round(float(np.quantile(vals, a)), 4), round(float(np.quantile(vals, 1 - a)), 4)]
    correct = int(np.sum(pred == y))
    return {
        "n": len(y),
        "auc": macro,
        "auc_ci95": ci,
        "accuracy": round(correct / len(y), 4),
        "accuracy_ci95": wilson_ci(correct, len(y), level),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(k))).tolist(),
    }


def multilabel_report(y_true: np.ndarray, probs: np.ndarray, labels: list[str], thresholds: list[float], *,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """One binary report per label (each at its own threshold) and the mean AUC."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=float)
    per = {labels[j]: binary_report(y[:, j], p[:, j], thresholds[j], n_boot=n_boot, level=level, seed=seed,
                                    roc_points=False) for j in range(p.shape[1])}
    aucs = [r["auc"] for r in per.values() if r["auc"] is not None]
    return {"n": len(y), "auc": round(float(np.mean(aucs)), 4) if aucs else None, "per_label": per}
