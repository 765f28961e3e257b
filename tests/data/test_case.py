"""Case: images by role, read lazily; targets, covariates and time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import medsight.io as mio
from medsight.data.case import Case
from medsight.errors import DataError
from medsight.io.image import Image


def _counting_reads(monkeypatch):
    calls: list[str] = []
    real = mio.read

    def read(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mio, "read", read)
    return calls


@pytest.fixture
def two_studies(tmp_path):
    cur, prior = tmp_path / "cur.npy", tmp_path / "prior.npy"
    np.save(cur, np.full((4, 5, 6), 2.0, np.float32))
    np.save(prior, np.full((4, 5, 6), 1.0, np.float32))
    return cur, prior


def test_a_case_holds_paths_and_reads_each_role_only_when_asked(monkeypatch, two_studies):
    calls = _counting_reads(monkeypatch)
    cur, prior = two_studies
    case = Case("pt-1", {"image": cur, "prior": prior})
    assert calls == []  # building a case reads nothing
    assert case.roles == ("image", "prior")
    assert case.path("prior") == str(prior) and not case.is_loaded("prior")
    assert float(case.image("prior").array.mean()) == 1.0
    assert calls == [str(prior)]
    assert float(case.image().array.mean()) == 2.0
    assert calls == [str(prior), str(cur)]
    case.image()  # nothing is kept: a second use reads again
    assert len(calls) == 3


def test_load_returns_a_copy_held_in_memory(monkeypatch, two_studies):
    cur, prior = two_studies
    case = Case("pt-1", {"image": cur, "prior": prior}, covariates={"age": 61})
    loaded = case.load()
    calls = _counting_reads(monkeypatch)
    assert loaded.is_loaded("image") and loaded.is_loaded("prior") and not case.is_loaded("image")
    assert loaded.image("prior").shape == (4, 5, 6) and calls == []
    assert loaded.path() is None
    loaded.covariates["age"] = 62
    assert case.covariates == {"age": 61}  # the copy does not share its covariates


def test_unknown_role_is_an_error_naming_the_roles_there_are(two_studies):
    case = Case("pt-2", {"image": two_studies[0]})
    with pytest.raises(DataError, match=r"case pt-2: has no image of role 'prior'; it has \['image'\]"):
        case.image("prior")


def test_targets_covariates_and_time(tmp_path):
    img = Image(np.zeros((1, 3, 3), np.float32), spacing=(1.0, 1.0))
    case = Case("pt-3", {"image": img}, label=1, mask=tmp_path / "m.nii.gz", boxes=[[0, 0, 2, 2]],
                covariates={"treatment": "pembrolizumab", "ecog": 1}, time="2024-03-05")
    assert case.image() is img and case.is_loaded()
    assert case.label == 1 and case.mask == str(tmp_path / "m.nii.gz") and case.mask_path == case.mask
    assert case.boxes.shape == (1, 4) and case.boxes.dtype == np.float64
    assert case.covariates["treatment"] == "pembrolizumab"
    assert case.time == dt.date(2024, 3, 5)
    assert Case("a", {"image": img}, time="20240305").time == dt.date(2024, 3, 5)  # DICOM DA
    assert Case("a", {"image": img}, time="2024-03-05T10:15:00").time == dt.datetime(2024, 3, 5, 10, 15)
    assert Case("a", {"image": img}).time is None
    with pytest.raises(DataError, match="case a: time must be a date"):
        Case("a", {"image": img}, time="last spring")


def test_a_case_needs_an_id_and_an_image():
    with pytest.raises(DataError, match="at least one role"):
        Case("x", {})
    with pytest.raises(DataError, match="non-empty id"):
        Case("", {"image": "a.png"})


def test_in_memory_arrays_become_images_with_unknown_spacing():
    colour = Case("m#0", {"image": np.zeros((28, 28, 3), np.uint8)}).image()
    grey = Case("m#1", {"image": np.zeros((28, 28), np.uint8)}).image()
    volume = Case("m#2", {"image": np.zeros((8, 28, 28), np.uint8)}).image()
    assert colour.array.shape == (3, 28, 28) and grey.array.shape == (1, 28, 28)
    assert volume.array.shape == (1, 8, 28, 28) and volume.meta["spacing_known"] is False
    assert grey.source == "m#1"


def test_repr_names_files_not_paths_and_hides_arrays(tmp_path):
    r = repr(Case("pt-4", {"image": str(tmp_path / "ct.nii.gz")}, covariates={"age": 3}))
    assert "ct.nii.gz" in r and str(tmp_path) not in r and "age" in r


def test_manifest_columns_beyond_the_layouts_become_covariates_and_time(tmp_path, tiny_class_folder):
    from medsight.data.classification import open_classification_data
    from medsight.data.segmentation import open_segmentation_data

    f = sorted(tiny_class_folder.rglob("*.png"))
    (tmp_path / "c.csv").write_text("path,label,split,time,treatment,age\n" + "".join(
        f"{p},{p.parent.name},{s},2024-01-0{i + 1},{'A' if i % 2 else ''},{60 + i}\n"
        for i, (p, s) in enumerate(zip(f[:4], ["train", "train", "val", "val"]))))
    cases = open_classification_data(str(tmp_path / "c.csv")).samples
    assert cases[1].covariates == {"treatment": "A", "age": 61} and cases[0].covariates == {"age": 60}
    assert cases[2].time == dt.date(2024, 1, 3)
    (tmp_path / "s.csv").write_text("image,label,time,dose_gy\na.nii.gz,a_seg.nii.gz,20230105,2.5\n")
    (case,) = open_segmentation_data(str(tmp_path / "s.csv")).cases
    assert case.covariates == {"dose_gy": 2.5} and case.time == dt.date(2023, 1, 5)
