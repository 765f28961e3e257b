"""Out-of-distribution refer rates of a classifier (issue 12): real data only.

Images are written as 8-bit PNG (what a user would send) and predicted through the whole path
(read, preprocess, network, fingerprint distance, decision):

* in distribution: the model's own official test split (PneumoniaMNIST for pneumonia-xray);
* out of distribution: BreastMNIST ultrasound test images; hippocampus MRI (MSD Task04) middle
  slices of the first 200 training volumes.

Usage: .venv/bin/python benchmarks/bench_ood.py [--model pneumonia-xray] [--json benchmarks/results/ood.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from docs_section import write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
MARK = "ood"


def _u8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def sets() -> dict[str, list[np.ndarray]]:
    import nibabel as nib

    out = {}
    with np.load(SHARED / "pneumoniamnist" / "pneumoniamnist.npz") as z:
        out["PneumoniaMNIST test (in distribution)"] = list(z["test_images"])
    with np.load(SHARED / "breastmnist" / "breastmnist.npz") as z:
        out["BreastMNIST ultrasound test"] = list(z["test_images"])
    slices = []
    for v in sorted((SHARED / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))[:200]:
        vol = np.asarray(nib.load(v).dataobj)
        slices.append(_u8(vol[..., vol.shape[2] // 2]))
    out["hippocampus MRI middle slices"] = slices
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="pneumonia-xray")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "ood.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from PIL import Image as PILImage

    import medsight

    model = medsight.load(args.model)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, images in sets().items():
            paths = []
            for i, im in enumerate(images):
                p = Path(tmp) / f"{len(rows)}_{i}.png"
                PILImage.fromarray(im).save(p)
                paths.append(str(p))
            results = [r for r in model.predict(paths) if r.ok]
            rate = float(np.mean([bool(r.refer) for r in results]))
            rows[name] = {"n": len(results), "refer_rate": round(rate, 4)}
            print(name, rows[name])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": args.model, "threshold": model.manifest["ood"]["threshold"],
                                     "sets": rows}, indent=1))
    lines = ["## Out-of-distribution refer rates (real data)", "",
             f"Command: `.venv/bin/python benchmarks/bench_ood.py --model {args.model}`: each image written as an "
             "8-bit PNG and predicted through the whole path; referred when the Mahalanobis distance of its "
             "penultimate features from the training images' exceeds the 0.99 quantile of the validation images' "
             f"({model.manifest['ood']['threshold']}).", "", "| images | n | referred |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['refer_rate']:.1%} |" for k, v in rows.items()]
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
