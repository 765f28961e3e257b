import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medsight.errors import ConfigError, DataError
from medsight.metrics import binary_report, bootstrap_auc_ci, choose_threshold, multiclass_report, parse_rule, wilson_ci


def scores(n, sep, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    return y, y * sep + rng.normal(0, 1, n)


def test_binary_report_counts_and_auc_match_definitions():
    y, s = scores(300, 1.5)
    r = binary_report(y, s, threshold=0.7)
    pred = s >= 0.7
    tp, tn = int(np.sum(pred & (y == 1))), int(np.sum(~pred & (y == 0)))
    fp, fn = int(np.sum(pred & (y == 0))), int(np.sum(~pred & (y == 1)))
    assert r["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert r["sensitivity"] == pytest.approx(tp / (tp + fn), abs=1e-4)
    assert r["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-4)
    assert r["ppv"] == pytest.approx(tp / (tp + fp), abs=1e-4)
    assert r["npv"] == pytest.approx(tn / (tn + fn), abs=1e-4)
    assert r["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-4)
    assert r["n"] == 300 and r["n_positive"] == int(y.sum())


def test_bootstrap_ci_brackets_the_auc_and_narrows_with_more_cases():
    y1, s1 = scores(90, 1.0)
    y2, s2 = scores(3000, 1.0)
    lo1, hi1 = bootstrap_auc_ci(y1, s1, n_boot=1000)
    lo2, hi2 = bootstrap_auc_ci(y2, s2, n_boot=1000)
    assert lo1 < roc_auc_score(y1, s1) < hi1
    assert lo2 < roc_auc_score(y2, s2) < hi2
    assert (hi2 - lo2) < (hi1 - lo1) / 3


def test_bootstrap_is_seeded():
    y, s = scores(200, 1.0)
    assert bootstrap_auc_ci(y, s, seed=3) == bootstrap_auc_ci(y, s, seed=3)


def test_wilson_interval_is_asymmetric_near_one():
    lo, hi = wilson_ci(99, 100)
    assert lo < 0.99 < hi <= 1.0 and (0.99 - lo) > (hi - 0.99)
    assert wilson_ci(0, 0) is None


def test_youden_threshold_separates_separable_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    t = choose_threshold(y, s, "youden")
    assert 0.3 < t < 0.6
    assert t == pytest.approx(0.45)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_sensitivity_rule_meets_its_target_on_the_split(target):
    y, s = scores(600, 1.0)
    t = choose_threshold(y, s, f"sensitivity:{target}")
    assert np.mean(s[y == 1] >= t) >= target
    # and it is the highest such threshold: moving it above the next score up misses the target
    above = np.sort(np.unique(s[s > t]))
    assert np.mean(s[y == 1] >= (above[0] + above[1]) / 2) < target


def test_accuracy_rule_maximises_validation_accuracy():
    y, s = scores(600, 1.0)
    t = choose_threshold(y, s, "accuracy")
    best = max(np.mean((s >= c) == y) for c in np.unique(s))
    assert np.mean((s >= t) == y) == pytest.approx(best)
    # with 1 positive in 3, it sits above Youden's threshold (fewer false positives pay off)
    assert t > choose_threshold(y, s, "youden")


def test_specificity_rule_meets_its_target():
    y, s = scores(600, 1.0)
    t = choose_threshold(y, s, "specificity:0.9")
    assert np.mean(s[y == 0] < t) >= 0.9


def test_rules_are_validated():
    assert parse_rule("fixed:0.3") == ("fixed", 0.3)
    for bad in ("magic", "sensitivity", "specificity:2", "youden:1", "accuracy:0.9"):
        with pytest.raises(ConfigError):
            parse_rule(bad)


def test_threshold_needs_both_classes():
    with pytest.raises(DataError, match="only one class"):
        choose_threshold(np.ones(5), np.linspace(0, 1, 5))


def test_multiclass_report_per_class_and_macro_auc():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 50)
    p = rng.dirichlet([1, 1, 1], 150)
    p[np.arange(150), y] += 1.0
    p /= p.sum(1, keepdims=True)
    r = multiclass_report(y, p, ["a", "b", "c"], n_boot=200)
    assert r["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-4)
    assert set(r["per_class"]) == {"a", "b", "c"}
    assert r["auc_ci95"][0] <= r["auc"] <= r["auc_ci95"][1]
    assert np.array(r["confusion_matrix"]).sum() == 150


def test_calibration_of_perfectly_calibrated_and_overconfident_scores():
    from medsight.metrics.classification import calibration

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = rng.uniform(0, 1, 20000) < p  # outcomes drawn at the predicted rate
    good = calibration(y, p)
    bad = calibration(y, (p > 0.5).astype(float))  # all-or-nothing
    assert good["ece"] < 0.02 and bad["ece"] > 0.2
    assert good["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-4)
    assert sum(b["n"] for b in good["bins"]) == 20000
