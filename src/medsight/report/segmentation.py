"""Segmentation outputs for people: per-case CSV, HTML report with overlays, model card."""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_case_csv", "overlay_png", "write_segmentation_report", "segmentation_model_card", "CSV_METRICS"]

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


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:1rem 0;font-size:.9rem}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}}
th{{background:#f3f5f7}}td:first-child,th:first-child{{text-align:left}}.note{{color:#555;font-size:.9rem}}
code{{background:#f3f5f7;padding:0 .2rem}}figure{{margin:1rem 0}}figcaption{{font-size:.85rem;color:#444}}
</style></head><body>
<h1>{title}</h1>
<p class="note">Model <b>{model}</b> v{version} on <code>{data}</code>, split <b>{split}</b>, n = {n} case(s){skipped}.
Dice and surface Dice (tolerance {tol} mm) are fractions; HD95 is the 95th-percentile symmetric surface distance in mm;
volume error is prediction − reference in mL. Mean ± sd over cases (sd with n−1).</p>
<h2>Summary per structure</h2>
<table><tr><th>structure</th><th>Dice</th><th>HD95 (mm)</th><th>surface Dice</th><th>volume error (mL)</th>
<th>|volume error| (mL)</th><th>reference volume (mL)</th></tr>{summary}</table>
<h2>Examples</h2>
<p class="note">Reference contours solid, prediction dashed; one colour per structure ({legend}).</p>
{overlays}
<h2>Per case</h2>
<table><tr><th>case</th>{case_head}</tr>{case_rows}</table>
{skipped_list}
<h2>Provenance</h2><table>{prov}</table>
<p class="note">Research use only. Not a medical device.</p>
</body></html>
"""


def write_segmentation_report(ev: Mapping[str, Any], path: str | Path, *, manifest: Mapping[str, Any] | None = None,
                              overlays: Sequence[Mapping[str, str]] = ()) -> Path:
    """Write an evaluation as one self-contained HTML file.

    Args:
        ev: the output of ``SegmentationTask.evaluate``.
        path: the HTML file to write.
        manifest: the model's manifest (for provenance), optional.
        overlays: ``{"case", "caption", "png"}`` entries (base64 PNG, see :func:`overlay_png`).
    """
    path = Path(path)
    names = list(ev.get("label_names", []))
    summ = ev.get("summary", {})

    def ms(name: str, metric: str, nd: int = 3) -> str:
        s = summ.get(name, {}).get(metric, {})
        if s.get("mean") is None:
            return "–"
        extra = f" ({s['n_undefined']} undefined)" if s.get("n_undefined") else ""
        return f"{s['mean']:.{nd}f} ± {s['sd']:.{nd}f}{extra}"

    summary = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{ms(n, 'dice')}</td><td>{ms(n, 'hd95_mm', 2)}</td>"
        f"<td>{ms(n, 'surface_dice')}</td><td>{ms(n, 'volume_error_ml', 4)}</td>"
        f"<td>{ms(n, 'abs_volume_error_ml', 4)}</td><td>{ms(n, 'volume_ref_ml', 4)}</td></tr>" for n in names)
    legend = ", ".join(f'<span style="color:{_COLOURS[i % len(_COLOURS)]}">{html.escape(n)}</span>'
                       for i, n in enumerate(names))
    figs = "".join(f'<figure><img alt="overlay {html.escape(o["case"])}" src="data:image/png;base64,{o["png"]}">'
                   f'<figcaption>{html.escape(o.get("caption", o["case"]))}</figcaption></figure>' for o in overlays)
    if not overlays:
        figs = '<p class="note">No overlays (the images were not available when the report was written).</p>'
    head = "".join(f"<th>Dice {html.escape(n)}</th><th>HD95 {html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><td>{html.escape(str(c['case']))}</td>"
        + "".join(f"<td>{_fmt(c.get('dice', {}).get(n))}</td><td>{_fmt(c.get('hd95_mm', {}).get(n), 2)}</td>"
                  for n in names) + "</tr>" for c in ev.get("cases", []))
    skipped = ev.get("skipped") or []
    skipped_list = ""
    if skipped:
        items = "".join(f"<li><code>{html.escape(str(s['input']))}</code>: {html.escape(str(s['error']))}</li>"
                        for s in skipped)
        skipped_list = f"<h2>Skipped cases</h2><ul>{items}</ul>"
    prov_items: list[tuple[str, Any]] = [("model", ev.get("model")), ("version", ev.get("model_version")),
                                         ("seconds per case", ev.get("seconds_per_case"))]
    if manifest:
        prov_items += [("weights sha256", manifest.get("weights_sha256")),
                       ("target spacing (mm)", manifest.get("preprocessing", {}).get("target_spacing")),
                       ("patch size", manifest.get("inference", {}).get("patch_size")),
                       ("TTA flips", manifest.get("inference", {}).get("tta_flips")),
                       ("largest component", manifest.get("inference", {}).get("largest_component")),
                       ("versions", manifest.get("versions"))]
    prov = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in prov_items)
    page = _PAGE.format(title=f"Segmentation evaluation: {html.escape(str(ev.get('model')))}",
                        model=html.escape(str(ev.get("model"))), version=html.escape(str(ev.get("model_version"))),
                        data=html.escape(str(ev.get("data"))), split=html.escape(str(ev.get("split"))), n=ev.get("n"),
                        skipped=f", {len(skipped)} skipped" if skipped else "", tol=ev.get("tolerance_mm"),
                        summary=summary, legend=legend, overlays=figs, case_head=head, case_rows=rows,
                        skipped_list=skipped_list, prov=prov)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def segmentation_model_card(manifest: Mapping[str, Any], *, reproduce: str | None = None) -> str:
    """A Markdown model card: intended use, data, plan, metrics (mean ± sd), limits."""
    t = manifest.get("training", {})
    plan = manifest.get("plan", {})
    pre = manifest.get("preprocessing", {})
    inf = manifest.get("inference", {})
    arch = manifest.get("architecture", {})
    names = [n for n in manifest.get("labels", [])][1:]
    lines = [f"# {manifest.get('name')} (v{manifest.get('version')})", "", manifest.get("description") or "", "",
             "## Model",
             f"- Task: segmentation of {', '.join(names)} ({arch.get('spatial_dims')}D); label values "
             f"{manifest.get('label_values')}",
             f"- Architecture: {arch.get('name')} {arch.get('params') or ''}",
             f"- Input: {pre.get('channels')} channel(s), modality {', '.join(manifest.get('modalities') or ['any'])}; "
             f"resampled to {pre.get('target_spacing')} mm; normalisation "
             f"{[n.get('scheme') for n in pre.get('normalization', [])]}",
             f"- Inference: sliding window {inf.get('patch_size')} voxels, overlap {inf.get('overlap')}, Gaussian "
             f"blending; flip TTA {inf.get('tta_flips')}; largest connected component {inf.get('largest_component')}; "
             "output resampled to the input's grid",
             "", "## Plan (from the training set's fingerprint)"]
    for k, v in (plan.get("rules") or {}).items():
        lines.append(f"- {k}: {v}")
    fp = plan.get("fingerprint") or {}
    if fp:
        lines.append(f"- Fingerprint: {fp.get('n_cases')} training cases, median spacing "
                     f"{fp.get('spacing_mm', {}).get('median')} mm, median shape {fp.get('shape', {}).get('median')}")
    data = t.get("data", {})
    lines += ["", "## Training data",
              f"- Source: {data.get('source')} ({data.get('layout')}); cases per split {data.get('n')}",
              f"- Split: {t.get('split_file') or 'seeded random'}; listing sha256 {data.get('listing_sha256')}",
              f"- Training wall time: {t.get('wall_time_s')} s; epochs run {t.get('epochs_run')}, best epoch "
              f"{t.get('best_epoch')}", "", "## Metrics (mean ± sd over cases)"]
    for split, m in (manifest.get("metrics") or {}).items():
        lines.append(f"- {split} (n = {m.get('n')}):")
        for n in names:
            s = m.get("summary", {}).get(n, {})

            def f(metric: str, nd: int = 3, s: Mapping[str, Any] = s) -> str:
                x = s.get(metric) or {}
                return "–" if x.get("mean") is None else f"{x['mean']:.{nd}f} ± {x['sd']:.{nd}f}"

            lines.append(f"  - {n}: Dice {f('dice')}, HD95 {f('hd95_mm', 2)} mm, surface Dice {f('surface_dice')}, "
                         f"volume error {f('volume_error_ml', 4)} mL")
    if reproduce:
        lines += ["", "## Reproduce", "```", reproduce, "```"]
    lines += ["", "## Limits",
              "- Research use only; not a medical device. Validate on local data before any clinical use.",
              "- Holds only for images like the training data (modality, field of view, resolution, population)."]
    return "\n".join(lines) + "\n"
