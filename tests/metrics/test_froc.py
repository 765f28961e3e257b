"""LUNA16 FROC scoring: hand-computed examples (synthetic), the reference formula, and the real
LUNA16 annotation files (/work/shared/data/lidc_idri_nodule_slabs/luna16; skipped when absent)."""

from __future__ import annotations

import base64
from fractions import Fraction

import numpy as np
import pytest
from tests.support.data import shared

from medsight.errors import ConfigError, DataError
from medsight.metrics.froc import FP_RATES, froc, label_findings
from medsight.metrics.luna16_csv import Finding, Nodule, read_annotations, read_excluded, read_seriesuids
from support.froc_examples import F, N, three_scans


def test_hand_computed_three_scans_sensitivities_and_cpm():
    nodules, findings = three_scans()
    r = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=0)
    # 1/8, 1/4: on the flat start (0 TPs before the first FP); 1/2: between (1/3, 1/3) and (2/3, 1/3);
    # 1: the curve rises vertically at 1 FP/scan to 1, and the top is taken; 2..8: clamped at 1.
    assert r.sensitivities == pytest.approx([0, 0, 1 / 3, 1, 1, 1, 1])
    assert r.cpm == pytest.approx(float(Fraction(13, 21)))
    assert (r.n_scans, r.n_nodules, r.n_detected, r.n_false_positives) == (3, 3, 3, 3)
    assert r.curve_fps == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert r.curve_sensitivity == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    assert r.curve_thresholds[1:] == (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)


def test_hand_computed_interpolation_between_two_fp_rates():
    # 2 scans, 2 nodules; ranked TP 0.9, FP 0.8, FP 0.7, TP 0.6 -> (0,.5) (.5,.5) (1,.5) (1,1)
    nodules = [N("a", (0, 0, 0), 10), N("b", (0, 0, 0), 10)]
    findings = [F("a", (0, 0, 0), 0.9), F("a", (20, 0, 0), 0.8), F("b", (20, 0, 0), 0.7), F("b", (0, 0, 1), 0.6)]
    r = froc(nodules, findings, scans=["a", "b"], n_boot=0)
    assert r.sensitivities == pytest.approx([0.5, 0.5, 0.5, 1, 1, 1, 1])
    assert r.cpm == pytest.approx(11 / 14)


