"""Temperature scaling: the fit recovers a known temperature, and it does not change the ranking."""

import numpy as np
import pytest

from medsight.metrics.calibration import fit_temperature, nll, scaled_probabilities


def test_fit_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 3))
    p = scaled_probabilities(logits, 2.5)
    y = np.array([rng.choice(3, p=row) for row in p])
    t = fit_temperature(logits, y)
    assert t == pytest.approx(2.5, rel=0.05)
    assert nll(logits, y, t) < nll(logits, y, 1.0)


def test_multilabel_and_ranking():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (5000, 2))
    y = (rng.uniform(size=logits.shape) < scaled_probabilities(logits, 0.5, multilabel=True)).astype(int)
    assert fit_temperature(logits, y, multilabel=True) == pytest.approx(0.5, rel=0.08)
    a, b = scaled_probabilities(logits, 1.0)[:, 1], scaled_probabilities(logits, 3.0)[:, 1]
    assert (np.argsort(a) == np.argsort(b)).all()  # a binary model's AUC is unchanged


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="needs"):
        fit_temperature(np.zeros((3, 2)), np.zeros(2))
