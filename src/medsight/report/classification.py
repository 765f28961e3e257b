"""The self-contained HTML report of a classification evaluation."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from medsight.report.plots import confusion_png, reliability_png, roc_png

__all__ = ["write_classification_report"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:960px;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
th{{background:#f3f5f7}}.row{{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}}
.note{{color:#555;font-size:.9rem}}code{{background:#f3f5f7;padding:0 .2rem}}
</style></head><body>
<h1>{title}</h1>
<p class="note">Model <b>{model}</b> v{version} on <code>{data}</code>, split <b>{split}</b>, n = {n}.
Operating threshold {threshold} (rule <code>{rule}</code>, chosen on the validation split only).
Intervals are 95%: AUC by stratified bootstrap, proportions by Wilson score.</p>
<div class="row"><div>{roc}</div><div>{cm}</div></div>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>95% CI</th></tr>{rows}</table>
{extra}
<h2>Provenance</h2><table>{prov}</table>
<p class="note">Research use only. Not a medical device.</p>
</body></html>
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]:.4f} – {v[1]:.4f}"
    return html.escape(str(v))


def write_classification_report(ev: dict[str, Any], path: str | Path, *,
                                manifest: dict[str, Any] | None = None) -> Path:
    """Write ``ev`` (the output of ``evaluate``) as one HTML file with embedded plots."""
    path = Path(path)
    labels = ev.get("labels") or []
    roc = ""
    if ev.get("roc"):
        point = None
        if ev.get("sensitivity") is not None and ev.get("specificity") is not None:
            point = (1 - ev["specificity"], ev["sensitivity"])
        png = roc_png(ev["roc"]["fpr"], ev["roc"]["tpr"], auc=ev.get("auc"), ci=ev.get("auc_ci95"), point=point)
        roc = f'<img alt="ROC curve" src="data:image/png;base64,{png}">'
    cm = ""
    if ev.get("confusion_matrix"):
        names = labels
        if ev.get("positive_label") and len(labels) == 2:
            neg = [x for x in labels if x != ev["positive_label"]][0]
            names = [neg, ev["positive_label"]]
        cm = f'<img alt="confusion matrix" src="data:image/png;base64,{confusion_png(ev["confusion_matrix"], names)}">'
    if ev.get("calibration_bins"):
        cm += (f'<img alt="reliability diagram" src="data:image/png;base64,'
               f'{reliability_png(ev["calibration_bins"], ece=ev.get("ece"), brier=ev.get("brier"))}">')
    rows = "".join(
        f"<tr><td>{k}</td><td>{_fmt(ev.get(k))}</td><td>{_fmt(ev.get(k + '_ci95'))}</td></tr>"
        for k in ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier", "ece") if k in ev)
    extra = ""
    if ev.get("per_class"):
        extra += ("<h2>Per class</h2><table><tr><th>class</th><th>AUC</th><th>sensitivity</th>"
                  "<th>specificity</th><th>n</th></tr>")
        extra += "".join(f"<tr><td>{html.escape(c)}</td><td>{_fmt(m['auc'])}</td><td>{_fmt(m['sensitivity'])}</td>"
                         f"<td>{_fmt(m['specificity'])}</td><td>{m['n']}</td></tr>" for c, m in ev["per_class"].items())
        extra += "</table>"
    if ev.get("skipped"):
        extra += f"<h2>Inputs skipped ({len(ev['skipped'])})</h2><ul>" + "".join(
            f"<li><code>{html.escape(s['input'])}</code>: {html.escape(s['error'])}</li>"
            for s in ev["skipped"][:50]) + "</ul>"
    prov_items = {"model": ev.get("model"), "model version": ev.get("model_version"), "data": ev.get("data"),
                  "images/s": ev.get("images_per_second")}
    if manifest:
        prov_items.update({"weights sha256": manifest.get("weights_sha256"),
                           "training data": (manifest.get("training", {}).get("data", {}) or {}).get("source"),
                           "versions": manifest.get("versions")})
    prov = "".join(f"<tr><th>{k}</th><td>{_fmt(v)}</td></tr>" for k, v in prov_items.items())
    page = _PAGE.format(title=f"MedSight evaluation: {html.escape(str(ev.get('model')))}", model=_fmt(ev.get("model")),
                        version=_fmt(ev.get("model_version")), data=_fmt(ev.get("data")), split=_fmt(ev.get("split")),
                        n=ev.get("n"), threshold=_fmt(ev.get("threshold")), rule=_fmt(ev.get("threshold_rule")),
                        roc=roc, cm=cm, rows=rows, extra=extra, prov=prov)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
