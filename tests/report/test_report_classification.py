"""The classification report and card show the evaluation's numbers, plots and tables."""

from __future__ import annotations

import numpy as np
import pytest
from report_html import is_png, read_page

from medsight.metrics import binary_report
from medsight.models.saved import load_model
from medsight.report import render_report
from medsight.report.classification import classification_report_section
from medsight.tasks.base import get_task


@pytest.fixture
def binary_ev():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    s = np.clip(0.35 * y + rng.uniform(0, 0.65, 80), 0, 1)
    ev = binary_report(y, s, 0.5, n_boot=100, seed=0)
    ev.update({"positive_label": "pneumonia", "task": "classification", "model": "m", "model_version": "2.0.0",
               "data": "d.npz", "split": "test", "labels": ["normal", "pneumonia"], "threshold_rule": "youden",
               "skipped": [{"input": f"bad{i}.png", "error": "not an image"} for i in range(60)],
               "seconds": 0.2, "images_per_second": 400.0})
    return ev


def test_binary_report_shows_every_metric_with_its_interval_and_the_three_plots(binary_ev):
    ev = binary_ev
    manifest = {"weights_sha256": "f" * 64, "versions": {"python": "3.11.7", "torch": "2.13.0"}}
    page = read_page(render_report(classification_report_section(ev, manifest)))
    assert page.title == "MedSight evaluation: m"
    assert page.headings[:2] == ["MedSight evaluation: m", "Metrics"] and "Provenance" in page.headings
    assert f"Operating threshold {ev['threshold']:.4f} (rule youden" in page.text
    assert "split test, n = 80." in page.text
    rows = {r[0]: r[1:] for r in page.table("metric")[1:]}
    assert list(rows) == [k for k in ("auc", "average_precision", "prevalence", "accuracy", "sensitivity",
                                      "specificity", "ppv", "npv", "f1", "brier", "ece") if k in ev]
    assert rows["auc"] == [f"{ev['auc']:.4f}", f"{ev['auc_ci95'][0]:.4f} – {ev['auc_ci95'][1]:.4f}"]
    assert rows["sensitivity"][0] == f"{ev['sensitivity']:.4f}"
    assert [alt for alt, _ in page.images] == ["ROC curve", "precision-recall curve", "confusion matrix",
                                               "reliability diagram"]
    assert all(is_png(png) for _, png in page.images)
    # skipped inputs: all counted, the first 50 listed
    assert "Inputs skipped (60)" in page.headings
    assert len(page.items) == 50 and page.items[0] == "bad0.png: not an image"
    provenance = dict(r for r in page.table("model") if len(r) == 2)
    assert provenance["model version"] == "2.0.0" and provenance["weights sha256"] == "f" * 64
    assert provenance["images/s"] == "400.0" and provenance["training data"] == "–"
    assert provenance["versions"] == "python 3.11.7, torch 2.13.0"


def test_binary_report_has_the_threshold_table_subgroups_and_examples(binary_ev):
    import base64
    import io

    from PIL import Image as PILImage

    from medsight.metrics.classification import subgroup_report, threshold_table

    rng = np.random.default_rng(3)
    y = (np.arange(80) % 2).astype(int)
    s = np.clip(0.4 * y + rng.uniform(0, 0.6, 80), 0, 1)
    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((28, 28, 3), np.uint8)).save(buf, format="PNG")
    png = base64.b64encode(buf.getvalue()).decode()
    ev = {**binary_ev, "threshold": 0.5, "threshold_table": threshold_table(y, s, 0.4321),
          "subgroups": subgroup_report(y, s, 0.5, {"site": ["a", "b"] * 40}, n_boot=50),
          "subgroups_left_out": {"accession": "80 distinct values (continuous or an identifier)"},
          "examples": [{"outcome": "false positive", "input": "/data/site/img_007.png", "score": 0.91,
                        "method": "gradcam", "overlay_png": png},
                       {"outcome": "false negative", "input": "/data/site/img_009.png", "score": 0.08,
                        "error": "cannot read"}],  # an example whose picture failed is not shown
          "examples_note": "Up to 3 of each outcome"}
    page = read_page(render_report(classification_report_section(ev)))
    table = page.table("threshold")
    assert table[0] == ["threshold", "sensitivity", "specificity", "PPV", "NPV", "called positive"]
    assert [r[0] for r in table[1:]].count("0.4321 (operating)") == 1 and len(table) == 1 + 12
    site = page.table("site")
    assert [r[0] for r in site[1:]] == ["a", "b"] and [r[1] for r in site[1:]] == ["40", "40"]
    assert "accession (80 distinct values" in page.text
    assert ["false positives"] == [h for h in page.headings if h.startswith(("true", "false"))]
    assert ("false positive /data/site/img_007.png", base64.b64decode(png)) in page.images
    assert "img_007.png" in page.text and "/data/site" not in page.text  # the file name, the path as its title


def test_multiclass_report_has_one_per_class_row_per_label():
    from medsight.metrics import multiclass_report

    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 20)
    p = rng.dirichlet(np.ones(3), 60)
    p[np.arange(60), y] += 0.8
    p /= p.sum(1, keepdims=True)
    ev = multiclass_report(y, p, ["a", "b", "c"], n_boot=50, seed=0)
    ev.update({"model": "m", "labels": ["a", "b", "c"]})
    page = read_page(render_report(classification_report_section(ev)))
    per_class = page.table("class")
    assert per_class[0] == ["class", "AUC", "sensitivity", "specificity", "n"]
    assert [r[0] for r in per_class[1:]] == ["a", "b", "c"]
    assert per_class[1][1] == f"{ev['per_class']['a']['auc']:.4f}" and per_class[1][4] == "20"
    assert "Inputs skipped" not in " ".join(page.headings)


def test_classification_card_states_the_shipped_models_threshold_data_and_metrics():
    m = load_model("pneumonia-xray").manifest
    card = get_task("classification").model_card(m)
    assert f"Operating threshold: {m['threshold']:.4f} on P(pneumonia)" in card and "'youden'" in card
    assert "labels: 'normal', 'pneumonia'" in card
    assert m["training"]["data"]["md5"] in card and str(m["training"]["data"]["n"]) in card
    for split, values in m["metrics"].items():
        line = next(x for x in card.splitlines() if x.startswith(f"- {split}: "))
        assert all(f"{k} {v}" in line for k, v in values.items()), line
    assert f"```\n{m['reproduce']}\n```" in card
