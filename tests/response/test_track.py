"""medsight.track over synthetic serial studies: date order, masks, bad input, the CLI and its JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

import medsight
from medsight.errors import (
    MaskAlignmentError,
    MissingMaskError,
    MixedPatientsError,
    NoStudyError,
    StudyDateError,
)
from medsight.response.criteria import CATEGORIES
from support.cli import invoke
from support.serial_studies import disc_mask, oblique, write_study

SMALL, LARGE = disc_mask(radius_px=18), disc_mask(radius_px=28, slices=(1, 2, 3))  # 18 and 28 mm across at 0.5 mm


def test_studies_are_ordered_by_their_dicom_dates_not_their_folder_names(tmp_path):
    write_study(tmp_path / "a-first-by-name", LARGE, date="20240610", time="090000")
    write_study(tmp_path / "b-second-by-name", SMALL, date="20240110", time="090000")
    result = medsight.track(tmp_path)
    assert [t.study.date for t in result.timepoints] == ["2024-01-10", "2024-06-10"]
    assert result.timepoints[0].measure.whole.volume_ml < result.timepoints[1].measure.whole.volume_ml
    assert result.response == "progressive disease" and result.timepoints[1].response == "progressive disease"
    assert "folder names are not used" in result.reasons[0]


def test_the_time_orders_two_studies_of_one_day(tmp_path):
    write_study(tmp_path / "1", SMALL, date="20240110", time="170000")
    write_study(tmp_path / "2", LARGE, date="20240110", time="083000")
    result = medsight.track(tmp_path)
    assert [t.study.acquired.hour for t in result.timepoints] == [8, 17]
    # 28 → 18 mm (edge to edge 28.5 → 18.5 mm: -35 %), products -58 %, volume on 3 → 2 slices -72 %
    assert result.by_criteria == {name: "partial response" for name in ("rano-like", "recist-like", "volumetric")}


def test_sizes_of_an_oblique_stack_use_the_spacing_along_its_normal(tmp_path):
    write_study(tmp_path / "s", SMALL, date="20240110", iop=oblique(20.0), spacing=(6.5, 0.5, 0.5))
    t = medsight.track(tmp_path).timepoints[0]
    voxels = int(SMALL.sum())
    assert t.measure.whole.volume_ml == pytest.approx(voxels * 6.5 * 0.25 / 1000, rel=1e-4)
    assert 18.0 <= t.measure.whole.longest_diameter_mm <= 18.5
    assert [s.description for s in t.image_series] == ["T1post"]


def test_one_study_reports_the_baseline_only(tmp_path):
    write_study(tmp_path / "only", SMALL, date="20240110")
    result = medsight.track(tmp_path, criteria="rano-like")
    d = result.to_dict()
    assert d["response"] is None and len(d["timepoints"]) == 1
    assert "baseline only" in d["suggestion"]
    assert any("this is the baseline" in r for r in d["reasons"])


def test_studies_of_two_patients_are_refused_without_showing_who(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110", patient_id="PAT-0001", patient_name="Doe^Jane")
    write_study(tmp_path / "b", LARGE, date="20240610", patient_id="PAT-0002", patient_name="Roe^Rick")
    with pytest.raises(MixedPatientsError, match=r"2 patients \(patient-[0-9a-f]{8}: study of 2024-01-10") as info:
        medsight.track(tmp_path)
    assert not any(s in str(info.value) for s in ("PAT-0001", "PAT-0002", "Doe", "Roe"))


def test_a_mask_off_its_images_slices_is_refused(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110", mask_shift_mm=2.0)
    with pytest.raises(MaskAlignmentError, match=r"'T1post': its slice 0 lies 2.00 mm from the nearest image slice"):
        medsight.track(tmp_path)


def test_a_study_without_a_mask_is_refused_naming_the_segmentation_hook(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110")
    write_study(tmp_path / "b", LARGE, date="20240610", mask_description="T2 axial")
    with pytest.raises(MissingMaskError, match=r"study of 2024-06-10 .* has no lesion mask.*not implemented yet"):
        medsight.track(tmp_path)
    with pytest.raises(MissingMaskError, match="the model 'brain-tumour-seg' is not implemented yet"):
        medsight.track(tmp_path, segment="brain-tumour-seg")


def test_a_segment_callable_gives_the_mask_a_study_lacks(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110")
    write_study(tmp_path / "b", LARGE, date="20240610", mask_description="T2 axial")
    asked = []

    def segment(study):
        asked.append(study.date)
        t2 = next(s for s in study.series if s.description == "T2 axial")
        image = medsight.read(t2.folder)
        return image.with_array((image.array > 0).astype(np.uint8))

    result = medsight.track(tmp_path, segment=segment)
    assert asked == ["2024-06-10"] and result.response == "progressive disease"
    assert result.timepoints[1].mask_series is None and any("mask from segment=" in r for r in result.reasons)


def test_a_dicom_seg_is_taken_as_the_studys_mask(tmp_path):
    import pydicom

    from medsight.io.dicom_out.algorithm import Algorithm
    from medsight.io.dicom_out.seg import build_seg

    for name, mask, date in (("a", SMALL, "20240110"), ("b", LARGE, "20240610")):
        write_study(tmp_path / name, mask, date=date, with_mask=False, iop=oblique(15.0))
        sources = [pydicom.dcmread(p) for p in sorted((tmp_path / name / "11-T1post").glob("*.dcm"))]
        seg = build_seg(sources, mask, {1: "Tumour"}, algorithm=Algorithm(name="test", version="1"))
        seg.save_as(tmp_path / name / "seg.dcm", enforce_file_format=True)
    result = medsight.track(tmp_path)
    assert [t.measure.whole.voxels for t in result.timepoints] == [int(SMALL.sum()), int(LARGE.sum())]
    assert [[s.description for s in t.image_series] for t in result.timepoints] == [["T1post"]] * 2
    assert result.response == "progressive disease"


def test_several_mask_series_are_chosen_between_with_a_pattern(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110", also_masks=("Mask_Oedema",))
    write_study(tmp_path / "b", LARGE, date="20240610", also_masks=("Mask_Oedema",))
    with pytest.raises(MissingMaskError, match=r"holds 2 mask series \('Mask_Oedema', 'Mask_Tumor'\).*mask=PATTERN"):
        medsight.track(tmp_path)
    result = medsight.track(tmp_path, mask="tumou?r")
    assert [t.mask_series.description for t in result.timepoints] == ["Mask_Tumor"] * 2
    assert result.response == "progressive disease"


def test_two_studies_at_the_same_date_and_time_are_refused(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110")
    write_study(tmp_path / "b", LARGE, date="20240110")
    with pytest.raises(StudyDateError, match="same date and time"):
        medsight.track(tmp_path)


def test_a_study_without_any_date_is_refused(tmp_path):
    write_study(tmp_path / "a", SMALL, date="20240110")
    write_study(tmp_path / "b", LARGE, date=None, time=None)
    with pytest.raises(StudyDateError, match="no valid StudyDate"):
        medsight.track(tmp_path)


def test_a_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(NoStudyError, match="found no DICOM image series"):
        medsight.track(tmp_path)


def test_the_cli_writes_the_fixed_json_and_a_plot(tmp_path):
    write_study(tmp_path / "p" / "x", SMALL, date="20240110")
    write_study(tmp_path / "p" / "y", LARGE, date="20240610")
    out_json, out_png = tmp_path / "out" / "track.json", tmp_path / "out" / "track.png"
    result = invoke("track", tmp_path / "p", "--json", out_json, "--plot", out_png, "--criteria", "volumetric")
    assert result.exit_code == 0, result.stdout
    assert "progressive disease" in result.stdout and "escalate or review treatment" in result.stdout
    d = json.loads(out_json.read_text())
    assert {"timepoints", "criteria", "response", "suggestion", "reasons"} <= set(d)
    assert [t["date"] for t in d["timepoints"]] == ["2024-01-10", "2024-06-10"]
    for t in d["timepoints"]:
        assert {"date", "volume_ml", "longest_diameter_mm", "perpendicular_diameter_mm"} <= set(t)
    assert d["criteria"] == "volumetric" and d["response"] in CATEGORIES and d["reasons"]
    assert "SYN-1" not in out_json.read_text() and "Syn^Pat" not in out_json.read_text()
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_reports_bad_input_in_one_line(tmp_path):
    result = invoke("track", tmp_path)
    assert result.exit_code == 2 and "found no DICOM image series" in result.stderr
    result = invoke("track", tmp_path, "--criteria", "who")
    assert result.exit_code == 2 and "recist-like" in result.stderr
