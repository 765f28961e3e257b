"""A scan on the detector's grid keeps its geometry: world (LPS mm) ↔ network grid ↔ the input's
voxels round-trip, also for slices stored superior to inferior (flip_z), and a nodule's world
centre lands on the nodule in the resampled volume."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.data.synthetic_ct import make_chest_ct
from medsight.tasks.detection.scan import prepare_scan, preprocessing_spec
from medsight.transforms.preprocess import SpacingPreprocessor

WINDOW = (-1000.0, 400.0)


def _prepared(flip_z: bool, spacing_mm: float = 1.0):
    image, nodules, _ = make_chest_ct(7, shape_zyx=(40, 96, 96), n_nodules=2, diameter_range_mm=(7.0, 10.0),
                                      flip_z=flip_z, noise_hu=5.0)
    pre = SpacingPreprocessor(preprocessing_spec(spacing_mm, WINDOW))
    return image, nodules, prepare_scan(image, pre, lung_margin_mm=10.0)


@pytest.mark.parametrize("flip_z", [False, True])
def test_world_grid_and_input_voxels_round_trip(flip_z):
    image, nodules, scan = _prepared(flip_z)
    assert nodules, "the synthetic scan has nodules"
    assert scan.lungs.found
    assert scan.grid.spacing == pytest.approx((1.0, 1.0, 1.0), rel=0.02)  # whole voxels over the crop
    assert scan.x.shape[1:] == tuple(scan.grid.shape) and scan.x.dtype == np.float32
    world = np.array([n.centre_lps for n in nodules])
    grid_index = scan.to_grid(world)
    assert np.allclose(scan.grid.index_to_world(grid_index), world, atol=1e-6)
    # back to the input's own voxel indices: the generator's truth, in the stored (possibly flipped) order
    assert np.allclose(scan.source.world_to_index(world), [n.centre_voxel for n in nodules], atol=1e-4)
    # the crop is inside the input and the grid covers the nodules
    assert all(0 <= s.start < s.stop <= n for s, n in zip(scan.crop, image.shape))
    assert np.all(grid_index >= 0) and np.all(grid_index <= np.array(scan.grid.shape) - 1)


@pytest.mark.parametrize("flip_z", [False, True])
def test_a_nodule_centre_lands_on_nodule_attenuation_on_the_grid(flip_z):
    _, nodules, scan = _prepared(flip_z)
    hu = scan.hu(WINDOW)
    for n in nodules:
        z, y, x = np.round(scan.to_grid([n.centre_lps])[0]).astype(int)
        assert hu[z, y, x] > (-300.0 if n.type != "ground-glass" else -750.0), (n.type, hu[z, y, x])


def test_a_flipped_volume_gives_the_same_world_grid_as_the_unflipped_one():
    _, nodules_up, up = _prepared(False)
    _, nodules_down, down = _prepared(True)
    assert np.allclose([n.centre_lps for n in nodules_up], [n.centre_lps for n in nodules_down])
    # the same physical box on the network grid, whichever way the slices were stored
    lo_up = up.grid.index_to_world(np.zeros(3))
    hi_up = up.grid.index_to_world(np.array(up.grid.shape) - 1)
    corners_down = [down.grid.index_to_world(np.zeros(3)), down.grid.index_to_world(np.array(down.grid.shape) - 1)]
    box_up = np.sort(np.stack([lo_up, hi_up]), axis=0)
    box_down = np.sort(np.stack(corners_down), axis=0)
    assert np.allclose(box_up, box_down, atol=1.5)  # within about a grid voxel
    # and the same attenuation at each nodule
    for a, b in zip(nodules_up, nodules_down):
        ia = np.round(up.to_grid([a.centre_lps])[0]).astype(int)
        ib = np.round(down.to_grid([b.centre_lps])[0]).astype(int)
        assert abs(up.hu(WINDOW)[tuple(ia)] - down.hu(WINDOW)[tuple(ib)]) < 150.0
