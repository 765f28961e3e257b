"""Benchmark of the classical lung mask (medsight.transforms.lung) on a full-size synthetic chest CT.

The volume (synthetic, built slice by slice here): 300 slices of 512x512 int16 at 0.7x0.7x1.0 mm, a
soft-tissue body ellipse, two lung ellipsoids at -850 HU, a trachea running out of the top slices,
a juxtapleural nodule. Measured: wall time of ``lung_mask`` and the process's peak RSS increase.

Usage:
    .venv/bin/python benchmarks/bench_lung_mask.py [--json benchmarks/results/lung_mask.json]
        [--slices 300] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from medsight.io.image import Image
from medsight.transforms.geometry import Grid
from medsight.transforms.lung import lung_mask


def chest(slices: int, size: int, spacing=(1.0, 0.7, 0.7)) -> Image:
    arr = np.full((1, slices, size, size), -1000, np.int16)
    y = (np.arange(size) - (size - 1) / 2) * spacing[1]
    x = (np.arange(size) - (size - 1) / 2) * spacing[2]
    yy, xx = np.meshgrid(y, x, indexing="ij")
    zext = (slices - 1) / 2 * spacing[0]
    for k in range(slices):
        z = (k - (slices - 1) / 2) * spacing[0]  # index 0 is the lowest slice: +z is superior
        s = arr[0, k]
        s[(xx / 165) ** 2 + (yy / 120) ** 2 <= 1] = 40
        for cx in (-75.0, 75.0):
            r2 = 1 - (z / (1.1 * zext)) ** 2
            s[((xx - cx) / 60) ** 2 + (yy / 85) ** 2 <= r2] = -850
        if z > 0.3 * zext:  # the trachea above the carina
            s[xx**2 + (yy + 50) ** 2 <= 9**2] = -1000
        if abs(z) < 8:
            s[(xx + 133) ** 2 + yy**2 + z**2 <= 8**2] = 40
    return Image(array=arr, spacing=spacing, modality="CT")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    image = chest(args.slices, args.size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    lungs = lung_mask(image)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c = (args.size - 1) / 2  # the trachea's axis, 10 % below the top slice
    trachea = Grid.of(image).index_to_world([0.9 * (args.slices - 1), c - 50 / image.spacing[1], c])
    out = {"shape": list(image.shape), "spacing_mm": list(image.spacing), "dtype": str(image.array.dtype),
           "seconds": round(seconds, 2), "rss_before_mb": round(before), "rss_peak_mb": round(peak),
           "input_mb": round(image.array.nbytes / 2**20), "found": lungs.found,
           "volumes_ml": {k: round(v) for k, v in lungs.volumes_ml.items()},
           "trachea_inside": bool(lungs.inside(trachea))}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
