"""The detection report shows a FROC analysis: sensitivities with CIs, CPM, counts, the plot,
the operating point and the missed nodules (synthetic findings)."""

from __future__ import annotations

from report_html import is_png, read_page

from medsight.metrics.froc import froc
from medsight.report import render_report
from medsight.report.detection import detection_report_section
from support.froc_examples import N, three_scans


def test_detection_report_shows_sensitivities_cpm_counts_and_the_plot():
    nodules, findings = three_scans()
    nodules = [*nodules, N("s3", (0, 50, 0), 7)]
    every = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=20, threshold=0.7)
    large = froc(nodules, findings, scans=["s1", "s2", "s3"], n_boot=0, min_diameter_mm=7)
    page = read_page(render_report(detection_report_section(
        {"all nodules": every.to_dict(), "nodules >= 7 mm": large.to_dict()}, model="det", data="luna16")))
    assert page.headings[1:] == ["all nodules", "nodules >= 7 mm", "Provenance"]
    table = page.tables[0]
    assert table[0] == ["FPs per scan", "sensitivity", "CI"]
    assert [r[0] for r in table[1:]] == ["0.125", "0.25", "0.5", "1", "2", "4", "8", "CPM"]
    assert table[-1][1] == f"{every.cpm:.3f}" and table[3][1] == f"{every.sensitivities[2]:.3f}"
    assert [alt for alt, _ in page.images] == ["FROC all nodules", "FROC nodules >= 7 mm"]
    assert all(is_png(png) for _, png in page.images)
    counts = dict(r for r in page.table("count")[1:])
    assert counts["nodules"] == "4" and counts["false positives"] == "3"
    assert "1 nodule(s) missed" in page.text and "at 0.667 FPs per scan" in page.text
