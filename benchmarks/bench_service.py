"""Benchmark of the real-time service: C-STORE received → result stored, for 2D chest X-rays.

Starts real Orthanc (results destination and catch-up source) and ``medsight serve`` (SQLite
by default, ``--postgres`` for a throw-away PostgreSQL), then

1. **latency, one at a time**: sends ``--sequential`` X-rays one by one with dcmtk's storescu,
   waiting for each result (the latency a modality sees on an idle service);
2. **sustained load**: ``--n`` X-rays from ``--senders`` concurrent storescu processes; reports
   the latency distribution under load and the throughput (results stored per second from
   the first instance received to the last result stored), plus the time until every SR and
   SC was accepted by Orthanc.

Latencies come from the database: ``results.created_at - results.received_at`` (the time the
receiver committed the instance → the time the worker committed its result). Images are real
PneumoniaMNIST test images made into CR DICOM (tests/support/xray_dicom.py).

``--backend onnxruntime`` runs pneumonia-xray through its ONNX export (made here by
``export_model`` into the scratch folder; service.yaml ``models.<name>.backend``), for the
results/s of the two backends side by side.

Usage:
    .venv/bin/python benchmarks/bench_service.py --n 500 --sequential 30 [--postgres] [--backend onnxruntime]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.helpers import STORESCU, storescu  # noqa: E402
from e2e.stack import Stack, Webhook  # noqa: E402
from support.xray_dicom import pneumonia_test_images, write_xray  # noqa: E402


def _model(npz: Path, workdir: Path) -> str:
    from medsight.models.saved import list_zoo

    if any(z["name"] == "pneumonia-xray" for z in list_zoo()):
        return "pneumonia-xray"
    import medsight

    clf = medsight.Classifier("classic-cnn", augmentation="none", name="pneumonia-xray-bench", input_size=(28, 28))
    clf.fit(str(npz), epochs=2, batch_size=128, run_dir=workdir / "model-run")
    return str(workdir / "model-run" / "model")


def _latencies(stack: Stack, patient: str) -> tuple[np.ndarray, float, float, int]:
    from sqlalchemy import func, select

    from medsight.service.db import Result, ResultOutput

    db = stack.database()
    with db.read() as s:
        rows = s.execute(select(Result.received_at, Result.created_at).where(Result.patient_id == patient)).all()
        ids = select(Result.id).where(Result.patient_id == patient).scalar_subquery()
        sent = s.scalar(select(func.count(ResultOutput.id)).where(ResultOutput.result_id.in_(ids),
                                                                  ResultOutput.status == "sent"))
    db.dispose()
    if not rows:
        return np.array([]), 0.0, 0.0, 0
    rec, done = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    return (done - rec) * 1000, float(rec.min()), float(done.max()), int(sent or 0)


def _wait(stack: Stack, patient: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lat, _, _, sent = _latencies(stack, patient)
        if len(lat) >= n and sent >= 2 * n:
            return
        time.sleep(0.2)
    raise SystemExit(f"timeout: {patient} has {len(lat)} of {n} results, {sent} objects sent")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="instances in the load phase")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--sequential", type=int, default=30, help="instances sent one at a time")
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    npz = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data")) / \
        "pneumoniamnist" / "pneumoniamnist.npz"
    images, _ = pneumonia_test_images(npz)
    work = Path(tempfile.mkdtemp(prefix="medsight-bench-"))
    os.chmod(work, 0o755)
    pg = None
    url = None
    if args.postgres:
        from support.peers import Postgres

        pg = Postgres().start()
        url = pg.url
    hook = Webhook()
    model = _model(npz, work)
    overrides = None
    if args.backend == "onnxruntime":
        from medsight.models.export import export_model
        from medsight.models.saved import load_model

        export_model(load_model(model), work / "onnx-model")

        def overrides(st: Stack) -> dict:
            models = st._base_config()["models"]
            onnx = {**models["pneumonia-xray"], "path": str(work / "onnx-model"), "backend": "onnxruntime"}
            return {"models": {**models, "pneumonia-xray": onnx}}
    stack = Stack(work, model=model, db_url=url, webhook_url=hook.url, overrides=overrides)
    stack.start()
    out: dict = {"database": "postgresql" if pg else "sqlite", "backend": args.backend, "cpus": os.cpu_count(),
                 "load_average_at_start": os.getloadavg()}
    try:
        # 1. one at a time
        seq = []
        for i in range(args.sequential):
            path = write_xray(work / "seq" / f"{i}.dcm", images[i], patient_id="BENCH-SEQ", index=i)
            assert storescu(stack.service.dicom_port, [path]).returncode == 0
            _wait(stack, "BENCH-SEQ", i + 1, 60)
        lat, _, _, _ = _latencies(stack, "BENCH-SEQ")
        seq = lat[2:] if len(lat) > 4 else lat  # the first two include the workers' first-batch set-up
        out["sequential"] = {"n": int(len(seq)), "p50_ms": float(np.percentile(seq, 50)),
                             "p95_ms": float(np.percentile(seq, 95))}
        # 2. sustained load
        dirs = [work / "load" / f"s{k}" for k in range(args.senders)]
        for i in range(args.n):
            write_xray(dirs[i % args.senders] / f"{i:05d}.dcm", images[i % len(images)], patient_id="BENCH-LOAD",
                       index=i)
        t0 = time.time()
        procs = [subprocess.Popen([STORESCU, "-aet", "STORESCU", "-aec", "MEDSIGHT", "+sd", "127.0.0.1",
                                   str(stack.service.dicom_port), str(d)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for d in dirs]
        for p in procs:
            p.wait()
        t_sent = time.time() - t0
        _wait(stack, "BENCH-LOAD", args.n, 1200)
        t_all = time.time() - t0
        lat, first, last, _ = _latencies(stack, "BENCH-LOAD")
        out["load"] = {"n": args.n, "senders": args.senders, "p50_ms": float(np.percentile(lat, 50)),
                       "p95_ms": float(np.percentile(lat, 95)), "send_seconds": round(t_sent, 2),
                       "receive_rate_per_s": round(args.n / t_sent, 2),
                       "results_per_s": round(args.n / (last - first), 2),
                       "all_outputs_in_orthanc_s": round(t_all, 2),
                       "end_to_end_per_s": round(args.n / t_all, 2)}
        out["load_average_at_end"] = os.getloadavg()
    finally:
        stack.stop()
        hook.close()
        if pg:
            pg.stop()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
