"""Regenerate the shipped models' cards (issue 12), measuring their known failure modes first.

    .venv/bin/python scripts/model_cards.py --measure   # measure on ../shared/data, then write
    .venv/bin/python scripts/model_cards.py             # only re-render MODEL_CARD.md from manifest.json
    .venv/bin/python scripts/model_cards.py --check     # exit 1 if a card is not what its manifest renders

``--measure`` gives each shipped model what it was not made for, all real data, through the
whole path (files written as a user would send them, ``model.predict``), and writes what it did
into ``manifest.json`` as ``failure_modes`` (with today's date and this command). It also
copies ``intended_use`` and ``out_of_scope`` from the model's config (the one its card's
``Reproduce`` names), so a retrained model states the same. The weights and every other key
are left as they are: predictions do not change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SHARED = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
ZOO = REPO / "src" / "medsight" / "zoo"
COMMAND = ".venv/bin/python scripts/model_cards.py --measure"


def _u8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def _pngs(images: list[np.ndarray], folder: Path, stem: str) -> list[str]:
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"{stem}_{i:04d}.png"
        PILImage.fromarray(im).save(p)
        paths.append(str(p))
    return paths


def _medmnist(name: str, split: str = "test") -> list[np.ndarray]:
    with np.load(SHARED / name / f"{name}.npz") as z:
        return list(z[f"{split}_images"])


def _hippocampus_slices(n: int = 200) -> list[np.ndarray]:
    import nibabel as nib

    out = []
    for v in sorted((SHARED / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))[:n]:
        vol = np.asarray(nib.load(v).dataobj)
        out.append(_u8(vol[..., vol.shape[2] // 2]))
    return out


def _ct_slab_folder() -> Path:
    return next(p for p in sorted((SHARED / "lidc_idri_nodule_slabs" / "LIDC-IDRI-0001").iterdir()) if p.is_dir())


def _refer_check(model, label: str, paths: list[str]) -> dict[str, str]:
    results = [r for r in model.predict(paths) if r.ok]
    k = sum(bool(r.refer) for r in results)
    return {"check": label, "result": f"referred {k} of {len(results)} ({k / max(len(results), 1):.1%}); the other "
                                      f"{len(results) - k} were given a label as if they were "
                                      f"{'/'.join(model.manifest['modalities'])} images", "data": "real"}


def _missed(model, name: str) -> dict[str, str]:
    """The test split's errors at the operating threshold, from a fresh evaluation."""
    ev = model.evaluate(str(SHARED / name / f"{name}.npz"), examples=0, n_boot=200)
    (tn, fp), (fn, tp) = ev["confusion_matrix"]
    pos = ev["positive_label"]
    return {"check": f"its own {name} test split at the operating threshold {ev['threshold']}",
            "result": f"{fn} of {fn + tp} {pos} images missed (false negatives, {fn / max(fn + tp, 1):.1%}) and "
                      f"{fp} of {fp + tn} others called {pos} (false positives, {fp / max(fp + tn, 1):.1%})",
            "data": "real"}


def _reason(error: str) -> str:
    """An error's first line without the input's path (a machine path) or the hint that follows."""
    return error.splitlines()[0].split(": ", 1)[-1].split(" (medsight ")[0]


def _refused(model, label: str, path: str) -> dict[str, str]:
    (r,) = model.predict([path])
    what = f"refused: {_reason(r.error)}" if not r.ok else "not refused: it was predicted like any input"
    return {"check": label, "result": what, "data": "real"}


def _classifier(own: str, other: str, other_label: str, dicom: str, dicom_label: str) -> Callable:
    """The checks of a MedMNIST classifier: the other MedMNIST set and hippocampus MRI slices as
    PNG (refer rates), its own test split's errors, and a DICOM of another modality (refused)."""

    def measure(model, tmp: Path) -> list[dict[str, str]]:
        return [
            _refer_check(model, other_label, _pngs(_medmnist(other), tmp / "other", "other")),
            _refer_check(model, "hippocampus MRI middle slices (200 MSD Task04 volumes) as 8-bit PNG",
                         _pngs(_hippocampus_slices(), tmp / "mr", "mr")),
            _missed(model, own),
            _refused(model, dicom_label, str(SHARED / "pydicom_testfiles" / dicom)),
        ]

    return measure


def _ct_as_nifti(tmp: Path) -> str:
    from medsight.io import read
    from medsight.io.nifti import write_nifti

    return str(write_nifti(read(str(_ct_slab_folder())), tmp / "lidc-0001-slab.nii.gz"))


def _hippocampus(model, tmp: Path) -> list[dict[str, str]]:
    (r,) = model.predict([_ct_as_nifti(tmp)])
    got = ", ".join(f"{k} {v:.2f} mL" for k, v in r.volumes_ml.items()) if r.ok else _reason(r.error)
    return [
        {"check": "a real chest CT slab (LIDC-IDRI-0001, 16 slices of 512 x 512) written as NIfTI, which carries no "
                  "modality", "result": f"not refused; segmented: {got}", "data": "real"},
        _refused(model, "the same CT as its DICOM series", str(_ct_slab_folder())),
    ]


