"""A site evaluates a shipped model on its own labelled test list (real PneumoniaMNIST X-rays as
PNG in a CSV with metadata columns): the evaluation holds the PR curve, the threshold table, one
subgroup table per metadata column and the TP/FP/FN examples with their heatmaps. The metadata
values are assigned here (they test the tables, not the model)."""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
from PIL import Image as PILImage

import medsight
from medsight.metrics import binary_report


def _csv(tmp_path, npz, n=120):
    with np.load(npz) as z:
        images, labels = z["test_images"][:n], z["test_labels"][:n, 0]
    rows = []
    for i, (im, lab) in enumerate(zip(images, labels)):
        PILImage.fromarray(im).save(tmp_path / f"x{i}.png")
        rows.append({"path": f"x{i}.png", "label": ["normal", "pneumonia"][int(lab)], "split": "test",
                     "site": "A" if i < 40 else "B", "age": 3 + i % 12})
    with (tmp_path / "site.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path / "site.csv", labels


def test_a_test_only_list_is_evaluated_with_subgroups_thresholds_and_examples(tmp_path, shared_data):
    path, labels = _csv(tmp_path, shared_data("pneumoniamnist/pneumoniamnist.npz"))
    model = medsight.load("pneumonia-xray")
    ev = model.evaluate(str(path))  # no train or val rows: an evaluation needs only its own split
    assert ev["n"] == 120 and ev["n_positive"] == int(labels.sum())
    plain = binary_report(labels, np.array([r.score for r in model.predict([str(tmp_path / f"x{i}.png")
                                                                          for i in range(120)])]),
                          ev["threshold"], n_boot=100)
    assert abs(ev["average_precision"] - plain["average_precision"]) < 1e-3  # the same scores as predict's
    assert sum(r["operating"] for r in ev["threshold_table"]) == 1
    site = {r["group"]: r["n"] for r in ev["subgroups"]["site"]}
    assert site == {"A": 40, "B": 80} and [r["group"] for r in ev["subgroups"]["age (decade)"]] == ["0-9", "10-19"]
    cm = ev["confusion_matrix"]
    by = {o: [e for e in ev["examples"] if e["outcome"] == o] for o in ("true positive", "false positive",
                                                                         "false negative")}
    for outcome, k in (("true positive", cm[1][1]), ("false positive", cm[0][1]), ("false negative", cm[1][0])):
        assert len(by[outcome]) == min(3, k)
    scores = [e["score"] for e in by["true positive"]]
    assert scores == sorted(scores, reverse=True) and all(s >= ev["threshold"] for s in scores)
    assert all(e["score"] < ev["threshold"] for e in by["false negative"])
    for e in ev["examples"]:
        picture = PILImage.open(io.BytesIO(base64.b64decode(e["overlay_png"])))
        assert picture.size == (28, 28) and picture.mode == "RGB" and e["method"] == "gradcam"
    none = model.evaluate(str(path), examples=0)
    assert "examples" not in none and none["auc"] == ev["auc"]
