"""Training throughput (issue 13): MedSight's trainer against a plain PyTorch loop. Real data:
PneumoniaMNIST (official splits). bf16 against fp32 is bench_precision.py.

1. **Framework overhead.** The same network (resnet-small, width 32: the shipped
   pneumonia-xray's), the same 4,708 training images, batch size, optimiser (AdamW, lr 1e-3,
   weight decay 1e-4), no augmentation, the same threads. MedSight: ``medsight train`` with
   that config (its dataset, sampler, hooks, trainer, validation every epoch). Plain: a
   TensorDataset of the same normalised arrays, a shuffled DataLoader and the textbook loop.
   Images/s is counted over each run's training steps only (from the end of its first step to
   the end of its last, validation excluded), the two runs alternating ``--rounds`` times.

Usage: .venv/bin/python benchmarks/bench_training.py [--threads 2] [--rounds 3]
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
MARK = "training"
BATCH = 128


class StepClock:
    """A trainer observer: the time at the end of every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_start(self, **_: object) -> None: ...

    def on_step(self, **_: object) -> None:
        self.times.append(time.perf_counter())

    def on_epoch_end(self, *_: object, **__: object) -> None:
        self.times.append(float("nan"))  # an epoch boundary (validation happens here)

    def on_train_end(self, *_: object) -> None: ...

    def images_per_second(self) -> float:
        """Over the steps of each epoch, from the end of its first step to the end of its last."""
        steps, seconds, run = 0, 0.0, []
        for t in [*self.times, float("nan")]:
            if np.isnan(t):
                if len(run) > 1:
                    steps += len(run) - 1
                    seconds += run[-1] - run[0]
                run = []
            else:
                run.append(t)
        return steps * BATCH / seconds


def _config(data: str, epochs: int, threads: int, precision: str = "fp32", seed: int = 0) -> dict:
    return {"task": "classification", "name": "bench", "data": {"source": data, "positive_label": "pneumonia"},
            "preprocessing": {"spatial_size": [28, 28], "channels": 1, "intensity": "range"}, "augmentation": "none",
            "model": {"name": "resnet-small", "params": {"width": 32}},
            "train": {"epochs": epochs, "batch_size": BATCH, "lr": 1e-3, "weight_decay": 1e-4, "optimizer": "adamw",
                      "schedule": "none", "threads": threads, "precision": precision, "sampler": "none",
                      "seed": seed},
            "evaluation": {"bootstrap": 200}}


def medsight_run(data: str, run_dir: Path, epochs: int, threads: int, precision: str = "fp32",
                 seed: int = 0) -> dict:
    from medsight.config import config_from_dict
    from medsight.tasks.base import get_task

    clock = StepClock()
    model = get_task("classification").train(config_from_dict(_config(data, epochs, threads, precision, seed)),
                                             run_dir=run_dir, observers=[clock])
    return {"images_per_second": round(clock.images_per_second(), 1),
            "test_auc": model.manifest["metrics"]["test"]["auc"]}