def _lung(model, tmp: Path) -> list[dict[str, str]]:
    import nibabel as nib

    from medsight.metrics import Finding, froc, read_annotations, read_excluded

    slabs = SHARED / "lidc_idri_nodule_slabs"
    nodules, excluded = read_annotations(slabs / "luna16" / "annotations.csv"), read_excluded(
        slabs / "luna16" / "annotations_excluded.csv")
    out, found, uids, listed = [], [], [], []
    for case in sorted(p for p in slabs.iterdir() if p.name.startswith("LIDC-")):
        folder = next(p for p in sorted(case.iterdir()) if p.is_dir())
        (r,) = model.predict([str(folder)])
        rows = r.csv_rows()
        uids.append(rows[0]["seriesuid"])
        found += [Finding(row["seriesuid"], (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])),
                          float(row["probability"])) for row in rows if row.get("coordX") not in (None, "")]
        listed.append(f"{case.name} {len(r.nodules)} ("
                      + (", ".join(f"{n.diameter_mm:.1f} mm, category {n.category}" for n in r.nodules) or "none")
                      + ")")
    f = froc([n for n in nodules if n.seriesuid in uids], found, scans=uids,
             excluded=[n for n in excluded if n.seriesuid in uids])
    out.append({"check": f"the {len(uids)} real LIDC-IDRI slabs (11-16 slices; LUNA16 annotations: {f.n_nodules} "
                         f"nodule(s), plus lesions it excludes)",
                "result": f"findings at the operating threshold: {'; '.join(listed)}. Of these {f.n_detected} found "
                          f"the annotated nodule(s), {f.n_ignored_excluded} lie on excluded lesions and "
                          f"{f.n_false_positives} are false positives",
                "data": "real"})
    bench = json.loads((REPO / "benchmarks" / "results" / "lung_nodule_ct.json").read_text())
    b = bench["synthetic_benchmark"]
    out.append({"check": f"small nodules: the synthetic benchmark's {b['n']} unseen scans",
                "result": f"CPM {b['cpm']:.3f} over all nodules against {b['cpm_6mm']:.3f} for nodules >= 6 mm: "
                          f"nodules under 6 mm are missed far more often", "data": "synthetic",
                "command": ".venv/bin/python benchmarks/bench_lung_nodule_ct.py"})
    mr = sorted((SHARED / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))[0]
    img = nib.load(mr)
    path = tmp / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), path)
    (r,) = model.predict([str(path)])
    got = (f"not refused: {len(r.nodules)} finding(s); lung mask: {r.lungs}" if r.ok
           else f"refused by its intensities: {_reason(r.error)}")
    out.append({"check": "a brain MRI crop (MSD hippocampus) as NIfTI, which carries no modality", "result": got,
                "data": "real"})
    return out


MEASURE: dict[str, Callable] = {
    "pneumonia-xray": _classifier("pneumoniamnist", "breastmnist", "BreastMNIST ultrasound test images (156) as "
                                  "8-bit PNG", "CT_small.dcm", "a DICOM CT image (pydicom's CT_small.dcm)"),
    "breast-ultrasound": _classifier("breastmnist", "pneumoniamnist", "PneumoniaMNIST chest X-ray test images (624) "
                                     "as 8-bit PNG", "MR_small.dcm", "a DICOM MR image (pydicom's MR_small.dcm)"),
    "hippocampus-mri": _hippocampus, "lung-nodule-ct": _lung}


def _config_statements(manifest: dict) -> dict[str, list[str]]:
    import yaml

    m = re.search(r"medsight train (configs/\S+\.yaml)", manifest.get("reproduce") or "")
    if not m:
        return {}
    cfg = yaml.safe_load((REPO / m.group(1)).read_text())
    return {k: list(cfg[k]) for k in ("intended_use", "out_of_scope") if cfg.get(k)}


def render(name: str) -> str:
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    m = load_model(ZOO / name)
    return get_task(m.task).model_card(m.manifest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--measure", action="store_true", help="measure the failure modes on ../shared/data first")
    ap.add_argument("--check", action="store_true", help="only check that each card is what its manifest renders")
    ap.add_argument("--model", action="append", help="only these models (default: all shipped)")
    args = ap.parse_args()
    names = args.model or sorted(MEASURE)
    if args.check:
        stale = [n for n in names if (ZOO / n / "MODEL_CARD.md").read_text() != render(n)]
        print("stale cards: " + ", ".join(stale) if stale else "every card is what its manifest renders")
        return 1 if stale else 0
    for name in names:
        path = ZOO / name / "manifest.json"
        manifest = json.loads(path.read_text())
        if not manifest.get("reproduce"):  # a card written at training had it from the run's config: keep it
            old = re.search(r"## Reproduce\n+```\n(.+?)\n```", (ZOO / name / "MODEL_CARD.md").read_text())
            if old:
                manifest["reproduce"] = old.group(1)
        manifest.update(_config_statements(manifest))
        if args.measure:
            import medsight

            model = medsight.load(name)
            with tempfile.TemporaryDirectory() as tmp:
                modes = MEASURE[name](model, Path(tmp))
            today = dt.date.today().isoformat()
            manifest["failure_modes"] = [{**f, "measured": today, "command": f.get("command") or COMMAND}
                                         for f in modes]
            for f in modes:
                print(f"{name}: {f['check']}: {f['result']}")
        path.write_text(json.dumps(manifest, indent=1) + "\n")
        (ZOO / name / "MODEL_CARD.md").write_text(render(name))
        print(f"{name}: card written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
