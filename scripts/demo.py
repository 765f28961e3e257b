"""`make demo`: MedSight's main job end to end, as a user would run it.

1. Find PneumoniaMNIST: ../shared/data when present, else the official download (MD5-checked).
2. Train a chest X-ray classifier for a few minutes (configs/pneumonia-xray.yaml, fewer epochs).
3. Evaluate it on the official test split: JSON metrics with confidence intervals + HTML report.
4. Predict sample images (PNG and DICOM made from test images) with the shipped model
   `pneumonia-xray`.
5. Say what it did and where everything is.

Every step is a `medsight` command, printed before it runs, so it can be copied.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("MEDSIGHT_DEMO_DIR", REPO / "runs" / "demo"))
MEDSIGHT = [sys.executable, "-m", "medsight.cli"]
EPOCHS = int(os.environ.get("MEDSIGHT_DEMO_EPOCHS", "8"))
QUICK = ["--set", "train.steps_per_epoch=15"] if os.environ.get("MEDSIGHT_DEMO_QUICK") else []  # tests


def run(*args: object) -> None:
    cmd = [*MEDSIGHT, *map(str, args)]
    print(f"\n$ medsight {' '.join(shlex.quote(str(a)) for a in args)}", flush=True)
    subprocess.run(cmd, check=True)


def find_data() -> str:
    for base in (os.environ.get("MEDSIGHT_SHARED_DATA"), REPO.parent / "shared" / "data"):
        if base and (Path(base) / "pneumoniamnist" / "pneumoniamnist.npz").is_file():
            return str(Path(base) / "pneumoniamnist" / "pneumoniamnist.npz")
    return "medmnist:pneumoniamnist"  # downloaded from Zenodo and MD5-checked


def write_samples(npz: str, folder: Path) -> list[Path]:
    """A few official test images as PNG, and one as a CR DICOM (as a modality would send it)."""
    import numpy as np
    from PIL import Image

    from medsight.data.medmnist import resolve_medmnist

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(resolve_medmnist(npz)) as z:
        x, y = z["test_images"], z["test_labels"].reshape(-1)
    paths = []
    for i in (0, 1, 2, 3):
        p = folder / f"test{i:03d}_{'pneumonia' if y[i] else 'normal'}.png"
        Image.fromarray(x[i]).save(p)
        paths.append(p)
    sys.path.insert(0, str(REPO / "tests"))
    from support.bad_inputs import xray_dicom

    paths.append(xray_dicom(folder / f"test004_{'pneumonia' if y[4] else 'normal'}.dcm", x[4], modality="CR"))
    return paths


def main() -> None:
    t0 = time.time()
    data = find_data()
    print(f"MedSight demo: PneumoniaMNIST from {data}; everything goes to {OUT}")
    run_dir = OUT / "run"
    run("train", REPO / "configs" / "pneumonia-xray.yaml", "--out", run_dir, "--set", f"data.source={data}",
        "--set", f"train.epochs={EPOCHS}", "--set", "name=pneumonia-xray-demo", *QUICK)
    report = OUT / "report.html"
    run("evaluate", "--model", run_dir / "model", "--data", data, "--split", "test", "--json", OUT / "test.json",
        "--report", report)
    samples = write_samples(data, OUT / "samples")
    run("predict", "--model", "pneumonia-xray", *samples, "--json", OUT / "predictions.json")
    ev = json.loads((OUT / "test.json").read_text())
    preds = json.loads((OUT / "predictions.json").read_text())
    print("\nWhat the demo did:")
    print(f"  - trained {run_dir / 'model'} on {ev['data']} ({EPOCHS} epochs; the shipped model uses 20)")
    print(f"  - official test split, n={ev['n']}: AUC {ev['auc']} (95% CI {ev['auc_ci95'][0]}-{ev['auc_ci95'][1]}), "
          f"accuracy {ev['accuracy']}, sensitivity {ev['sensitivity']}, specificity {ev['specificity']} "
          f"at threshold {ev['threshold']:.3f} chosen on the validation split")
    print(f"  - predicted {len(preds)} sample images with the shipped model 'pneumonia-xray':")
    for p in preds:
        print(f"      {Path(p['input']).name}: {p.get('label', p.get('error'))}")
    print(f"  - report: {report}")
    print(f"  - total time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
