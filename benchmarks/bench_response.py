"""The response model's acceptance numbers (issue 11), on the simulated cohort: SYNTHETIC only.

1. Write the cohort (``runs/cohort``: 4000 patients, seed 0) unless it is there.
2. Train ``configs/response-synthetic.yaml`` twice, with propensity weighting on and off
   (``runs/response-synthetic-ipw``, ``runs/response-synthetic``: the config's own setting), unless
   ``--reuse`` and the model is there.
3. Score each on the held-out test split against the known counterfactuals: the policy's value
   as a fraction of the oracle's, against the best single treatment for all, regret on accepted
   vs referred cases, factual AUC and ECE, PEHE, and the features' roles.

Targets: fraction of oracle >= 0.90; policy beats the best single treatment (CI of the
difference above 0); regret accepted < regret referred.

Usage:
    .venv/bin/python benchmarks/bench_response.py [--reuse] [--json benchmarks/results/response.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from docs_section import write_section

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs"
CONFIG = REPO / "configs" / "response-synthetic.yaml"
MARK = "response"


def train(out: Path, *overrides: str) -> float:
    t0 = time.perf_counter()
    sets = [a for o in overrides for a in ("--set", o)]
    subprocess.run([sys.executable, "-m", "medsight", "train", str(CONFIG), "--out", str(out), *sets], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    return time.perf_counter() - t0


def score(model_dir: Path, cohort: Path) -> dict:
    import medsight  # noqa: F401
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    model = load_model(model_dir)
    t0 = time.perf_counter()
    ev = get_task("response").evaluate(model, str(cohort / "manifest.csv"), split="test",
                                       counterfactuals=cohort / "counterfactuals.csv", n_boot=2000)
    pol = ev["policy"]
    return {"model": str(model_dir), "n": ev["n"], "factual_auc": ev.get("factual_auc"),
            "factual_auc_ci95": ev.get("factual_auc_ci95"), "ece": ev.get("ece"), "coverage": ev["coverage"],
            "status_counts": ev["status_counts"], "fraction_of_oracle": pol["fraction_of_oracle"],
            "policy": pol["policy"], "model_all": pol["model_all"], "oracle": pol["oracle"],
            "best_single": pol["best_single"], "vs_best_single": pol["vs_best_single"], "regret": pol["regret"],
            "model_regret": pol["model_regret"], "coverage_risk": pol.get("coverage_risk"),
            "pehe": ev["pehe"], "features": {k: {"model": v["model"]["role"], "truth": v["truth"]["role"],
                                                 "prognostic": v["model"]["prognostic"],
                                                 "predictive": v["model"]["predictive"]}
                                             for k, v in ev["features"].items()},
            "propensity": model.manifest["training"].get("propensity"),
            "train_wall_s": model.manifest["training"].get("wall_time_s"),
            "evaluate_s": round(time.perf_counter() - t0, 1)}


def targets(r: dict) -> dict:
    """The policy (referred patients get the fallback) reaches 90% of the oracle and beats the best
    single treatment (CI above 0); the model's own choice has lower regret on the cases it accepts
    than on those it refers (abstention picks the cases it would get wrong)."""
    reg = r["model_regret"]
    return {"fraction_of_oracle_ge_0.90": r["fraction_of_oracle"]["value"] >= 0.90,
            "beats_best_single": r["vs_best_single"]["ci"][0] > 0,
            "regret_accepted_lt_referred": (reg["referred"]["n"] > 0 and reg["accepted"]["mean"] is not None
                                            and reg["accepted"]["mean"] < reg["referred"]["mean"])}


def _ci(v: dict, key: str = "value") -> str:
    return f"{v[key]:.3f} ({v['ci'][0]:.3f}–{v['ci'][1]:.3f})"


def write_docs(results: dict, info: dict) -> None:
    lines = ["## Treatment response (SYNTHETIC: the simulated cohort)", "",
             "Command: `.venv/bin/python benchmarks/bench_response.py` (cohort: "
             "`python -m medsight.data.synthetic_cohort runs/cohort --n 4000 --seed 0`, test split 600 patients "
             "never used in training; configs/response-synthetic.yaml, 5-member ensemble). Every number is on "
             "simulated patients whose counterfactual outcomes are known; none is a clinical result.", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}; run {info['date']} "
             f"(load average at start {info['load']}).", "",
             "| propensity weighting | policy value (95% CI) | fraction of oracle | vs best single "
             "(standard for all) | model's regret accepted / referred (n) | regret given, referred (fallback) | "
             "coverage | factual AUC (95% CI) | ECE | PEHE | "
             "texture: model's role | train wall time |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        reg, given = r["model_regret"], r["regret"]["referred"]
        lines.append(
            f"| {name} | {_ci(r['policy'])} | {_ci(r['fraction_of_oracle'])} | "
            f"{r['vs_best_single']['difference']:+.3f} ({r['vs_best_single']['ci'][0]:+.3f}–"
            f"{r['vs_best_single']['ci'][1]:+.3f}) | {reg['accepted']['mean']:.3f} ({reg['accepted']['n']}) / "
            f"{reg['referred']['mean'] if reg['referred']['mean'] is not None else float('nan'):.3f} "
            f"({reg['referred']['n']}) | {given['mean'] if given['mean'] is not None else float('nan'):.3f} | "
            f"{r['coverage']:.3f} | {r['factual_auc']:.3f} ({r['factual_auc_ci95'][0]:.3f}–"
            f"{r['factual_auc_ci95'][1]:.3f}) | {r['ece']:.3f} | {r['pehe']:.3f} | {r['features']['texture']['model']} "
            f"({r['features']['texture']['predictive']:.2f}) | {r['train_wall_s'] / 60:.1f} min |")
    first = next(iter(results.values()))
    lines += ["", f"Oracle (best treatment for each patient): {_ci(first['oracle'])}; best single treatment for all "
              f"({first['best_single']['treatment']}): {_ci(first['best_single'])}; the model's leading option for "
              f"everyone (no referral): {_ci(first['model_all'])}. Referred patients get the fallback stored in the "
              "model (the treatment with the best mean predicted response over the training patients).",
              "", "Targets (issue 11): " + "; ".join(
                  f"{name}: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in r["targets"].items())
                  for name, r in results.items())]
    write_section(MARK, lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse", action="store_true", help="score models already trained instead of retraining")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "response.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from medsight.data.synthetic_cohort import write_cohort
    from medsight.models.saved import cpu_name

    cohort = RUNS / "cohort"
    if not (cohort / "manifest.csv").is_file():
        write_cohort(cohort, 4000, seed=0)
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": [round(x, 2) for x in os.getloadavg()]}
    runs = {"on": (RUNS / "response-synthetic-ipw", ("response.propensity_weighting=true",)),
            "off": (RUNS / "response-synthetic", ("response.propensity_weighting=false",))}
    results = {}
    for name, (out, overrides) in runs.items():
        if not (args.reuse and (out / "model" / "manifest.json").is_file()):
            train(out, *overrides)
        r = score(out / "model", cohort)
        r["targets"] = targets(r)
        results[name] = r
        print(name, json.dumps({k: r[k] for k in ("fraction_of_oracle", "vs_best_single", "coverage", "targets")}))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))
    write_docs(results, info)
    return 0 if all(all(r["targets"].values()) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