def plain_run(data: str, epochs: int, threads: int) -> dict:
    """The textbook loop over the same arrays (normalised as MedSight normalises them)."""
    import torch

    from medsight.models.registry import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with np.load(data) as z:
        x = torch.from_numpy(z["train_images"].astype(np.float32) / 255.0)[:, None]
        y = torch.from_numpy(z["train_labels"][:, 0].astype(np.int64))
    x = (x - x.mean()) / x.std()
    net = create_model("resnet-small", spatial_dims=2, in_channels=1, num_classes=2, width=32)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True,
                                         drop_last=True)
    clock = StepClock()
    for _ in range(epochs):
        net.train()
        for xb, yb in loader:
            loss = loss_fn(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            clock.on_step()
        clock.on_epoch_end()
    return {"images_per_second": round(clock.images_per_second(), 1)}


def flops_per_image() -> dict[str, float]:
    """The network's FLOPs per 28x28 image (torch's FlopCounterMode; a multiply-add is 2 FLOPs):
    the forward pass (inference) and forward + backward (a training step)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medsight.models.registry import create_model

    net = create_model("resnet-small", spatial_dims=2, in_channels=1, num_classes=2, width=32)
    x = torch.randn(BATCH, 1, 28, 28)
    with FlopCounterMode(display=False) as fwd:
        net.eval()
        with torch.no_grad():
            net(x)
    with FlopCounterMode(display=False) as both:
        net.train()
        net(x).sum().backward()
    return {"inference": fwd.get_total_flops() / BATCH, "training": both.get_total_flops() / BATCH}


def matmul_peak(threads: int, n: int = 2048, repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of an n x n matmul in fp32 and bf16 on ``threads`` threads (the best of ``repeats``)."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        out[name] = round(2 * n ** 3 / best / 1e9, 1)
    return out


def inference_rate(threads: int, seconds: float = 5.0) -> float:
    """Images/s of the network's forward pass alone, batch 128 (fp32, no grad)."""
    import torch

    from medsight.models.registry import create_model

    torch.set_num_threads(threads)
    net = create_model("resnet-small", spatial_dims=2, in_channels=1, num_classes=2, width=32).eval()
    x = torch.randn(BATCH, 1, 28, 28)
    with torch.no_grad():
        net(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            net(x)
            n += BATCH
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "training.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    data = str(SHARED / "pneumoniamnist" / "pneumoniamnist.npz")
    out: dict = {"threads": args.threads, "batch_size": BATCH, "overhead": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # alternating, so a slow spell of the machine hits both
            m = medsight_run(data, Path(tmp) / f"m{r}", 2, args.threads)
            p = plain_run(data, 2, args.threads)
            out["overhead"].append({"medsight": m["images_per_second"], "plain": p["images_per_second"]})
            print(out["overhead"][-1], flush=True)
    out["flops_per_image"] = flops_per_image()
    out["matmul_gflops"] = matmul_peak(args.threads)
    out["inference_images_per_second"] = round(inference_rate(args.threads), 1)
    ms = float(np.median([o["medsight"] for o in out["overhead"]]))
    pl = float(np.median([o["plain"] for o in out["overhead"]]))
    out["ratio"] = round(ms / pl, 3)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    lines = ["## Training throughput (real data)", "",
             f"Command: `.venv/bin/python benchmarks/bench_training.py --threads {args.threads} --rounds "
             f"{args.rounds}`: PneumoniaMNIST's 4,708 training images, resnet-small width 32, batch {BATCH}, AdamW, "
             "no augmentation, "
             f"{args.threads} threads, nothing else running. Images/s over the training steps only (validation "
             "excluded).", "",
             "| loop | training images/s (median of rounds) | rounds |", "|---|---|---|",
             f"| MedSight (`medsight train`: dataset, sampler, hooks, trainer) | {ms:,.0f} | "
             + ", ".join(f"{o['medsight']:,.0f}" for o in out["overhead"]) + " |",
             f"| plain PyTorch loop (TensorDataset, DataLoader, the textbook step) | {pl:,.0f} | "
             + ", ".join(f"{o['plain']:,.0f}" for o in out["overhead"]) + " |",
             f"| **ratio MedSight / plain** | **{out['ratio']:.3f}** | |", ""]
    fl, peak = out["flops_per_image"], out["matmul_gflops"]
    train_gf = fl["training"] * ms / 1e9
    infer_gf = fl["inference"] * out["inference_images_per_second"] / 1e9
    lines += ["| compute | FLOPs / image | images/s | GFLOP/s | share of the fp32 matmul peak |",
              "|---|---|---|---|---|",
              f"| training step (MedSight) | {fl['training'] / 1e6:.1f} M | {ms:,.0f} | {train_gf:.1f} | "
              f"{train_gf / peak['fp32']:.1%} |",
              f"| inference (forward, batch {BATCH}) | {fl['inference'] / 1e6:.1f} M | "
              f"{out['inference_images_per_second']:,.0f} | {infer_gf:.1f} | {infer_gf / peak['fp32']:.1%} |",
              "", f"This machine's 2048x2048 matmul on {args.threads} threads: {peak['fp32']:,.0f} GFLOP/s in fp32, "
              f"{peak['bf16']:,.0f} GFLOP/s in bf16 (FLOPs counted by torch's FlopCounterMode, a multiply-add as 2)."]
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
