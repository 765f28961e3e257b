"""Single-input latency, torch eager against ONNX Runtime (issue 13): real data.

One input at a time through the whole predict path (decode the file, preprocess, network,
decision), as a service answers one image: ``--repeats`` timed runs after ``--warmup``
untimed ones, p50 and p95 per backend, on ``--threads`` threads (torch's and ONNX Runtime's
intra-op threads alike).

* ``pneumonia-xray``: PneumoniaMNIST test images written as 8-bit PNG, with its fingerprint
  distance (two outputs of one graph on ONNX Runtime);
* ``hippocampus-mri``: a whole hippocampus MRI volume (NIfTI) through sliding-window inference.

The ONNX file is made here by ``medsight export`` into a scratch folder.

Usage: .venv/bin/python benchmarks/bench_latency.py [--threads 2] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from docs_section import write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
MARK = "latency"


def _time(predict, inputs: list[str], warmup: int, repeats: int) -> dict[str, float]:
    for p in inputs[:warmup]:
        predict([p])
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        (r,) = predict([inputs[i % len(inputs)]])
        times.append(time.perf_counter() - t0)
        assert r.ok, r
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "n": repeats}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--volume-repeats", type=int, default=10)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "latency.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch
    from PIL import Image as PILImage

    from medsight.engine.predictor import Predictor
    from medsight.models.export import export_model
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with np.load(SHARED / "pneumoniamnist" / "pneumoniamnist.npz") as z:
            images = z["test_images"][:100]
        pngs = []
        for i, im in enumerate(images):
            pngs.append(str(tmp / f"{i}.png"))
            PILImage.fromarray(im).save(pngs[-1])
        volumes = [str(p) for p in sorted((SHARED / "msd_hippocampus" / "imagesTr").glob("hippocampus_*.nii.gz"))[:5]]
        for name, inputs, repeats in (("pneumonia-xray", pngs, args.repeats),
                                      ("hippocampus-mri", volumes, args.volume_repeats)):
            export_model(load_model(name), tmp / name)
            row = {"model": name, "input": "28x28 PNG" if name == "pneumonia-xray" else "NIfTI volume"}
            for backend in ("torch", "onnxruntime"):
                m = load_model(tmp / name, backend=backend)
                pred = Predictor(m, get_task(m.task))
                row[backend] = _time(pred.predict, inputs, warmup=5, repeats=repeats)
                print(name, backend, row[backend], flush=True)
            if (load_model(name).manifest.get("inference") or {}).get("precision") == "bf16":
                m = load_model(tmp / name)  # the same network in fp32: what ONNX Runtime computes in
                m.manifest["inference"] = {**m.manifest["inference"], "precision": "fp32"}
                row["torch_fp32"] = _time(Predictor(m, get_task(m.task)).predict, inputs, warmup=2, repeats=repeats)
                print(name, "torch fp32", row["torch_fp32"], flush=True)
            row["speedup_p50"] = round(row["torch"]["p50_ms"] / row["onnxruntime"]["p50_ms"], 2)
            rows.append(row)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__,
                                     "onnxruntime": __import__("onnxruntime").__version__, "rows": rows}, indent=1))
    lines = ["## Single-input latency: torch eager against ONNX Runtime (real data)", "",
             f"Command: `.venv/bin/python benchmarks/bench_latency.py --threads {args.threads}`: one input at a time "
             "through the whole predict path (decode, preprocess, network, decision; the X-ray model's fingerprint "
             f"distance too), {args.threads} threads, nothing else running.", "",
             "| model | input | torch p50 | torch p95 | ONNX Runtime p50 | ONNX Runtime p95 | speed-up (p50) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['input']} | {r['torch']['p50_ms']:.2f} ms | {r['torch']['p95_ms']:.2f} ms "
              f"| {r['onnxruntime']['p50_ms']:.2f} ms | {r['onnxruntime']['p95_ms']:.2f} ms | {r['speedup_p50']}× |"
              for r in rows]
    lines += [f"\n{r['model']}'s own inference runs in bf16 (manifest `inference.precision`); ONNX Runtime runs the "
              f"graph in fp32. The same torch network in fp32: p50 {r['torch_fp32']['p50_ms']:.2f} ms, p95 "
              f"{r['torch_fp32']['p95_ms']:.2f} ms." for r in rows if "torch_fp32" in r]
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
