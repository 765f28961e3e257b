"""Intensity helpers shared by preprocessing: CT windows and display mapping."""

from __future__ import annotations

import numpy as np

from medsight.errors import ConfigError

__all__ = ["CT_WINDOWS", "ct_window_bounds", "to_unit_range"]

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
