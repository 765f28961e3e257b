"""Policy value, regret, uplift and attribution on small cohorts whose answers are known
(synthetic numbers, worked by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.metrics.treatment import feature_attribution, pehe, policy_report, policy_value, uplift_report

T = ["A", "B"]


def test_policy_value_oracle_best_single_and_regret_by_hand():
    # patient 0 responds best to A, 1 and 2 to B; A is no one's single best here
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.6]])
    choice = np.array([0, 1, 0])  # wrong on patient 2
    r = policy_report(p, choice, treatments=T, n_boot=200)
    assert r["oracle"]["value"] == pytest.approx((0.9 + 0.8 + 0.6) / 3, abs=1e-4)
    assert r["policy"]["value"] == pytest.approx((0.9 + 0.8 + 0.3) / 3, abs=1e-4)
    assert r["best_single"]["treatment"] == "B"
    assert r["best_single"]["value"] == pytest.approx(0.5, abs=1e-4)
    assert r["fraction_of_oracle"]["value"] == pytest.approx(2.0 / 2.3, abs=1e-4)
    assert r["vs_best_single"]["difference"] == pytest.approx(2.0 / 3 - 0.5, abs=1e-4)
    assert r["regret"]["all"]["mean"] == pytest.approx(0.1, abs=1e-4)
    assert r["correct"] == pytest.approx(2 / 3, abs=1e-4)
    lo, hi = r["policy"]["ci"]
    assert lo <= r["policy"]["value"] <= hi
    assert policy_value(p, choice) == pytest.approx(2.0 / 3)


def test_referred_cases_get_the_fallback_and_regret_splits_accepted_from_referred():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.6], [0.5, 0.5]])
    choice = np.array([0, 1, 0, 0])
    accepted = np.array([True, True, False, False])
    r = policy_report(p, choice, treatments=T, accepted=accepted, fallback=1, n_boot=200,
                      confidence=np.array([0.9, 0.8, 0.1, 0.2]))
    # referred patients 2 and 3 get B: 0.6 and 0.5
    assert r["policy"]["value"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.5) / 4, abs=1e-4)
    assert r["model_all"]["value"] == pytest.approx((0.9 + 0.8 + 0.3 + 0.5) / 4, abs=1e-4)
    assert r["regret"]["accepted"] == {"n": 2, "mean": 0.0, "ci": [0.0, 0.0]}
    assert r["regret"]["referred"]["n"] == 2 and r["regret"]["referred"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert r["coverage"] == 0.5 and r["fallback"] == "B"
    # the coverage-risk curve ranks by confidence: the surest half has no regret, all has 0.3/4
    curve = {c["coverage"]: c["regret"] for c in r["coverage_risk"]}
    assert curve[0.5] == 0.0 and curve[1.0] == pytest.approx(0.075, abs=1e-4)


def test_bad_shapes_are_named():
    p = np.array([[0.9, 0.1]])
    with pytest.raises(ValueError, match="2 treatments"):
        policy_report(np.array([[0.9, 0.1, 0.0]]), np.array([0]), treatments=T)
    with pytest.raises(ValueError, match="treatment indices"):
        policy_report(p, np.array([2]), treatments=T)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy_report(np.array([[1.5, 0.1]]), np.array([0]), treatments=T)


def test_pehe_is_zero_for_the_truth_and_grows_with_effect_error():
    tp = np.array([[0.2, 0.6], [0.5, 0.4]])
    assert pehe(tp, tp) == 0.0
    # predicted effects 0.4 and -0.1 off by +0.1 and -0.1: RMSE 0.1
    assert pehe(np.array([[0.2, 0.7], [0.5, 0.3]]), tp) == pytest.approx(0.1)


def test_uplift_ranks_the_responders_to_treatment_first():
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.uniform(size=n)
    treated = rng.integers(0, 2, size=n)  # randomised
    p_true = np.where(treated == 1, x, 0.5)  # B helps where x > 0.5, harms below
    y = (rng.uniform(size=n) < p_true).astype(int)
    good = np.stack([np.full(n, 0.5), x], axis=1)
    bad = np.stack([np.full(n, 0.5), 1 - x], axis=1)
    r_good = uplift_report(good, treated, y, treatments=T)["B"]
    r_bad = uplift_report(bad, treated, y, treatments=T)["B"]
    assert r_good["qini"] > 0.02 > -0.02 > r_bad["qini"]
    assert r_good["curve"][0] == {"fraction": 0.0, "gain": 0.0}


def test_attribution_tells_prognostic_from_predictive_features():
    rng = np.random.default_rng(1)
    n = 2000
    size, texture, noise = rng.uniform(size=(3, n))
    base = 0.8 - 0.5 * size  # size lowers response under both
    tp = np.stack([base, base + 0.3 * (texture - 0.5)], axis=1)  # texture decides between A and B
    blind = np.stack([base, base], axis=1)  # a model that learned only the prognosis
    r = feature_attribution(tp, tp, {"size": size, "texture": texture, "noise": noise})
    assert r["size"]["truth"]["role"] == "prognostic" and r["texture"]["truth"]["role"] == "predictive"
    assert r["noise"]["truth"]["role"] == "neither"
    r = feature_attribution(blind, tp, {"size": size, "texture": texture})
    assert r["size"]["agrees"] and not r["texture"]["agrees"]
