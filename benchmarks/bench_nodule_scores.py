"""Does the detector's ranking lose to saturated scores? The benchmark's candidates ranked by
other scores of the same network output (SYNTHETIC data: ``medsight.data.synthetic_ct``).

A candidate's score is its component's highest nodule probability, reported to 5 decimals; a
confident network puts many candidates at 1.0, where ties are broken by size. The background
probability ``p0`` is exact where ``p1`` rounds to 1 (float32 has its precision near 0), so the
logit ``log(1 - p0) - log(p0)`` at the component's lowest ``p0`` ranks without ties. Each ranking is
scored by LUNA16's FROC (``medsight.metrics.froc``) on the same candidates, ``detect``'s own
(``medsight.tasks.detection.detect.findings``: inside the lungs), at most ``max_findings`` per scan
by the ranking:

- ``shipped``: the score as ``detect`` reports it (5 decimals, the larger first among equal ones);
- ``logit``: the logit at the component's lowest background probability;
- ``mass``: the component's summed probability (its soft volume, in voxels);
- ``logit_plus_log_mass``: both (a confident and large component first);
- and the ceiling: the CPM if every nodule the candidates reach ranked above every false positive.

Where the nodules are (``subgroups``, the shipped ranking): the generator's ``nodules.csv`` gives each
nodule's size, type, whether it touches the pleura or a vessel, and the scan its slice spacing. Each
group is scored as LUNA16 scores its size bands: the other nodules become excluded annotations, so a
finding on them counts neither way, and the false positives are the same for every group.

Usage:
    python -m medsight.data.synthetic_ct runs/synthetic-ct/bench --n 60 --seed 0
    .venv/bin/python benchmarks/bench_nodule_scores.py [--model lung-nodule-ct] [--bench runs/synthetic-ct/bench] \\
        [--json benchmarks/results/nodule_scores.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def candidates(model, scan) -> list[dict]:
    """The shipped candidates of one scan with each ranking's score."""
    import torch
    from scipy import ndimage

    from medsight.engine.sliding import predict_probabilities
    from medsight.tasks.detection.detect import findings
    from medsight.tasks.detection.task import _settings

    s = _settings(model)
    probs = predict_probabilities(model.run, torch.from_numpy(scan.x), patch_size=s.patch_size, overlap=s.overlap,
                                  sw_batch_size=s.sw_batch_size, precision=s.precision,
                                  tta_flips=s.tta_flips).numpy()
    p0, p1 = probs[0], probs[1]
    # detect()'s own candidates, before its cap: each ranking keeps its own best max_findings
    found = findings(p1, scan, s, limit=4 * s.max_findings)
    if not found:
        return []
    # each candidate's component: the one at its centre, or the nearest one (a curved component's
    # weighted centre may fall outside it)
    labels, n = ndimage.label(p1 > s.candidate_threshold, structure=np.ones((3, 3, 3), bool))
    _, nearest = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    index = np.array([d.grid_index for d in found])
    at = np.clip(np.round(index).astype(int), 0, np.array(p1.shape) - 1)
    comp = labels[tuple(nearest[:, at[:, 0], at[:, 1], at[:, 2]])]
    ks = np.arange(1, n + 1)
    p0_min = np.maximum(np.asarray(ndimage.minimum(p0, labels, ks)), 1e-30)[comp - 1]
    mass = np.asarray(ndimage.sum(p1, labels, ks))[comp - 1]
    logit = np.log(np.maximum(1.0 - p0_min, 1e-12)) - np.log(p0_min)
    return [{"world": tuple(d.center_mm), "shipped": d.score, "volume": d.volume_ml * 1000.0, "logit": float(lg),
             "mass": float(m), "logit_plus_log_mass": float(lg + np.log(max(m, 1e-9)))}
            for d, lg, m in zip(found, logit, mass)]


def ranked(per_scan: dict[str, list[dict]], key: str, cap: int) -> list:
    """Each scan's best ``cap`` candidates by ``key`` (the larger first among equal ones, as detect
    keeps them) as findings scored by ``key``."""
    from medsight.metrics.luna16_csv import Finding

    findings = []
    for uid, rows in per_scan.items():
        best = sorted(rows, key=lambda r: (-r[key], -r["volume"]))[:cap]
        findings += [Finding(uid, r["world"], float(r[key])) for r in best]
    return findings


