"""The segmentation report and card show the evaluation's summary, cases and overlays."""

from __future__ import annotations

import numpy as np
from report_examples import segmentation as example
from report_html import is_png, read_page

from medsight.models.saved import load_model
from medsight.report import render_report
from medsight.report.segmentation import overlay_png, segmentation_report_section
from medsight.tasks.base import get_task


def test_report_shows_mean_sd_per_structure_every_case_and_the_overlays():
    ev, manifest = example()
    names = ev["label_names"]
    image = np.zeros((1, 12, 16, 16), np.float32)
    image[0, 3:9, 4:12, 4:12] = 1
    mask = (image[0] > 0).astype(np.uint8)
    png = overlay_png(image, [1.0, 1.0, 1.0], mask, mask, {1: names[0]}, title="case0")
    overlays = [{"case": "case0", "caption": "worst: case0 (Dice 0.800)", "png": png}]
    page = read_page(render_report(segmentation_report_section(ev, manifest, overlays=overlays)))

    assert page.headings[1:] == ["Summary per structure", "Examples", "Per case", "Skipped cases", "Provenance"]
    assert "n = 3 case(s), 1 skipped." in page.text and "tolerance 1.0 mm" in page.text
    summary = page.table("structure")
    assert [r[0] for r in summary[1:]] == names
    s = ev["summary"][names[0]]
    assert summary[1][1] == f"{s['dice']['mean']:.3f} ± {s['dice']['sd']:.3f}"
    assert summary[1][2] == f"{s['hd95_mm']['mean']:.2f} ± {s['hd95_mm']['sd']:.2f}"
    assert summary[2][2] == "–"  # b&c: HD95 undefined in every case
    assert summary[1][4] == f"{s['volume_error_ml']['mean']:.4f} ± {s['volume_error_ml']['sd']:.4f}"
    cases = page.table("case")
    assert cases[0] == ["case", f"Dice {names[0]}", f"HD95 {names[0]}", f"Dice {names[1]}", f"HD95 {names[1]}"]
    assert [r[0] for r in cases[1:]] == [c["case"] for c in ev["cases"]]
    assert cases[2][1:] == ["0.810", "2.00", "0.700", "–"]
    assert [alt for alt, _ in page.images] == ["overlay case0"] and is_png(page.images[0][1])
    assert page.captions == ["worst: case0 (Dice 0.800)"]
    provenance = dict(r for r in page.table("model") if len(r) == 2)
    assert provenance["patch size"] == "[16, 16, 16]" and provenance["seconds per case"] == "0.5000"


def test_report_without_images_says_so():
    ev, _ = example()
    page = read_page(render_report(segmentation_report_section(ev)))
    assert page.images == [] and "No overlays" in page.text


def test_summary_counts_undefined_values():
    ev, _ = example()
    ev["summary"][ev["label_names"][0]]["hd95_mm"]["n_undefined"] = 2
    page = read_page(render_report(segmentation_report_section(ev)))
    assert page.table("structure")[1][2].endswith("(2 undefined)")


def test_segmentation_card_states_the_shipped_models_plan_and_metrics_per_structure():
    m = load_model("hippocampus-mri").manifest
    card = get_task("segmentation").model_card(m, reproduce="medsight train configs/hippocampus-mri.yaml")
    assert "- Task: segmentation of Anterior, Posterior (3D); label values [0, 1, 2]" in card
    assert f"{m['plan']['fingerprint']['n_cases']} training cases" in card
    assert all(f"- {rule}: {why}" in card for rule, why in m["plan"]["rules"].items())
    for split, metrics in m["metrics"].items():
        assert f"- {split} (n = {metrics['n']}):" in card
        for name in ("Anterior", "Posterior"):
            d = metrics["summary"][name]["dice"]
            assert f"  - {name}: Dice {d['mean']:.3f} ± {d['sd']:.3f}," in card
