"""Classification benchmark: train and evaluate the shipped configs and the reference CNN.

For each config it runs exactly what a user runs (`medsight train CONFIG --out DIR`, then
`medsight evaluate` on the official test split), and records the test metrics with their
confidence intervals, the training wall time, training throughput (images/s seen by the
optimiser) and inference throughput (images/s through the whole predict path: read a PNG,
preprocess, network, decision). Results go to benchmarks/results/classification.json and to
the "Classification" table of docs/benchmarks.md.

Usage:
    python benchmarks/bench_classification.py [--only NAME ...] [--ship]

`--ship` copies each trained shipped model (pneumonia-xray, breast-ultrasound) into
src/medsight/zoo/NAME/ with its card. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "bench"
CONFIGS = {
    "pneumonia-xray": ("configs/pneumonia-xray.yaml", "pneumoniamnist"),
    "breast-ultrasound": ("configs/breast-ultrasound.yaml", "breastmnist"),
    "reference-cnn": ("configs/reference-cnn.yaml", "pneumoniamnist"),
}
SHIPPED = ("pneumonia-xray", "breast-ultrasound")
MARK = "classification"


def machine() -> dict:
    import torch

    from medsight.models.saved import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def data_path(name: str) -> str:
    base = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = base / name / f"{name}.npz"
    return str(p) if p.is_file() else f"medmnist:{name}"


def predict_throughput(model_dir: Path, npz: str, n: int = 256) -> float:
    """Images/s through Predictor.predict on PNG files (read + preprocess + network + decision)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from medsight.data.medmnist import resolve_medmnist
    from medsight.engine.predictor import Predictor
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    with np.load(resolve_medmnist(npz)) as z:
        x = z["test_images"][:n]
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, a in enumerate(x):
            p = Path(d) / f"{i:04d}.png"
            Image.fromarray(a).save(p)
            paths.append(str(p))
        model = load_model(model_dir)
        pred = Predictor(model, get_task(model.task))
        pred.predict(paths[:8])  # warm-up
        t0 = time.perf_counter()
        out = pred.predict(paths)
        dt = time.perf_counter() - t0
    assert all(hasattr(r, "probabilities") for r in out)
    return len(paths) / dt


def bench(name: str) -> dict:
    from medsight.api import train
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    config, dataset = CONFIGS[name]
    data = data_path(dataset)
    out = RUNS / name
    shutil.rmtree(out, ignore_errors=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    model = train(REPO / config, run_dir=out, overrides=[f"data.source={data}"])
    wall = time.perf_counter() - t0
    m = load_model(out / "model")
    ev = get_task("classification").evaluate(m, data, split="test")
    t = model.manifest["training"]
    n_train = t["data"]["n"]["train"]
    epochs_seen = sum(t["epochs_run"])
    return {
        "name": name, "config": config, "data": data,
        "test": {k: ev.get(k) for k in ("n", "auc", "auc_ci95", "accuracy", "accuracy_ci95", "sensitivity",
                                        "sensitivity_ci95", "specificity", "specificity_ci95", "threshold")},
        "val_auc": model.manifest["metrics"]["val"]["auc"],
        "train_wall_s": round(wall, 1), "epochs": t["epochs_run"], "best_epochs": t["best_epochs"],
        "train_images_per_s": round(n_train * epochs_seen / wall, 1),
        "predict_images_per_s": round(predict_throughput(out / "model", data), 1),
        "eval_images_per_s": ev["images_per_second"],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": load_at_start,
    }


def write_table(results: list[dict], info: dict) -> None:
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = [f"<!-- BEGIN {MARK} -->", "## Classification", "",
             "Command: `python benchmarks/bench_classification.py` (real data: the PneumoniaMNIST and BreastMNIST "
             "copies in ../shared/data, official splits; metrics on the official test split, threshold chosen on "
             "the validation split only).", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} "
             "threads.", "",
             "| model | test AUC (95% CI) | accuracy | sensitivity | specificity | threshold | train wall time | "
             "train img/s | predict img/s | run (load average at start) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["test"]
        lines.append(
            f"| {r['name']} | {t['auc']:.4f} ({t['auc_ci95'][0]:.3f}–{t['auc_ci95'][1]:.3f}) | {t['accuracy']:.4f} | "
            f"{t['sensitivity']:.4f} | {t['specificity']:.4f} | {t['threshold']:.3f} | "
            f"{r['train_wall_s'] / 60:.1f} min "
            f"({sum(r['epochs'])} epochs) | {r['train_images_per_s']:.0f} | {r['predict_images_per_s']:.0f} | "
            f"{r.get('date', '?')} ({r.get('load_average_at_start', '?')}) |")
    lines += ["", "Predict throughput is the whole path: read a PNG, preprocess, network, decision, one by one "
              "in chunks of 64.", f"<!-- END {MARK} -->"]
    block = "\n".join(lines)
    if f"<!-- BEGIN {MARK} -->" in text:
        head, rest = text.split(f"<!-- BEGIN {MARK} -->", 1)
        tail = rest.split(f"<!-- END {MARK} -->", 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def ship(name: str) -> Path:
    """Copy a trained shipped model into the package's zoo, with the reproduce command."""
    import json as _json

    from medsight.tasks.base import get_task

    src = RUNS / name / "model"
    dst = REPO / "src" / "medsight" / "zoo" / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    manifest = _json.loads((dst / "manifest.json").read_text())
    manifest["reproduce"] = f"medsight train {CONFIGS[name][0]} --out runs/{name}"
    manifest["training"]["data"]["source"] = Path(manifest["training"]["data"]["source"]).name
    (dst / "manifest.json").write_text(_json.dumps(manifest, indent=1) + "\n")
    (dst / "MODEL_CARD.md").write_text(get_task("classification").model_card(manifest))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="run only these")
    ap.add_argument("--ship", action="store_true", help="copy the shipped models into the zoo")
    args = ap.parse_args()
    info = machine()
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = []
    for name in args.only or list(CONFIGS):
        print(f"benchmark: {name}", flush=True)
        r = bench(name)
        print(json.dumps(r, indent=1), flush=True)
        results.append(r)
        if args.ship and name in SHIPPED:
            print(f"shipped to {ship(name)}", flush=True)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    previous = {}
    path = out / "classification.json"
    if path.exists():
        previous = {r["name"]: r for r in json.loads(path.read_text())["results"]}
    previous.update({r["name"]: r for r in results})
    ordered = [previous[n] for n in CONFIGS if n in previous]
    path.write_text(json.dumps({"machine": info, "results": ordered}, indent=1))
    write_table(ordered, info)


if __name__ == "__main__":
    sys.exit(main())
