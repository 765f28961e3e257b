"""CPU time of candidate lung-nodule detector designs (issue 10), with random weights.

For each candidate stage the benchmark times a forward pass (no gradient, ``--threads``
threads) on one 3D patch and extrapolates to a whole chest CT by the number of sliding
windows the lung crop needs (overlap 0.25). The lung crop of a 512x512x300 CT at 0.7x0.7x1.0 mm
is taken as 330x250x280 mm (x, y, z; both lungs and a margin), resampled to ``--spacing`` mm.
The false-positive-reduction stage is timed on a batch of 32^3 crops (``--candidates`` per scan).

Usage:
    .venv/bin/python benchmarks/bench_detector_candidates.py [--json benchmarks/results/detector_candidates.json]
        [--threads 2] [--spacing 1.0] [--patch 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

LUNG_CROP_MM = (280.0, 250.0, 330.0)  # z, y, x


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _windows(crop_vox: tuple[int, ...], patch: int, overlap: float = 0.25) -> int:
    step = max(1, int(patch * (1 - overlap)))
    return math.prod(max(1, math.ceil((n - patch) / step) + 1) for n in crop_vox)


def candidates() -> dict[str, torch.nn.Module]:
    from monai.networks.nets import BasicUNet, UNet

    from medsight.models.registry import create_model

    return {
        "heatmap BasicUNet (8..128 features)": BasicUNet(spatial_dims=3, in_channels=1, out_channels=2,
                                                         features=(8, 16, 32, 64, 128, 8)),
        "heatmap BasicUNet (16..256 features)": BasicUNet(spatial_dims=3, in_channels=1, out_channels=2,
                                                          features=(16, 32, 64, 128, 256, 16)),
        "heatmap residual UNet (8,16,32,64; 1 res unit)": UNet(spatial_dims=3, in_channels=1, out_channels=2,
                                                               channels=(8, 16, 32, 64), strides=(2, 2, 2),
                                                               num_res_units=1),
        "FPR resnet-small 3D (width 16), 32^3 crops": create_model("resnet-small", spatial_dims=3, in_channels=1,
                                                                   num_classes=2, width=16),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    crop = tuple(int(round(mm / args.spacing)) for mm in LUNG_CROP_MM)
    n_windows = _windows(crop, args.patch)
    rows = []
    for name, net in candidates().items():
        net.eval()
        params = sum(p.numel() for p in net.parameters())
        fpr = name.startswith("FPR")
        x = torch.zeros(args.candidates if fpr else 1, 1, *((32,) * 3 if fpr else (args.patch,) * 3))
        with torch.inference_mode():
            seconds = _time(lambda net=net, x=x: net(x), args.repeats)
        row = {"candidate": name, "parameters": params,
               "input": list(x.shape), "seconds_per_forward": round(seconds, 3)}
        if not fpr:
            row.update(windows_per_scan=n_windows, seconds_per_scan=round(seconds * n_windows, 1))
        else:
            row.update(seconds_per_scan=round(seconds, 2))
        rows.append(row)
        print(json.dumps(row))
    out = {"threads": args.threads, "spacing_mm": args.spacing, "patch": args.patch, "lung_crop_voxels": crop,
           "torch": torch.__version__, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
