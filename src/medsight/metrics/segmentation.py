"""Segmentation metrics per case and label: Dice, HD95 (mm), surface Dice, volumes (mL).

Distances come from MONAI (``compute_hausdorff_distance``, ``compute_surface_dice``), with the
voxel spacing, so they are in mm. Each label is scored on the bounding box of prediction and
reference (plus one voxel of background), which gives the same values as the whole volume at a
fraction of the cost.

Conventions for empty structures (MONAI returns NaN for them):

* both empty: Dice 1, HD95 0 mm, surface Dice 1 (the structure is correctly absent);
* one empty: Dice 0, surface Dice 0, HD95 undefined (``None``; counted in ``n_undefined``
  and left out of the mean).

HD95 follows MONAI: the larger of the two directed 95th-percentile surface distances.

Example:
    >>> m = case_metrics(pred, ref, {1: "Anterior", 2: "Posterior"}, spacing=(1.0, 1.0, 1.0))  # doctest: +SKIP
    >>> m["Anterior"]["dice"]                                                                  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["case_metrics", "summarize", "bounding_box", "METRICS", "DEFAULT_TOLERANCE_MM"]

#: The per-label metrics of :func:`case_metrics`, in report order.
METRICS = ("dice", "hd95_mm", "surface_dice", "volume_ml", "volume_ref_ml", "volume_error_ml", "abs_volume_error_ml")
#: Surface Dice tolerance: surface points closer than this (mm) to the other surface count as agreeing.
DEFAULT_TOLERANCE_MM = 1.0


def bounding_box(m: np.ndarray) -> tuple[slice, ...]:
    """The smallest box (one slice per axis) holding every True of a non-empty boolean array."""
    idx = [np.flatnonzero(m.any(axis=tuple(j for j in range(m.ndim) if j != a))) for a in range(m.ndim)]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)


def _one_hot(m: np.ndarray):
    import torch

    t = torch.from_numpy(np.pad(m, 1))
    return torch.stack([~t, t])[None].float()


def case_metrics(pred: np.ndarray, ref: np.ndarray, labels: Mapping[int, str], spacing: Sequence[float], *,
                 tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict[str, dict[str, float | None]]:
    """Metrics of one case, per label.

    Args:
        pred: predicted label values, shape ``spatial`` (or ``(1, *spatial)``).
        ref: reference label values, same shape.
        labels: label value → name (background excluded).
        spacing: voxel spacing in mm, array axis order.
        tolerance_mm: surface Dice tolerance in mm.

    Returns:
        name → {dice, hd95_mm, surface_dice, volume_ml, volume_ref_ml, volume_error_ml
        (prediction − reference), abs_volume_error_ml}.

    Raises:
        ValueError: the arrays differ in shape (a programming error: callers check geometry).
    """
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.ndim == len(spacing) + 1:
        pred = pred[0]
    if ref.ndim == len(spacing) + 1:
        ref = ref[0]
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out: dict[str, dict[str, float | None]] = {}
    for value, name in labels.items():
        if value == 0:
            continue
        p, r = pred == value, ref == value
        np_, nr = int(p.sum()), int(r.sum())
        vol_p, vol_r = np_ * voxel_ml, nr * voxel_ml
        m: dict[str, float | None] = {"volume_ml": vol_p, "volume_ref_ml": vol_r, "volume_error_ml": vol_p - vol_r,
                                      "abs_volume_error_ml": abs(vol_p - vol_r)}
        if np_ == 0 and nr == 0:
            m.update(dice=1.0, hd95_mm=0.0, surface_dice=1.0)
        elif np_ == 0 or nr == 0:
            m.update(dice=0.0, hd95_mm=None, surface_dice=0.0)
        else:
            inter = int(np.count_nonzero(p & r))
            box = bounding_box(p | r)
            yp, yr = _one_hot(p[box]), _one_hot(r[box])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hd = float(compute_hausdorff_distance(yp, yr, percentile=95, spacing=list(spacing)).item())
                sd = float(compute_surface_dice(yp, yr, class_thresholds=[tolerance_mm], spacing=list(spacing)).item())
            m.update(dice=2.0 * inter / (np_ + nr), hd95_mm=hd, surface_dice=sd)
        out[name] = {k: (None if v is None else round(float(v), 6)) for k, v in m.items()}
    return out


def summarize(cases: Sequence[Mapping[str, Any]], names: Sequence[str],
              metrics: Sequence[str] = METRICS) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Mean, sd (ddof 1), median, min and max over cases, per label and metric.

    Args:
        cases: one mapping per case holding ``metrics`` → name → value (the ``cases`` entries
            of an evaluation).
        names: label names to summarise.

    Returns:
        name → metric → {mean, sd, median, min, max, n, n_undefined}; undefined values (None)
        are left out and counted.
    """
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name in names:
        out[name] = {}
        for metric in metrics:
            raw = [c.get(metric, {}).get(name) for c in cases]
            vals = np.array([v for v in raw if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
            n_undef = len(raw) - len(vals)
            if len(vals) == 0:
                out[name][metric] = {"mean": None, "sd": None, "median": None, "min": None, "max": None, "n": 0,
                                     "n_undefined": n_undef}
                continue
            out[name][metric] = {
                "mean": round(float(vals.mean()), 6),
                "sd": round(float(vals.std(ddof=1)), 6) if len(vals) > 1 else 0.0,
                "median": round(float(np.median(vals)), 6), "min": round(float(vals.min()), 6),
                "max": round(float(vals.max()), 6), "n": int(len(vals)), "n_undefined": n_undef,
            }
    return out
