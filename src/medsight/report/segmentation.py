"""Segmentation outputs for people: per-case CSV, overlays, and the report and model-card
sections (templates ``segmentation.html.j2`` and ``segmentation.md.j2``)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.report.render import Section, modality_fingerprint, modality_refusal

__all__ = ["write_case_csv", "overlay_png", "segmentation_report_section", "segmentation_card_section", "CSV_METRICS",
           "SUMMARY_METRICS"]

#: Per-label columns of the case CSV, in order.
CSV_METRICS = ("dice", "hd95_mm", "surface_dice", "volume_ml", "volume_ref_ml", "volume_error_ml")
_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]


def write_case_csv(ev: Mapping[str, Any], path: str | Path) -> Path:
    """One row per case: ``case``, then ``<metric>_<label>`` columns, then ``seconds``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(ev.get("label_names", []))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", *[f"{m}_{n}" for n in names for m in CSV_METRICS], "seconds"])
        for c in ev.get("cases", []):
            row = [c["case"]]
            for n in names:
                for m in CSV_METRICS:
                    v = c.get(m, {}).get(n)
                    row.append("" if v is None else v)
            row.append(c.get("seconds", ""))
            w.writerow(row)
    return path


def _display(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
    return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a, dtype=float)


def overlay_png(image: np.ndarray, spacing: Sequence[float], pred: np.ndarray, ref: np.ndarray | None,
                labels: Mapping[int, str], *, title: str = "") -> str:
    """Base64 PNG of the image with reference (solid) and predicted (dashed) contours.

    Args:
        image: ``(C, *spatial)`` intensities (the first channel is shown).
        spacing: mm per voxel (array order), for the aspect ratio.
        pred, ref: label-value masks of shape ``spatial`` (``ref`` may be None).
        labels: value → name of the structures to draw.

    A 3D image is shown as three orthogonal slices through the centre of the reference (or
    the prediction when there is no reference).
    """
    from medsight.report.plots import _plt, fig_to_base64

    plt = _plt()
    img = np.asarray(image)[0].astype(np.float32)
    focus = ref if ref is not None and np.any(ref) else pred
    centre = [int(round(c.mean())) if c.size else s // 2
              for c, s in zip(np.nonzero(focus) if np.any(focus) else [np.array([])] * img.ndim, img.shape)]
    views: list[tuple[tuple[Any, ...], float, str]]
    if img.ndim == 2:
        views = [((slice(None), slice(None)), spacing[0] / spacing[1], "")]
    else:
        z, y, x = centre
        views = [((z, slice(None), slice(None)), spacing[1] / spacing[2], f"axis 0 = {z}"),
                 ((slice(None), y, slice(None)), spacing[0] / spacing[2], f"axis 1 = {y}"),
                 ((slice(None), slice(None), x), spacing[0] / spacing[1], f"axis 2 = {x}")]
    fig, axes = plt.subplots(1, len(views), figsize=(3.2 * len(views), 3.4))
    axes = np.atleast_1d(axes)
    for ax, (sl, aspect, sub) in zip(axes, views):
        ax.imshow(_display(img[sl]), cmap="gray", aspect=aspect, interpolation="nearest")
        for i, (v, _name) in enumerate(labels.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            if ref is not None and np.any(ref[sl] == v):
                ax.contour((ref[sl] == v).astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
            if np.any(pred[sl] == v):
                ax.contour((pred[sl] == v).astype(float), levels=[0.5], colors=[colour], linewidths=1.2,
                           linestyles="dashed")
        ax.set_title(sub, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig_to_base64(fig)


#: The summary metrics the report's table and the card show, per structure.
SUMMARY_METRICS = ("dice", "hd95_mm", "surface_dice", "volume_error_ml", "abs_volume_error_ml", "volume_ref_ml")


def _summary(summary: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One structure's summary entries, every metric present (None where the evaluation lacks it)."""
    s = summary.get(name) or {}
    return {m: s.get(m) for m in SUMMARY_METRICS}


def segmentation_report_section(ev: Mapping[str, Any], manifest: Mapping[str, Any] | None = None, *,
                                overlays: Sequence[Mapping[str, str]] = ()) -> Section:
    """The report section of a segmentation evaluation.

    Args:
        ev: the output of ``SegmentationTask.evaluate``.
        manifest: the model's manifest (for provenance), optional.
        overlays: ``{"case", "caption", "png"}`` entries (base64 PNG, see :func:`overlay_png`).
    """
    names = list(ev.get("label_names", []))
    summary = ev.get("summary", {})
    skipped = ev.get("skipped") or []
    provenance: list[tuple[str, Any]] = [("model", ev.get("model")), ("version", ev.get("model_version")),
                                         ("seconds per case", ev.get("seconds_per_case"))]
    if manifest:
        provenance += [("weights sha256", manifest.get("weights_sha256")),
                       ("target spacing (mm)", manifest.get("preprocessing", {}).get("target_spacing")),
                       ("patch size", manifest.get("inference", {}).get("patch_size")),
                       ("TTA flips", manifest.get("inference", {}).get("tta_flips")),
                       ("largest component", manifest.get("inference", {}).get("largest_component")),
                       ("versions", manifest.get("versions"))]
    return Section("segmentation.html.j2", {
        "title": f"Segmentation evaluation: {ev.get('model')}", "provenance": provenance,
        "head": {"model": ev.get("model"), "version": ev.get("model_version"), "data": ev.get("data"),
                 "split": ev.get("split"), "n": ev.get("n"), "tolerance_mm": ev.get("tolerance_mm")},
        "n_skipped": len(skipped),
        "structures": [{"name": n, "colour": _COLOURS[i % len(_COLOURS)], "summary": _summary(summary, n)}
                       for i, n in enumerate(names)],
        "overlays": [{"case": o["case"], "caption": o.get("caption", o["case"]), "png": o["png"]} for o in overlays],
        "cases": [(c["case"], [(c.get("dice", {}).get(n), c.get("hd95_mm", {}).get(n)) for n in names])
                  for c in ev.get("cases", [])],
        "skipped": [{"input": s.get("input"), "error": s.get("error")} for s in skipped],
    })


def segmentation_card_section(manifest: Mapping[str, Any]) -> Section:
    """The model-card section of a segmentation model: structures, architecture, input,
    inference, the plan and its reasons, training data and mean ± sd metrics per split."""
    t = manifest.get("training", {})
    plan = manifest.get("plan", {})
    pre = manifest.get("preprocessing", {})
    inf = manifest.get("inference", {})
    arch = manifest.get("architecture", {})
    data = t.get("data", {})
    fp = plan.get("fingerprint") or {}
    structures = list(manifest.get("labels", []))[1:]
    return Section("segmentation.md.j2", {
        "structures": structures, "label_values": manifest.get("label_values"),
        "arch": {"name": arch.get("name"), "params": arch.get("params"), "spatial_dims": arch.get("spatial_dims")},
        "pre": {"channels": pre.get("channels"), "target_spacing": pre.get("target_spacing"),
                "normalization": [n.get("scheme") for n in pre.get("normalization", [])]},
        "modalities": manifest.get("modalities") or ["any"],
        "inference": {k: inf.get(k) for k in ("patch_size", "overlap", "tta_flips", "largest_component")},
        "rules": dict(plan.get("rules") or {}),
        "fingerprint": {"n_cases": fp.get("n_cases"), "spacing": fp.get("spacing_mm", {}).get("median"),
                        "shape": fp.get("shape", {}).get("median")} if fp else None,
        "data": {"source": data.get("source"), "layout": data.get("layout"), "n": data.get("n"),
                 "listing_sha256": data.get("listing_sha256")},
        "training": {"split_file": t.get("split_file"), "wall_time_s": t.get("wall_time_s"),
                     "epochs_run": t.get("epochs_run"), "best_epoch": t.get("best_epoch")},
        "metrics": [(split, m.get("n"), [(n, _summary(m.get("summary", {}), n)) for n in structures])
                    for split, m in (manifest.get("metrics") or {}).items()],
        "card_fingerprint": _card_fingerprint(manifest, fp),
        "card_calibration": ["Not applicable: the label map is the most probable class per voxel; the voxel "
                             "probabilities are not calibrated, and the probability map the model explains itself "
                             "with is a picture, not a measurement"],
        "card_refer": _card_refer(manifest),
    })


def _card_fingerprint(manifest: Mapping[str, Any], fp: Mapping[str, Any]) -> list[str]:
    lines = [modality_fingerprint(manifest.get("modalities"))]
    if fp:
        lines.append(f"{fp.get('n_cases')} training cases; spacing {fp.get('spacing_mm', {}).get('min')} to "
                     f"{fp.get('spacing_mm', {}).get('max')} mm; shape {fp.get('shape', {}).get('min')} to "
                     f"{fp.get('shape', {}).get('max')} voxels")
        for c, stats in enumerate(fp.get("intensity") or []):
            lines.append(f"Channel {c} intensity: 0.5th to 99.5th percentile {stats.get('p00_5')} to "
                         f"{stats.get('p99_5')} (mean {stats.get('mean')}, sd {stats.get('sd')})")
        if fp.get("label_volume_ml_mean"):
            names = list(manifest.get("labels", []))
            values = manifest.get("label_values") or list(range(len(names)))
            by_value = {str(v): n for v, n in zip(values, names)}
            vols = ", ".join(f"{by_value.get(k, k)} {v} mL" for k, v in fp["label_volume_ml_mean"].items())
            lines.append(f"Mean structure volume in the training labels: {vols}")
    return lines


def _card_refer(manifest: Mapping[str, Any]) -> list[str]:
    return ["None: every image the model accepts is segmented; there is no fingerprint distance or uncertainty "
            "rule for segmentation yet",
            *modality_refusal(manifest.get("modalities"), dicom="image", files="NIfTI or PNG")]
