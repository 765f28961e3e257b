"""Batch throughput over an archive (issue 13): time linear in the number of images, memory flat.

The 624 PneumoniaMNIST test images are written once as 8-bit PNG (real data); a CSV manifest
lists them repeated to 1k, 10k and 100k rows, and ``medsight batch --model pneumonia-xray
--manifest LIST --out RESULTS.jsonl`` runs over each in a fresh process (what a user runs). The
batch's own summary gives its prediction time and its peak resident memory; the wall time
includes starting Python and loading the model. ``--workers 2`` is run once at 10k for the
parallel path.

Usage: .venv/bin/python benchmarks/bench_batch.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from docs_section import write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
MARK = "batch"


def _run(manifest: Path, out: Path, workers: int) -> dict:
    summary = out.with_suffix(".summary.json")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medsight", "batch", "--model", "pneumonia-xray", "--manifest", str(manifest),
                    "--out", str(out), "--workers", str(workers), "--json", str(summary), "--quiet"], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    wall = time.perf_counter() - t0
    s = json.loads(summary.read_text())
    lines = sum(1 for _ in out.open())
    assert lines == s["n"] and s["failed"] == 0, (lines, s)
    return {**s, "wall_s": round(wall, 2), "lines": lines}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "batch.json")
    args = ap.parse_args()
    from PIL import Image as PILImage

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with np.load(SHARED / "pneumoniamnist" / "pneumoniamnist.npz") as z:
            images = z["test_images"]
        (tmp / "png").mkdir()
        names = []
        for i, im in enumerate(images):
            PILImage.fromarray(im).save(tmp / "png" / f"{i:04d}.png")
            names.append(f"png/{i:04d}.png")
        runs = [(n, 1) for n in args.sizes] + [(n, 2) for n in args.sizes if n == 10000]
        for n, workers in runs:
            manifest = tmp / f"list{n}.csv"
            manifest.write_text("path\n" + "".join(names[i % len(names)] + "\n" for i in range(n)))
            r = _run(manifest, tmp / f"out{n}_{workers}.jsonl", workers)
            rows.append({"images": n, "workers": workers, **r})
            print(rows[-1], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    base = next(r for r in rows if r["workers"] == 1)
    per_image = base["seconds"] / base["images"]
    lines = ["## Batch inference over an archive (real data, repeated)", "",
             "Command: `.venv/bin/python benchmarks/bench_batch.py`: the 624 PneumoniaMNIST test images as 8-bit PNG, "
             "listed repeated in a CSV manifest, through `medsight batch --model pneumonia-xray --manifest LIST --out "
             "RESULTS.jsonl` in a fresh process each (2-core machine, nothing else running). Prediction time and peak "
             "RSS are the batch's own summary; wall time adds starting Python and loading the model. The last "
             "column is the prediction time over n times the 1k run's time per image (1.00: linear).", "",
             "| images | workers | prediction s | images/s | wall s | peak RSS MB | time ratio to linear |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['images']:,} | {r['workers']} | {r['seconds']:.1f} | {r['images_per_second']:,.0f} | "
                     f"{r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['seconds'] / (per_image * r['images']):.2f} |")
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
