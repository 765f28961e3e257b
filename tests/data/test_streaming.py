"""Preprocessed cases in memory, on disk (keyed by the spec) or prepared on demand; patches alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.config import config_from_dict
from medsight.data.case import Case
from medsight.data.segmentation import SegCase, check_cases, open_segmentation_data, read_case
from medsight.data.streaming import PreparedCases, resolve_cache_dir
from medsight.errors import ConfigError, DataError
from medsight.tasks.segmentation.training import PatchDataset
from tasks.segmentation import seg_factory

SPEC = {"target_spacing": [1.0, 1.0, 1.0], "normalization": "zscore"}


@pytest.fixture
def cases(tmp_path):
    root = seg_factory.decathlon(tmp_path / "dec", n=4)
    return open_segmentation_data(str(root)).cases


class Counting:
    """A ``prepare`` that counts its calls: reads the case and z-scores the image."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(case.id)
        image, mask = read_case(case, {0: "background", 1: "Left", 2: "Right"})
        x = image.array.astype(np.float32)
        return (x - x.mean()) / x.std(), mask.array[0].astype(np.uint8)


def test_none_mode_prepares_a_case_only_when_it_is_used(cases):
    prep = Counting()
    pc = PreparedCases(cases, prep, spec=SPEC, cache="none")
    assert prep.calls == [] and len(pc.images) == 4
    x, y = pc.images[2], pc.masks[2]  # image then mask of one case: one preparation
    assert prep.calls == [cases[2].id]
    assert x.shape == (1, *y.shape) and x.dtype == np.float32
    pc.images[0]
    assert prep.calls == [cases[2].id, cases[0].id]


def test_memory_mode_prepares_every_case_once_into_lists(cases):
    prep = Counting()
    pc = PreparedCases(cases, prep, spec=SPEC, cache="memory")
    assert isinstance(pc.images, list) and isinstance(pc.masks, list)
    pc.images[1], pc.masks[3]
    assert prep.calls == [c.id for c in cases]


def test_disk_cache_is_reused_for_the_same_spec_and_missed_for_another(cases, tmp_path):
    folder = tmp_path / "cache"
    first = Counting()
    a = PreparedCases(cases, first, spec=SPEC, cache="disk", cache_dir=folder)
    assert first.calls == [c.id for c in cases] and a.hits == 0
    files = sorted(folder.rglob("*.npy"))
    assert len(files) == 8
    assert all(f.read_bytes()[:6] == b"\x93NUMPY" for f in files)  # NumPy format, not a pickle
    again = Counting()
    b = PreparedCases(cases, again, spec=dict(SPEC), cache="disk", cache_dir=folder)
    assert again.calls == [] and b.hits == 4
    for i in range(4):
        assert np.array_equal(b.images[i], a.images[i]) and np.array_equal(b.masks[i], a.masks[i])
    assert again.calls == []  # items come from the files
    changed = Counting()
    PreparedCases(cases, changed, spec={**SPEC, "target_spacing": [2.0, 1.0, 1.0]}, cache="disk", cache_dir=folder)
    assert changed.calls == [c.id for c in cases]  # another spec: nothing stale is reused
    assert len(sorted(folder.rglob("*.npy"))) == 16


def test_disk_cache_misses_a_case_whose_file_changed(cases, tmp_path, rng):
    folder = tmp_path / "cache"
    PreparedCases(cases, Counting(), spec=SPEC, cache="disk", cache_dir=folder)
    img, _ = seg_factory.blobs(rng)
    seg_factory.save_nifti(Path(cases[1].path()), img * 2 + 1)
    prep = Counting()
    PreparedCases(cases, prep, spec=SPEC, cache="disk", cache_dir=folder)
    assert prep.calls == [cases[1].id]


def test_a_damaged_cache_file_is_prepared_again(cases, tmp_path):
    folder = tmp_path / "cache"
    a = PreparedCases(cases[:1], Counting(), spec=SPEC, cache="disk", cache_dir=folder)
    expected = np.array(a.images[0])
    next(f for f in folder.rglob("*.image.npy")).write_bytes(b"not numpy")
    assert np.array_equal(a.images[0], expected)


def test_cache_folder_resolves_argument_then_environment_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSIGHT_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("MEDSIGHT_CACHE_DIR")
    assert resolve_cache_dir().parts[-3:] == (".cache", "medsight", "cases")


