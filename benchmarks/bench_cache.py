"""Preprocessed-case caching for segmentation training: MedSight's ``data.cache`` modes against
MONAI's CacheDataset and PersistentDataset, on the same cases and the same preparation.

Real data: the first ``--cases`` MSD hippocampus training volumes (Decathlon Task04), prepared as
``medsight train`` prepares them for the shipped hippocampus-mri model (read NIfTI image and
mask, check them, resample to 1 mm, z-score; the mask to class indices). Each way is timed over
``--epochs`` passes that touch every case once (what a patch sampler does per epoch), in a fresh
process each (so peak memory is its own), one after the other:

* ``none``: prepared at every use (MedSight ``data.cache: none``; MONAI's plain Dataset alike);
* ``memory``: MedSight ``data.cache: memory``; ``monai-cache``: ``monai.data.CacheDataset``;
* ``disk``: MedSight ``data.cache: disk`` (``.npy``); ``monai-persistent``:
  ``monai.data.PersistentDataset`` (``torch.save`` files, read with ``weights_only=True``).
  Both run twice: a cold cache (its first epoch writes) and a warm one (files of an earlier run).

Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_cache.py [--cases 80 --epochs 3]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _cases(n: int):
    from medsight.data.segmentation import open_segmentation_data

    data = open_segmentation_data(SHARED / "msd_hippocampus")
    return data.cases[:n], data.labels


def _prepare_fn(labels):
    from medsight.data.segmentation import read_case
    from medsight.models.saved import load_model
    from medsight.tasks.segmentation.preprocess import SegPreprocessor, label_lookup

    spec = dict(load_model("hippocampus-mri").manifest["preprocessing"])
    pre = SegPreprocessor(spec)
    lut = label_lookup(sorted(labels))

    def prepare(case):
        im, mk = read_case(case, labels)
        return pre.image(im).numpy(), pre.mask(lut[mk.array[0]], im)

    return prepare, spec


def _one(mode: str, n: int, epochs: int, cache_dir: str, queue) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    cases, labels = _cases(n)
    prepare, spec = _prepare_fn(labels)
    t0 = time.perf_counter()
    if mode in ("none", "memory", "disk"):
        from medsight.data.streaming import PreparedCases

        prepared = PreparedCases(cases, prepare, spec={"preprocessing": spec, "bench": 1}, cache=mode,
                                 cache_dir=cache_dir)

        def item(i):
            return prepared.images[i], prepared.masks[i]
    else:
        import monai.data
        import monai.transforms

        items = [{"case": i} for i in range(len(cases))]

        class Prepare(monai.transforms.Transform):  # a deterministic MONAI Transform: what both datasets cache
            def __call__(self, d):
                x, y = prepare(cases[d["case"]])
                return {"case": d["case"], "image": torch.from_numpy(x), "label": torch.from_numpy(np.asarray(y))}

        transform = Prepare()

        if mode == "monai-cache":
            ds = monai.data.CacheDataset(items, transform=transform, num_workers=0, progress=False)
        else:
            ds = monai.data.PersistentDataset(items, transform=transform, cache_dir=cache_dir)

        def item(i):
            d = ds[i]
            return d["image"], d["label"]
    setup = time.perf_counter() - t0
    per_epoch = []
    checksum = 0.0
    for _ in range(epochs):
        t = time.perf_counter()
        for i in range(len(cases)):
            x, y = item(i)
            checksum += float(np.asarray(x).ravel()[::997].sum()) + int(np.asarray(y).sum())
        per_epoch.append(time.perf_counter() - t)
    queue.put({"mode": mode, "setup_s": round(setup, 2), "epoch_s": [round(e, 2) for e in per_epoch],
               "total_s": round(setup + sum(per_epoch), 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "checksum": round(checksum, 3)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cache.json")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="medsight-bench-cache-"))
    try:
        runs = [("none", None), ("memory", None), ("monai-cache", None),
                ("disk", "medsight"), ("disk", "medsight"), ("monai-persistent", "monai"),
                ("monai-persistent", "monai")]
        seen: set[str] = set()
        for mode, folder in runs:
            q = ctx.Queue()
            p = ctx.Process(target=_one, args=(mode, args.cases, args.epochs, str(tmp / (folder or "x")), q))
            p.start()
            row = None
            while row is None:
                try:
                    row = q.get(timeout=1)
                except Exception:  # noqa: BLE001 - queue.Empty: is the child still there?
                    if not p.is_alive():
                        raise SystemExit(f"the {mode} run died (exit code {p.exitcode})") from None
            p.join()
            if folder:
                row["cache"] = "warm" if folder in seen else "cold"
                seen.add(folder)
            rows.append(row)
            print(json.dumps(row), flush=True)
        sizes = {f: sum(x.stat().st_size for x in (tmp / f).rglob("*") if x.is_file()) for f in ("medsight", "monai")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"cases": args.cases, "epochs": args.epochs, "rows": rows,
           "cache_mb": {k: round(v / 1e6, 1) for k, v in sizes.items()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["cache_mb"]))


if __name__ == "__main__":
    main()
