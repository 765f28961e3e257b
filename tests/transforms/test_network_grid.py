"""A preprocessor says where the network's grid sits in patient mm, so a voxel (or a box
corner) found on the network grid maps back to the patient point of the original image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.io.image import Image
from medsight.transforms.geometry import Grid
from medsight.transforms.intensity import mean_sd
from medsight.transforms.preprocess import Preprocessor, SpacingPreprocessor, build_preprocessor
from medsight.transforms.spacing import resize, shape_at_spacing


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _ramp(shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Voxel value = its index along ``axis``: linear resampling reproduces it exactly inside."""
    idx = np.indices(shape, dtype=np.float32)[axis]
    return idx[None]


def _interior(grid: Grid, src: Grid) -> np.ndarray:
    """Network-grid voxels whose linear-interpolation stencil lies inside the source."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, grid.n_spatial)
    at = grid.index_to(src, idx)
    inside = np.all((at >= 0) & (at <= np.asarray(src.shape) - 1), axis=1)
    return idx[inside]


def test_a_resampled_oblique_anisotropic_volume_maps_network_voxels_back_to_patient_mm():
    shape, spacing, origin = (9, 14, 11), (3.0, 0.7, 1.3), (12.5, -40.0, 7.25)
    direction = _rotation(0.3, -0.5, 0.8)
    pre = SpacingPreprocessor({"target_spacing": [1.0, 1.0, 1.0], "normalization": [{"scheme": "zscore"}]})
    for axis in range(3):
        arr = _ramp(shape, axis)
        image = Image(arr, spacing, origin=origin, direction=direction, modality="MR")
        prepared = pre.apply(image)
        grid, src = prepared.grid, Grid.of(image)
        assert grid.shape == tuple(prepared.tensor.shape[1:]) == shape_at_spacing(shape, spacing, (1, 1, 1))
        assert grid.shape == (27, 10, 14)
        assert np.allclose(grid.direction, direction)
        assert [s["name"] for s in grid.applied] == ["normalize", "resample"]
        mean, sd = mean_sd(arr)
        idx = _interior(grid, src)
        assert len(idx) > 100
        found = prepared.tensor[0].numpy()[tuple(idx.T)] * sd + mean  # undo the z-score: the source index
        # the source index each network voxel was interpolated from is where the grid says it is ...
        assert np.allclose(found, grid.index_to(src, idx)[:, axis], atol=1e-3)
        # ... so its patient-mm position is that of the original image's point
        assert np.allclose(grid.index_to_world(idx), src.index_to_world(grid.index_to(src, idx)), atol=1e-9)
    # a voxel near the middle, by hand: network voxel (13, 5, 7) is patient point origin + D @ (spacing * v)
    v = grid.index_to(src, [13, 5, 7])
    expected = np.asarray(origin) + direction @ (np.asarray(spacing) * v)
    assert np.allclose(grid.index_to_world([13, 5, 7]), expected)
    assert np.allclose(grid.spacing, [9 * 3.0 / 27, 14 * 0.7 / 10, 11 * 1.3 / 14])


def test_a_blob_found_on_the_network_grid_is_at_its_patient_position():
    shape, spacing, origin = (20, 24, 18), (2.5, 0.8, 1.2), (-3.0, 15.0, 60.0)
    direction = _rotation(-0.4, 0.2, 1.1)
    centre = np.array([8.3, 13.6, 7.2])  # source voxel index
    g = np.indices(shape).astype(float)
    r2 = sum(((g[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    image = Image(np.exp(-r2 / (2 * 4.0**2))[None].astype(np.float32), spacing, origin=origin, direction=direction)
    model_pre = build_preprocessor({"target_spacing": [1.0, 1.0, 1.0], "normalization": [{"scheme": "zscore"}]},
                                   spatial_dims=3)
    prepared = model_pre.apply(image)
    t = prepared.tensor[0].numpy()
    w = np.clip(t - t.max() * 0.5, 0, None)
    found = (np.indices(t.shape).reshape(3, -1) @ w.ravel()) / w.sum()  # weighted centroid on the network grid
    truth = np.asarray(origin) + direction @ (np.asarray(spacing) * centre)
    assert np.linalg.norm(prepared.grid.index_to_world(found) - truth) < 0.3  # mm


@pytest.mark.parametrize(("size", "mode"), [((56, 40), "linear"), ((14, 10), "area")])
def test_a_resized_2d_image_maps_network_pixels_back_to_patient_mm(size, mode):
    shape, spacing, origin = (28, 20), (0.5, 0.9), (100.0, -20.0, 33.0)
    d = _rotation(0.2, 0.6, -0.3)[:, :2]  # an oblique plane
    pre = Preprocessor({"spatial_size": list(size), "intensity": "none", "channels": 1}, spatial_dims=2)
    for axis in range(2):
        image = Image(_ramp(shape, axis), spacing, origin=origin, direction=d)
        prepared = pre.apply(image)
        grid, src = prepared.grid, Grid.of(image)
        assert grid.shape == size and [s["name"] for s in grid.applied] == ["to_unit_range", "resize"]
        idx = _interior(grid, src)
        found = prepared.tensor[0].numpy()[tuple(idx.T)]
        assert np.allclose(found, grid.index_to(src, idx)[:, axis], atol=1e-3)
    assert np.allclose(grid.index_to_world([0, 0]), src.index_to_world(grid.index_to(src, [0, 0])))
    assert np.allclose(grid.spacing, np.asarray(spacing) * np.asarray(shape) / np.asarray(size))
    assert np.allclose(grid.world_to_index(grid.index_to_world([3.5, 2.0])), [3.5, 2.0])


def test_the_network_grid_of_an_unresized_image_is_the_image_grid():
    image = Image(np.zeros((1, 28, 28), np.uint8), (0.3, 0.3), origin=(1.0, 2.0, 3.0))
    prepared = Preprocessor({"spatial_size": [28, 28]}).apply(image)
    assert prepared.grid.shape == (28, 28) and prepared.grid.origin == (1.0, 2.0, 3.0)
    assert prepared.grid.spacing == (0.3, 0.3)
    assert torch.equal(prepared.tensor, Preprocessor({"spatial_size": [28, 28]})(image))


def test_one_resize_for_arrays_and_tensors():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    assert resize(x, (4, 4)) is x
    half = resize(x, (2, 2), "auto")  # shrinking: area averaging
    assert isinstance(half, np.ndarray) and np.allclose(half[0], [[2.5, 4.5], [10.5, 12.5]])
    labels = torch.tensor([[[0.0, 3.0], [5.0, 0.0]]])
    up = resize(labels, (4, 4), "nearest")
    assert isinstance(up, torch.Tensor) and set(up.unique().tolist()) == {0.0, 3.0, 5.0}
    with pytest.raises(Exception, match="resize mode"):
        resize(x, (2, 2), "cubic")
