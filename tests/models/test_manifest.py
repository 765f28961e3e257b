"""The typed manifest: old manifests load, bad ones say what is wrong, nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.errors import ModelFileError
from medsight.models.manifest import Manifest, ResizePreprocessing, SpacingPreprocessing, parse_manifest
from medsight.models.saved import SavedModel, build_network, load_model, resolve_model_path

SHIPPED = ["pneumonia-xray", "breast-ultrasound", "hippocampus-mri"]
ARCH = {"name": "resnet-small", "params": {"width": 4}, "spatial_dims": 2, "in_channels": 1, "num_classes": 2}


def _shipped(name: str) -> tuple[Path, dict]:
    folder = resolve_model_path(name)
    return folder, json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_manifest_written_before_kind_existed_loads_typed(name):
    _, raw = _shipped(name)
    assert "kind" not in raw["preprocessing"]  # the old format: the kind is told from the keys
    spec = parse_manifest(raw)
    if raw["task"] == "segmentation":
        assert isinstance(spec.preprocessing, SpacingPreprocessing)
        assert spec.preprocessing.target_spacing == [1.0, 1.0, 1.0] and spec.preprocessing.n_channels == 1
        assert spec.inference is not None and spec.inference.patch_size == [40, 56, 40]
        assert spec.label_values == [0, 1, 2]
    else:
        assert isinstance(spec.preprocessing, ResizePreprocessing)
        assert spec.preprocessing.spatial_size == [28, 28] and spec.positive_index in (0, 1)
        assert spec.threshold == raw["threshold"]
    assert spec.architecture.name == raw["architecture"]["name"] and len(spec.weights_sha256 or "") == 64


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_manifest_round_trips_to_identical_json(name):
    folder, raw = _shipped(name)
    text = (folder / "manifest.json").read_text()
    assert json.dumps(parse_manifest(raw).to_dict(), indent=1) + "\n" == text


def test_unknown_keys_survive_save_and_load(tmp_path):
    manifest = {"name": "m", "task": "classification", "architecture": {**ARCH, "note": "kept"},
                "preprocessing": {"spatial_size": [28, 28], "future_option": [1, 2]}, "labels": ["a", "b"],
                "positive_index": 1, "site": {"hospital": "X"}}
    folder = SavedModel(build_network(ARCH), manifest).save(tmp_path / "m")
    loaded = load_model(folder)
    assert loaded.manifest["site"] == {"hospital": "X"}
    assert loaded.manifest["architecture"]["note"] == "kept"
    assert loaded.manifest["preprocessing"]["future_option"] == [1, 2]
    assert loaded.spec.to_dict() == loaded.manifest
    assert list(loaded.manifest)[:3] == ["name", "task", "architecture"]  # order as written


def test_an_explicit_kind_is_kept_and_a_wrong_one_is_refused():
    base = {"task": "segmentation", "architecture": {"spatial_dims": 3}}
    spec = parse_manifest({**base, "preprocessing": {"kind": "spacing", "target_spacing": [1, 1, 2],
                                                     "normalization": [{"scheme": "zscore"}]}})
    assert spec.to_dict()["preprocessing"]["kind"] == "spacing"
    with pytest.raises(ModelFileError, match="preprocessing"):
        parse_manifest({**base, "preprocessing": {"kind": "warp", "target_spacing": [1, 1, 1]}})


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda m: m["preprocessing"].pop("target_spacing"), r"preprocessing\.target_spacing: Field required"),
    (lambda m: m["preprocessing"].update(target_spacing=[1.0, -1.0, 1.0]),
     r"preprocessing\.target_spacing\[1\]: Input should be greater than 0"),
    (lambda m: m["preprocessing"].update(normalization=[{"scheme": "ct", "lower": -100}]),
     r"preprocessing\.normalization\[0\]: scheme 'ct' needs upper, mean, sd"),
    (lambda m: m["architecture"].update(spatial_dims=4), r"architecture\.spatial_dims: Input should be 2 or 3"),
    (lambda m: m.update(label_values=[0, 1]), "label_values has 2 values for 3 labels"),
    (lambda m: m["inference"].update(overlap="half"), r"inference\.overlap: Input should be a valid number"),
    (lambda m: m.pop("task"), "task: Field required"),
])
def test_a_bad_manifest_gives_one_line_naming_the_field(tmp_path, edit, expected):
    from shutil import copytree

    folder = copytree(resolve_model_path("hippocampus-mri"), tmp_path / "model")
    m = json.loads((folder / "manifest.json").read_text())
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match=expected) as info:
        load_model(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_a_bad_manifest_handed_to_savedmodel_is_refused():
    with pytest.raises(ModelFileError, match="positive_index 2 is not an index into the 2 labels"):
        SavedModel(build_network(ARCH), {"task": "classification", "architecture": ARCH,
                                         "preprocessing": {"spatial_size": [28, 28]}, "labels": ["a", "b"],
                                         "positive_index": 2})
    with pytest.raises(ModelFileError, match="must hold a JSON object"):
        parse_manifest(["not", "a", "dict"])


def test_loading_needs_the_architecture_to_name_its_network(tmp_path):
    manifest = {"name": "m", "task": "classification", "architecture": ARCH,
                "preprocessing": {"spatial_size": [28, 28]}, "labels": ["a", "b"]}
    folder = SavedModel(build_network(ARCH), manifest).save(tmp_path / "m")
    m = json.loads((folder / "manifest.json").read_text())
    del m["architecture"]["num_classes"]
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="architecture lacks num_classes"):
        load_model(folder)


def test_spec_follows_a_key_assigned_in_the_manifest_dict():
    """Trainers and the service set keys in ``model.manifest``; the typed view follows."""
    from medsight.tasks.classification import ClassificationTask

    model = SavedModel(build_network(ARCH), {"task": "classification", "architecture": ARCH, "labels": ["a", "b"],
                                             "preprocessing": {"spatial_size": [28, 28]}, "positive_index": 1,
                                             "threshold": 0.9})
    p = np.array([0.3, 0.7])
    assert ClassificationTask().decide(model, p, "x").positive is False
    model.manifest["threshold"] = 0.5
    assert model.spec.threshold == 0.5
    assert ClassificationTask().decide(model, p, "x").positive is True


def test_the_preprocessor_is_built_once_and_rebuilt_when_its_section_changes():
    model = SavedModel(torch.nn.Identity(), {"task": "classification", "architecture": {"spatial_dims": 2},
                                             "preprocessing": {"spatial_size": [28, 28]}})
    pre = model.preprocessor
    assert model.preprocessor is pre and pre.spatial_size == (28, 28)
    model.manifest["preprocessing"] = {"spatial_size": [32, 32]}
    assert model.preprocessor is not pre and model.preprocessor.spatial_size == (32, 32)


def test_a_manifest_object_is_taken_as_its_dict():
    raw = {"task": "classification", "architecture": {"spatial_dims": 2}, "preprocessing": {"spatial_size": [8, 8]}}
    model = SavedModel(torch.nn.Identity(), Manifest.model_validate(raw))
    assert model.manifest == raw and isinstance(model.manifest, dict)
