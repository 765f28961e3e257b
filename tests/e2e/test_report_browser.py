"""The evaluation report in a real browser (Debian's chromium driven by Playwright).

`medsight evaluate` runs the shipped `pneumonia-xray` on 240 real PneumoniaMNIST test X-rays
listed in a CSV manifest with two metadata columns, and writes its self-contained HTML report.
The page is opened from disk with the network cut off (a report must need nothing else) and
checked as a reader sees it: every plot decoded, the threshold table with its operating row, a
subgroup table per metadata column, and the true-positive, false-positive and false-negative
examples with their heatmaps. The screenshot is ``report.png`` in the e2e artifacts.

The metadata values are assigned by this test (site by index, sex by a seeded draw): the
subgroup numbers show the tables work, they say nothing about the model.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("MEDSIGHT_E2E_ARTIFACTS", "/tmp/medsight-e2e/artifacts"))
N = 240


def _manifest(npz: Path, folder: Path) -> Path:
    from PIL import Image as PILImage

    rng = np.random.default_rng(7)
    with np.load(npz) as z:
        images, labels = z["test_images"][:N], z["test_labels"][:N, 0]
    rows = []
    for i, (im, lab) in enumerate(zip(images, labels)):
        path = folder / f"x{i:03d}.png"
        PILImage.fromarray(im).save(path)
        rows.append({"path": path.name, "label": ["normal", "pneumonia"][int(lab)], "split": "test",
                     "site": "north" if i % 3 else "south", "sex": str(rng.choice(["F", "M"])),
                     "accession": f"A{i:05d}"})  # an identifier: left out of the subgroups, with the reason
    out = folder / "test.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_the_evaluation_report_renders_in_chromium(tmp_path, pneumonia_npz):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (run `make peers`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    manifest = _manifest(Path(pneumonia_npz), tmp_path)
    report, js = tmp_path / "report.html", tmp_path / "eval.json"
    run = subprocess.run([sys.executable, "-m", "medsight", "evaluate", "--model", "pneumonia-xray", "--data",
                          str(manifest), "--json", str(js), "--report", str(report)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ev = json.loads(js.read_text())
    assert ev["n"] == N and {"pr", "average_precision", "threshold_table", "subgroups", "examples"} <= set(ev)
    assert set(ev["subgroups"]) == {"sex", "site"} and "accession" in ev["subgroups_left_out"]
    assert sum(r["n"] for r in ev["subgroups"]["site"]) == N
    outcomes = {e["outcome"] for e in ev["examples"]}
    cm = ev["confusion_matrix"]  # [[TN, FP], [FN, TP]]: an outcome is shown exactly when the split has it
    assert outcomes == {name for name, k in (("true positive", cm[1][1]), ("false positive", cm[0][1]),
                                             ("false negative", cm[1][0])) if k}

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
        requests: list[str] = []
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests  # self-contained
        assert page.title() == "MedSight evaluation: pneumonia-xray"
        images = page.locator("img")
        widths = images.evaluate_all("els => els.map(e => [e.alt, e.complete && e.naturalWidth])")
        assert all(w for _, w in widths), f"images that did not decode: {[a for a, w in widths if not w]}"
        alts = [a for a, _ in widths]
        for plot in ("ROC curve", "precision-recall curve", "confusion matrix",
                     "reliability diagram before temperature scaling", "reliability diagram after temperature scaling"):
            assert plot in alts, f"{plot} missing from the report"
        examples = page.locator("img.example")
        assert examples.count() == len(ev["examples"]) >= 3
        shown = examples.first.bounding_box()
        assert shown and shown["width"] >= 160  # a 28-pixel overlay is drawn large enough to read
        operating = page.locator("h2:text('Operating points') + p + table tr", has_text="(operating)")
        assert operating.count() == 1
        assert f"{ev['threshold']:.4f}" in operating.inner_text()
        for column in ("sex", "site"):
            assert page.locator(f"h3:text-is('{column}') + table tr").count() == 1 + len(ev["subgroups"][column])
        for heading in ("true positives", "false positives", "false negatives"):
            assert page.locator(f"h3:text-is('{heading}')").count() == (heading[:-1] in outcomes)
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        browser.close()