def scored(data, per_scan: dict[str, list[dict]], key: str, cap: int) -> dict:
    from medsight.metrics.froc import froc

    findings = ranked(per_scan, key, cap)
    r = froc(data.annotations, findings, scans=[c.id for c in data.cases], excluded=data.excluded, n_boot=1000, seed=0)
    return {"cpm": round(r.cpm, 4), "cpm_ci95": [round(v, 4) for v in r.ci["cpm"]],
            "sensitivities": [round(v, 4) for v in r.sensitivities], "n_detected": r.n_detected,
            "n_nodules": r.n_nodules}


def _bands(diameter: float) -> str:
    return "<4 mm" if diameter < 4 else "4-6 mm" if diameter < 6 else "6-10 mm" if diameter < 10 else ">=10 mm"


def _slices(mm: float) -> str:
    return "<=1.25 mm" if mm <= 1.25 else "1.25-2 mm" if mm <= 2.0 else ">2 mm"


def _size(n) -> str:
    return "<6 mm" if float(n["diameter_mm"]) < 6 else ">=6 mm"


GROUPS = {
    "size": lambda n, slice_mm: _bands(float(n["diameter_mm"])),
    "type": lambda n, slice_mm: n["type"],
    "juxtapleural": lambda n, slice_mm: f"{'yes' if n['juxtapleural'] == '1' else 'no'}, {_size(n)}",
    "vascular": lambda n, slice_mm: f"{'yes' if n['vascular'] == '1' else 'no'}, {_size(n)}",
    "slice spacing": lambda n, slice_mm: f"{_slices(slice_mm)}, {_size(n)}",
}


def subgroups(data, per_scan: dict[str, list[dict]], cap: int, bench: Path, slice_mm: dict[str, float]) -> dict:
    """Per group of nodules: how many, how many proposed, the CPM and the sensitivity at 1/8, 1
    and 8 FPs per scan (shipped ranking; the other nodules excluded)."""
    import csv

    from medsight.metrics.froc import froc
    from medsight.metrics.luna16_csv import Nodule

    rows = list(csv.DictReader((bench / "nodules.csv").open()))
    findings = ranked(per_scan, "shipped", cap)
    nodules = [(Nodule(n["seriesuid"], (float(n["coordX"]), float(n["coordY"]), float(n["coordZ"])),
                       float(n["diameter_mm"])), n) for n in rows]
    out: dict = {}
    for name, key in GROUPS.items():
        labels = [key(n, slice_mm[n["seriesuid"]]) for _, n in nodules]
        out[name] = {}
        for g in sorted(set(labels)):
            inside = [nod for (nod, _), lab in zip(nodules, labels) if lab == g]
            others = [nod for (nod, _), lab in zip(nodules, labels) if lab != g]
            r = froc(inside, findings, scans=[c.id for c in data.cases], excluded=[*data.excluded, *others], n_boot=0)
            sens = dict(zip(r.fp_rates, r.sensitivities))
            out[name][g] = {"n": r.n_nodules, "proposed": r.n_detected, "cpm": round(r.cpm, 4),
                            "sens_1_8": round(sens[0.125], 4), "sens_1": round(sens[1], 4),
                            "sens_8": round(sens[8], 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lung-nodule-ct")
    ap.add_argument("--bench", default="runs/synthetic-ct/bench")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task
    from medsight.tasks.detection.data import open_detection_data
    from medsight.tasks.detection.task import _settings

    torch.set_num_threads(2)
    model, task = load_model(args.model), get_task("detection")
    data = open_detection_data(args.bench)
    t0 = time.perf_counter()
    per_scan, slice_mm = {}, {}
    for case in data.cases:
        scan = task.prepare_image(model, case.image())
        per_scan[case.id] = candidates(model, scan)
        slice_mm[case.id] = float(scan.source.spacing[0])  # array order: slices first
    cap = _settings(model).max_findings
    keys = ("shipped", "logit", "mass", "logit_plus_log_mass")
    out = {"model": args.model, "version": model.version, "bench": args.bench, "scans": len(data.cases),
           "candidates": sum(len(v) for v in per_scan.values()),
           "ranked_by": {k: scored(data, per_scan, k, cap) for k in keys}}
    best = out["ranked_by"]["shipped"]
    out["ceiling_cpm"] = round(best["n_detected"] / best["n_nodules"], 4)
    if (Path(args.bench) / "nodules.csv").is_file():
        out["subgroups"] = subgroups(data, per_scan, cap, Path(args.bench), slice_mm)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
