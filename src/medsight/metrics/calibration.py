"""Temperature scaling (Guo et al., 2017): one scalar ``T`` that divides a classifier's logits,
fitted on held-out data by minimising the negative log-likelihood.

It leaves the ranking of the scores (and so the AUC of a binary model) unchanged and makes the
probabilities mean what they say. The fitted ``T`` is stored in the saved model
(``manifest.temperature``) and applied at inference; the operating threshold is then chosen on
the calibrated scores.

Written here rather than taken from a library: the fit is a one-dimensional bounded minimisation
(SciPy); netcal and similar packages would add a dependency for these lines, and
scikit-learn's ``CalibratedClassifierCV`` wraps estimators, not stored logits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_temperature", "scaled_probabilities", "nll"]


def scaled_probabilities(logits: np.ndarray, temperature: float = 1.0, *, multilabel: bool = False) -> np.ndarray:
    """Softmax (or, ``multilabel``, sigmoid) of ``logits / temperature``; logits ``(N, K)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    if multilabel:
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0, *, multilabel: bool = False) -> float:
    """Mean negative log-likelihood of the targets ``y`` (class indices, or multi-hot) under the
    scaled probabilities."""
    p = np.clip(scaled_probabilities(logits, temperature, multilabel=multilabel), 1e-12, 1 - 1e-12)
    y = np.asarray(y)
    if multilabel:
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(y)), y.astype(int)]).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, *, multilabel: bool = False,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature in ``bounds`` that minimises the NLL of ``y`` (rounded to 4 decimals).

    Raises:
        ValueError: no samples, or logits and targets of different lengths.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) == 0 or len(logits) != len(y):
        raise ValueError(f"fit_temperature needs (N, K) logits and N targets; got {logits.shape} and {len(y)}")
    res = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t)), multilabel=multilabel),
                          bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    return round(float(np.exp(res.x)), 4)
