"""CPU time of one training step of the shipped lung-nodule detector's network, by memory order
and precision (random weights and patches: the time does not depend on them).

The step is the detector's own (``DetectionHooks.training_step``: the weighted Dice plus
cross-entropy, its input put in channels-last order) on ``--batch`` patches of ``--patch``^3
voxels, with AdamW, as ``medsight train configs/lung-nodule-ct.yaml`` runs it:

- ``contiguous weights``: the weights in the default order (the input alone channels-last);
- ``channels_last weights``: ``train.channels_last: true``;
- ``channels_last weights, bf16``: and ``train.precision: bf16`` (CPU autocast).

Each is the median of ``--steps`` steps after 2 warm-up steps, the settings alternating
``--rounds`` times.

Usage:
    .venv/bin/python benchmarks/bench_detector_step.py [--threads 2] [--json benchmarks/results/detector_step.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/lung-nodule-ct.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from medsight.config import load_config
    from medsight.engine.trainer import _channels_last
    from medsight.models.manifest import DetectionInference
    from medsight.models.registry import create_model
    from medsight.tasks.detection.training import DetectionHooks

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    hooks = DetectionHooks(val_scans=[], settings=DetectionInference(patch_size=[96, 96, 96]))
    g = torch.Generator().manual_seed(0)
    p = args.patch
    x = torch.rand(args.batch, 1, p, p, p, generator=g)
    y = (torch.rand(args.batch, 1, p, p, p, generator=g) > 0.97).long()
    w = torch.ones(args.batch, 1, p, p, p)

    def timed(channels_last: bool, bf16: bool) -> list[float]:
        torch.manual_seed(0)
        net = create_model(cfg.model.name, spatial_dims=3, in_channels=1, num_classes=2, **cfg.model.params)
        if channels_last:
            _channels_last(net)
        opt = torch.optim.AdamW(net.parameters(), 1e-3)
        out = []
        for i in range(args.steps + 2):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = hooks.training_step(net, (x, y, w))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                out.append(time.perf_counter() - t0)
        return out

    settings = {"contiguous weights": (False, False), "channels_last weights": (True, False),
                "channels_last weights, bf16": (True, True)}
    times: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.rounds):
        for name, (cl, bf16) in settings.items():
            times[name] += timed(cl, bf16)
    base = float(np.median(times["contiguous weights"]))
    rows = [{"setting": k, "seconds_per_step": round(float(np.median(v)), 3),
             "speedup": round(base / float(np.median(v)), 2)} for k, v in times.items()]
    out = {"config": args.config, "network": cfg.model.model_dump(mode="json"), "threads": args.threads,
           "batch": args.batch, "patch": p, "torch": torch.__version__, "rows": rows}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
