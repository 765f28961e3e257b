"""The detector's acceptance numbers (issue 10), synthetic and real kept apart.

1. **Synthetic benchmark**: LUNA16 FROC of the model on the scans of a synthetic folder never
   used in training (default ``runs/synthetic-ct/bench``, seeds 0-59; the shipped model was
   trained on seeds 1000-1199): CPM with its bootstrap CI, sensitivity at each FP rate, and for
   nodules >= 6 mm the sensitivity at 1 FP per scan.
2. **Real CT**: the LIDC-IDRI slabs in ../shared/data: for LIDC-IDRI-0001, whether the top
   finding is its LUNA16 nodule (distance, radius), the diameter error, the other findings at
   the operating threshold; for LIDC-IDRI-0002 (only an excluded lesion) the findings.

With ``--ship``, the model is copied into ``src/medsight/zoo/<name>`` with these numbers in its
manifest (``benchmark``, ``real_checks``) and model card.

Usage:
    python -m medsight.data.synthetic_ct runs/synthetic-ct/bench --n 60 --seed 0
    .venv/bin/python benchmarks/bench_lung_nodule_ct.py --model runs/lung-nodule-ct/model \\
        [--bench runs/synthetic-ct/bench] [--json benchmarks/results/lung_nodule_ct.json] [--ship]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))


def real_checks(model, task) -> dict:
    from medsight.io import read

    root = SHARED / "lidc_idri_nodule_slabs"
    ann = list(csv.DictReader((root / "luna16" / "annotations.csv").open()))
    out = {}
    for pid in ("LIDC-IDRI-0001", "LIDC-IDRI-0002"):
        folder = sorted({p.parent for p in (root / pid).rglob("*.dcm")})[0]
        image = read(folder)
        result = task.infer(model, [image])[0]
        truth = [(np.array([float(r[k]) for k in ("coordX", "coordY", "coordZ")]), float(r["diameter_mm"]))
                 for r in ann if r["seriesuid"] == image.series_uid]
        entry = {"slices": image.shape[0], "spacing_mm": [round(s, 3) for s in image.spacing],
                 "threshold": result.threshold, "n_candidates": result.n_candidates,
                 "findings": [{"center_mm": n.center_mm, "diameter_mm": n.diameter_mm, "score": n.score,
                               "type": n.type, "category": n.category} for n in result.nodules],
                 "seconds": result.provenance.seconds}
        if truth:
            centre, diameter = truth[0]
            entry["nodule"] = {"center_mm": centre.round(2).tolist(), "diameter_mm": round(diameter, 2)}
            if result.nodules:
                top = result.nodules[0]
                dist = float(np.linalg.norm(np.array(top.center_mm) - centre))
                entry["top_distance_mm"] = round(dist, 2)
                entry["top_within_radius"] = dist < diameter / 2
                entry["diameter_error"] = round((top.diameter_mm - diameter) / diameter, 3)
                entry["other_findings"] = len(result.nodules) - 1
        out[pid] = entry
    return out


def rethreshold(model, task) -> None:
    """Set ``model``'s threshold by the training rule on its own validation scans (the training
    folder's ``val`` split), with its current inference settings."""
    from medsight.tasks.detection.config import DetectionSection
    from medsight.tasks.detection.fit import operating_threshold, threshold_rule

    data = model.spec.training.get("data")
    if not data or not Path(data).is_dir():
        raise SystemExit(f"--rethreshold needs the model's training folder ({data!r}) for its validation scans")
    trained = model.spec.training.get("config", {}).get("detection", {})
    fp = float(trained.get("operating_fp_per_scan", DetectionSection().operating_fp_per_scan))
    ev = task.evaluate(model, data, split="val", n_boot=0, seed=0)
    curve = ev["analyses"]["all nodules"]["curve"]
    before, model.manifest["threshold"] = model.manifest["threshold"], operating_threshold(
        curve["fps"], curve["thresholds"], fp)
    model.manifest["threshold_rule"] = (f"{threshold_rule(fp, ev['n'])}, with tta_flips "
                                        f"{model.manifest['detection'].get('tta_flips') or 'off'}")
    print(f"threshold {before} -> {model.manifest['threshold']} ({model.manifest['threshold_rule']})")


