"""`medsight info PATH [--json OUT]`: what is there, and what was skipped and why."""

from __future__ import annotations

import json

import numpy as np
from io_factory import ramp_volume, series_dir, write_series
from typer.testing import CliRunner

from medsight.cli.main import app


def test_info_on_a_folder_lists_series_and_skipped_files_as_json(tmp_path):
    write_series(tmp_path / "study" / "a", ramp_volume(4), step=2.0, description="axial")
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    out = tmp_path / "info.json"
    result = CliRunner().invoke(app, ["info", str(tmp_path / "study"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    (series,) = d["images"]
    assert series["modality"] == "CT" and series["shape"] == [4, 6, 5]
    assert series["spacing_mm"] == [2.0, 0.7, 0.8] and series["series_uid"]
    assert series["intensity_range"] == [-1024.0, float(ramp_volume(4).max() - 1024)]
    (skipped,) = d["skipped"]
    assert skipped["file"].endswith("notes.txt") and skipped["error"] == "UnsupportedFormatError"
    assert str(tmp_path / "study" / "notes.txt") in result.output  # the CLI names what it skipped, the path whole


def test_info_on_real_lidc_never_shows_patient_identifiers(shared_data, tmp_path):
    folder = series_dir(shared_data, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    out = tmp_path / "info.json"
    result = CliRunner().invoke(app, ["info", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    (image,) = json.loads(out.read_text())["images"]
    assert image["shape"] == [16, 512, 512] and image["units"] == "HU"
    assert image["spacing_mm"] == [2.5, 0.703125, 0.703125]
    assert "LIDC-IDRI-0001" not in out.read_text().replace(str(folder), "")


def test_info_on_a_bad_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"")
    result = CliRunner().invoke(app, ["info", str(tmp_path / "x.dcm")])
    assert result.exit_code == 2
    assert "empty" in result.output and "Traceback" not in result.output


def test_info_reports_nan_voxels_instead_of_failing(tmp_path):
    import nibabel as nib

    data = np.ones((3, 4, 5), np.float32)
    data[0, 0, :2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "n.nii.gz"))
    out = tmp_path / "i.json"
    assert CliRunner().invoke(app, ["info", str(tmp_path / "n.nii.gz"), "--json", str(out)]).exit_code == 0
    (image,) = json.loads(out.read_text())["images"]
    assert image["non_finite_voxels"] == 2 and image["intensity_range"] == [1.0, 1.0]
