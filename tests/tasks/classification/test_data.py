import hashlib

import numpy as np
import pytest

from medsight.config import DataConfig
from medsight.data import medmnist
from medsight.data.classification import open_classification_data
from medsight.errors import DataError
from support.facts import says


def test_npz_keeps_official_splits_and_flattens_labels(tiny_npz):
    d = open_classification_data(str(tiny_npz))
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [60, 20, 20]
    assert d.labels == ["0", "1"] and not d.multilabel and d.spatial_dims == 2
    assert d.class_counts("train") == [30, 30]
    img = d.split("train")[1].image()
    assert img.array.shape == (1, 28, 28)


def test_npz_labels_out_of_range_for_given_names(tiny_npz):
    with pytest.raises(DataError, match="label names") as info:
        open_classification_data(DataConfig(source=str(tiny_npz), labels=["only-one"]))
    says(info, "up to 1", "1 label names")  # the largest label value, and how many names were given


def test_npz_with_mismatched_lengths(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, train_images=np.zeros((3, 4, 4), np.uint8), train_labels=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        open_classification_data(str(p))


def test_class_folder_with_seeded_stratified_split(tiny_class_folder):
    a = open_classification_data(DataConfig(source=str(tiny_class_folder), split_seed=4))
    b = open_classification_data(DataConfig(source=str(tiny_class_folder), split_seed=4))
    assert a.labels == ["normal", "pneumonia"]
    assert [s.id for s in a.split("test")] == [s.id for s in b.split("test")]
    # stratified: each split keeps the 50/50 balance
    for split in ("train", "val", "test"):
        counts = a.class_counts(split)
        assert abs(counts[0] - counts[1]) <= 1, (split, counts)
    c = open_classification_data(DataConfig(source=str(tiny_class_folder), split_seed=5))
    assert [s.id for s in c.split("test")] != [s.id for s in a.split("test")]


def test_class_folder_with_explicit_split_dirs(tmp_path, tiny_class_folder):
    import shutil

    for split in ("train", "val"):
        shutil.copytree(tiny_class_folder, tmp_path / "root" / split)
    d = open_classification_data(str(tmp_path / "root"))
    assert len(d.split("train")) == 60 and len(d.split("val")) == 60 and d.split("test") == []


def test_empty_class_folder_is_named(tiny_class_folder):
    (tiny_class_folder / "covid").mkdir()
    with pytest.raises(DataError, match=r"class folder .*covid is empty"):
        open_classification_data(str(tiny_class_folder))


def test_csv_manifest_with_names_splits_and_relative_paths(tmp_path, tiny_class_folder):
    rows = ["path,label,split"]
    for i, f in enumerate(sorted(tiny_class_folder.rglob("*.png"))):
        rows.append(f"{f.relative_to(tmp_path)},{f.parent.name},{'train' if i % 4 else 'val'}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    d = open_classification_data(str(tmp_path / "m.csv"))
    assert d.labels == ["normal", "pneumonia"]
    assert len(d.split("val")) == 15 and len(d.split("train")) == 45
    assert d.split("train")[0].image().shape == (28, 28)


def test_csv_multilabel_and_out_of_range(tmp_path, tiny_class_folder):
    f = sorted(tiny_class_folder.rglob("*.png"))
    (tmp_path / "m.csv").write_text(f"path,label\n{f[0]},a|b\n{f[1]},b\n{f[2]},\n{f[3]},a\n")
    d = open_classification_data(DataConfig(source=str(tmp_path / "m.csv"), labels=["a", "b"], test_fraction=0.0,
                                            val_fraction=0.5))
    assert d.multilabel
    by_key = {s.id: list(s.label) for s in d.samples}
    assert by_key[str(f[0])] == [1, 1] and by_key[str(f[2])] == [0, 0]
    (tmp_path / "n.csv").write_text(f"path,label\n{f[0]},3\n")
    with pytest.raises(DataError, match="out of range") as info:
        open_classification_data(DataConfig(source=str(tmp_path / "n.csv"), labels=["x", "y"]))
    says(info, "n.csv:2", "'3'")  # the file and line, and the value


def test_csv_without_required_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,1\n")
    with pytest.raises(DataError, match="needs columns 'path' and 'label'"):
        open_classification_data(str(tmp_path / "m.csv"))


def test_missing_source():
    with pytest.raises(DataError, match="not found"):
        open_classification_data("/no/such/place")


def _fake_catalogue(monkeypatch, tmp_path, md5):
    src = tmp_path / "served.npz"
    np.savez(src, train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.array([0, 1, 0, 1]),
             val_images=np.zeros((2, 28, 28), np.uint8), val_labels=np.array([0, 1]))
    info = {"fakemnist": {"task": "binary-class", "labels": ["no", "yes"], "n_channels": 1, "n_samples": {},
                          "license": "x", "files": {"28": {"url": src.as_uri(), "md5": md5(src)}}}}
    monkeypatch.setattr(medmnist, "medmnist_info", lambda: info)
    monkeypatch.setenv("MEDSIGHT_DATA_DIR", str(tmp_path / "cache"))
    return src


def test_download_verifies_the_published_md5(monkeypatch, tmp_path):
    src = _fake_catalogue(monkeypatch, tmp_path, lambda p: hashlib.md5(p.read_bytes()).hexdigest())
    got = medmnist.download_official("fakemnist")
    assert got.read_bytes() == src.read_bytes() and got.parent == tmp_path / "cache"


def test_download_with_wrong_md5_is_refused_and_removed(monkeypatch, tmp_path):
    _fake_catalogue(monkeypatch, tmp_path, lambda p: "0" * 32)
    with pytest.raises(DataError, match="expected the official"):
        medmnist.download_official("fakemnist")
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_catalogue_has_2d_and_3d_sets_with_md5s():
    info = medmnist.medmnist_info()
    assert info["pneumoniamnist"]["files"]["28"]["md5"] == "28209eda62fecd6e6a2d98b1501bb15f"
    assert "64" in info["organmnist3d"]["files"] and info["breastmnist"]["labels"][0] == "malignant"


@pytest.mark.realdata
def test_real_pneumoniamnist_counts(shared_data):
    d = open_classification_data(str(shared_data("pneumoniamnist/pneumoniamnist.npz")))
    assert d.labels == ["normal", "pneumonia"]
    assert d.class_counts("test") == [234, 390] and d.class_counts("val") == [135, 389]
    assert d.fingerprint["official_md5"] is False  # the shared copy is a reconstruction (PROVENANCE.md)


@pytest.mark.realdata
def test_real_breastmnist_one_dimensional_labels(shared_data):
    d = open_classification_data(str(shared_data("breastmnist/breastmnist.npz")))
    assert d.labels[0] == "malignant" and d.class_counts("test") == [42, 114]


def _fake_local_copy(folder, name="fakemnist"):
    (folder / name).mkdir(parents=True)
    path = folder / name / f"{name}.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([0, 1]))
    return path


def test_medmnist_copy_is_found_by_argument_then_environment_never_the_working_directory(monkeypatch, tmp_path):
    _fake_catalogue(monkeypatch, tmp_path, lambda p: "0" * 32)  # a download would be refused
    cwd = tmp_path / "work" / "repo"
    cwd.mkdir(parents=True)
    _fake_local_copy(tmp_path / "work" / "shared" / "data")  # ../shared/data as seen from cwd
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MEDSIGHT_SHARED_DATA", raising=False)
    with pytest.raises(DataError, match="expected the official"):  # not the cwd-relative copy
        medmnist.resolve_medmnist("medmnist:fakemnist")
    env_copy = _fake_local_copy(tmp_path / "env")
    monkeypatch.setenv("MEDSIGHT_SHARED_DATA", str(tmp_path / "env"))
    assert medmnist.resolve_medmnist("medmnist:fakemnist") == env_copy
    arg_copy = _fake_local_copy(tmp_path / "arg")
    assert medmnist.resolve_medmnist("medmnist:fakemnist", data_dir=tmp_path / "arg") == arg_copy


def test_medmnist_shared_data_that_is_not_a_folder_is_an_actionable_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSIGHT_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="MEDSIGHT_SHARED_DATA.*not a folder.*pneumoniamnist/pneumoniamnist.npz"):
        medmnist.resolve_medmnist("medmnist:pneumoniamnist")
