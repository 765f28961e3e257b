"""The detection data reader: scans on disk (LUNA16 .mhd/.mha in subset folders, NIfTI, DICOM
series folders as TCIA ships LIDC) matched to LUNA16's CSV files by series UID, the CSVs in the
folder or elsewhere, scans listed but not on disk left out and counted, scans without a nodule
kept, and the config keys that carry the paths."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from medsight.config import config_from_dict, load_config
from medsight.errors import DataError
from medsight.io import read
from medsight.io.image import Image
from medsight.io.metaimage import write_mhd
from medsight.io.nifti import write_nifti
from medsight.tasks.detection.data import open_config_data, open_detection_data
from support.data import shared
from support.series_dicom import write_series

HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"


def _volume(z0: float = 0.0) -> Image:
    arr = np.full((1, 6, 8, 8), -1000, np.int16)
    arr[0, 2:4, 3:5, 3:5] = 40
    return Image(arr, spacing=(2.0, 0.8, 0.8), origin=(-3.0, -3.0, z0), modality="CT")


def _csv(path, rows, header=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def test_luna16_layout_with_mhd_in_subset_folders_keeps_a_scan_without_nodules(tmp_path):
    for sub, uid in (("subset0", "1.2.3.1"), ("subset0", "1.2.3.2"), ("subset1", "1.2.3.3")):
        (tmp_path / sub).mkdir(exist_ok=True)
        write_mhd(_volume(), tmp_path / sub / (f"{uid}.mha" if uid.endswith("3") else f"{uid}.mhd"))
    _csv(tmp_path / "annotations.csv", [("1.2.3.1", 0, 0, 4, 6.5), ("1.2.3.1", 1, 1, 2, 4.0)])
    _csv(tmp_path / "annotations_excluded.csv", [("1.2.3.2", 0, 0, 4, -1)])
    (tmp_path / "seriesuids.csv").write_text("1.2.3.1\n1.2.3.2\n1.2.3.3\n")
    ds = open_detection_data(tmp_path)
    assert [c.id for c in ds.cases] == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    by = {c.id: c for c in ds.cases}
    assert by["1.2.3.1"].covariates["nodules"] == [(0.0, 0.0, 4.0, 6.5), (1.0, 1.0, 2.0, 4.0)]
    assert by["1.2.3.2"].covariates == {"nodules": [], "excluded": [(0.0, 0.0, 4.0, -1.0)], "negatives": []}
    assert by["1.2.3.3"].covariates == {"nodules": [], "excluded": [], "negatives": []}  # no nodule: still a case
    assert by["1.2.3.3"].path().endswith("subset1/1.2.3.3.mha")
    assert by["1.2.3.1"].image().shape == (6, 8, 8)
    assert ds.not_on_disk == [] and ds.unlisted == []
    assert ds.summary()["files"]["seriesuids"] == str(tmp_path / "seriesuids.csv")


def test_nifti_files_and_dicom_series_folders_are_matched_by_series_uid(tmp_path):
    write_nifti(_volume(), tmp_path / "scans" / "9.8.7.nii.gz")
    write_nifti(_volume(), tmp_path / "scans" / "9.8.8.nii")
    series = tmp_path / "LIDC-IDRI-0099" / "1.2.study" / "1.2.series"
    write_series(series, np.full((5, 8, 8), 24, np.int16), modality="CT", spacing=(2.5, 0.7, 0.7),
                 rescale_intercept=-1024.0)
    (series / "069.xml").write_text("<LidcReadMessage/>")  # the LIDC reads beside the slices
    uid = read(series).series_uid
    _csv(tmp_path / "annotations.csv", [(uid, 1, 2, 3, 8.0), ("9.8.7", 0, 0, 0, 5.0)])
    ds = open_detection_data(tmp_path)
    assert sorted(c.id for c in ds.cases) == sorted(["9.8.7", "9.8.8", uid])
    by = {c.id: c for c in ds.cases}
    assert by[uid].path() == str(series) and by[uid].covariates["nodules"] == [(1.0, 2.0, 3.0, 8.0)]
    assert by[uid].image().series_uid == uid
    assert by["9.8.8"].covariates["nodules"] == []


def test_full_lists_elsewhere_leave_out_the_scans_not_on_disk_and_count_them(tmp_path):
    lists = tmp_path / "luna16"
    _csv(lists / "annotations.csv", [("u1", 0, 0, 4, 6.0), ("u3", 0, 0, 0, 9.0), ("u4", 0, 0, 0, 7.0)])
    _csv(lists / "excl.csv", [("u1", 5, 5, 5, -1), ("u5", 0, 0, 0, -1)])
    (lists / "uids.csv").write_text("u1\nu2\nu3\nu4\nu5\n")
    scans = tmp_path / "scans"
    for uid in ("u1", "u2", "u9"):  # u9 is on disk but not listed
        write_nifti(_volume(), scans / f"{uid}.nii.gz")
    ds = open_detection_data(scans, annotations=lists / "annotations.csv", excluded=lists / "excl.csv",
                             seriesuids=lists / "uids.csv")
    assert [c.id for c in ds.cases] == ["u1", "u2"]
    assert ds.not_on_disk == ["u3", "u4", "u5"] and ds.unlisted == ["u9"]
    assert [n.seriesuid for n in ds.annotations] == ["u1"] and [n.seriesuid for n in ds.excluded] == ["u1"]
    assert ds.summary() | {"files": None} == {"n_scans": 2, "n_nodules": 1, "n_excluded": 1, "not_on_disk": 3,
                                               "unlisted": 1, "files": None}
    with pytest.raises(DataError, match="3 scan"):
        open_detection_data(scans, annotations=lists / "annotations.csv", seriesuids=lists / "uids.csv",
                            missing="error")
    # no scan list: every scan on disk, and the annotated ones missing are counted
    ds = open_detection_data(scans, annotations=lists / "annotations.csv")
    assert [c.id for c in ds.cases] == ["u1", "u2", "u9"] and ds.not_on_disk == ["u3", "u4"]


def test_the_annotations_are_found_under_the_folder_and_the_other_files_beside_them(tmp_path):
    write_nifti(_volume(), tmp_path / "u1.nii.gz")
    _csv(tmp_path / "luna16" / "annotations.csv", [("u1", 0, 0, 4, 6.0), ("u2", 0, 0, 0, 9.0)])
    _csv(tmp_path / "luna16" / "annotations_excluded.csv", [("u1", 9, 9, 9, -1)])
    (tmp_path / "luna16" / "seriesuids.csv").write_text("u1\nu2\n")
    ds = open_detection_data(tmp_path)
    assert [c.id for c in ds.cases] == ["u1"] and ds.not_on_disk == ["u2"]
    assert ds.cases[0].covariates["excluded"] == [(9.0, 9.0, 9.0, -1.0)]
    _csv(tmp_path / "other" / "annotations.csv", [("u1", 0, 0, 4, 6.0)])
    with pytest.raises(DataError, match="2 annotations.csv files.*annotations="):
        open_detection_data(tmp_path)


@pytest.mark.parametrize("case", ["not a folder", "no annotations", "no scan", "none listed on disk",
                                  "missing file"])
def test_unusable_detection_data_is_one_clear_error(tmp_path, case):
    if case == "not a folder":
        source, kwargs, words = tmp_path / "nowhere", {}, "no such folder"
    elif case == "no annotations":
        write_nifti(_volume(), tmp_path / "u1.nii.gz")
        source, kwargs, words = tmp_path, {}, "no annotations.csv"
    elif case == "no scan":
        _csv(tmp_path / "annotations.csv", [])
        source, kwargs, words = tmp_path, {}, "no scan found"
    elif case == "none listed on disk":
        write_nifti(_volume(), tmp_path / "u1.nii.gz")
        _csv(tmp_path / "annotations.csv", [("u2", 0, 0, 0, 5.0)])
        (tmp_path / "seriesuids.csv").write_text("u2\nu3\n")
        source, kwargs, words = tmp_path, {}, "none of the 2 scan"
    else:
        write_nifti(_volume(), tmp_path / "u1.nii.gz")
        source, kwargs, words = tmp_path, {"annotations": tmp_path / "missing.csv"}, "annotations file not found"
    with pytest.raises(DataError, match=words) as info:
        open_detection_data(source, **kwargs)
    assert "\n" not in str(info.value)


def test_the_config_carries_the_paths_resolved_beside_the_config_file(tmp_path):
    lists = tmp_path / "lists"
    _csv(lists / "a.csv", [("u1", 0, 0, 4, 6.0), ("u7", 0, 0, 0, 9.0)])
    (lists / "s.csv").write_text("u1\nu7\n")
    write_nifti(_volume(), tmp_path / "scans" / "u1.nii.gz")
    cfg_path = tmp_path / "det.yaml"
    cfg_path.write_text(yaml.safe_dump({"task": "detection", "data": {
        "source": "scans", "annotations": "lists/a.csv", "seriesuids": "lists/s.csv"}}))
    cfg = load_config(cfg_path)
    assert cfg.data.annotations == str(tmp_path / "lists" / "a.csv")
    ds = open_config_data(cfg.data)
    assert [c.id for c in ds.cases] == ["u1"] and ds.not_on_disk == ["u7"]
    strict = config_from_dict({"task": "detection", "data": {"source": str(tmp_path / "scans"),
                                                             "annotations": str(lists / "a.csv"),
                                                             "missing_scans": "error"}})
    with pytest.raises(DataError, match="have no volume"):
        open_config_data(strict.data)


def test_the_real_lidc_slabs_with_the_full_luna16_lists():
    root = shared("lidc_idri_nodule_slabs")
    ds = open_detection_data(root)  # luna16/annotations.csv found under the folder, the other two beside it
    assert len(ds.cases) == 2 and len(ds.not_on_disk) == 886  # 888 scans listed, 2 on disk
    by = {c.id: c for c in ds.cases}
    first = by["1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"]  # LIDC-IDRI-0001
    second = by["1.3.6.1.4.1.14519.5.2.1.6279.6001.619372068417051974713149104919"]  # LIDC-IDRI-0002
    assert [round(n[3], 2) for n in first.covariates["nodules"]] == [23.35]
    assert second.covariates["nodules"] == [] and len(second.covariates["excluded"]) == 53
    assert "LIDC-IDRI-0001" in first.path()


def test_a_named_candidates_file_gives_each_scan_its_known_non_nodules(tmp_path):
    for uid in ("1.2.3.1", "1.2.3.2"):
        write_mhd(_volume(), tmp_path / f"{uid}.mhd")
    _csv(tmp_path / "annotations.csv", [("1.2.3.1", 0, 0, 4, 6.5)])
    cand = _csv(tmp_path / "elsewhere" / "candidates.csv",
                [("1.2.3.1", 0, 0, 4, 1), ("1.2.3.2", 1, 2, 3, 0), ("1.2.3.9", 1, 1, 1, 0)],
                header="seriesuid,coordX,coordY,coordZ,class\n")
    assert all(c.covariates["negatives"] == [] for c in open_detection_data(tmp_path).cases)  # only when named
    ds = open_detection_data(tmp_path, negatives=cand)
    by = {c.id: c for c in ds.cases}
    assert by["1.2.3.1"].covariates["negatives"] == [] and by["1.2.3.2"].covariates["negatives"] == [(1.0, 2.0, 3.0)]
    assert ds.summary()["n_negatives"] == 1 and ds.files["negatives"] == str(cand)
    with pytest.raises(DataError, match="candidates file not found"):
        open_detection_data(tmp_path, negatives=tmp_path / "missing.csv")
