"""Drift monitoring (issue 12): how soon the alarm fires after the input changes, and how often it
fires on ordinary input. Real data only.

Every image is written as an 8-bit PNG and predicted through the whole path (read, preprocess,
network, fingerprint distance, decision), once. Then ``--streams`` random streams are drawn:
``--before`` of the model's own test images in random order, then images of another kind
(BreastMNIST ultrasound, or hippocampus MRI middle slices). After every prediction the service's
test (:func:`medsight.metrics.drift.check` over the last ``window`` predictions, at the model's
drift reference) is run, as the service does. Reported per window size:

* false alarms: the share of streams with an alarm before the switch, and alarms per 1,000
  in-distribution predictions (a check counts once per episode, as the service alerts);
* delay: how many images of the new kind it took to fire (median, 95th percentile, maximum).

Usage: .venv/bin/python benchmarks/bench_drift.py [--model pneumonia-xray] [--streams 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_ood import REPO, sets
from docs_section import write_section

MARK = "drift"


def predict_all(model, images: list[np.ndarray], tmp: Path, tag: str) -> dict[str, np.ndarray]:
    from PIL import Image as PILImage

    paths = []
    for i, im in enumerate(images):
        p = tmp / f"{tag}_{i}.png"
        PILImage.fromarray(im).save(p)
        paths.append(str(p))
    rs = [r for r in model.predict(paths) if r.ok]
    return {"distance": np.array([r.distance for r in rs]), "score": np.array([r.score for r in rs]),
            "refer": np.array([bool(r.refer) for r in rs]),
            "positive": np.array([r.score >= r.threshold for r in rs])}


def run_stream(order: list[tuple[str, int]], preds: dict[str, dict[str, np.ndarray]], ref: dict, window: int,
               alpha: float) -> list[int]:
    """Positions (0-based) at which a new alarm episode starts."""
    from medsight.metrics.drift import check

    alarms, drifting = [], False
    for t in range(window - 1, len(order)):
        w = order[t - window + 1:t + 1]
        win = {k: [preds[s][k][i] for s, i in w] for k in ("distance", "score", "refer", "positive")}
        now = check(win, ref, alpha=alpha).drift
        if now and not drifting:
            alarms.append(t)
        drifting = now
    return alarms


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="pneumonia-xray")
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--before", type=int, default=300)
    ap.add_argument("--after", type=int, default=100)
    ap.add_argument("--windows", default="25,50,100")
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "drift.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import medsight

    model = medsight.load(args.model)
    ref = model.manifest["drift"]
    named = sets()
    in_name = next(iter(named))
    with tempfile.TemporaryDirectory() as tmp:
        preds = {name: predict_all(model, ims, Path(tmp), str(i)) for i, (name, ims) in enumerate(named.items())}
    rng = np.random.default_rng(0)
    rows = []
    for window in [int(w) for w in args.windows.split(",")]:
        for shifted in [n for n in named if n != in_name]:
            early, delays, in_checks, in_alarms = 0, [], 0, 0
            for _ in range(args.streams):
                before = [(in_name, int(i)) for i in rng.permutation(len(preds[in_name]["score"]))[:args.before]]
                n_after = min(args.after, len(preds[shifted]["score"]))
                after = [(shifted, int(i)) for i in rng.permutation(len(preds[shifted]["score"]))[:n_after]]
                alarms = run_stream(before + after, preds, ref, window, args.alpha)
                pre = [a for a in alarms if a < len(before)]
                early += bool(pre)
                in_alarms += len(pre)
                in_checks += len(before) - window + 1
                post = [a - len(before) + 1 for a in alarms if a >= len(before)]
                delays.append(post[0] if post else np.inf)
            d = np.asarray(delays, dtype=float)
            found = d[np.isfinite(d)]
            row = {"window": window, "shifted": shifted, "streams": args.streams,
                   "early_alarm_streams": round(early / args.streams, 4),
                   "false_alarms_per_1000": round(1000 * in_alarms / max(in_checks, 1), 3),
                   "detected": round(len(found) / len(d), 4),
                   "delay_median": float(np.median(found)) if len(found) else None,
                   "delay_p95": float(np.percentile(found, 95)) if len(found) else None,
                   "delay_max": float(found.max()) if len(found) else None}
            rows.append(row)
            print(row, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": args.model, "alpha": args.alpha, "before": args.before,
                                     "rates": {k: {"refer": float(v["refer"].mean()),
                                                   "positive": float(v["positive"].mean())}
                                               for k, v in preds.items()}, "rows": rows}, indent=1))
    lines = ["## Drift alarm: delay and false alarms (real data)", "",
             f"Command: `.venv/bin/python benchmarks/bench_drift.py --model {args.model} --streams {args.streams}`. "
             f"Each of {args.streams} random streams is {args.before} {in_name} images, then images of another kind; "
             f"every image is an 8-bit PNG predicted through the whole path, and after each prediction the "
             f"service's test runs over the last *window* predictions with its defaults (alpha {args.alpha}, "
             "Bonferroni over the two alarming tests, distance and refer rate; PSI ≥ 0.25 or a rate change ≥ 0.10). "
             "Delay: images of the new kind until the alarm.", "",
             "| window | then | streams with an alarm before the switch | false alarms per 1,000 checks | detected "
             "| delay median | p95 | max |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['window']} | {r['shifted']} | {r['early_alarm_streams']:.1%} | {r['false_alarms_per_1000']:.2f} "
              f"| {r['detected']:.0%} | {r['delay_median']} | {r['delay_p95']} | {r['delay_max']} |" for r in rows]
    write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
