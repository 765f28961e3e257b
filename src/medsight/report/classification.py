"""Classification's report and model-card sections (templates ``classification.html.j2`` and
``classification.md.j2``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medsight.report.plots import confusion_png, pr_png, reliability_png, roc_png
from medsight.report.render import Section

__all__ = ["classification_report_section", "classification_card_section", "METRICS"]


def _per_second(v: Any) -> str | None:
    """A throughput to one decimal (its precision), not the table's four."""
    return None if v is None else f"{float(v):.1f}"


#: The rows of the metrics table, in order (those the evaluation holds).
METRICS = ("auc", "average_precision", "prevalence", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
           "brier", "ece", "brier_uncalibrated",
           "ece_uncalibrated", "temperature")


def _short(case_id: str) -> str:
    """A case id as shown under its picture: its file's name, with the ``#split/index`` of an npz."""
    file, mark, where = case_id.partition("#")
    return file.replace("\\", "/").rsplit("/", 1)[-1] + mark + where


def _images(ev: Mapping[str, Any]) -> list[tuple[str, str]]:
    """ROC curve (with the operating point), confusion matrix and reliability diagram, as base64 PNG."""
    images = []
    if ev.get("roc"):
        point = None
        if ev.get("sensitivity") is not None and ev.get("specificity") is not None:
            point = (1 - ev["specificity"], ev["sensitivity"])
        images.append(("ROC curve", roc_png(ev["roc"]["fpr"], ev["roc"]["tpr"], auc=ev.get("auc"),
                                            ci=ev.get("auc_ci95"), point=point)))
    if ev.get("pr"):
        point = None
        if ev.get("sensitivity") is not None and ev.get("ppv") is not None:
            point = (ev["sensitivity"], ev["ppv"])
        images.append(("precision-recall curve", pr_png(ev["pr"]["recall"], ev["pr"]["precision"],
                                                        average_precision=ev.get("average_precision"),
                                                        prevalence=ev.get("prevalence"), point=point)))
    if ev.get("confusion_matrix"):
        names = list(ev.get("labels") or [])
        if ev.get("positive_label") and len(names) == 2:
            neg = [x for x in names if x != ev["positive_label"]][0]
            names = [neg, ev["positive_label"]]
        images.append(("confusion matrix", confusion_png(ev["confusion_matrix"], names)))
    if ev.get("calibration_bins_uncalibrated"):
        images.append(("reliability diagram before temperature scaling",
                       reliability_png(ev["calibration_bins_uncalibrated"], ece=ev.get("ece_uncalibrated"),
                                       brier=ev.get("brier_uncalibrated"))))
    if ev.get("calibration_bins"):
        after = " after temperature scaling" if ev.get("calibration_bins_uncalibrated") else ""
        title = "reliability diagram" + after
        images.append((title, reliability_png(ev["calibration_bins"], ece=ev.get("ece"), brier=ev.get("brier"))))
    return images


def classification_report_section(ev: Mapping[str, Any], manifest: Mapping[str, Any] | None = None) -> Section:
    """The report section of a classification evaluation.

    Args:
        ev: the output of ``ClassificationTask.evaluate``.
        manifest: the model's manifest, for provenance (weights checksum, training data, versions).
    """
    provenance: list[tuple[str, Any]] = [("model", ev.get("model")), ("model version", ev.get("model_version")),
                                         ("data", ev.get("data")),
                                         ("images/s", _per_second(ev.get("images_per_second")))]
    if manifest:
        provenance += [("weights sha256", manifest.get("weights_sha256")),
                       ("training data", (manifest.get("training", {}).get("data", {}) or {}).get("source")),
                       ("versions", manifest.get("versions"))]
    skipped = ev.get("skipped") or []
    return Section("classification.html.j2", {
        "title": f"MedSight evaluation: {ev.get('model')}", "provenance": provenance,
        "head": {"model": ev.get("model"), "version": ev.get("model_version"), "data": ev.get("data"),
                 "split": ev.get("split"), "n": ev.get("n"), "threshold": ev.get("threshold"),
                 "rule": ev.get("threshold_rule")},
        "images": _images(ev),
        "metrics": [(k, ev.get(k), ev.get(k + "_ci95")) for k in METRICS if k in ev],
        "per_class": [(c, m.get("auc"), m.get("sensitivity"), m.get("specificity"), m.get("n"))
                      for c, m in (ev.get("per_class") or {}).items()],
        "thresholds": list(ev.get("threshold_table") or []),
        "subgroups": dict(ev.get("subgroups") or {}),
        "subgroups_left_out": dict(ev.get("subgroups_left_out") or {}),
        "examples": [{**e, "name": _short(str(e.get("input")))} for e in ev.get("examples") or []
                     if e.get("overlay_png")],
        "examples_note": ev.get("examples_note"),
        "positive_label": ev.get("positive_label"),
        "skipped": [{"input": s.get("input"), "error": s.get("error")} for s in skipped[:50]],
        "n_skipped": len(skipped),
    })


