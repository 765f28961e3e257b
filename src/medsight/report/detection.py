"""Detection evaluation for people: the report section of a LUNA16-style FROC analysis
(template ``detection.html.j2``), from :meth:`medsight.metrics.froc.FROCResult.to_dict` outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medsight.report.plots import froc_png
from medsight.report.render import Section

__all__ = ["detection_report_section", "MAX_MISSED_LISTED"]

#: At most this many missed nodules are listed per analysis (the count is always shown).
MAX_MISSED_LISTED = 50


def _analysis(name: str, r: Mapping[str, Any]) -> dict[str, Any]:
    rates = list(r["sensitivities"])
    sens = [r["sensitivities"][k] for k in rates]
    ci = (r.get("ci") or {}).get("sensitivities")
    curve = r.get("curve")
    png = froc_png(curve["fps"], curve["sensitivity"], fp_rates=[float(k) for k in rates], sensitivities=sens,
                   cpm=r["cpm"], ci=ci, title=f"FROC, {name}") if curve else None
    missed = list(r.get("missed") or [])
    return {
        "name": name, "png": png, "cpm": r["cpm"], "cpm_ci": (r.get("ci") or {}).get("cpm"),
        "level": (r.get("ci") or {}).get("level"), "n_boot": (r.get("ci") or {}).get("n_used"),
        "rows": [(k, s, ci[i] if ci else None) for i, (k, s) in enumerate(zip(rates, sens))],
        "counts": [("scans", r["n_scans"]), ("nodules", r["n_nodules"]), ("nodules detected", r["n_detected"]),
                   ("findings scored", r["n_findings"]), ("false positives", r["n_false_positives"]),
                   ("ignored: on excluded annotations", r["n_ignored_excluded"]),
                   ("ignored: second hits on a nodule", r["n_ignored_double"]),
                   ("left out: scans not listed", r["n_findings_unlisted"]),
                   ("left out: over the per-scan cap", r["n_findings_capped"])],
        "operating_point": r.get("operating_point"),
        "min_diameter_mm": r.get("min_diameter_mm"),
        "n_missed": len(missed),
        "missed": [{"seriesuid": m["seriesuid"], "center": ", ".join(f"{c:.1f}" for c in m["center_mm"]),
                    "diameter_mm": m["diameter_mm"]} for m in missed[:MAX_MISSED_LISTED]],
    }


def detection_report_section(results: Mapping[str, Mapping[str, Any]], *, model: str | None = None,
                             version: str | None = None, data: str | None = None,
                             provenance: Mapping[str, Any] | None = None, notes: Sequence[str] = (),
                             skipped: Sequence[Mapping[str, Any]] = ()) -> Section:
    """The report section of one or more FROC analyses of the same detector.

    Args:
        results: analysis name (``"all nodules"``, ``"nodules >= 6 mm"``) → ``FROCResult.to_dict()``
            (with its curve).
        model, version, data: what was evaluated on what, for the heading and provenance.
        provenance: further ``name → value`` rows (weights checksum, versions).
        notes: lines shown under the heading (what was left out, analyses that could not run).
        skipped: scans that could not be read (``input``, ``error``), listed (the first
            :data:`MAX_MISSED_LISTED`).
    """
    return Section("detection.html.j2", {
        "title": f"Detection evaluation: {model or 'findings'}",
        "head": {"model": model, "version": version, "data": data},
        "analyses": [_analysis(name, r) for name, r in results.items()],
        "notes": list(notes), "n_skipped": len(skipped),
        "skipped": [{"input": str(x.get("input")), "error": str(x.get("error"))} for x in skipped[:MAX_MISSED_LISTED]],
        "provenance": [("model", model), ("version", version), ("data", data), *(provenance or {}).items()],
    })
