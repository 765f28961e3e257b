"""The one split implementation: seeded fractions (both schemes), split files, CSV split column.

``old_splits.json`` holds what the implementations before the shared one (``data/segmentation.py``'s
``_random_split`` and ``data/classification.py``'s ``_assign_splits``) gave for the same inputs
(``r`` train, ``v`` val, ``t`` test): a model's recorded split must come out again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight.config import DataConfig
from medsight.data.case import Case
from medsight.data.classification import open_classification_data
from medsight.data.segmentation import open_segmentation_data
from medsight.data.splits import apply_split_file, assign_splits, seeded_split, split_ids, split_value
from medsight.errors import DataError
from support.data import REPO, shared

OLD = json.loads((Path(__file__).with_name("old_splits.json")).read_text())
CODE = {"train": "r", "val": "v", "test": "t"}
SPLIT_FILE = REPO / "configs" / "hippocampus-split.json"


def _cases(n: int, labels=None) -> list[Case]:
    return [Case(f"c{i:03d}", {"image": f"c{i:03d}.png"}, label=None if labels is None else labels[i])
            for i in range(n)]


@pytest.mark.parametrize("key", sorted(OLD["perm"]))
def test_permutation_scheme_gives_the_splits_segmentation_always_gave(key):
    n, vf, tf, seed = key.split(",")
    got, kind = seeded_split(int(n), val_fraction=float(vf), test_fraction=float(tf), seed=int(seed))
    assert "".join(CODE[s] for s in got) == OLD["perm"][key] and kind == "permutation"


@pytest.mark.parametrize("key", sorted(OLD["sk"]))
def test_sklearn_scheme_gives_the_splits_classification_always_gave(key):
    labels, vf, tf, seed = key.split(",")
    cases = _cases(len(labels), [int(c) for c in labels])
    record = assign_splits(cases, val_fraction=float(vf), test_fraction=float(tf), seed=int(seed), scheme="sklearn",
                           stratify=lambda c: c.label)
    assert ["".join(CODE[c.split] for c in cases), record["kind"]] == OLD["sk"][key]


def test_seeded_split_is_deterministic_and_honours_the_fractions():
    a, _ = seeded_split(200, val_fraction=0.1, test_fraction=0.25, seed=3)
    b, _ = seeded_split(200, val_fraction=0.1, test_fraction=0.25, seed=3)
    c, _ = seeded_split(200, val_fraction=0.1, test_fraction=0.25, seed=4)
    assert a == b and a != c
    assert (a.count("train"), a.count("val"), a.count("test")) == (130, 20, 50)
    s, kind = seeded_split(200, val_fraction=0.1, test_fraction=0.25, seed=3, scheme="sklearn",
                           strata=[i % 2 for i in range(200)])
    assert kind == "stratified" and (s.count("val"), s.count("test")) == (20, 50)
    assert sum(1 for i, x in enumerate(s) if x == "test" and i % 2) == 25  # each class keeps its share


def test_seeded_split_refuses_fractions_that_leave_no_training_data():
    with pytest.raises(DataError, match="sum below 1"):
        seeded_split(10, val_fraction=0.5, test_fraction=0.5, seed=0)


def test_unassigned_fills_the_gaps_and_none_assigned_leaves_a_partial_split_alone():
    cases = _cases(10)
    cases[0].split = "test"
    assert assign_splits(cases, fill="none_assigned") is None
    assert [c.split for c in cases[1:]] == [None] * 9
    record = assign_splits(cases, fill="unassigned", val_fraction=0.2, test_fraction=0.2)
    assert cases[0].split == "test" and all(c.split for c in cases) and record["kind"] == "permutation"


def test_split_file_decides_every_case_and_names_unknown_ones(tmp_path):
    cases = _cases(4)
    cases[3].split = "train"
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"train": ["c000", "c001"], "val": ["c002"]}))
    assign_splits(cases, split_file=f, source="four cases")
    assert split_ids(cases) == {"train": ["c000", "c001"], "val": ["c002"], "test": []}
    assert cases[3].split is None  # not listed: in no split
    f.write_text(json.dumps({"train": ["c000"], "test": ["c999"]}))
    with pytest.raises(DataError, match=r"case 'c999' of the test split is not in four cases"):
        apply_split_file(cases, f, source="four cases")
    f.write_text(json.dumps({"train": ["c000"], "val": ["c000"]}))
    with pytest.raises(DataError, match="'c000' is in both train and val"):
        apply_split_file(cases, f, source="four cases")
    f.write_text("[1, 2]")
    with pytest.raises(DataError, match="expected"):
        apply_split_file(cases, f, source="four cases")


def test_split_column_values():
    assert split_value(" Train ", where="m.csv:2") == "train"
    assert split_value("", where="m.csv:2") is None and split_value(None, where="m.csv:2") is None
    with pytest.raises(DataError, match=r"m.csv:3: split must be train, val or test; got 'validation'"):
        split_value("validation", where="m.csv:3")


def test_csv_split_column_reads_the_same_for_both_tasks(tmp_path, tiny_class_folder):
    files = sorted(tiny_class_folder.rglob("*.png"))[:4]
    (tmp_path / "c.csv").write_text("path,label,split\n" + "".join(
        f"{f},{f.parent.name},{s}\n" for f, s in zip(files, ["train", "val", "VAL", "bogus"])))
    with pytest.raises(DataError, match=r"c.csv:5: split must be train, val or test; got 'bogus'"):
        open_classification_data(str(tmp_path / "c.csv"))
    (tmp_path / "s.csv").write_text("image,label,split\na.nii.gz,a_seg.nii.gz,train\nb.nii.gz,b_seg.nii.gz,bogus\n")
    with pytest.raises(DataError, match=r"s.csv:3: split must be train, val or test; got 'bogus'"):
        open_segmentation_data(str(tmp_path / "s.csv"))


# -- real data: the shipped models' splits come out again ---------------------------------------
def test_hippocampus_split_file_gives_the_split_the_shipped_model_recorded():
    root = shared("msd_hippocampus")
    manifest = json.loads((REPO / "src" / "medsight" / "zoo" / "hippocampus-mri" / "manifest.json").read_text())
    data = open_segmentation_data(DataConfig(source=str(root), split_file=str(SPLIT_FILE)))
    assert split_ids(data.cases) == manifest["training"]["split"]
    assert data.fingerprint["listing_sha256"] == manifest["training"]["data"]["listing_sha256"]


def test_hippocampus_seeded_split_is_the_one_the_old_implementation_gave():
    import hashlib

    data = open_segmentation_data(DataConfig(source=str(shared("msd_hippocampus"))))
    got = "".join(CODE[c.split] for c in data.cases)
    assert hashlib.sha256(got.encode()).hexdigest() == OLD["real"]["hippocampus_seeded_sha256"]


@pytest.mark.parametrize("name", ["pneumonia-xray", "breast-ultrasound"])
def test_medmnist_official_splits_give_the_counts_the_shipped_models_recorded(name):
    manifest = json.loads((REPO / "src" / "medsight" / "zoo" / name / "manifest.json").read_text())
    file = manifest["training"]["data"]["file"]
    data = open_classification_data(str(shared(f"{file.removesuffix('.npz')}/{file}")))
    assert data.fingerprint["n"] == manifest["training"]["data"]["n"]
    assert data.fingerprint["class_counts"] == manifest["training"]["data"]["class_counts"]
    assert all(c.id.split("#")[1].startswith(c.split) for c in data.samples)  # each case in its official split
