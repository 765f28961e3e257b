"""The detection result's own writer: its database columns (what the service's worklist ranks
and shows). Every other format (JSON, CSV, the SR of its nodules, the overlay as PNG and SC,
the crops) is served by the writers every result has (:mod:`medsight.tasks.writers`)."""

from __future__ import annotations

from typing import Any

from medsight.tasks.detection.result import DetectionResult
from medsight.tasks.writers import register_writer

__all__: list[str] = []


@register_writer(DetectionResult, "db")
def _detection_db_row(result: DetectionResult) -> dict[str, Any]:
    """``label``: how many nodules and the largest (``"2 nodules, largest 12.3 mm (4A)"``,
    ``"no nodule"``); ``score``: the top nodule's probability (None without one); ``threshold``:
    the operating point; ``positive`` None (a detector makes no positive/negative decision, so
    no ``above_threshold`` rule and no treatment suggestion follow from it: the nodule alert
    rules read the findings)."""
    outputs = result.to_dict()
    outputs.pop("provenance", None)
    outputs.pop("input", None)
    nodules = result.nodules
    if nodules:
        big = max(nodules, key=lambda n: n.diameter_mm)
        label = (f"{len(nodules)} nodule{'s' if len(nodules) > 1 else ''}, "
                 f"{'largest ' if len(nodules) > 1 else ''}{big.diameter_mm:.1f} mm ({big.category})")
    else:
        label = "no nodule"
    return {"label": label[:80], "score": nodules[0].score if nodules else None, "threshold": result.threshold,
            "positive": None, "outputs": outputs}
