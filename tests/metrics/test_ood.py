"""The training fingerprint: Mahalanobis distances, and the refer threshold from held-out data."""

import numpy as np
import pytest

from medsight.metrics.ood import distances, fit_fingerprint


def test_threshold_is_the_validation_quantile_and_far_inputs_exceed_it():
    rng = np.random.default_rng(0)
    train, val = rng.normal(0, 1, (2000, 8)), rng.normal(0, 1, (500, 8))
    fp = fit_fingerprint(train, val, quantile=0.95)
    assert np.mean(distances(val, fp) > fp["threshold"]) == pytest.approx(0.05, abs=0.01)
    assert np.mean(distances(rng.normal(0, 1, (500, 8)), fp) > fp["threshold"]) < 0.1
    assert (distances(rng.normal(4, 1, (100, 8)), fp) > fp["threshold"]).all()
    assert fp["features"] == 8 and fp["n_train"] == 2000


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one width"):
        fit_fingerprint(np.zeros((5, 3)), np.zeros((2, 4)))
