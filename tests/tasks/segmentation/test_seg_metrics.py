"""Segmentation metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.metrics.segmentation import case_metrics, summarize


def cube(shape, lo, hi, value=1):
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return m


def test_shifted_cube_dice_hd95_and_volume_in_mm_and_ml():
    ref = cube((20, 20, 20), (5, 5, 5), (11, 11, 11))    # 6x6x6 = 216 voxels
    pred = cube((20, 20, 20), (7, 5, 5), (13, 11, 11))   # shifted by 2 slices
    out = case_metrics(pred, ref, {1: "cube"}, spacing=(2.5, 1.0, 1.0))["cube"]
    assert out["dice"] == pytest.approx(2 * 144 / 432)    # overlap 4x6x6
    assert out["hd95_mm"] == pytest.approx(5.0)           # 2 slices of 2.5 mm
    assert out["volume_ml"] == pytest.approx(216 * 2.5 / 1000)
    assert out["volume_error_ml"] == pytest.approx(0.0)
    tight = case_metrics(pred, ref, {1: "cube"}, spacing=(2.5, 1.0, 1.0), tolerance_mm=1.0)["cube"]["surface_dice"]
    loose = case_metrics(pred, ref, {1: "cube"}, spacing=(2.5, 1.0, 1.0), tolerance_mm=5.0)["cube"]["surface_dice"]
    assert 0 < tight < 1 and loose == pytest.approx(1.0)


def test_identical_masks_score_perfectly_and_labels_are_separate():
    ref = cube((12, 12, 12), (2, 2, 2), (6, 6, 6)) + cube((12, 12, 12), (7, 7, 7), (10, 10, 10), value=2)
    out = case_metrics(ref, ref, {1: "a", 2: "b"}, spacing=(1.0, 1.0, 1.0))
    for name in ("a", "b"):
        assert out[name]["dice"] == 1.0 and out[name]["hd95_mm"] == 0.0 and out[name]["surface_dice"] == 1.0
    assert out["b"]["volume_ref_ml"] == pytest.approx(27 / 1000)


def test_empty_structures_follow_the_documented_conventions():
    empty = np.zeros((8, 8, 8), np.uint8)
    some = cube((8, 8, 8), (2, 2, 2), (4, 4, 4))
    both = case_metrics(empty, empty, {1: "x"}, spacing=(1, 1, 1))["x"]
    assert (both["dice"], both["hd95_mm"], both["surface_dice"]) == (1.0, 0.0, 1.0)
    missed = case_metrics(empty, some, {1: "x"}, spacing=(1, 1, 1))["x"]
    assert missed["dice"] == 0.0 and missed["hd95_mm"] is None and missed["volume_error_ml"] == pytest.approx(-0.008)


def test_2d_masks_use_their_pixel_spacing():
    ref = cube((30, 30), (10, 10), (20, 20))
    pred = cube((30, 30), (10, 13), (20, 23))
    out = case_metrics(pred, ref, {1: "lesion"}, spacing=(0.5, 0.5))["lesion"]
    assert out["hd95_mm"] == pytest.approx(1.5)
    assert out["volume_ml"] == pytest.approx(100 * 0.25 / 1000)


def test_summary_reports_mean_sd_and_undefined_counts():
    cases = [{"dice": {"a": 0.8}, "hd95_mm": {"a": 2.0}}, {"dice": {"a": 0.6}, "hd95_mm": {"a": None}},
             {"dice": {"a": 1.0}, "hd95_mm": {"a": 4.0}}]
    s = summarize(cases, ["a"], metrics=("dice", "hd95_mm"))["a"]
    assert s["dice"]["mean"] == pytest.approx(0.8) and s["dice"]["sd"] == pytest.approx(0.2)
    assert s["hd95_mm"]["mean"] == pytest.approx(3.0) and s["hd95_mm"]["n_undefined"] == 1
