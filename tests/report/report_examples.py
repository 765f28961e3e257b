"""A synthetic evaluation and manifest per task, with hostile names, for the report contract test.

A new task adds its example here; the contract test fails for a registered task without one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HOSTILE = "<script>alert(1)</script>"
HOSTILE_FILE = '"><img src=x onerror=alert(2)>.png'


def classification() -> tuple[dict[str, Any], dict[str, Any]]:
    from medsight.metrics import multiclass_report

    rng = np.random.default_rng(0)
    labels = [HOSTILE, "b&c", "plain"]
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    p[np.arange(60), y] += 1.0
    p /= p.sum(1, keepdims=True)
    ev = multiclass_report(y, p, labels, n_boot=50, seed=0)
    ev.update({"task": "classification", "model": f"net{HOSTILE}", "model_version": "1.0.0", "data": "d.npz",
               "split": "test", "labels": labels, "threshold_rule": None,
               "skipped": [{"input": HOSTILE_FILE, "error": f"cannot read {HOSTILE}"}],
               "seconds": 0.1, "images_per_second": 600.0})
    manifest = {
        "name": f"net{HOSTILE}", "version": "1.0.0", "task": "classification", "description": "A test model.",
        "labels": labels, "architecture": {"name": "resnet-small", "params": {"width": 8}, "spatial_dims": 2},
        "preprocessing": {"channels": 1, "spatial_size": [28, 28], "intensity": "range"},
        "weights_sha256": "ab" * 32, "versions": {"medsight": "0.0"},
        "training": {"data": {"source": "d.npz", "format": "medmnist", "n": {"train": 60}, "md5": "0" * 32},
                     "wall_time_s": 1.0, "best_epochs": [1]},
        "metrics": {"test": {"n": 60, "auc": ev["auc"], "accuracy": ev["accuracy"]}},
    }
    return ev, manifest


def segmentation() -> tuple[dict[str, Any], dict[str, Any]]:
    from medsight.metrics.segmentation import summarize

    names = [HOSTILE, "b&c"]
    cases = [{"case": f"case{i}{HOSTILE if i == 0 else ''}", "seconds": 0.5,
              "dice": {HOSTILE: 0.8 + i / 100, "b&c": 0.7}, "hd95_mm": {HOSTILE: 1.0 + i, "b&c": None},
              "surface_dice": {HOSTILE: 0.9, "b&c": 0.85}, "volume_ml": {HOSTILE: 1.0, "b&c": 2.0},
              "volume_ref_ml": {HOSTILE: 1.1, "b&c": 2.1}, "volume_error_ml": {HOSTILE: -0.1, "b&c": -0.1},
              "abs_volume_error_ml": {HOSTILE: 0.1, "b&c": 0.1}} for i in range(3)]
    summary = summarize(cases, names)
    ev = {"task": "segmentation", "model": f"seg{HOSTILE}", "model_version": "1.0.0", "data": "dec", "split": "test",
          "n": 3, "label_names": names, "labels": {"1": HOSTILE, "2": "b&c"}, "tolerance_mm": 1.0,
          "summary": summary, "cases": cases, "skipped": [{"input": HOSTILE_FILE, "error": HOSTILE}],
          "seconds": 1.5, "seconds_per_case": 0.5,
          **{m: {n: summary[n][m]["mean"] for n in names}
             for m in ("dice", "hd95_mm", "surface_dice", "volume_error_ml", "abs_volume_error_ml")}}
    manifest = {
        "name": f"seg{HOSTILE}", "version": "1.0.0", "task": "segmentation", "description": "A test model.",
        "labels": ["background", *names], "label_values": [0, 1, 2], "modalities": ["MR"],
        "architecture": {"name": "unet", "params": {"channels": [8, 16]}, "spatial_dims": 3},
        "preprocessing": {"channels": 1, "target_spacing": [1.0, 1.0, 1.0], "normalization": [{"scheme": "zscore"}]},
        "inference": {"patch_size": [16, 16, 16], "overlap": 0.5, "tta_flips": False, "largest_component": [1, 2]},
        "plan": {"rules": {"target_spacing": "median spacing per axis"},
                 "fingerprint": {"n_cases": 3, "spacing_mm": {"median": [1.0, 1.0, 1.0]},
                                 "shape": {"median": [16, 16, 16]}}},
        "weights_sha256": "cd" * 32, "versions": {"medsight": "0.0"},
        "training": {"data": {"source": "dec", "layout": "decathlon", "n": {"train": 3}, "listing_sha256": "e" * 64},
                     "split_file": None, "wall_time_s": 1.0, "epochs_run": 2, "best_epoch": 1},
        "metrics": {"test": {"n": 3, "summary": summary}},
    }
    return ev, manifest


def blob_size() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example plug-in task of docs/extending.md (tests/blobsize)."""
    ev = {"task": "blob-size", "model": f"blob{HOSTILE}", "model_version": "1.0.0", "data": HOSTILE_FILE,
          "split": "test", "n": 2, "mae_mm": 0.5, "mae_mm_ci95": [0.1, 0.9], "rmse_mm": 0.6, "r": 0.9,
          "cases": [{"input": HOSTILE_FILE, "truth_mm": 5.0, "predicted_mm": 5.5},
                    {"input": "b.png", "truth_mm": 9.0, "predicted_mm": 8.5}]}
    manifest = {
        "name": f"blob{HOSTILE}", "version": "1.0.0", "task": "blob-size", "description": "A test model.",
        "labels": ["diameter"], "architecture": {"name": "resnet-small", "params": {"width": 4}, "spatial_dims": 2,
                                                 "in_channels": 1, "num_classes": 1},
        "preprocessing": {"channels": 1, "spatial_size": [32, 32], "intensity": "range", "zscore": False},
        "weights_sha256": "ef" * 32, "versions": {"medsight": "0.0"},
        "training": {"data": "blobs.csv", "best_epochs": [1]},
        "metrics": {"test": {"n": 2, "mae_mm": 0.5, "mae_mm_ci95": [0.1, 0.9], "r": 0.9}},
    }
    return ev, manifest