def test_unknown_cache_mode_is_refused(cases):
    with pytest.raises(DataError, match="data.cache must be one of memory, disk, none; got 'ram'"):
        PreparedCases(cases, Counting(), spec=SPEC, cache="ram")  # type: ignore[arg-type]


def test_check_cases_keeps_images_in_memory_only_when_asked(cases):
    bad = SegCase("gone", cases[0].path().replace(cases[0].id, "gone"), cases[0].mask)
    kept, skipped = check_cases([*cases[:2], bad], {0: "b", 1: "l", 2: "r"}, keep=True)
    assert [c.id for c in kept] == [c.id for c in cases[:2]] and [s["input"] for s in skipped] == ["gone"]
    assert all(c.is_loaded() and not isinstance(c.mask, str) for c in kept)
    lazy, _ = check_cases(cases[:2], {0: "b", 1: "l", 2: "r"}, keep=False)
    assert [c.path() for c in lazy] == [c.path() for c in cases[:2]] and not lazy[0].is_loaded()


def _patches(images, masks, seed=5, n=8):
    ds = PatchDataset(images, masks, patch_size=[8, 8, 8], foreground_ratio=0.5, samples_per_volume=2, seed=seed)
    ds.reseed(seed)
    return [ds[i] for i in range(n)]


@pytest.mark.parametrize("mode", ["disk", "none"])
def test_streamed_cases_give_the_same_patches_as_cases_in_memory(cases, tmp_path, mode):
    memory = PreparedCases(cases, Counting(), spec=SPEC, cache="memory")
    streamed = PreparedCases(cases, Counting(), spec=SPEC, cache=mode, cache_dir=tmp_path / "c")
    want = _patches(memory.images, memory.masks)
    got = _patches(streamed.images, streamed.masks)
    assert len(got) == len(want)
    for (x1, y1), (x2, y2) in zip(want, got):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    ds = PatchDataset(streamed.images, streamed.masks, patch_size=[8, 8, 8], foreground_ratio=0.5,
                      samples_per_volume=2)
    assert ds.streamed and not isinstance(ds.images, list)  # nothing held by the dataset


def test_cache_is_a_segmentation_data_setting_and_classification_refuses_it():
    seg = config_from_dict({"task": "segmentation", "name": "s", "data": {"source": "d", "cache": "disk",
                                                                          "cache_dir": "/tmp/c"}})
    assert seg.data.cache == "disk" and seg.data.cache_dir == "/tmp/c"
    assert config_from_dict({"task": "segmentation", "name": "s", "data": {"source": "d"}}).data.cache == "memory"
    with pytest.raises(ConfigError, match="cache"):
        config_from_dict({"task": "classification", "name": "c", "data": {"source": "d", "cache": "disk"}})


def test_training_with_a_disk_cache_writes_it_and_learns_what_a_memory_run_learns(tmp_path):
    from medsight.api import train
    from medsight.config import save_config

    data = seg_factory.decathlon(tmp_path / "data", n=6)
    weights = {}
    for mode in ("memory", "disk"):
        cfg = config_from_dict({
            "task": "segmentation", "name": f"cache-{mode}", "modalities": ["MR"],
            "data": {"source": str(data), "split_seed": 0, "cache": mode, "cache_dir": str(tmp_path / "cache")},
            "model": {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
            "augmentation": "none", "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "threads": 1},
            "segmentation": {"samples_per_volume": 1}})
        save_config(cfg, tmp_path / f"{mode}.yaml")
        train(tmp_path / f"{mode}.yaml", run_dir=tmp_path / mode)
        weights[mode] = (tmp_path / mode / "model" / "weights.safetensors").read_bytes()
        n_files = len(list((tmp_path / "cache").rglob("*.npy"))) if (tmp_path / "cache").exists() else 0
        assert n_files == (0 if mode == "memory" else 2 * (4 + 1))  # train and val cases, image and mask each
    assert weights["memory"] == weights["disk"]


def test_disk_keys_of_cases_held_in_memory_follow_their_content(cases, tmp_path):
    loaded, _ = check_cases(cases[:1], {0: "b", 1: "l", 2: "r"}, keep=True)
    a = PreparedCases(loaded, Counting(), spec=SPEC, cache="disk", cache_dir=tmp_path)
    image = loaded[0].image()
    changed = [Case(loaded[0].id, {"image": image.with_array(image.array + 1)}, mask=loaded[0].mask)]
    b = PreparedCases(changed, Counting(), spec=SPEC, cache="disk", cache_dir=tmp_path)
    assert a.key(0) != b.key(0) and b.prepared == 1