def test_tied_scores_enter_the_curve_together_as_a_diagonal():
    # a TP and an FP both at 0.9, then an FP at 0.5; the nodule on b is missed
    nodules = [N("a", (0, 0, 0), 10), N("b", (0, 0, 0), 10)]
    findings = [F("a", (0, 0, 0), 0.9), F("a", (30, 0, 0), 0.9), F("b", (30, 0, 0), 0.5)]
    r = froc(nodules, findings, scans=["a", "b"], n_boot=0)
    assert r.curve_fps == pytest.approx([0, 0.5, 1])
    assert r.curve_sensitivity == pytest.approx([0, 0.5, 0.5])
    assert r.sensitivities == pytest.approx([0.125, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert r.cpm == pytest.approx(23 / 56)
    assert [n.seriesuid for n in r.missed] == ["b"]


def test_a_scan_without_nodules_adds_its_fps_and_counts_as_a_scan():
    nodules = [N("a", (0, 0, 0), 10)]
    base = froc(nodules, [F("a", (0, 0, 0), 0.9), F("a", (30, 0, 0), 0.5)], scans=["a"], n_boot=0)
    more = froc(nodules, [F("a", (0, 0, 0), 0.9), F("a", (30, 0, 0), 0.5), F("empty", (0, 0, 0), 0.95)],
                scans=["a", "empty"], n_boot=0)
    assert base.curve_fps == pytest.approx([0, 0, 1])
    assert more.n_scans == 2 and more.n_false_positives == 2
    assert more.curve_fps == pytest.approx([0, 0.5, 0.5, 1])  # FP 0.95 first, then TP, then FP 0.5
    assert more.sensitivities[:3] == pytest.approx([0, 0, 1])
    # a listed scan with no nodule and no finding still divides the FPs
    quiet = froc(nodules, [F("a", (0, 0, 0), 0.9), F("a", (30, 0, 0), 0.5)], scans=["a", "quiet"], n_boot=0)
    assert quiet.curve_fps == pytest.approx([0, 0, 0.5])


def test_a_nodule_hit_by_two_findings_counts_once_with_the_best_score():
    nodules = [N("a", (0, 0, 0), 10)]
    r = froc(nodules, [F("a", (1, 0, 0), 0.3), F("a", (0, 1, 0), 0.9)], scans=["a"], n_boot=0, threshold=0.5)
    assert (r.n_detected, r.n_false_positives, r.n_ignored_double) == (1, 0, 1)
    assert r.curve_thresholds[1:] == (0.9,)
    assert r.operating_point["sensitivity"] == 1 and r.operating_point["false_positives"] == 0


def test_a_finding_within_the_radius_of_two_nodules_detects_both():
    # LUNA16 keeps the mark as a hit for each nodule (it warns about overlapping annotations)
    nodules = [N("a", (0, 0, 0), 10), N("a", (6, 0, 0), 10)]
    r = froc(nodules, [F("a", (3, 0, 0), 0.8)], scans=["a"], n_boot=0)
    assert (r.n_detected, r.n_false_positives) == (2, 0)
    assert r.cpm == 1


def test_hit_needs_the_centre_strictly_inside_the_radius():
    nodules = [N("a", (0, 0, 0), 10)]
    on_edge = froc(nodules, [F("a", (3, 4, 0), 0.8)], scans=["a"], n_boot=0)  # distance exactly 5 mm
    inside = froc(nodules, [F("a", (3, 3.9, 0), 0.8)], scans=["a"], n_boot=0)
    assert (on_edge.n_detected, on_edge.n_false_positives) == (0, 1)
    assert (inside.n_detected, inside.n_false_positives) == (1, 0)


def test_findings_on_excluded_annotations_count_neither_way():
    nodules = [N("a", (0, 0, 0), 10)]
    excluded = [N("a", (40, 0, 0), -1)]  # unknown size: scored with 10 mm, radius 5
    findings = [F("a", (0, 0, 0), 0.5), F("a", (44.9, 0, 0), 0.99), F("a", (45.1, 0, 0), 0.2)]
    r = froc(nodules, findings, scans=["a"], excluded=excluded, n_boot=0)
    assert (r.n_ignored_excluded, r.n_false_positives, r.n_detected) == (1, 1, 1)
    without = froc(nodules, [findings[0], findings[2]], scans=["a"], n_boot=0)
    assert r.curve_fps == without.curve_fps and r.curve_sensitivity == without.curve_sensitivity
    assert r.cpm == without.cpm == 1


def test_label_findings_labels_each_finding_as_froc_scores_it():
    nodules = [N("a", (0, 0, 0), 10), N("a", (60, 0, 0), 4)]
    excluded = [N("a", (40, 0, 0), -1), N("a", (0, 40, 0), 2)]  # unknown size: radius 5; else its own
    findings = [F("a", (4.9, 0, 0), 0.5), F("a", (5.0, 0, 0), 0.4), F("a", (44.9, 0, 0), 0.99),
                F("a", (45.1, 0, 0), 0.2), F("a", (0, 40.9, 0), 0.3), F("a", (0, 41.1, 0), 0.3),
                F("a", (61.9, 0, 0), 0.1)]
    labels = label_findings(findings, nodules, excluded)
    assert labels.tolist() == [1, 0, -1, 0, -1, 0, 1]
    r = froc(nodules, findings, scans=["a"], excluded=excluded, n_boot=0)
    assert (r.n_false_positives, r.n_ignored_excluded) == (int((labels == 0).sum()), int((labels == -1).sum()))
    assert label_findings([], nodules).shape == (0,)
    assert label_findings(findings[:2], []).tolist() == [0, 0]


def test_size_filter_scores_only_large_nodules_and_ignores_hits_on_small_ones():
    nodules = [N("a", (0, 0, 0), 8), N("a", (50, 0, 0), 4)]
    findings = [F("a", (0, 0, 0), 0.4), F("a", (50, 0, 0), 0.9), F("a", (100, 0, 0), 0.1)]
    all_sizes = froc(nodules, findings, scans=["a"], n_boot=0)
    large = froc(nodules, findings, scans=["a"], n_boot=0, min_diameter_mm=6, threshold=0.3)
    assert all_sizes.n_nodules == 2 and large.n_nodules == 1
    assert (large.n_detected, large.n_ignored_excluded, large.n_false_positives) == (1, 1, 1)
    assert large.operating_point == {"threshold": 0.3, "sensitivity": 1.0, "fps_per_scan": 0.0,
                                     "true_positives": 1, "false_positives": 0}
    with pytest.raises(DataError, match="no nodule"):
        froc(nodules, findings, scans=["a"], n_boot=0, min_diameter_mm=20)


def test_operating_point_counts_findings_at_or_above_the_threshold():
    nodules, findings = three_scans()
    r = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=0, threshold=0.7)
    assert r.operating_point["true_positives"] == 2 and r.operating_point["false_positives"] == 2
    assert r.operating_point["sensitivity"] == pytest.approx(2 / 3, abs=1e-6)
    assert r.operating_point["fps_per_scan"] == pytest.approx(2 / 3, abs=1e-6)
    assert r.sensitivity_at(2 / 3) == pytest.approx(2 / 3)


def test_findings_on_unlisted_scans_are_left_out_and_the_cap_drops_ties_at_the_cut():
    nodules = [N("a", (0, 0, 0), 10)]
    findings = [F("a", (0, 0, 0), 0.9), F("a", (20, 0, 0), 0.5), F("a", (30, 0, 0), 0.5), F("x", (0, 0, 0), 1)]
    r = froc(nodules, findings, scans=["a"], n_boot=0, max_findings_per_scan=2)
    # the 3rd highest is 0.5, so only findings above 0.5 are kept (as LUNA16's script does)
    assert (r.n_findings_unlisted, r.n_findings_capped, r.n_findings, r.n_false_positives) == (1, 2, 1, 0)
    uncapped = froc(nodules, findings, scans=["a"], n_boot=0, max_findings_per_scan=None)
    assert uncapped.n_false_positives == 2


def _reference_luna16(tp, fp, n_missed, n_scans):
    """LUNA16's computeFROC, restated: sklearn's ROC over the scored marks, rescaled to FP/scan."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(len(tp)), np.zeros(len(fp))]
    fpr, tpr, _ = roc_curve(y, np.r_[tp, fp])
    fps = fpr * len(fp) / n_scans
    sens = tpr * len(tp) / (len(tp) + n_missed)
    return np.interp(FP_RATES, fps, sens)


def test_matches_the_reference_formula_on_random_scans():
    rng = np.random.default_rng(7)
    nodules, findings, scans = [], [], [f"s{i}" for i in range(20)]
    for uid in scans:
        for _ in range(rng.integers(0, 3)):
            c = rng.uniform(-100, 100, 3)
            nodules.append(Nodule(uid, tuple(c), float(rng.uniform(4, 20))))
            if rng.random() < 0.7:
                findings.append(Finding(uid, tuple(c + rng.normal(0, 1, 3)), float(np.round(rng.random(), 2))))
        for _ in range(rng.integers(0, 6)):
            findings.append(Finding(uid, tuple(rng.uniform(300, 400, 3)), float(np.round(rng.random(), 2))))
    r = froc(nodules, findings, scans=scans, n_boot=0)
    n_missed = len(r.missed)
    assert r.n_detected + n_missed == r.n_nodules == len(nodules)

    def hits(f, n):
        d2 = sum((a - b) ** 2 for a, b in zip(f.center_mm, n.center_mm))
        return f.seriesuid == n.seriesuid and d2 < (n.diameter_mm / 2) ** 2

    tp_probs = [max(f.probability for f in findings if hits(f, n)) for n in nodules
                if any(hits(f, n) for f in findings)]
    fp_probs = [f.probability for f in findings if not any(hits(f, n) for n in nodules)]
    assert 0 < len(tp_probs) < len(nodules) and fp_probs
    assert len(tp_probs) == r.n_detected and len(fp_probs) == r.n_false_positives
    expected = _reference_luna16(np.array(tp_probs), np.array(fp_probs), n_missed, len(scans))
    assert r.sensitivities == pytest.approx(expected)


def test_bootstrap_ci_is_seeded_and_contains_the_point_estimate():
    rng = np.random.default_rng(3)
    nodules, findings, scans = [], [], [f"s{i}" for i in range(30)]
    for uid in scans:
        c = rng.uniform(-100, 100, 3)
        nodules.append(Nodule(uid, tuple(c), 10.0))
        findings.append(Finding(uid, tuple(c), float(rng.random())))
        findings.extend(Finding(uid, tuple(rng.uniform(300, 400, 3)), float(rng.random())) for _ in range(3))
    a = froc(nodules, findings, scans=scans, n_boot=200, seed=1)
    b = froc(nodules, findings, scans=scans, n_boot=200, seed=1)
    c = froc(nodules, findings, scans=scans, n_boot=200, seed=2)
    assert a.ci == b.ci and a.ci != c.ci
    assert a.ci["n_used"] == 200
    lo, hi = a.ci["cpm"]
    assert lo <= a.cpm <= hi and lo < hi
    for s, (lo, hi) in zip(a.sensitivities, a.ci["sensitivities"]):
        assert lo - 1e-6 <= s <= hi + 1e-6


def test_bad_arguments_and_no_scans_are_clear_errors():
    nodules = [N("a", (0, 0, 0), 10)]
    with pytest.raises(ConfigError, match="n_boot"):
        froc(nodules, [], scans=["a"], n_boot=-1)
    with pytest.raises(ConfigError, match="level"):
        froc(nodules, [], scans=["a"], level=1.5)
    with pytest.raises(DataError, match="no scans"):
        froc([], [], scans=[])
    with pytest.raises(DataError, match="twice"):
        froc(nodules, [], scans=["a", "a"])


def test_no_findings_gives_zero_sensitivity():
    r = froc([N("a", (0, 0, 0), 10)], [], scans=["a"], n_boot=10)
    assert r.cpm == 0 and r.sensitivities == (0.0,) * 7 and r.ci["cpm"] == [0, 0]


def test_result_to_dict_is_json_ready():
    import json

    nodules, findings = three_scans()
    d = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=20, threshold=0.7).to_dict()
    back = json.loads(json.dumps(d))
    assert back["sensitivities"]["0.125"] == 0 and back["sensitivities"]["8"] == 1
    assert back["curve"]["thresholds"][0] is None and back["curve"]["fps"][-1] == 1
    assert back["ci"]["n_boot"] == 20


def test_froc_plot_is_a_png():
    from medsight.report.plots import froc_png

    nodules, findings = three_scans()
    r = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=20)
    png = base64.b64decode(froc_png(r.curve_fps, r.curve_sensitivity, fp_rates=r.fp_rates,
                                    sensitivities=r.sensitivities, cpm=r.cpm, ci=r.ci["sensitivities"]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_real_luna16_annotations_score_themselves_perfectly():
    """Real data: the LUNA16 annotation files; the annotations as findings find every nodule."""
    folder = shared("lidc_idri_nodule_slabs/luna16")
    annotations = read_annotations(folder / "annotations.csv")
    excluded = read_excluded(folder / "annotations_excluded.csv")
    scans = read_seriesuids(folder / "seriesuids.csv")
    assert len(annotations) == 1186 and len({n.seriesuid for n in annotations}) == 601
    assert len(scans) == 888 and {n.seriesuid for n in annotations} <= set(scans)
    assert any(n.diameter_mm < 0 for n in excluded)
    findings = [Finding(n.seriesuid, n.center_mm, 1.0) for n in annotations]
    r = froc(annotations, findings, scans=scans, excluded=excluded, n_boot=20)
    assert r.n_detected == 1186 and r.n_false_positives == 0
    assert r.sensitivities == (1.0,) * 7 and r.cpm == 1.0 and r.ci["cpm"] == [1.0, 1.0]
    large = froc(annotations, findings, scans=scans, excluded=excluded, n_boot=0, min_diameter_mm=6)
    assert large.n_nodules == sum(n.diameter_mm >= 6 for n in annotations) and large.cpm == 1.0



def test_the_lowest_scoring_findings_count_unlike_monais_froc_curve():
    """Why FROC is written by hand: MONAI's curve starts at the second-lowest probability."""
    from monai.metrics import compute_froc_curve_data, compute_froc_score

    nodules, findings = three_scans()
    r = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=0)
    fps, sens = compute_froc_curve_data(np.array([0.95, 0.8, 0.6]), np.array([0.9, 0.7, 0.5]), 3, 3)
    monai_at_8 = compute_froc_score(fps, sens, eval_thresholds=(8.0,))
    assert r.sensitivity_at(8.0) == 1.0 and monai_at_8 == pytest.approx(2 / 3)