def card_lines(bench: dict, real: dict) -> list[str]:
    a, b = bench["analyses"]["all nodules"], bench["analyses"]["nodules >= 6 mm"]
    lines = [f"Synthetic benchmark ({bench['n']} unseen synthetic scans, {a['n_nodules']} nodules): "
             f"CPM {a['cpm']:.3f} "
             f"(95% CI {a['ci']['cpm'][0]:.3f}-{a['ci']['cpm'][1]:.3f}); nodules >= 6 mm ({b['n_nodules']}): CPM "
             f"{b['cpm']:.3f}, sensitivity at 1 FP/scan {bench['sensitivity_at_1fp_6mm']:.3f}"]
    size = bench.get("size") or {}
    if size.get("n_matched"):
        lines.append(f"Synthetic diameters of the {size['n_matched']} nodules found at the operating threshold: median "
                     f"error {100 * size['median']:+.0f} % (10th-90th percentile {100 * size['p10']:+.0f} to "
                     f"{100 * size['p90']:+.0f} %), {100 * size['within']:.0f} % within 30 %")
    r1, r2 = real["LIDC-IDRI-0001"], real["LIDC-IDRI-0002"]
    if "top_distance_mm" in r1:
        lines.append(f"Real LIDC-IDRI-0001 slab ({r1['slices']} slices): the top finding lies "
                     f"{r1['top_distance_mm']} mm "
                     f"from the {r1['nodule']['diameter_mm']} mm LUNA16 nodule (within its radius: "
                     f"{r1['top_within_radius']}), diameter {r1['findings'][0]['diameter_mm']} mm "
                     f"({100 * r1['diameter_error']:+.0f} %), {r1['other_findings']} other finding(s)")
    else:
        lines.append(f"Real LIDC-IDRI-0001 slab: no finding at the operating threshold "
                     f"({r1['n_candidates']} candidates)")
    lines.append(f"Real LIDC-IDRI-0002 slab (only an excluded lesion): {len(r2['findings'])} finding(s)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/lung-nodule-ct/model")
    ap.add_argument("--bench", default="runs/synthetic-ct/bench")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--measure", choices=["probability", "attenuation"],
                    help="measure nodules this way (and ship it so), instead of the model's setting")
    ap.add_argument("--grow-mm", type=float, help="with --measure attenuation: the most a nodule grows (mm)")
    ap.add_argument("--version", help="ship under this version instead of the model's")
    ap.add_argument("--tta-flips", help="average the network over these mirrored axes (e.g. 1,2: the axial "
                                        "plane), instead of the model's setting")
    ap.add_argument("--spacing-mm", type=float,
                    help="run the network on this isotropic grid instead of the one it was trained on (a finer "
                         "grid shows it every structure larger, in voxels; sizes stay in mm)")
    ap.add_argument("--rethreshold", action="store_true",
                    help="choose the operating threshold again, by the training rule (lowest score at <= the "
                         "config's operating_fp_per_scan on the model's validation scans), with the settings "
                         "above: a threshold chosen without TTA does not hold for TTA's scores")
    args = ap.parse_args()
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    model, task = load_model(args.model), get_task("detection")
    flips = [int(a) for a in args.tta_flips.split(",")] if args.tta_flips else None
    if args.measure or args.grow_mm is not None or flips:
        chosen = {k: v for k, v in (("measure", args.measure), ("grow_mm", args.grow_mm), ("tta_flips", flips))
                  if v is not None}
        model.manifest["detection"] = {**model.manifest["detection"], **chosen}  # a new dict: spec re-reads it
    if args.spacing_mm:
        model.manifest["preprocessing"] = {**model.manifest["preprocessing"],
                                           "target_spacing": [args.spacing_mm] * 3}
    if args.version:
        model.manifest["version"] = args.version
    if args.rethreshold:
        rethreshold(model, task)
    t0 = time.perf_counter()
    ev = task.evaluate(model, args.bench, split="all", n_boot=1000, seed=0)
    bench = {k: ev[k] for k in ev if k not in ("scans",)}
    bench["seconds"] = round(time.perf_counter() - t0, 1)
    real = real_checks(model, task)
    headline = task.headline(ev)  # before the curves are dropped from the JSON below (it reads them)
    out = {"model": args.model, "weights_sha256": model.spec.weights_sha256, "threshold": model.spec.threshold,
           "synthetic_benchmark": bench, "real": real, "card": card_lines(ev, real)}
    for analysis in bench["analyses"].values():
        analysis.pop("curve", None)
    print(json.dumps({k: out[k] for k in ("card", "real")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.ship:
        dest = REPO / "src" / "medsight" / "zoo" / model.name
        if dest.exists():
            shutil.rmtree(dest)
        model.manifest["benchmark"] = {"data": "synthetic, seeds 0-59 (never trained on)", **headline}
        data = model.spec.training.get("data")
        if data and Path(data).is_dir():  # the training folder's val/test splits at the model's threshold as shipped
            model.manifest["metrics"] = {s: task.headline(task.evaluate(model, data, split=s, n_boot=1000, seed=0))
                                         for s in ("val", "test")}
        model.manifest["real_checks"] = out["card"]
        model.card = task.model_card(model.manifest,
                                     reproduce="medsight train configs/lung-nodule-ct.yaml --out runs/lung-nodule-ct")
        model.save(dest)
        print(f"shipped to {dest}")


if __name__ == "__main__":
    main()
