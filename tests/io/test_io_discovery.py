"""Input discovery: the inputs a list of files and folders holds (io/discovery.py)."""

from __future__ import annotations

import numpy as np
from io_factory import ramp_volume, write_series

from medsight.io.discovery import expand_inputs


def test_a_2d_model_gets_every_image_file_of_a_folder_sorted_and_recursive(tmp_path):
    for rel in ("b.png", "a.png", "sub/c.dcm", "noext", ".hidden.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert expand_inputs([tmp_path]) == [str(tmp_path / n) for n in ("a.png", "b.png", "noext", "sub/c.dcm")]


def test_files_missing_paths_and_empty_folders_are_kept_as_given(tmp_path):
    (tmp_path / "empty").mkdir()
    given = [str(tmp_path / "x.png"), str(tmp_path / "missing.nii.gz"), str(tmp_path / "empty")]
    assert expand_inputs(given) == given
    assert expand_inputs(given, spatial_dims=3) == given


def test_a_3d_model_gets_a_dicom_folder_as_one_series_and_volumes_one_by_one(tmp_path):
    write_series(tmp_path / "ct", ramp_volume(3))
    vols = tmp_path / "vols"
    vols.mkdir()
    for name in ("b.nii.gz", "a.npy", "c.png"):
        (vols / name).write_bytes(b"x")
    np.save(vols / "a.npy", np.zeros((2, 2, 2)))
    assert expand_inputs([tmp_path / "ct", vols], spatial_dims=3) == [
        str(tmp_path / "ct"), str(vols / "a.npy"), str(vols / "b.nii.gz")]
