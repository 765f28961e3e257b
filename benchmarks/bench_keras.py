"""The reference design's Keras CNN run literally, against MedSight's version of it (issue 13).
Real data: PneumoniaMNIST, official splits.

* **Keras** (Keras 3 on the torch backend: ``pip install -e ".[bench]"``): the reference
  article's program as written — ``Sequential([Conv2D(32, 3x3, relu), MaxPooling2D(2),
  Flatten(), Dense(128, relu), Dense(2, softmax)])``, ``Adam()``, categorical cross-entropy,
  ``fit(X_train, y_train, batch_size=32, epochs=10, validation_data=(X_test, y_test))`` on the
  images rescaled by 1/255; decision at p >= 0.5.
* **MedSight, the same recipe**: ``medsight train configs/reference-cnn.yaml`` (the same
  network layer for layer, Adam, batch 32, 10 epochs, last weights, p >= 0.5).
* **MedSight at equal wall time**: the shipped recipe (``configs/pneumonia-xray.yaml``: a small
  ResNet, augmentation, one-cycle, threshold and temperature from validation) given Keras's
  ``fit`` wall time as its budget (``train.schedule_by: time``, ``train.max_minutes``).

Each on ``--threads`` threads, one after the other, nothing else running; the test split's
AUC, accuracy, sensitivity and specificity.

Usage: KERAS_BACKEND=torch .venv/bin/python benchmarks/bench_keras.py [--threads 2]
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
MARK = "keras"


def _binary(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    from sklearn.metrics import roc_auc_score

    pred = p >= threshold
    return {"auc": round(float(roc_auc_score(y, p)), 4), "accuracy": round(float((pred == y).mean()), 4),
            "sensitivity": round(float(pred[y == 1].mean()), 4), "specificity": round(float((~pred[y == 0]).mean()), 4)}


def keras_run(data: Path, threads: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import torch
    from keras.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
    from keras.models import Sequential
    from keras.optimizers import Adam

    if keras.backend.backend() != "torch":
        raise SystemExit("run with KERAS_BACKEND=torch")
    torch.set_num_threads(threads)
    keras.utils.set_random_seed(0)
    with np.load(data) as z:
        x_train, y_train = z["train_images"][..., None] / 255.0, z["train_labels"][:, 0]
        x_test, y_test = z["test_images"][..., None] / 255.0, z["test_labels"][:, 0]
    num_classes = 2
    model = Sequential()
    model.add(Input(shape=(28, 28, 1)))  # Keras 3 takes the input shape here, not as input_shape=
    model.add(Conv2D(32, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dense(num_classes, activation="softmax"))
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, keras.utils.to_categorical(y_train, num_classes), batch_size=32, epochs=10,
              validation_data=(x_test, keras.utils.to_categorical(y_test, num_classes)), verbose=0)
    seconds = time.perf_counter() - t0
    p = model.predict(x_test, verbose=0)[:, 1]
    return {"fit_seconds": round(seconds, 1), **_binary(y_test, p)}


def medsight_run(config: Path, run_dir: Path, threads: int, overrides: list[str]) -> dict:
    from medsight.api import train

    t0 = time.perf_counter()
    model = train(config, run_dir=run_dir, overrides=[f"train.threads={threads}", *overrides])
    seconds = time.perf_counter() - t0
    summary = json.loads((run_dir / "summary.json").read_text())
    test = model.manifest["metrics"]["test"]
    return {"train_seconds": round(summary["trainer_seconds"], 1), "run_seconds": round(seconds, 1),
            **{k: test[k] for k in ("auc", "accuracy", "sensitivity", "specificity")}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "keras.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    data = SHARED / "pneumoniamnist" / "pneumoniamnist.npz"
    out = {"keras": keras_run(data, args.threads)}
    print("keras", out["keras"], flush=True)
    budget = out["keras"]["fit_seconds"] / 60
    with tempfile.TemporaryDirectory() as tmp:
        out["medsight_reference"] = medsight_run(REPO / "configs" / "reference-cnn.yaml", Path(tmp) / "ref",
                                                 args.threads, [f"data.source={data}"])
        print("medsight reference", out["medsight_reference"], flush=True)
        out["medsight_equal_time"] = medsight_run(
            REPO / "configs" / "pneumonia-xray.yaml", Path(tmp) / "px", args.threads,
            [f"data.source={data}", "train.schedule_by=time", f"train.max_minutes={budget:.4f}", "train.epochs=200"])
        print("medsight equal time", out["medsight_equal_time"], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    k, r, e = out["keras"], out["medsight_reference"], out["medsight_equal_time"]
    lines = ["## The reference design's Keras CNN, literally, against MedSight (real data)", "",
             f"Command: `KERAS_BACKEND=torch .venv/bin/python benchmarks/bench_keras.py --threads {args.threads}` "
             "(`pip install -e \".[bench]\"` first): PneumoniaMNIST's official splits, test split metrics, "
             f"{args.threads} threads, one run after the other, nothing else running.", "",
             "| run | training s | test AUC | accuracy | sensitivity | specificity |", "|---|---|---|---|---|---|",
             "| Keras 3 (torch backend), the article's program as written (10 epochs, p >= 0.5) | "
             f"{k['fit_seconds']} | "
             f"{k['auc']:.4f} | {k['accuracy']:.4f} | {k['sensitivity']:.4f} | {k['specificity']:.4f} |",
             f"| MedSight, the same recipe (`configs/reference-cnn.yaml`) | {r['train_seconds']} | {r['auc']:.4f} | "
             f"{r['accuracy']:.4f} | {r['sensitivity']:.4f} | {r['specificity']:.4f} |",
             "| MedSight's shipped recipe (`configs/pneumonia-xray.yaml`) in Keras's wall time | "
             f"{e['train_seconds']} | "
             f"{e['auc']:.4f} | {e['accuracy']:.4f} | {e['sensitivity']:.4f} | {e['specificity']:.4f} |"]
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
