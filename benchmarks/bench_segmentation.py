"""Segmentation speed and memory on CPU: results go to docs/benchmarks.md ("Segmentation").

Scenarios, each run in its own process so that peak memory (max RSS) is its own:

* ``hippocampus``: the shipped ``hippocampus-mri`` model on real MSD hippocampus volumes
  (the held-out test split): read NIfTI → segment → write the NIfTI mask, per volume, warm
  (the model loaded once); the first volume is reported separately.
* ``ct``: sliding-window inference of the same model over a synthetic CT-sized volume
  (``--shape``, default 300x512x512 at 1 mm, so the network grid is the full size), through the
  slab path that bounds memory; ``--max-voxels 0`` forces the whole-volume path for comparison.
  ``--network pointwise`` swaps the model's network for a 1x1x1 convolution, which takes the
  network's own cost out and leaves the memory of the inference machinery (fast: used for the
  slabs-versus-whole-volume memory comparison).

Usage:
    python benchmarks/bench_segmentation.py all                    # both, Markdown table
    python benchmarks/bench_segmentation.py hippocampus --cases 20
    python benchmarks/bench_segmentation.py ct --shape 300 512 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_hippocampus(model: str, n_cases: int, threads: int) -> dict:
    import numpy as np
    import torch

    from medsight.io import read
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    torch.set_num_threads(threads)
    split = json.loads((REPO / "configs" / "hippocampus-split.json").read_text())["test"][:n_cases]
    root = SHARED / "msd_hippocampus" / "imagesTr"
    t0 = time.perf_counter()
    m = load_model(model)
    load_s = time.perf_counter() - t0
    task = get_task("segmentation")
    times, shapes = [], []
    with tempfile.TemporaryDirectory() as out:
        for cid in split:
            t = time.perf_counter()
            image = read(root / f"{cid}.nii.gz")
            (res,) = task.infer(m, [image], inputs=[str(root / f"{cid}.nii.gz")])
            task.write_output(res, out)
            times.append(time.perf_counter() - t)
            shapes.append(image.shape)
    warm = np.asarray(times[1:]) if len(times) > 1 else np.asarray(times)
    return {"scenario": "hippocampus", "model": model, "cases": len(times), "model_load_s": round(load_s, 3),
            "first_s": round(times[0], 3), "median_s": round(float(np.median(warm)), 3),
            "p90_s": round(float(np.percentile(warm, 90)), 3), "max_s": round(float(warm.max()), 3),
            "median_shape": [int(x) for x in np.median(np.asarray(shapes), 0)], "peak_rss_mb": round(_peak_mb(), 1),
            "threads": threads}


def bench_ct(model: str, shape: list[int], max_voxels: int, overlap: float | None, threads: int,
             network: str = "model", lcc: bool = True) -> dict:
    import numpy as np
    import torch

    from medsight.io.image import Image
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    torch.set_num_threads(threads)
    m = load_model(model)
    if network == "pointwise":
        m.network = torch.nn.Conv3d(int(m.manifest["architecture"]["in_channels"]),
                                    int(m.manifest["architecture"]["num_classes"]), 1)
    if max_voxels:
        m.manifest["inference"]["max_voxels"] = max_voxels
    else:
        m.manifest["inference"]["max_voxels"] = int(np.prod(shape)) + 1
    if overlap is not None:
        m.manifest["inference"]["overlap"] = overlap
    if not lcc:
        m.manifest["inference"]["largest_component"] = []
    rng = np.random.default_rng(0)
    arr = np.empty((1, *shape), np.int16)
    for z in range(shape[0]):  # slice by slice, so that making the test volume does not set the peak
        arr[0, z] = rng.normal(40, 300, shape[1:]).clip(-1024, 3000)
    before = _peak_mb()
    image = Image(arr, spacing=(1.0, 1.0, 1.0), modality="MR")
    task = get_task("segmentation")
    t = time.perf_counter()
    mask = task.segment(m, image)
    seconds = time.perf_counter() - t
    return {"scenario": "ct", "network": network, "largest_component": lcc, "shape": shape,
            "voxels_millions": round(float(np.prod(shape)) / 1e6, 1),
            "path": "slabs" if max_voxels and np.prod(shape) > max_voxels else "whole volume",
            "max_voxels": m.manifest["inference"]["max_voxels"], "overlap": m.manifest["inference"]["overlap"],
            "patch": m.manifest["inference"]["patch_size"], "seconds": round(seconds, 1),
            "peak_rss_mb": round(_peak_mb(), 1), "peak_rss_before_inference_mb": round(before, 1),
            "input_mb": round(arr.nbytes / 2**20, 1), "mask_dtype": str(mask.dtype), "threads": threads}


def _run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=["hippocampus", "ct", "all"])
    p.add_argument("--model", default="hippocampus-mri")
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512])
    p.add_argument("--max-voxels", type=int, default=16_000_000, help="0: whole-volume path")
    p.add_argument("--overlap", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--network", choices=["model", "pointwise"], default="model")
    p.add_argument("--no-lcc", action="store_true", help="skip largest-component post-processing")
    p.add_argument("--json", action="store_true", help="print one JSON line (used by 'all')")
    a = p.parse_args()
    if a.scenario == "hippocampus":
        r = bench_hippocampus(a.model, a.cases, a.threads)
    elif a.scenario == "ct":
        r = bench_ct(a.model, a.shape, a.max_voxels, a.overlap, a.threads, a.network, lcc=not a.no_lcc)
    else:
        shape = ["--shape", *map(str, a.shape)]
        common = ["--model", a.model, "--threads", str(a.threads)]
        double = ["--shape", str(2 * a.shape[0]), *map(str, a.shape[1:])]
        machinery = ["--network", "pointwise", "--no-lcc"]
        rows = [_run_child(["hippocampus", *common, "--cases", str(a.cases)]),
                _run_child(["ct", *common, *shape, "--max-voxels", str(a.max_voxels)]),
                _run_child(["ct", *common, *shape, "--max-voxels", str(a.max_voxels), *machinery]),
                _run_child(["ct", *common, *shape, "--max-voxels", "0", *machinery]),
                _run_child(["ct", *common, *double, "--max-voxels", str(a.max_voxels), *machinery]),
                _run_child(["ct", *common, *double, "--max-voxels", "0", *machinery])]
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()}")
        print("| scenario | what | time | peak RSS (MB) |\n|---|---|---|---|")
        h = rows[0]
        print(f"| hippocampus volume (real, {h['cases']} test cases, median shape {h['median_shape']}) | read + "
              f"segment + write NIfTI, warm | median {h['median_s']} s, p90 {h['p90_s']} s, max {h['max_s']} s "
              f"(first {h['first_s']} s; model load {h['model_load_s']} s) | {h['peak_rss_mb']} |")
        for c in rows[1:]:
            what = ("shipped network, largest component on" if c["network"] == "model"
                    else "1x1x1 network, no post-processing (inference machinery only)")
            print(f"| CT-sized volume (synthetic {'x'.join(map(str, c['shape']))}, {c['voxels_millions']} M voxels; "
                  f"int16 input {c['input_mb']} MB), {what} | sliding window ({c['path']}, patch {c['patch']}, overlap "
                  f"{c['overlap']}) | {c['seconds']} s | {c['peak_rss_mb']} (before inference "
                  f"{c['peak_rss_before_inference_mb']}) |")
        print(json.dumps(rows))
        return
    print(json.dumps(r))


if __name__ == "__main__":
    main()