def _card_fingerprint(m: Mapping[str, Any]) -> list[str]:
    ood, drift = m.get("ood") or {}, m.get("drift") or {}
    trained = m.get("modalities_trained") or m.get("modalities")
    lines = [f"DICOM modalities: {', '.join(trained) if trained else 'not recorded (no modality check)'}; a PNG or "
             f"NIfTI input carries none and is not checked"]
    counts = ((m.get("training") or {}).get("data") or {}).get("class_counts") or {}
    if counts.get("train"):
        lines.append(f"Training images per class ({', '.join(m.get('labels') or [])}): {counts['train']}")
    if ood:
        intensity = ood.get("intensity") or {}
        lines.append(f"Feature fingerprint: mean and covariance of the {ood.get('features')}-dimensional "
                     f"{ood.get('layer') or 'penultimate features'} over {ood.get('n_train')} training images; "
                     f"network input after normalisation mean {intensity.get('mean')}, sd {intensity.get('std')}; "
                     f"median Mahalanobis distance of the {ood.get('n_val')} validation images "
                     f"{ood.get('val_distance_median')}")
    if drift:
        rates = drift.get("rates") or {}
        lines.append(f"Drift reference (what the service's drift monitor compares with): {drift.get('n')} "
                     f"{drift.get('split', 'validation')} images, score and distance in {drift.get('bins')} "
                     f"quantile bins; refer rate {rates.get('refer')}, positive rate {rates.get('positive')}")
    return lines


def _card_calibration(m: Mapping[str, Any]) -> list[str]:
    cal, metrics = m.get("calibration"), m.get("metrics") or {}
    if not cal:
        return ["None: probabilities are the network's softmax as trained"]
    lines = [f"{cal.get('method')}, temperature {m.get('temperature')}, fitted on the {cal.get('fitted_on')} "
             f"(n = {cal.get('n')}): NLL {cal.get('nll_before')} → {cal.get('nll_after')}"
             + (f", ECE {cal.get('ece_before')} → {cal.get('ece_after')}" if "ece_before" in cal else "")]
    for split, v in metrics.items():  # the held-out splits (the one it was fitted on is above)
        if v.get("ece_uncalibrated") is not None and split not in str(cal.get("fitted_on")):
            lines.append(f"{split} split: ECE {v['ece_uncalibrated']} before, {v.get('ece')} after; the reliability "
                         f"diagrams are in the evaluation report")
    return lines


def _card_refer(m: Mapping[str, Any]) -> list[str]:
    ood, unc, metrics = m.get("ood"), m.get("uncertainty"), m.get("metrics") or {}
    lines = []
    if ood:
        rates = "; ".join(f"{split} split referred: {v['refer_rate']}" for split, v in metrics.items()
                          if v.get("refer_rate") is not None)
        lines.append(f"\"input unlike training data\": the Mahalanobis distance of the penultimate features from the "
                     f"training images' exceeds {ood.get('threshold')}, the {ood.get('quantile')} quantile of the "
                     f"{ood.get('n_val')} validation images' distances" + (f" ({rates})" if rates else ""))
    if unc:
        lines.append(f"\"uncertain\": predictive entropy above {unc.get('refer_above')}, the {unc.get('quantile')} "
                     f"quantile on the {unc.get('fitted_on')} (n = {unc.get('n')}; referred there: "
                     f"{unc.get('refer_rate_validation')})")
    accepted, trained = m.get("modalities"), m.get("modalities_trained")
    if trained and set(accepted or []) - set(trained):
        lines.append(f"\"modality not in training data\": a DICOM image of an accepted modality it was not trained "
                     f"on ({', '.join(sorted(set(accepted or []) - set(trained)))})")
    if accepted:
        lines.append(f"Not referred but refused with an error: a DICOM image whose Modality is not "
                     f"{', '.join(accepted)}")
    if not lines:
        return ["None: every prediction is given as it is (no fingerprint, uncertainty rule or modality list)"]
    lines.append("A referred prediction keeps its probabilities; its decision reads \"refer\" with the reasons")
    return lines


def classification_card_section(manifest: Mapping[str, Any]) -> Section:
    """The model-card section of a classification model: architecture, input, threshold,
    training data and the headline metrics per split."""
    t = manifest.get("training", {})
    data = t.get("data", {})
    arch, pre = manifest.get("architecture", {}), manifest.get("preprocessing", {})
    return Section("classification.md.j2", {
        "task": manifest.get("task"), "labels": ", ".join(repr(x) for x in manifest.get("labels", [])),
        "arch": {"name": arch.get("name"), "params": arch.get("params"), "spatial_dims": arch.get("spatial_dims"),
                 "ensemble": arch.get("ensemble", 1)},
        "pre": {"channels": pre.get("channels"), "spatial_size": pre.get("spatial_size"),
                "intensity": pre.get("intensity")},
        "threshold": manifest.get("threshold"), "positive_label": manifest.get("positive_label"),
        "threshold_rule": manifest.get("threshold_rule"),
        "temperature": manifest.get("temperature"), "calibration": manifest.get("calibration"),
        "ood": {k: v for k, v in (manifest.get("ood") or {}).items() if k not in ("mean", "precision")} or None,
        "data": {"source": data.get("file") or data.get("source"), "format": data.get("format"), "n": data.get("n"),
                 "class_counts": data.get("class_counts"),
                 "checksum": data.get("md5") or data.get("sha256") or data.get("listing_sha256")},
        "training": {"wall_time_s": t.get("wall_time_s"), "best_epochs": t.get("best_epochs")},
        "metrics": dict(manifest.get("metrics") or {}),
        "card_fingerprint": _card_fingerprint(manifest), "card_calibration": _card_calibration(manifest),
        "card_refer": _card_refer(manifest),
    })