def test_real_luna16_coordinates_are_the_dicom_lps_mm_of_the_lidc_slabs():
    """Real data: LUNA16's (coordX, coordY, coordZ) is the DICOM patient (LPS) point of Image.affine,
    so a finding's centre in LPS mm is scored against the CSVs as it is. Each annotated nodule on
    the LIDC slabs maps inside its slab onto soft tissue (a nodule), in air-filled lung."""
    from medsight.io import read

    root = shared("lidc_idri_nodule_slabs")
    annotations = read_annotations(root / "luna16" / "annotations.csv")
    checked = 0
    for series in sorted(p for p in root.glob("LIDC-IDRI-*/*/*") if p.is_dir()):
        image = read(series)
        for n in (a for a in annotations if a.seriesuid == image.series_uid):
            index = np.linalg.solve(image.affine, [*n.center_mm, 1.0])[:3]
            i = np.round(index).astype(int)
            if not (0 <= i[0] < image.array.shape[1]):  # the slab holds only some slices of the scan
                continue
            assert all(0 <= i[k] < image.array.shape[k + 1] for k in range(3))
            assert image.array[0, i[0], i[1], i[2]] > -300 and image.array[0].mean() < -500
            checked += 1
    assert checked >= 1


def test_size_agreement_compares_each_found_nodules_best_finding_with_its_diameter():
    from medsight.metrics.froc import size_agreement

    nodules = [Nodule("s1", (0, 0, 0), 10.0), Nodule("s1", (50, 0, 0), 20.0), Nodule("s2", (0, 0, 0), 8.0)]
    findings = [Finding("s1", (1, 0, 0), 0.9, 12.0),   # +20 %
                Finding("s1", (0, 1, 0), 0.5, 30.0),   # hits the same nodule with a lower score: not the match
                Finding("s1", (52, 0, 0), 0.8, 10.0),  # -50 %
                Finding("s2", (0, 0, 1), 0.2, 8.0),    # exact, but below the threshold below
                Finding("s2", (30, 0, 0), 0.9, 5.0)]   # a false positive: no nodule to compare with
    r = size_agreement(nodules, findings)
    assert r["n_matched"] == 3
    assert r["median"] == pytest.approx(0.0) and r["median_absolute"] == pytest.approx(0.2)
    assert r["within"] == pytest.approx(2 / 3, abs=1e-4)
    at = size_agreement(nodules, findings, threshold=0.5)
    assert at["n_matched"] == 2 and at["within"] == pytest.approx(0.5)
    assert size_agreement(nodules, [])["median"] is None
