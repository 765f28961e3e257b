"""medsight track on real serial MRI: TCIA Brain-Tumor-Progression patient PGBM-001.

Two exams (1991-11-19 after chemo-radiation, 1992-04-02 at progression; TCIA date-shifted),
each with a Mask_Tumor series on the T1post grid. The stack is oblique and its slices are 6.5 mm
apart along the normal (SliceThickness says 5 mm): PROVENANCE.md gives 2641 and 6809 voxels,
8.11 and 20.92 mL. The issue expects longest in-plane diameters of about 35 and 46 mm.
"""

from __future__ import annotations

import json
import shutil

import pytest

import medsight
from medsight.response.criteria import PROGRESSIVE, list_criteria
from support.cli import invoke
from support.data import shared

PATIENT = "brain_tumor_progression/PGBM-001"
VOLUMES_ML = (8.11, 20.92)


def test_the_oblique_stack_is_read_with_its_spacing_along_the_normal():
    mask = medsight.read(shared(PATIENT) / "1991-11-19" / "5364-MaskTumor-94345")
    assert mask.spacing == pytest.approx((6.5, 0.6875, 0.6875), abs=1e-5)
    assert abs(mask.direction[2, 0]) < 0.99  # oblique: the normal is not the z axis
    assert int((mask.array > 0).sum()) == 2641


@pytest.fixture(scope="module")
def result():
    return medsight.track(shared(PATIENT))


def test_pgbm001_finds_both_exams_and_their_masks_in_date_order(result):
    assert [t.study.date for t in result.timepoints] == ["1991-11-19", "1992-04-02"]
    assert [t.mask_series.description for t in result.timepoints] == ["Mask_Tumor", "Mask_Tumor"]
    assert all("T1post" in [s.description for s in t.image_series] for t in result.timepoints)


def test_pgbm001_volumes_and_diameters(result):
    whole = [t.measure.whole for t in result.timepoints]
    for w, expected in zip(whole, VOLUMES_ML):
        assert w.volume_ml == pytest.approx(expected, rel=0.02)
    # edge to edge: 35.75 and 46.88 mm (centre to centre 35.1 and 46.2 mm, the "about 35 and 46")
    assert 34.5 <= whole[0].longest_diameter_mm <= 36.5
    assert 45.5 <= whole[1].longest_diameter_mm <= 47.5
    assert all(w.perpendicular_diameter_mm <= w.longest_diameter_mm for w in whole)


def test_pgbm001_is_progressive_disease_under_every_preset_with_a_suggestion_to_escalate(result):
    assert set(list_criteria()) >= {"recist-like", "rano-like", "volumetric"}
    assert result.by_criteria == {name: PROGRESSIVE for name in list_criteria()}
    for name in ("recist-like", "rano-like", "volumetric"):
        r = medsight.track(shared(PATIENT), criteria=name)
        assert r.response == PROGRESSIVE and r.suggestion == "escalate or review treatment"
        assert any("progression needs" in reason and reason.endswith("met") for reason in r.reasons)


def test_pgbm001_in_folders_named_against_the_date_order_keeps_the_date_order(tmp_path):
    root = shared(PATIENT)
    shutil.copytree(root / "1992-04-02", tmp_path / "exam-A")  # the later exam gets the earlier name
    shutil.copytree(root / "1991-11-19", tmp_path / "exam-B")
    r = medsight.track(tmp_path)
    assert [t.study.date for t in r.timepoints] == ["1991-11-19", "1992-04-02"]
    assert [t.study.folder.name for t in r.timepoints] == ["exam-B", "exam-A"]
    assert [round(t.measure.whole.volume_ml, 2) for t in r.timepoints] == [8.11, 20.92]
    assert r.response == PROGRESSIVE


def test_medsight_track_cli_on_pgbm001_writes_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "pgbm.json", tmp_path / "pgbm.png"
    run = invoke("track", shared(PATIENT), "--json", out_json, "--plot", out_png)
    assert run.exit_code == 0, run.stdout
    assert "progressive disease" in run.stdout and "escalate or review treatment" in run.stdout
    d = json.loads(out_json.read_text())
    assert [round(t["volume_ml"], 2) for t in d["timepoints"]] == [8.11, 20.92]
    assert d["criteria"] == "recist-like" and d["response"] == PROGRESSIVE
    assert d["suggestion"] == "escalate or review treatment" and len(d["reasons"]) > 5
    assert d["medsight_version"] and d["created"] and d["timepoints"][0]["mask_series_uid"]
    text = out_json.read_text()
    assert '"PGBM-001"' not in text and "PatientName" not in text  # the folder path may name it; no DICOM identifier
    assert out_png.stat().st_size > 10_000 and out_png.read_bytes()[:4] == b"\x89PNG"
