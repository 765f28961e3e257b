"""Plots as PNG files or base64 strings (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_learning_curves", "roc_png", "pr_png", "confusion_png", "reliability_png", "froc_png", "response_png",
           "fig_to_base64"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_to_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_learning_curves(history: Sequence[dict[str, Any]], path: Path, *, monitor: str = "val_auc") -> Path:
    """Loss (train and validation) and the monitored metric per epoch."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    if history and "val_loss" in history[0]:
        a.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    a.set_xlabel("epoch")
    a.legend()
    a.grid(alpha=0.3)
    if history and monitor in history[0]:
        b.plot(epochs, [h[monitor] for h in history], color="C2")
        b.set_title(monitor)
    b.set_xlabel("epoch")
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _unit_square(fig, ax, xlabel: str, ylabel: str, *, legend: str) -> str:
    """Finish a plot of two rates (both axes 0 to 1) and return it as base64 PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc=legend, fontsize=8)
    ax.grid(alpha=0.3)
    return fig_to_base64(fig)


def roc_png(fpr: Sequence[float], tpr: Sequence[float], *, auc: float | None, ci: Sequence[float] | None,
            point: tuple[float, float] | None = None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    label = f"AUC {auc:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "") if auc is not None else "ROC"
    ax.plot(fpr, tpr, lw=2, label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", color="C3", label="operating point")
    return _unit_square(fig, ax, "1 - specificity", "sensitivity", legend="lower right")


def pr_png(recall: Sequence[float], precision: Sequence[float], *, average_precision: float | None,
           prevalence: float | None = None, point: tuple[float, float] | None = None) -> str:
    """Precision-recall curve with the average precision, the no-skill line (the prevalence) and
    the operating point, as base64 PNG."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    label = f"AP {average_precision:.3f}" if average_precision is not None else "PR"
    ax.step(recall, precision, where="post", lw=2, label=label)
    if prevalence is not None:
        ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"no skill (prevalence {prevalence:.2f})")
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", color="C3", label="operating point")
    return _unit_square(fig, ax, "recall (sensitivity)", "precision (PPV)", legend="lower left")


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    import numpy as np

    plt = _plt()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.9 * len(labels)))
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig_to_base64(fig)


def reliability_png(bins: Sequence[dict[str, Any]], *, ece: float | None, brier: float | None) -> str:
    """Reliability diagram: observed positive rate against mean predicted probability per bin."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    xs = [b["p_mean"] for b in bins]
    ys = [b["y_rate"] for b in bins]
    sizes = [20 + 180 * b["n"] / max(1, max(bb["n"] for bb in bins)) for b in bins]
    ax.plot(xs, ys, "-", color="C0", lw=1)
    ax.scatter(xs, ys, s=sizes, color="C0", label=f"ECE {ece:.3f}, Brier {brier:.3f}" if ece is not None else None)
    return _unit_square(fig, ax, "mean predicted probability", "observed frequency", legend="upper left")


def froc_png(fps: Sequence[float], sensitivity: Sequence[float], *, fp_rates: Sequence[float],
             sensitivities: Sequence[float], cpm: float, ci: Sequence[Sequence[float]] | None = None,
             title: str = "FROC") -> str:
    """FROC curve (sensitivity against average FPs per scan, log2 x-axis from 1/8 to 8) as base64 PNG.

    The curve is drawn as linearly interpolated between its points (as it is read), the seven
    operating points are marked, with their bootstrap intervals as error bars when ``ci`` is
    given, and the CPM is in the title.
    """
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    lo, hi = min(fp_rates), max(fp_rates)
    xs = np.geomspace(lo / 2, hi * 2, 400)
    ax.plot(xs, np.interp(xs, fps, sensitivity), lw=2, color="C0", label="FROC")
    ys = np.asarray(sensitivities, dtype=float)
    if ci is not None:
        band = np.asarray(ci, dtype=float)
        ax.errorbar(fp_rates, ys, yerr=[ys - band[:, 0], band[:, 1] - ys], fmt="none", ecolor="C3", capsize=3,
                    label="95% CI")
    ax.plot(fp_rates, ys, "o", color="C3", label="operating points")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(fp_rates), [f"{r:g}" for r in fp_rates])
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("average false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{title} (CPM {cpm:.3f})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig_to_base64(fig)


def response_png(when: Sequence[Any], values: Sequence[float], path: Path, *, ylabel: str, baseline: float,
                 nadir: float, progression_at: float, partial_at: float, progression_label: str, partial_label: str,
                 title: str, subtitle: str = "", value_labels: Sequence[str] | None = None) -> Path:
    """Lesion size over time with the response thresholds, written as a PNG.

    Args:
        when: the time points (datetimes, oldest first).
        values: the size at each (a sum of diameters, of products, or a volume).
        ylabel: the size's name and unit.
        baseline, nadir: the reference values, drawn as thin lines.
        progression_at: the size from which the latest time point is progression (from the nadir).
        partial_at: the size up to which it is partial response (from baseline).
        progression_label, partial_label: legend texts naming the thresholds.
        title, subtitle: the category, and the suggestion.
        value_labels: the text written by each point (default: the value to 3 significant digits).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(list(when), list(values), "o-", color="C0", lw=2, label=ylabel)
    for x, y, text in zip(when, values, value_labels or [f"{v:.3g}" for v in values]):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.axhline(progression_at, color="C3", ls="--", lw=1.2, label=progression_label)
    ax.axhline(partial_at, color="C2", ls="--", lw=1.2, label=partial_label)
    ax.axhline(baseline, color="grey", ls=":", lw=1, label="baseline")
    if nadir != baseline:
        ax.axhline(nadir, color="grey", ls="-.", lw=1, label="nadir")
    top = max([*values, progression_at])
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    if len(when) == 1:
        import datetime as dt

        ax.set_xlim(when[0] - dt.timedelta(days=30), when[0] + dt.timedelta(days=30))
    ax.set_xticks(list(when), [f"{w:%Y-%m-%d}" for w in when])
    ax.set_ylabel(ylabel)
    ax.set_xlabel("study date")
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
