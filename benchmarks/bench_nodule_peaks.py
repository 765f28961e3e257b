"""Does the detector's network see each nodule at all? Its peak probability within each
benchmark nodule's radius, by size (SYNTHETIC data: ``medsight.data.synthetic_ct``).

A nodule whose peak stays under the candidate threshold never becomes a candidate, and no
ranking or second stage can find it; this is how docs/detection.md measured that 2.0.0 missed
nodules under 6 mm (median peak 2e-4) and that 3.0.0 sees more of them.

Usage:
    python -m medsight.data.synthetic_ct runs/synthetic-ct/bench --n 60 --seed 0
    .venv/bin/python benchmarks/bench_nodule_peaks.py --model lung-nodule-ct [--bench runs/synthetic-ct/bench] \\
        [--scans 30] [--json benchmarks/results/nodule_peaks.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BANDS = ((3.0, 4.0), (4.0, 6.0), (6.0, 10.0), (10.0, 40.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lung-nodule-ct")
    ap.add_argument("--bench", default="runs/synthetic-ct/bench")
    ap.add_argument("--scans", type=int, default=30, help="the first N scans (by series UID)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from medsight.models.saved import load_model
    from medsight.tasks.detection.data import open_detection_data
    from medsight.tasks.detection.detect import detect
    from medsight.tasks.detection.task import DetectionTask, _settings

    model, task = load_model(args.model), DetectionTask()
    settings = _settings(model)
    data = open_detection_data(args.bench, max_cases=args.scans)
    rows = []
    for case in data.cases:
        scan = task.prepare_image(model, case.image())
        found, prob = detect(model.run, scan, settings)
        grid = np.ogrid[tuple(slice(0, n) for n in prob.shape)]
        for x, y, z, diameter in case.covariates["nodules"]:
            centre = np.array([x, y, z], float)
            g = scan.to_grid(centre[None])[0]
            radius = diameter / 2
            ball = sum((a - float(v)) ** 2 for a, v in zip(grid, g)) <= max(radius, 1.5) ** 2
            hit = any(np.linalg.norm(np.array(d.center_mm) - centre) <= radius for d in found)
            rows.append({"scan": case.id, "diameter_mm": round(float(diameter), 2),
                         "peak": float(prob[ball].max()) if ball.any() else 0.0, "candidate": bool(hit)})
    bands = []
    for lo, hi in BANDS:
        sel = [r for r in rows if lo <= r["diameter_mm"] < hi]
        if sel:
            bands.append({"diameter_mm": [lo, hi], "n": len(sel),
                          "median_peak": float(np.median([r["peak"] for r in sel])),
                          "peak_over_0.1": sum(r["peak"] > 0.1 for r in sel),
                          "candidates": sum(r["candidate"] for r in sel)})
    out = {"model": args.model, "version": model.version, "bench": args.bench, "scans": len(data.cases),
           "candidate_threshold": settings.candidate_threshold, "bands": bands, "nodules": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "nodules"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
