"""Would a false-positive-reduction stage lift the detector's CPM to issue 10's 0.85? A measured
answer on SYNTHETIC data (``medsight.data.synthetic_ct``), not a shipped stage.

1. The shipped detector proposes candidates at a low ``--candidate-threshold`` (its own is
   0.05) on two folders: ``--train`` (fresh scans, seeds 3000-3099, used by neither the detector's
   training nor its benchmark) and ``--bench`` (the benchmark's seeds 0-59).
2. Each candidate becomes a 32^3 crop (1 mm grid) of the network's input and its probability;
   on ``--train`` it is labelled a nodule (its centre within a nodule's radius), ignored (an
   excluded annotation's, 5 mm when its size is unknown) or not a nodule; every annotated nodule
   also gives a crop at its centre, so the nodules the detector misses are learnt too.
3. A MONAI ``Classifier`` (residual units, 2 x 24^3 in) learns nodule / not from the ``--train``
   crops (one nodule to three others per batch; flips, quarter turns and shifts of up to 2
   voxels) for ``--steps`` steps.
4. The benchmark's candidates are scored by LUNA16's FROC (``medsight.metrics.froc``): as the
   detector scores them, by the classifier, and by the geometric mean of both; and the ceiling,
   the CPM if every nodule the candidates reach ranked above every false positive.

Usage:
    python -m medsight.data.synthetic_ct runs/synthetic-ct/bench --n 60 --seed 0
    python -m medsight.data.synthetic_ct runs/synthetic-ct/fpr --n 100 --seed 3000
    .venv/bin/python benchmarks/bench_fp_reduction.py [--model lung-nodule-ct] \\
        [--json benchmarks/results/fp_reduction.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

R = 16  # half the crop (voxels of the 1 mm grid)
S = 24  # the classifier's input side


def collect(model, task, folder: str, threshold: float, *, with_nodules: bool) -> dict:
    """Every candidate of every scan in ``folder``: crops, findings, labels."""
    from medsight.metrics.froc import label_findings
    from medsight.metrics.luna16_csv import Finding, Nodule
    from medsight.tasks.detection.data import open_detection_data
    from medsight.tasks.detection.detect import detect
    from medsight.tasks.detection.task import _settings

    settings = _settings(model).model_copy(update={"candidate_threshold": threshold, "max_findings": 200})
    data = open_detection_data(folder)
    crops, rows, labels, nodule_crops = [], [], [], []
    for case in data.cases:
        scan = task.prepare_image(model, case.image())
        found, prob = detect(model.run, scan, settings)
        pad = [(R, R)] * 3
        both = np.stack([np.pad(scan.x[0], pad), np.pad(prob, pad)]).astype(np.float16)

        def crop(grid_index, both=both) -> np.ndarray:
            g = np.round(np.asarray(grid_index, float)).astype(int) + R
            return both[(slice(None), *(slice(v - R, v + R) for v in g))]

        nodules = [Nodule(case.id, tuple(n[:3]), float(n[3])) for n in case.covariates["nodules"]]
        excluded = [Nodule(case.id, tuple(n[:3]), float(n[3])) for n in case.covariates["excluded"]]
        marks = [Finding(case.id, tuple(d.center_mm), d.score) for d in found]
        labels.extend(label_findings(marks, nodules, excluded).tolist())  # as froc scores them
        for d in found:
            crops.append(crop(d.grid_index))
            rows.append((case.id, tuple(d.center_mm), d.score))
        if with_nodules:
            for n in nodules:
                c = crop(scan.to_grid(np.array(n.center_mm, float)[None])[0])
                if c.shape[1:] == (2 * R,) * 3:
                    nodule_crops.append(c)
    return {"data": data, "crops": np.array(crops), "rows": rows, "labels": np.array(labels),
            "nodule_crops": np.array(nodule_crops)}


def train_classifier(train: dict, steps: int, seed: int = 0):
    import torch
    from monai.networks.nets import Classifier

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = train["labels"]
    neg = train["crops"][labels == 0]
    pos = np.concatenate([train["crops"][labels == 1], train["nodule_crops"]])
    net = Classifier(in_shape=(2, S, S, S), classes=1, channels=(16, 32, 64), strides=(2, 2, 2), num_res_units=2,
                     dropout=0.2)

    def augmented(batch: np.ndarray) -> torch.Tensor:
        out = np.empty((len(batch), 2, S, S, S), np.float32)
        for i, c in enumerate(batch):
            o = rng.integers(R - S // 2 - 2, R - S // 2 + 3, 3)
            c = c[:, o[0]:o[0] + S, o[1]:o[1] + S, o[2]:o[2] + S].astype(np.float32)
            for axis in (1, 2, 3):
                if rng.random() < 0.5:
                    c = np.flip(c, axis)
            out[i] = np.rot90(c, int(rng.integers(4)), axes=(2, 3))
        return torch.from_numpy(out)

    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = 32
    net.train()
    for step in range(steps):
        ip, ineg = rng.integers(0, len(pos), batch // 4), rng.integers(0, len(neg), batch - batch // 4)
        x = augmented(np.concatenate([pos[ip], neg[ineg]]))
        y = torch.tensor([1.0] * len(ip) + [0.0] * len(ineg))
        loss = loss_fn(net(x).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    net.eval()
    return net, {"n_not_nodule": int(len(neg)), "n_nodule": int(len(pos)),
                 "parameters": int(sum(p.numel() for p in net.parameters()))}


def classify(net, crops: np.ndarray) -> np.ndarray:
    import torch

    o = R - S // 2
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 256):
            x = torch.from_numpy(crops[i:i + 256, :, o:o + S, o:o + S, o:o + S].astype(np.float32))
            out.append(torch.sigmoid(net(x)).squeeze(1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def scored(bench: dict, scores: np.ndarray) -> dict:
    from medsight.metrics.froc import froc
    from medsight.metrics.luna16_csv import Finding

    data = bench["data"]
    findings = [Finding(uid, centre, float(s)) for (uid, centre, _), s in zip(bench["rows"], scores)]
    r = froc(data.annotations, findings, scans=[c.id for c in data.cases], excluded=data.excluded,
             n_boot=1000, seed=0)
    return {"cpm": round(r.cpm, 4), "cpm_ci95": [round(v, 4) for v in r.ci["cpm"]],
            "sensitivities": [round(v, 4) for v in r.sensitivities], "n_detected": r.n_detected,
            "n_nodules": r.n_nodules, "n_false_positives": r.n_false_positives}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lung-nodule-ct")
    ap.add_argument("--train", default="runs/synthetic-ct/fpr")
    ap.add_argument("--bench", default="runs/synthetic-ct/bench")
    ap.add_argument("--candidate-threshold", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    torch.set_num_threads(2)
    model, task = load_model(args.model), get_task("detection")
    t0 = time.perf_counter()
    train = collect(model, task, args.train, args.candidate_threshold, with_nodules=True)
    bench = collect(model, task, args.bench, args.candidate_threshold, with_nodules=False)
    t1 = time.perf_counter()
    net, trained = train_classifier(train, args.steps)
    t2 = time.perf_counter()
    p1 = np.array([s for _, _, s in bench["rows"]])
    p2 = classify(net, bench["crops"])
    results = {"detector": scored(bench, p1), "classifier": scored(bench, p2),
               "geometric_mean": scored(bench, np.sqrt(p1 * p2))}
    ceiling = results["detector"]["n_detected"] / results["detector"]["n_nodules"]
    out = {"model": args.model, "version": model.version, "train": args.train, "bench": args.bench,
           "candidate_threshold": args.candidate_threshold, "steps": args.steps,
           "train_scans": len(train["data"].cases), "bench_scans": len(bench["data"].cases),
           "bench_candidates": len(bench["rows"]), "classifier": trained, "ceiling_cpm": round(ceiling, 4),
           "scored": results, "seconds_candidates": round(t1 - t0, 1), "seconds_training": round(t2 - t1, 1)}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
