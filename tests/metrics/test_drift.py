"""The drift test (medsight.metrics.drift), on synthetic distributions."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.metrics.drift import check, reference


def _ref(rng, n=500):
    d = rng.normal(10, 1, n)
    s = rng.uniform(0, 1, n)
    return reference(distance=d, score=s, threshold=0.5, refer_threshold=float(np.quantile(d, 0.99)))


def _window(rng, n=50, d_mean=10.0, refer_p=None, score=None):
    d = rng.normal(d_mean, 1, n)
    s = rng.uniform(0, 1, n) if score is None else score
    refer = d > 12.33 if refer_p is None else rng.uniform(size=n) < refer_p
    return {"distance": d, "score": s, "refer": refer, "positive": s >= 0.5}


def test_the_reference_cuts_each_distribution_at_its_deciles(rng):
    ref = _ref(rng)
    for name in ("distance", "score"):
        b = ref["distributions"][name]
        assert len(b["edges"]) == 9 and b["edges"] == sorted(b["edges"])
        assert sum(b["shares"]) == pytest.approx(1.0, abs=1e-5)
        assert all(s == pytest.approx(0.1, abs=0.005) for s in b["shares"])
    assert ref["rates"]["refer"] == pytest.approx(0.01, abs=0.003)
    assert 0.4 < ref["rates"]["positive"] < 0.6


def test_saturated_scores_merge_their_edges_and_keep_the_shares_true(rng):
    s = np.r_[np.full(400, 0.999), rng.uniform(0, 1, 100)]
    ref = reference(distance=None, score=s, threshold=0.5, refer_threshold=None)
    b = ref["distributions"]["score"]
    assert len(b["edges"]) < 9  # repeated deciles are one edge
    assert b["shares"][-1] == pytest.approx(0.8, abs=0.01)  # the 400 saturated scores, in the top bin
    assert "distance" not in ref["distributions"] and "refer" not in ref["rates"]
    # the same saturated mix is no drift; all saturated is drift of the score distribution
    same = np.r_[np.full(40, 0.999), rng.uniform(0, 1, 10)]
    assert not check({"score": same}, ref, alarm_on=["score"]).drift
    assert check({"score": rng.uniform(0, 0.5, 50)}, ref, alarm_on=["score"]).drift


def test_windows_of_the_same_data_rarely_alarm(rng):
    ref = _ref(rng)
    alarms = sum(check(_window(rng), ref, alpha=0.01).drift for _ in range(300))
    assert alarms <= 6  # alpha 0.01 per check: about 3 expected


def test_inputs_far_from_training_data_alarm_on_distance_and_refer_rate(rng):
    ref = _ref(rng)
    c = check(_window(rng, d_mean=20.0), ref)
    assert c.drift
    assert c.tests["distance"]["drift"] and c.tests["refer"]["drift"]
    assert c.tests["refer"]["rate"] == 1.0 and c.tests["distance"]["psi"] > 1
    assert any(r.startswith("refer rate 1.00 against 0.01") for r in c.reasons)


def test_a_few_referrals_in_a_window_raise_the_alarm(rng):
    ref = _ref(rng)
    w = _window(rng, refer_p=0.0)
    w["refer"][:3] = True  # 3 of 50 against 1 % in validation: not yet
    assert not check(w, ref).tests["refer"]["drift"]
    w["refer"][:8] = True  # 8 of 50
    c = check(w, ref)
    assert c.tests["refer"]["drift"] and c.drift


def test_an_output_shift_is_reported_but_alarms_only_when_asked(rng):
    ref = _ref(rng)
    w = _window(rng, score=rng.uniform(0.9, 1.0, 50))  # every score high: positive rate 1.0
    c = check(w, ref)
    assert not c.drift
    assert c.tests["score"]["drift"] and c.tests["positive"]["drift"]
    assert not c.tests["score"]["alarms"]
    assert any("not an alarm by itself" in r for r in c.reasons)
    assert check(w, ref, alarm_on=["score", "positive"]).drift


def test_a_significant_but_small_shift_does_not_alarm(rng):
    ref = _ref(rng)
    w = _window(rng, n=5000, d_mean=10.15)  # a large window: significant, yet PSI about 0.02
    assert check(w, ref, min_psi=0.0).tests["distance"]["drift"]
    t = check(w, ref).tests["distance"]
    assert t["p"] < 1e-4 and t["psi"] < 0.25 and not t["drift"]


def test_nothing_to_test_or_an_unknown_statistic_is_an_error(rng):
    ref = _ref(rng)
    with pytest.raises(ValueError, match="nothing to test"):
        check({"other": [1.0]}, ref)
    with pytest.raises(ValueError, match="unknown statistics"):
        check(_window(rng), ref, alarm_on=["entropy"])
    with pytest.raises(ValueError, match="at least 10"):
        reference(distance=None, score=[0.1, 0.2], threshold=0.5, refer_threshold=None)
    with pytest.raises(ValueError, match="finite"):
        reference(distance=[np.nan] * 20, score=np.linspace(0, 1, 20), threshold=0.5, refer_threshold=1.0)


def test_missing_values_are_left_out(rng):
    ref = _ref(rng)
    w = _window(rng, d_mean=20.0)
    w["distance"] = [None] * 10 + list(w["distance"][10:])
    c = check(w, ref)
    assert c.tests["distance"]["n"] == 40 and c.tests["score"]["n"] == 50 and c.drift
