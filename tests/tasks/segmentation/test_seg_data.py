"""Segmentation data: the three layouts, splits, and the checks that name the bad case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import seg_factory

from medsight.config import DataConfig
from medsight.data.segmentation import (
    SegCase,
    case_id,
    modality_code,
    open_segmentation_data,
    parse_label_names,
    read_case,
    read_cases,
)
from medsight.errors import DataError, GeometryError
from support.facts import says

SPLIT_FILE = Path(__file__).resolve().parents[3] / "configs" / "hippocampus-split.json"


def test_decathlon_lists_cases_labels_and_modality(tiny_decathlon):
    data = open_segmentation_data(str(tiny_decathlon))
    assert data.layout == "decathlon"
    assert [c.id for c in data.cases] == [f"case_{i:03d}" for i in range(6)]
    assert data.labels == {0: "background", 1: "Left", 2: "Right"}
    assert data.foreground == {1: "Left", 2: "Right"}
    assert data.modality == "MR"
    assert sum(len(data.split(s)) for s in ("train", "val", "test")) == 6
    assert len(data.fingerprint["listing_sha256"]) == 64


def test_split_file_assigns_exactly_the_listed_cases(tiny_decathlon, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["case_000", "case_001", "case_002"], "val": ["case_003"],
                                 "test": ["case_004"]}))
    data = open_segmentation_data(DataConfig(source=str(tiny_decathlon), split_file=str(split)))
    assert [c.id for c in data.split("test")] == ["case_004"]
    assert [c.id for c in data.split("val")] == ["case_003"]
    assert len(data.split("train")) == 3
    assert [c.id for c in data.cases if c.split is None] == ["case_005"]


@pytest.mark.parametrize("spec, message", [
    ({"train": ["case_000"], "test": ["nope_999"]}, "nope_999"),
    ({"train": ["case_000"], "test": ["case_000"]}, "both train and test"),
])
def test_split_file_errors_name_the_case(tiny_decathlon, tmp_path, spec, message):
    split = tmp_path / "split.json"
    split.write_text(json.dumps(spec))
    with pytest.raises(DataError, match=message):
        open_segmentation_data(DataConfig(source=str(tiny_decathlon), split_file=str(split)))


def test_folder_pairs_match_masks_with_suffix(tmp_path):
    root = seg_factory.folder_pairs(tmp_path / "pairs", n=3, mask_dir="masks", suffix="_mask")
    data = open_segmentation_data(DataConfig(source=str(root), labels=["background", "a", "b"]))
    assert data.layout == "folder"
    assert [c.id for c in data.cases] == ["p0", "p1", "p2"]
    image, mask = read_case(data.cases[1], data.labels)
    assert image.shape == mask.shape == seg_factory.SHAPE


def test_csv_manifest_keeps_its_split_column(tmp_path):
    path = seg_factory.manifest(tmp_path / "csv", n=3)
    data = open_segmentation_data(DataConfig(source=str(path), labels=["background", "a", "b"]))
    assert data.layout == "csv"
    assert [c.id for c in data.split("test")] == ["m0"]
    assert {c.id for c in data.split("train")} == {"m1", "m2"}


def test_missing_mask_is_an_error_naming_the_case_and_file(tmp_path):
    root = seg_factory.folder_pairs(tmp_path / "pairs", n=2)
    (root / "labels" / "p1_seg.nii.gz").unlink()
    data = open_segmentation_data(DataConfig(source=str(root), labels=["background", "a", "b"]))
    read_case(data.cases[0], data.labels)
    with pytest.raises(DataError, match="p1") as info:
        read_case(data.cases[1], data.labels)
    says(info, "case p1", str(root / "labels" / "p1"), "missing")  # the case, and where its label was looked for


def test_undeclared_label_value_is_an_error_naming_case_and_values(tmp_path, rng):
    img, lab = seg_factory.blobs(rng)
    lab[0, 0, 0] = 7
    case = SegCase("odd_case", str(seg_factory.save_nifti(tmp_path / "i.nii.gz", img)),
                   str(seg_factory.save_nifti(tmp_path / "l.nii.gz", lab)))
    with pytest.raises(DataError, match="odd_case") as info:
        read_case(case, {0: "background", 1: "a", 2: "b"})
    says(info, "case odd_case", "[7]")


def test_float_labels_are_cast_and_fractions_refused(tmp_path, rng):
    img, lab = seg_factory.blobs(rng)
    case = SegCase("f", str(seg_factory.save_nifti(tmp_path / "i.nii.gz", img)),
                   str(seg_factory.save_nifti(tmp_path / "l.nii.gz", lab.astype(np.float32))))
    _, mask = read_case(case, {0: "bg", 1: "a", 2: "b"})
    assert mask.array.dtype == np.uint8
    assert np.array_equal(mask.array[0], lab)
    frac = lab.astype(np.float32)
    frac[1, 1, 1] = 0.5
    seg_factory.save_nifti(tmp_path / "l.nii.gz", frac)
    with pytest.raises(DataError, match="integers") as info:
        read_case(case, {0: "bg", 1: "a", 2: "b"})
    says(info, "case f", "[0.5]")


def test_image_and_label_of_different_shape_or_geometry_are_refused(tmp_path, rng):
    img, lab = seg_factory.blobs(rng)
    i = seg_factory.save_nifti(tmp_path / "i.nii.gz", img)
    short = seg_factory.save_nifti(tmp_path / "short.nii.gz", lab[:-1])
    with pytest.raises(GeometryError, match="c1") as info:
        read_case(SegCase("c1", str(i), str(short)), {0: "bg", 1: "a", 2: "b"})
    says(info, "case c1", "16x20x16", "15x20x16")  # the case and both shapes
    shifted = seg_factory.save_nifti(tmp_path / "shift.nii.gz", lab, seg_factory.affine(spacing=(2.0, 1.0, 1.0)))
    with pytest.raises(GeometryError, match="c2") as info:
        read_case(SegCase("c2", str(i), str(shifted)), {0: "bg", 1: "a", 2: "b"})
    says(info, "case c2", "spacing", "[1.0, 1.0, 1.0]", "[2.0, 1.0, 1.0]")  # what differs, and both values


def test_label_names_in_msd_nnunet_and_list_forms():
    assert parse_label_names({"0": "background", "1": "tumour"}, where="x") == {0: "background", 1: "tumour"}
    assert parse_label_names({"background": 0, "edema": 2, "core": 1}, where="x") == {0: "background", 1: "core",
                                                                                     2: "edema"}
    assert parse_label_names(["background", "a"], where="x") == {0: "background", 1: "a"}
    with pytest.raises(DataError, match="region labels are not supported"):
        parse_label_names({"background": 0, "whole": [1, 2]}, where="x")
    with pytest.raises(DataError, match="label 0 \\(background\\) must be declared"):
        parse_label_names({"1": "a", "2": "b"}, where="x")


def test_case_ids_and_modality_codes():
    assert case_id("/x/hippocampus_001.nii.gz") == "hippocampus_001"
    assert case_id("a/b.png") == "b"
    assert modality_code(["MRI"]) == "MR"
    assert modality_code(["FLAIR", "T1w", "t1gd", "T2w"]) == "MR"
    assert modality_code(["CT"]) == "CT"
    assert modality_code(["CT", "PET"]) == "OT"


def test_real_hippocampus_decathlon_reads_with_integer_masks(shared_data):
    root = shared_data("msd_hippocampus")
    data = open_segmentation_data(DataConfig(source=str(root), split_file=str(SPLIT_FILE)))
    assert len(data.cases) == 230
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [166, 18, 46]
    by_id = {c.id: c for c in data.cases}
    image, mask = read_case(by_id["hippocampus_003"], data.labels)  # a float32 label file
    assert mask.array.dtype == np.uint8
    assert set(np.unique(mask.array).tolist()) == {0, 1, 2}
    assert image.shape == mask.shape == (35, 52, 34)
    assert image.spacing == (1.0, 1.0, 1.0)


def test_read_cases_keeps_the_readable_ones_and_lists_each_bad_one(tiny_decathlon):
    data = open_segmentation_data(str(tiny_decathlon))
    good = data.cases[:2]
    unlabelled = SegCase(id="nolabel", image=good[0].path(), label=None)
    missing = SegCase(id="gone", image=str(tiny_decathlon / "imagesTr" / "gone.nii.gz"), label=good[0].mask)
    ok, bad = read_cases([good[0], unlabelled, good[1], missing], data.labels)
    assert [c.id for c, _, _ in ok] == [good[0].id, good[1].id]
    assert all(image.shape == mask.shape for _, image, mask in ok)
    assert [b["input"] for b in bad] == ["nolabel", "gone"]
    assert "has no label file" in bad[0]["error"] and "gone" in bad[1]["error"]

