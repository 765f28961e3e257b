"""A simulated treatment cohort: images with one lesion, a treatment each patient received, a
response outcome, and every counterfactual (SYNTHETIC: no real paired image + treatment +
outcome data exists here).

Each patient has a 64×64 8-bit image with one lesion (a bright disc in soft tissue), the
clinical covariates ``age`` (years), ``sex`` and ``stage`` (I–IV, a noisy reading of the lesion's
size), one of three treatments and a binary response. The lesion's features set the outcome:

* **size** (diameter 6–26 px) is *prognostic*: larger lesions respond less under every
  treatment (``-0.9`` per 6 px on the logit); age is mildly prognostic (``-0.3`` per 10 years);
* **texture** (heterogeneity ``h`` in [0, 1], the amplitude of mottling inside the lesion) is
  *predictive*: it changes which treatment is best. Logits over the prognostic part
  ``mu``: ``standard = mu + 0.3``, ``targeted = mu - 2.0 + 4.0 h``, ``immuno = mu + 2.0 - 4.0 h``.
  Homogeneous lesions respond best to ``immuno``, heterogeneous ones to ``targeted``, and a
  middle band (``0.425 < h < 0.575``) to ``standard`` by small margins. The best single
  treatment for everyone (``standard``) reaches about 83% of the oracle's value;
* **location** (left or right half) and ``sex`` have no effect (a null feature for the report).

Assignment is **confounded**: a later stage (a larger lesion, worse outcome) makes
``standard`` more likely and ``immuno`` less; older patients get ``standard`` more often. The
probabilities depend on the covariates only, so a propensity model on the covariates recovers
them (what ``response.propensity_weighting`` uses).

Outcomes use common random numbers: one uniform ``u`` per patient, ``y_t = u < p_t`` under
every treatment ``t``, and the factual outcome is ``y`` of the treatment received.

Written files (``python -m medsight.data.synthetic_cohort OUT --n 2000 --seed 0``)::

    OUT/images/pt00000.png        the image
    OUT/manifest.csv              patient,image,treatment,age,sex,stage,outcome,split
    OUT/counterfactuals.csv       patient,p_<t>,y_<t> for every t, and the true features
                                  feature_size, feature_texture, feature_location
    OUT/PROVENANCE.md             seed, n, the model above: labelled synthetic
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TREATMENTS", "CohortPatient", "simulate", "write_cohort", "true_probabilities"]

TREATMENTS = ("standard", "targeted", "immuno")
SIZE = 64
STAGES = ("I", "II", "III", "IV")


@dataclass
class CohortPatient:
    patient: str
    image: np.ndarray          # (64, 64) uint8
    size: float                # lesion diameter, px
    texture: float             # heterogeneity h in [0, 1]
    location: int              # 0 left, 1 right
    age: float
    sex: str
    stage: str
    treatment: int
    probs: np.ndarray          # (3,) true response probability under each treatment
    outcomes: np.ndarray       # (3,) potential outcomes (0/1)
    split: str


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def true_probabilities(size: np.ndarray, texture: np.ndarray, age: np.ndarray) -> np.ndarray:
    """``(n, 3)`` true response probabilities under standard, targeted, immuno."""
    size, texture, age = (np.asarray(a, dtype=float) for a in (size, texture, age))
    mu = 0.2 - 0.9 * (size - 16.0) / 6.0 - 0.3 * (age - 62.0) / 10.0
    logits = np.stack([mu + 0.3, mu - 2.0 + 4.0 * texture, mu + 2.0 - 4.0 * texture], axis=-1)
    return _sigmoid(logits)


def _image(rng: np.random.Generator, size: float, texture: float, location: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    tissue = 90.0 + gaussian_filter(rng.normal(0, 25, (SIZE, SIZE)), 3.0)
    cx = rng.uniform(14, 26) if location == 0 else rng.uniform(38, 50)
    cy = rng.uniform(20, 44)
    r = size / 2.0
    ecc = rng.uniform(0.85, 1.15)
    d = np.sqrt(((xx - cx) / ecc) ** 2 + ((yy - cy) * ecc) ** 2)
    inside = np.clip(r + 0.5 - d, 0.0, 1.0)  # partial volume at the edge
    mottle = gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 0.8)
    mottle /= mottle.std() + 1e-9
    lesion = 165.0 + 45.0 * texture * mottle
    img = tissue * (1 - inside) + lesion * inside + rng.normal(0, 6, (SIZE, SIZE))
    return np.clip(img, 0, 255).astype(np.uint8)


def simulate(n: int = 2000, *, seed: int = 0, val: float = 0.15, test: float = 0.15) -> list[CohortPatient]:
    """``n`` simulated patients (seeded), split train / val / test at random."""
    if n < 3:
        raise ValueError(f"a cohort needs at least 3 patients; got {n}")
    rng = np.random.default_rng(seed)
    size = rng.uniform(6.0, 26.0, n)
    texture = rng.uniform(0.0, 1.0, n)
    location = rng.integers(0, 2, n)
    age = np.clip(rng.normal(62.0, 10.0, n), 30, 90).round()
    sex = rng.choice(["F", "M"], n)
    stage_idx = np.digitize(size + rng.normal(0, 2.5, n), [11.0, 16.0, 21.0])
    stage_z = (stage_idx - 1.5) / 1.1
    age_z = (age - 62.0) / 10.0
    assign = np.stack([0.8 * stage_z + 0.3 * age_z, np.zeros(n), -0.2 - 0.8 * stage_z - 0.4 * age_z], axis=1)
    pa = np.exp(assign - assign.max(axis=1, keepdims=True))
    pa /= pa.sum(axis=1, keepdims=True)
    treatment = np.array([rng.choice(3, p=row) for row in pa])
    probs = true_probabilities(size, texture, age)
    u = rng.uniform(0, 1, n)
    outcomes = (u[:, None] < probs).astype(int)
    order = rng.permutation(n)
    n_val, n_test = int(round(val * n)), int(round(test * n))
    split = np.array(["train"] * n, dtype=object)
    split[order[:n_val]] = "val"
    split[order[n_val:n_val + n_test]] = "test"
    return [CohortPatient(patient=f"pt{i:05d}", image=_image(rng, size[i], texture[i], int(location[i])),
                          size=float(size[i]), texture=float(texture[i]), location=int(location[i]),
                          age=float(age[i]), sex=str(sex[i]), stage=STAGES[int(stage_idx[i])],
                          treatment=int(treatment[i]), probs=probs[i], outcomes=outcomes[i], split=str(split[i]))
            for i in range(n)]


def write_cohort(out: str | Path, n: int = 2000, *, seed: int = 0) -> Path:
    """Write the cohort to ``out`` (see the module docstring); return the manifest's path."""
    from PIL import Image as PILImage

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    patients = simulate(n, seed=seed)
    with (out / "manifest.csv").open("w", newline="") as fm, (out / "counterfactuals.csv").open("w", newline="") as fc:
        wm, wc = csv.writer(fm), csv.writer(fc)
        wm.writerow(["patient", "image", "treatment", "age", "sex", "stage", "outcome", "split"])
        wc.writerow(["patient", *(f"p_{t}" for t in TREATMENTS), *(f"y_{t}" for t in TREATMENTS),
                     "feature_size", "feature_texture", "feature_location"])
        for p in patients:
            rel = f"images/{p.patient}.png"
            PILImage.fromarray(p.image).save(out / rel)
            wm.writerow([p.patient, rel, TREATMENTS[p.treatment], int(p.age), p.sex, p.stage,
                         int(p.outcomes[p.treatment]), p.split])
            wc.writerow([p.patient, *(f"{q:.6f}" for q in p.probs), *(int(y) for y in p.outcomes),
                         f"{p.size:.3f}", f"{p.texture:.4f}", p.location])
    (out / "PROVENANCE.md").write_text(
        "# Simulated treatment cohort (SYNTHETIC)\n\n"
        f"Made by `python -m medsight.data.synthetic_cohort {out} --n {n} --seed {seed}` "
        "(`medsight.data.synthetic_cohort`).\n\n"
        "Not patient data: every image, covariate, treatment and outcome is simulated. Lesion size is "
        "prognostic, lesion texture predictive (it decides which treatment is best), location and sex have "
        "no effect; assignment is confounded by stage and age. `counterfactuals.csv` holds the true response "
        "probability and the potential outcome under every treatment, so policy value and regret are exact. "
        "Results on it must be reported as synthetic.\n")
    return out / "manifest.csv"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a simulated treatment cohort (synthetic).")
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(write_cohort(args.out, args.n, seed=args.seed))


if __name__ == "__main__":
    main()
