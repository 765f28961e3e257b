"""Synthetic data for the example task: PNG images of one bright disc on a noisy background,
and a CSV manifest ``path,diameter,split`` (diameter in pixels)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def blob_image(diameter: float, size: int = 32, rng: np.random.Generator | None = None) -> np.ndarray:
    """A ``size``×``size`` uint8 image of a disc of ``diameter`` pixels at a random place."""
    rng = rng or np.random.default_rng(0)
    r = diameter / 2
    cy, cx = rng.uniform(r + 1, size - r - 1, 2)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)
    img = 30 + 180 * disc + rng.normal(0, 12, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_blobs(folder: Path, n: int = 96, *, seed: int = 0, size: int = 32) -> Path:
    """Write ``n`` blob PNGs and their manifest into ``folder``; return the manifest's path."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d = float(rng.uniform(4, 20))
        name = f"blob{i:03d}.png"
        PILImage.fromarray(blob_image(d, size, rng)).save(folder / name)
        split = "train" if i < 0.6 * n else ("val" if i < 0.8 * n else "test")
        rows.append({"path": name, "diameter": round(d, 3), "split": split})
    manifest = folder / "blobs.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "diameter", "split"])
        w.writeheader()
        w.writerows(rows)
    return manifest
