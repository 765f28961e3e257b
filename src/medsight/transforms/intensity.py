"""Intensity helpers shared by preprocessing: CT windows, mapping to [0, 1], and per-channel
normalisation (z-score, percentile, CT clip-and-standardise) as nnU-Net plans it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.errors import ConfigError

__all__ = ["CT_WINDOWS", "ct_window_bounds", "to_unit_range", "normalize_channels", "mean_sd"]

#: CT window presets as (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
}


def ct_window_bounds(name: str) -> tuple[float, float]:
    """(lower, upper) HU of a named window: ``lung``, ``mediastinum``, ``bone``, ``brain``, ``abdomen``."""
    try:
        level, width = CT_WINDOWS[name]
    except KeyError:
        raise ConfigError(f"unknown CT window {name!r}; expected one of {', '.join(CT_WINDOWS)}") from None
    return level - width / 2, level + width / 2


def to_unit_range(arr: np.ndarray, *, mode: str, a_min: float = 0.0, a_max: float = 255.0,
                  lower_percentile: float = 0.5, upper_percentile: float = 99.5,
                  window: tuple[float, float] | None = None) -> np.ndarray:
    """Map intensities to about [0, 1], per image, as float32.

    Modes:
        ``range``: ``(x - a_min) / (a_max - a_min)``, clipped; for sources whose values
            exceed that range (a 12-bit DICOM given to a model trained on 8-bit images), the
            DICOM window when known, else the percentile mapping, is used instead.
        ``percentile``: the given percentiles map to 0 and 1, clipped.
        ``minmax``: the image's own minimum and maximum map to 0 and 1.
        ``ct_window``: ``window`` = (lower, upper) HU maps to 0 and 1, clipped.
        ``zscore``/``none``: unchanged here (z-scoring happens after resizing).
    """
    # one new float32 array, changed in place: a big image costs 4 bytes a pixel here, not 3 float64 temporaries
    if mode == "range":
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= a_min - 1e-6 and hi <= a_max + 1e-6:
            return _clipped(arr, a_min, a_max)
        if window is not None:
            return _clipped(arr, window[0], window[1])
        mode = "percentile"
    if mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(arr, [lower_percentile, upper_percentile]))
        return _clipped(arr, lo, hi) if hi > lo else np.zeros(arr.shape, np.float32)
    if mode == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
        return _scaled(arr, lo, hi) if hi > lo else np.zeros(arr.shape, np.float32)
    if mode == "ct_window":
        if window is None:
            raise ConfigError("intensity 'ct_window' needs preprocessing.ct_window (lung, mediastinum, bone, brain)")
        return _clipped(arr, window[0], window[1])
    return arr.astype(np.float32, copy=False)


def _scaled(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(arr - lo) / (hi - lo)`` as a new float32 array."""
    out = np.subtract(arr, np.float32(lo), dtype=np.float32)
    out /= np.float32(hi - lo)
    return out


def _clipped(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """:func:`_scaled`, clipped to [0, 1] in place."""
    out = _scaled(arr, lo, hi)
    return np.clip(out, 0, 1, out=out)


def mean_sd(x: np.ndarray, rows: int = 1 << 22) -> tuple[float, float]:
    """Mean and standard deviation of ``x`` in float64, without a float64 copy of it."""
    flat = x.reshape(-1)
    n = flat.size
    total = sum(float(flat[i:i + rows].sum(dtype=np.float64)) for i in range(0, n, rows))
    mean = total / max(n, 1)
    sq = sum(float(np.square(flat[i:i + rows] - mean, dtype=np.float64).sum()) for i in range(0, n, rows))
    return mean, (sq / max(n, 1)) ** 0.5


def normalize_channels(arr: np.ndarray, rules: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Normalise each channel of ``arr`` (``(C, *spatial)``) by its rule, as float32.

    Rules (one per channel, ``{"scheme": ...}``):
        ``zscore``: subtract the image's mean, divide by its standard deviation.
        ``percentile``: clip to the image's 0.5 and 99.5 percentiles, then z-score.
        ``ct``: clip to ``lower``..``upper`` (HU), subtract ``mean``, divide by ``sd`` (the
            training set's foreground statistics).

    Works in place on one float32 copy of the image (statistics are accumulated slab by slab
    in float64), so a large CT costs one extra volume of memory, not three.
    """
    out = np.empty(arr.shape, np.float32)
    for c, rule in enumerate(rules):
        x = out[c]
        x[...] = arr[c]
        scheme = rule.get("scheme", "zscore")
        if scheme == "ct":
            np.clip(x, rule["lower"], rule["upper"], out=x)
            x -= np.float32(rule["mean"])
            x /= np.float32(rule["sd"])
            continue
        if scheme == "percentile":
            lo, hi = np.percentile(x, [0.5, 99.5])
            np.clip(x, lo, hi, out=x)
        mean, sd = mean_sd(x)
        x -= np.float32(mean)
        x /= np.float32(max(sd, 1e-8))
    return out
