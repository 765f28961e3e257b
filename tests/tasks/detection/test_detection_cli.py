"""The detector through the commands a user runs: ``medsight train`` (conftest), ``medsight
evaluate`` with the task's options (JSON, HTML report, findings CSV), ``medsight evaluate
--findings`` without a model, and ``medsight predict`` (the JSON interface of issue 10, the
per-finding LUNA16 CSV, a DICOM series folder as an input).

Findings that must be real come from the probability oracle (support/chest_ct.py) standing in
for a trained network; the tiny trained model provides everything else (its manifest,
preprocessing, settings)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medsight.cli.main import app
from medsight.io import read
from medsight.metrics.froc import froc
from medsight.metrics.luna16_csv import read_findings, write_findings
from support.chest_ct import oracle, truth_of, with_threshold
from support.froc_examples import three_scans
from support.series_dicom import write_series

runner = CliRunner()

FINDING_KEYS = {"center_mm", "center_voxel", "diameter_mm", "volume_ml", "score", "category", "type"}


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    text = result.stdout + (result.stderr or "")
    assert "Traceback" not in text, text
    return result


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def _scans(luna):
    """(path, image, truth) of each scan of the data set."""
    truth = truth_of(luna)
    out = []
    for path in sorted(luna.glob("*.nii.gz")):
        uid = path.name[: -len(".nii.gz")]
        out.append((path, read(path), truth.get(uid, [])))
    return out


def _oracle_on_truth(monkeypatch, luna, peaks=(0.9, 0.6)):
    scans = _scans(luna)
    oracle(monkeypatch, [(im.origin, [(*n, peaks[i % len(peaks)]) for i, n in enumerate(t)]) for _, im, t in scans])
    return scans


def test_training_through_the_cli_wrote_the_model_its_evaluation_and_report(tiny_run):
    manifest = json.loads((tiny_run / "model" / "manifest.json").read_text())
    assert manifest["task"] == "detection" and manifest["modalities"] == ["CT"]
    assert 0.0 < manifest["threshold"] <= 1.0
    assert manifest["training"]["scans"]["n_scans"] == 5 and manifest["training"]["scans"]["not_on_disk"] == 0
    assert (tiny_run / "evaluation" / "report.html").is_file()
    assert {"cpm", "n"} <= set(manifest["metrics"]["test"])


def test_evaluate_writes_json_report_findings_and_per_scan_csv(tiny_model, luna, tmp_path):
    out, report, found, per_scan = (tmp_path / n for n in ("e.json", "r.html", "f.csv", "scans.csv"))
    r = invoke("evaluate", "--model", tiny_model, "--data", luna, "--split", "all", "--n-boot", 20, "--seed", 3,
               "--min-diameter-mm", 8, "--threshold", 0.5, "--json", out, "--report", report,
               "--findings-csv", found, "--csv", per_scan)
    assert r.exit_code == 0, r.stderr
    ev = json.loads(out.read_text())
    assert {"task", "model", "data", "split", "n", "threshold", "analyses", "scans", "skipped", "not_on_disk",
            "dataset", "seconds_per_scan"} <= set(ev)
    assert ev["n"] == 5 and ev["threshold"] == 0.5 and ev["split"] == "all" and ev["not_on_disk"] == 0
    assert list(ev["analyses"]) == ["all nodules", "nodules >= 8 mm"]
    every = ev["analyses"]["all nodules"]
    assert set(every["sensitivities"]) == {"0.125", "0.25", "0.5", "1", "2", "4", "8"}
    assert every["ci"]["n_boot"] == 20 and every["ci"]["seed"] == 3 and every["operating_point"]["threshold"] == 0.5
    assert ev["cpm"] == every["cpm"]
    html = report.read_text(encoding="utf-8")
    assert "FROC" in html and "data:image/png;base64," in html and tiny_model.name in html
    marks = read_findings(found)
    assert len(marks) == sum(s["n_candidates"] for s in ev["scans"])
    with per_scan.open() as f:
        assert [row["seriesuid"] for row in csv.DictReader(f)] == [s["seriesuid"] for s in ev["scans"]]


def test_evaluate_scores_every_nodule_found_by_the_oracle_with_bootstrap_ci(monkeypatch, tiny_model, luna, tmp_path):
    scans = _oracle_on_truth(monkeypatch, luna)
    out = tmp_path / "e.json"
    r = invoke("evaluate", "--model", tiny_model, "--data", luna, "--split", "all", "--n-boot", 50,
               "--threshold", 0.5, "--json", out)
    assert r.exit_code == 0, r.stderr
    ev = json.loads(out.read_text())
    every = ev["analyses"]["all nodules"]
    assert every["n_nodules"] == sum(len(t) for _, _, t in scans) and every["n_detected"] == every["n_nodules"]
    assert every["cpm"] == 1.0 and every["n_false_positives"] == 0 and every["ci"]["cpm"] == [1.0, 1.0]
    op = every["operating_point"]  # peaks 0.9 and 0.6: every nodule is found at 0.5
    assert op["fps_per_scan"] == 0.0 and op["true_positives"] == every["n_nodules"]


def test_predict_gives_the_json_interface_and_per_finding_csv_and_reads_a_dicom_series_folder(
        monkeypatch, tiny_model, luna, tmp_path):
    scans = _oracle_on_truth(monkeypatch, luna)
    model = with_threshold(tiny_model, tmp_path / "model", 0.5)
    path, image, truth = next(s for s in scans if len(s[2]) == 2)
    series = tmp_path / "LIDC-IDRI-9999" / "study" / "series"  # the same volume as TCIA ships a series
    write_series(series, image.array[0].astype(np.int16) + 1024, modality="CT",
                 spacing=image.spacing, origin=image.origin, rescale_intercept=-1024.0)
    empty = next(s[0] for s in scans if s[0] != path)  # nothing is painted on it:
    oracle(monkeypatch, [(image.origin, [(*n, p) for n, p in zip(truth, (0.6, 0.9))])])
    out, table = tmp_path / "p.json", tmp_path / "p.csv"
    r = invoke("predict", "--model", model, path, tmp_path / "LIDC-IDRI-9999", empty, "--json", out, "--csv", table)
    assert r.exit_code == 0, r.stderr
    got = json.loads(out.read_text())
    assert [g["input"] for g in got] == [str(path), str(tmp_path / "LIDC-IDRI-9999"), str(empty)]
    for g in got[:2]:
        assert g["threshold"] == 0.5 and len(g["findings"]) == 2
        scores = [f["score"] for f in g["findings"]]
        assert scores == sorted(scores, reverse=True) == pytest.approx([0.9, 0.6], abs=1e-3)
        for f, n in zip(g["findings"], truth[::-1]):  # the second nodule has the higher score
            assert FINDING_KEYS <= set(f) and len(f["center_mm"]) == 3 and len(f["center_voxel"]) == 3
            assert np.linalg.norm(np.subtract(f["center_mm"], n[:3])) < n[3] / 2  # a LUNA16 hit
            assert abs(f["diameter_mm"] - n[3]) <= max(0.3 * n[3], 2.0)  # the tiny model's grid is 2 mm
            assert f["volume_ml"] > 0 and f["category"] in ("2", "3", "4A", "4B")
    assert got[1]["seriesuid"] == read(series).series_uid and got[0]["seriesuid"] == path.name[:-7]
    assert got[0]["findings"] == got[1]["findings"]  # NIfTI and DICOM of the same volume
    assert got[2]["findings"] == [] and got[2]["threshold"] == 0.5
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:7] == ["input", "seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "probability"]
    assert {"lesion_id", "volume_ml", "type", "category"} <= set(rows[0])
    assert [r["input"] for r in rows] == [str(path)] * 2 + [str(tmp_path / "LIDC-IDRI-9999")] * 2 + [str(empty)]
    assert rows[-1]["coordX"] == "" and rows[-1]["n_findings"] == "0"  # read, nothing found
    assert [float(r["probability"]) for r in rows[:2]] == pytest.approx([0.9, 0.6], abs=1e-3)
    marks = read_findings(table)  # the table is a LUNA16 findings file as it is
    assert len(marks) == 4 and {m.seriesuid for m in marks} == {got[0]["seriesuid"], got[1]["seriesuid"]}


def test_a_predict_csv_is_scored_by_evaluate_without_a_model(monkeypatch, tiny_model, luna, tmp_path):
    scans = _oracle_on_truth(monkeypatch, luna)
    model = with_threshold(tiny_model, tmp_path / "model", 0.5)
    table = tmp_path / "p.csv"
    assert invoke("predict", "--model", model, luna, "--csv", table).exit_code == 0  # a folder of volumes
    out, report = tmp_path / "e.json", tmp_path / "r.html"
    r = invoke("evaluate", "--findings", table, "--data", luna, "--n-boot", 0, "--json", out, "--report", report)
    assert r.exit_code == 0, r.stderr
    ev = json.loads(out.read_text())
    every = ev["analyses"]["all nodules"]
    # every nodule is a finding at the 0.5 threshold (peaks 0.9 and 0.6)
    assert every["n_scans"] == len(scans) and every["n_nodules"] == sum(len(t) for _, _, t in scans)
    assert every["n_detected"] == every["n_nodules"] and every["n_false_positives"] == 0
    assert ev["model"] is None and "FROC" in report.read_text(encoding="utf-8")


def test_evaluate_scores_a_findings_file_without_a_model_as_froc_does(tmp_path):
    nodules, findings = three_scans()
    ann, found, uids = tmp_path / "annotations.csv", tmp_path / "findings.csv", tmp_path / "seriesuids.csv"
    ann.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                   + "".join(f"{n.seriesuid},{n.center_mm[0]},{n.center_mm[1]},{n.center_mm[2]},{n.diameter_mm}\n"
                             for n in nodules))
    write_findings(found, findings)
    uids.write_text("s1\ns2\ns3\ns4\n")  # s4: a scan without nodules or findings still counts
    out, report = tmp_path / "e.json", tmp_path / "r.html"
    r = invoke("evaluate", "--findings", found, "--annotations", ann, "--seriesuids", uids, "--n-boot", 30,
               "--seed", 1, "--threshold", 0.7, "--min-diameter-mm", 7, "--json", out, "--report", report)
    assert r.exit_code == 0, r.stderr
    ev = json.loads(out.read_text())
    want = froc(nodules, findings, scans=["s1", "s2", "s3", "s4"], n_boot=30, seed=1, threshold=0.7).to_dict()
    assert ev["analyses"]["all nodules"] == json.loads(json.dumps(want))
    large = froc(nodules, findings, scans=["s1", "s2", "s3", "s4"], n_boot=30, seed=1, threshold=0.7,
                 min_diameter_mm=7).to_dict()
    assert ev["analyses"]["nodules >= 7 mm"] == json.loads(json.dumps(large))
    assert ev["n"] == 4 and ev["cpm"] == want["cpm"] and ev["cpm_ci95"] == want["ci"]["cpm"]
    html = report.read_text(encoding="utf-8")
    assert "Detection evaluation: findings" in html and html.count("data:image/png;base64,") == 2


@pytest.mark.parametrize(("args", "words"), [
    (["--annotations", "A"], ["--findings FILE"]),
    (["--findings", "F"], ["--annotations FILE"]),
    (["--findings", "F", "--annotations", "A", "--n-boot", "many"], ["--n-boot takes a int", "'many'"]),
    (["--findings", "F", "--annotatons", "A"], ["no such option --annotatons", "--annotations", "--seriesuids"]),
    (["--findings", "F", "--findings-csv", "out.csv"], ["--findings-csv is used with --model"]),
    (["--findings", "F", "--seed"], ["--seed needs a value"]),
    (["stray"], ["unexpected argument 'stray'"]),
])
def test_bad_evaluate_options_are_one_line_errors(tmp_path, args, words):
    r = invoke("evaluate", *args)
    line = one_line_error(r)
    assert r.exit_code == 2 and all(w in line for w in words), line


def test_findings_with_a_model_is_an_error_and_task_options_are_listed(tiny_model, luna, tmp_path):
    r = invoke("evaluate", "--model", tiny_model, "--data", luna, "--findings", tmp_path / "f.csv")
    assert r.exit_code == 2 and "--findings is used without --model" in one_line_error(r)
    r = invoke("evaluate", "--task-options")
    assert r.exit_code == 0 and "--min-diameter-mm" in r.stdout and "--findings" in r.stdout
