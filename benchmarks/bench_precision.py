"""bf16 against fp32 (issue 13): training a classifier, and a segmentation model's inference.
Real data.

1. **Training** (PneumoniaMNIST, resnet-small width 32, batch 128, AdamW, no augmentation,
   ``--epochs``): ``medsight train`` with ``train.precision: bf16`` and ``fp32``, for each of
   ``--seeds`` seeds; training images/s (training steps only) and test AUC, and the paired
   difference per seed, so the effect of bf16 is told apart from the seed's.
2. **Inference** (the shipped ``hippocampus-mri``, whose manifest runs it in bf16): the 46
   test cases of ``configs/hippocampus-split.json`` predicted in bf16 and in fp32; Dice of each
   against the reference labels, the Dice between the two masks, and seconds per volume.

Usage: .venv/bin/python benchmarks/bench_precision.py [--seeds 3] [--epochs 6]
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
from bench_training import medsight_run
from docs_section import write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
MARK = "precision"


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    s = x.sum() + y.sum()
    return float(2 * (x & y).sum() / s) if s else 1.0


def segmentation(threads: int) -> dict:
    import torch

    from medsight.io import read
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    torch.set_num_threads(threads)
    split = json.loads((REPO / "configs" / "hippocampus-split.json").read_text())["test"]
    root = SHARED / "msd_hippocampus"
    model = load_model("hippocampus-mri")
    task = get_task(model.task)
    labels = {int(v): n for v, n in zip(model.manifest["label_values"], model.labels) if int(v)}
    out: dict = {"n": len(split), "labels": list(labels.values())}
    masks: dict[str, list[np.ndarray]] = {}
    for precision in ("bf16", "fp32"):
        model.manifest["inference"] = {**model.manifest["inference"], "precision": precision}
        dice: dict[str, list[float]] = {n: [] for n in labels.values()}
        masks[precision], seconds = [], 0.0
        for case in split:
            image = read(str(root / "imagesTr" / f"{case}.nii.gz"))
            ref = np.asarray(read(str(root / "labelsTr" / f"{case}.nii.gz")).array).squeeze()
            t0 = time.perf_counter()
            (r,) = task.infer(model, [image], inputs=[case])
            seconds += time.perf_counter() - t0
            pred = np.asarray(r.mask.array).squeeze()
            masks[precision].append(pred)
            for v, n in labels.items():
                dice[n].append(_dice(pred, ref, v))
        out[precision] = {"dice": {n: round(float(np.mean(d)), 4) for n, d in dice.items()},
                          "seconds_per_volume": round(seconds / len(split), 3)}
        print(precision, out[precision], flush=True)
    out["bf16_vs_fp32_dice"] = {n: round(float(np.mean([_dice(a, b, v) for a, b in zip(masks["bf16"], masks["fp32"])])),
                                         4) for v, n in labels.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "precision.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from medsight.engine.sliding import native_bf16

    if not native_bf16():  # MedSight trains and runs bf16 only where the CPU has it (docs/scale.md)
        print("this CPU has no native bf16 (AVX-512 BF16 or AMX): MedSight refuses bf16 training and runs bf16 "
              "models in fp32 here, so there is nothing to compare", file=sys.stderr)
        return 2
    data = str(SHARED / "pneumoniamnist" / "pneumoniamnist.npz")
    runs: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for precision in ("fp32", "bf16"):
                r = medsight_run(data, Path(tmp) / f"{precision}{seed}", args.epochs, args.threads, precision,
                                 seed=seed)
                runs[precision].append(r)
                print(precision, seed, r, flush=True)
    seg = segmentation(args.threads)
    out = {"training": runs, "segmentation": seg, "epochs": args.epochs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))

    def stat(p: str, k: str) -> tuple[float, float]:
        v = [r[k] for r in runs[p]]
        return float(np.mean(v)), float(np.std(v))

    deltas = [b["test_auc"] - f["test_auc"] for f, b in zip(runs["fp32"], runs["bf16"])]
    (f_ips, _), (b_ips, _) = stat("fp32", "images_per_second"), stat("bf16", "images_per_second")
    (f_auc, f_sd), (b_auc, b_sd) = stat("fp32", "test_auc"), stat("bf16", "test_auc")
    lines = ["## bf16 against fp32 (real data)", "",
             f"Command: `.venv/bin/python benchmarks/bench_precision.py --seeds {args.seeds} --epochs {args.epochs}` "
             f"({args.threads} threads, nothing else running). Training: PneumoniaMNIST, resnet-small width 32, batch "
             f"128, AdamW, no augmentation, {args.epochs} epochs, seeds 0-{args.seeds - 1}; images/s over the training "
             "steps. Inference: the shipped hippocampus-mri on the 46 test cases of configs/hippocampus-split.json.",
             "",
             "| training | images/s (mean) | test AUC (mean ± sd over seeds) | per seed |", "|---|---|---|---|",
             f"| fp32 | {f_ips:,.0f} | {f_auc:.4f} ± {f_sd:.4f} | "
             + ", ".join(f"{r['test_auc']:.4f}" for r in runs["fp32"]) + " |",
             f"| bf16 | {b_ips:,.0f} | {b_auc:.4f} ± {b_sd:.4f} | "
             + ", ".join(f"{r['test_auc']:.4f}" for r in runs["bf16"]) + " |",
             f"| bf16 − fp32 | {b_ips / f_ips:.2f}× | Δ {np.mean(deltas):+.4f} (paired, per seed: "
             + ", ".join(f"{d:+.4f}" for d in deltas) + ") | |", "",
             "| hippocampus-mri inference | s / volume | " + " | ".join(f"Dice {n}" for n in seg["labels"]) + " |",
             "|---|---|" + "---|" * len(seg["labels"])]
    for p in ("fp32", "bf16"):
        lines.append(f"| {p} | {seg[p]['seconds_per_volume']:.3f} | "
                     + " | ".join(f"{seg[p]['dice'][n]:.4f}" for n in seg["labels"]) + " |")
    lines.append("| Dice between the bf16 and fp32 masks | | "
                 + " | ".join(f"{seg['bf16_vs_fp32_dice'][n]:.4f}" for n in seg["labels"]) + " |")
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
