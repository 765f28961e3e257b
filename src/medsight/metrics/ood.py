"""Distance of inputs from a model's training data, in the feature space of its penultimate layer.

A *fingerprint* holds the training features' mean and a Ledoit-Wolf (shrunk) precision matrix;
an input's Mahalanobis distance from it (Lee et al., 2018) is compared with the distance that a
quantile of held-out (validation) inputs stay under. Farther is "input unlike training data":
the prediction is referred. The fingerprint also keeps the training images' intensity
statistics, which the model card reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_fingerprint", "distances"]


def distances(features: np.ndarray, fingerprint: dict[str, Any]) -> np.ndarray:
    """Mahalanobis distances of the rows of ``features`` ``(N, D)`` from the fingerprint."""
    d = np.asarray(features, dtype=np.float64) - np.asarray(fingerprint["mean"], dtype=np.float64)
    prec = np.asarray(fingerprint["precision"], dtype=np.float64)
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, prec, d), 0.0))


def fit_fingerprint(train: np.ndarray, val: np.ndarray, *, quantile: float = 0.99) -> dict[str, Any]:
    """The fingerprint of ``train`` features, with the refer threshold at ``quantile`` of the
    ``val`` features' distances (held out: training distances are optimistic).

    Raises:
        ValueError: fewer than 2 training or 1 validation rows, or different widths.
    """
    from sklearn.covariance import LedoitWolf

    train, val = np.asarray(train, dtype=np.float64), np.asarray(val, dtype=np.float64)
    if train.ndim != 2 or len(train) < 2 or val.ndim != 2 or len(val) < 1 or train.shape[1] != val.shape[1]:
        raise ValueError(f"fit_fingerprint needs (N, D) train and val features of one width; got {train.shape} "
                         f"and {val.shape}")
    lw = LedoitWolf().fit(train)
    fp = {"mean": [round(float(v), 6) for v in lw.location_],
          "precision": [[round(float(v), 6) for v in row] for row in lw.precision_]}
    dv = distances(val, fp)
    fp.update({"threshold": round(float(np.quantile(dv, quantile)), 4), "quantile": quantile,
               "n_train": len(train), "n_val": len(val), "features": int(train.shape[1]),
               "val_distance_median": round(float(np.median(dv)), 4)})
    return fp
