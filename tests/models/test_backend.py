"""SavedModel.run is the one seam between tasks and what computes outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.errors import ConfigError, ShapeError
from medsight.io.image import Image
from medsight.models.backend import Backend, TorchBackend
from medsight.models.saved import SavedModel
from medsight.tasks.base import get_task


class FakeBackend:
    """Not torch: class 1 when the mean intensity of an input is above 0.5; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        m = x.flatten(1).mean(1) - 0.5
        return torch.stack([-m, m], dim=1) * 10


class FakeSegBackend:
    """Per voxel: class 1 where the (z-scored) input is above 0, else background."""

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x[:, :1], x[:, :1]], dim=1) * 50


CLS = {"name": "fake", "task": "classification", "architecture": {"spatial_dims": 2},
       "preprocessing": {"spatial_size": [8, 8], "intensity": "minmax"}, "labels": ["dark", "bright"],
       "positive_index": 1, "threshold": 0.5}


def test_a_fake_backend_used_through_a_savedmodel_gives_the_results():
    backend = FakeBackend()
    model = SavedModel(network=None, manifest=CLS, backend=backend)
    assert isinstance(backend, Backend)
    bright = np.zeros((1, 16, 16), np.uint8)
    bright[0, :, 4:] = 200  # 3/4 bright after min-max scaling
    dark = np.zeros((1, 16, 16), np.uint8)
    dark[0, :2, :2] = 200  # 1/64 bright
    results = get_task("classification").infer(model, [Image(bright, (1.0, 1.0)), Image(dark, (1.0, 1.0))],
                                                inputs=["b", "d"])
    assert [r.label for r in results] == ["bright", "dark"]
    assert results[0].score == pytest.approx(float(torch.sigmoid(torch.tensor(5.0))), abs=1e-5)
    assert backend.calls == [(2, 1, 8, 8)]  # the preprocessed batch, at the manifest's size


def test_a_segmentation_model_runs_through_the_backend_and_maps_back_to_the_input_grid():
    manifest = {"name": "fakeseg", "task": "segmentation", "architecture": {"spatial_dims": 3},
                "preprocessing": {"target_spacing": [2.0, 1.0, 1.0], "normalization": [{"scheme": "zscore"}]},
                "inference": {"patch_size": [8, 8, 8], "largest_component": False}, "labels": ["bg", "blob"],
                "label_values": [0, 7]}
    model = SavedModel(network=None, manifest=manifest, backend=FakeSegBackend())
    arr = np.zeros((1, 12, 16, 16), np.float32)
    arr[0, 2:8, 4:12, 3:9] = 100.0
    image = Image(arr, (1.0, 1.0, 1.0), modality="MR")
    values = get_task("segmentation").segment(model, image)
    assert values.shape == (12, 16, 16) and set(np.unique(values)) == {0, 7}
    assert np.array_equal(values[:, 4:12, 3:9][2:8] == 7, np.ones((6, 8, 6), bool))
    assert (values == 7).sum() == 6 * 8 * 6


def test_explain_refuses_a_model_without_a_torch_network():
    from medsight.explain import heatmap

    model = SavedModel(network=None, manifest=CLS, backend=FakeBackend())
    assert get_task("classification").explains(model) is False
    with pytest.raises(ShapeError, match="torch network"):
        heatmap(model, Image(np.zeros((1, 8, 8), np.uint8), (1.0, 1.0)))


def test_a_model_needs_a_network_or_a_backend_and_saving_needs_the_network(tmp_path):
    with pytest.raises(ConfigError, match="network or a backend"):
        SavedModel(network=None, manifest=CLS)
    with pytest.raises(ConfigError, match="no torch network to save"):
        SavedModel(network=None, manifest=CLS, backend=FakeBackend()).save(tmp_path / "m")


def test_the_torch_backend_runs_in_eval_mode_without_autograd():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    net.train()
    backend = TorchBackend(net)
    x = torch.randn(3, 4)
    a, b = backend.run(x), backend.run(x)
    assert not net.training and torch.equal(a, b)  # no dropout: eval mode
    assert not a.requires_grad