def detection() -> tuple[dict[str, Any], dict[str, Any]]:
    from medsight.metrics.froc import froc
    from medsight.models.manifest import DetectionInference
    from medsight.tasks.detection.scan import preprocessing_spec
    from medsight.tasks.detection.task import DetectionTask
    from support.froc_examples import three_scans

    nodules, findings = three_scans()
    analyses = {"all nodules": froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=20, threshold=0.7).to_dict(),
                "nodules >= 6 mm": froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=0,
                                        min_diameter_mm=6.0).to_dict()}
    ev = {"task": "detection", "model": f"det{HOSTILE}", "model_version": "1.0.0", "data": HOSTILE_FILE,
          "split": "test", "n": 3, "threshold": 0.7, "analyses": analyses,
          "scans": [{"seriesuid": "s1", "image": HOSTILE_FILE, "seconds": 0.5, "n_candidates": 3, "n_findings": 2,
                     "n_nodules": 2}],
          "skipped": [{"input": HOSTILE_FILE, "error": f"cannot read {HOSTILE}"}], "not_on_disk": 2,
          "dataset": {"n_scans": 3, "n_nodules": 3, "n_excluded": 0, "not_on_disk": 2, "unlisted": 0,
                      "files": {"annotations": "annotations.csv", "excluded": None, "seriesuids": "seriesuids.csv"}},
          "seconds_per_scan": 0.5}
    ev.update(DetectionTask().headline(ev))
    manifest = {
        "name": f"det{HOSTILE}", "version": "1.0.0", "task": "detection", "description": "A test model.",
        "labels": ["background", "nodule"], "modalities": ["CT"],
        "architecture": {"name": "unet", "params": {"channels": [4, 8], "strides": [2]}, "spatial_dims": 3,
                         "in_channels": 1, "num_classes": 2},
        "preprocessing": preprocessing_spec(1.0, (-1000.0, 400.0)),
        "detection": DetectionInference(patch_size=[32, 32, 32]).to_dict(), "threshold": 0.7,
        "threshold_rule": f"chosen on {HOSTILE}",
        "weights_sha256": "12" * 32, "versions": {"medsight": "0.0"},
        "training": {"data": HOSTILE_FILE, "split": {"train": ["a", "b"], "val": ["c"], "test": ["d"]},
                     "n_nodules": {"train": 3, "val": 1, "test": 1}, "best_epoch": 1, "best_val_cpm": 0.5,
                     "epochs_run": 2, "wall_time_s": 1.0},
        "metrics": {"test": {k: v for k, v in ev.items() if k == "n" or k.startswith(("cpm", "sensitivity",
                                                                                        "operating"))}},
    }
    return ev, manifest


def response() -> tuple[dict[str, Any], dict[str, Any]]:
    """An evaluation on a tiny simulated cohort, with counterfactuals, hostile treatment names."""
    from medsight.metrics.treatment import feature_attribution, policy_report, uplift_report

    rng = np.random.default_rng(0)
    treatments = [HOSTILE, "b&c"]
    truth = rng.uniform(0.2, 0.8, (40, 2))
    pred = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1)
    t, y = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    ev = {"task": "response", "model": f"resp{HOSTILE}", "model_version": "1.0.0", "data": HOSTILE_FILE,
          "split": "test", "n": 40, "treatments": treatments, "synthetic": True, "coverage": 0.6,
          "status_counts": {"recommend": 24, "refer: uncertain": 16}, "factual_auc": 0.7,
          "factual_auc_ci95": [0.6, 0.8], "ece": 0.05, "brier": 0.2,
          "uplift": uplift_report(pred, t, y, treatments=treatments),
          "policy": policy_report(truth, pred.argmax(1), treatments=treatments, accepted=np.arange(40) % 3 > 0,
                                  fallback=0, confidence=np.abs(pred[:, 1] - pred[:, 0]), n_boot=50),
          "pehe": 0.05, "features": feature_attribution(pred, truth, {HOSTILE: rng.normal(size=40)})}
    manifest = {
        "name": f"resp{HOSTILE}", "version": "1.0.0", "task": "response", "description": "A test model.",
        "labels": treatments, "architecture": {"name": "response-net", "spatial_dims": 2, "in_channels": 1,
                                               "num_classes": 2, "params": {"encoder": "resnet-small",
                                                                            "encoder_params": {"width": 8}}},
        "preprocessing": {"channels": 1, "spatial_size": [64, 64], "intensity": "range"},
        "response": {"treatments": treatments, "covariates": [{"name": HOSTILE, "kind": "number", "mean": 0.0,
                                                                "std": 1.0}], "members": 2, "features": 8,
                     "fallback": HOSTILE, "ood_threshold": 4.0, "ood_quantile": 0.99},
        "weights_sha256": "ab" * 32, "versions": {"medsight": "0.0"},
        "training": {"data": HOSTILE_FILE, "propensity": {"weighting": "none"}},
        "metrics": {"test": {"n": 40, "factual_auc": 0.7}},
    }
    return ev, manifest


EXAMPLES = {"classification": classification, "segmentation": segmentation, "blob-size": blob_size,
            "detection": detection, "response": response}
