"""Training targets of the detector: nodules are balls of their size, excluded annotations are
left out of the loss (LUNA16's excluded list holds nodules under 3 mm: taught as background they
teach the network to miss small nodules). Synthetic arrays."""

from __future__ import annotations

import numpy as np
import torch

from medsight.models.manifest import DetectionInference
from medsight.tasks.detection.training import DetectionHooks, NodulePatches, TrainScan, ball_target


def test_a_nodule_is_a_ball_and_an_excluded_annotation_is_out_of_the_loss():
    nodules = np.array([[10.0, 10.0, 10.0, 3.0]])
    excluded = np.array([[30.0, 30.0, 30.0, 2.0]])
    y, w = ball_target(nodules, np.zeros(3), (40, 40, 40), max_weight=1.0, ignore=excluded)
    assert y[10, 10, 10] == 1 and y[10, 10, 14] == 0
    assert int(y.sum()) == int((((np.indices((40, 40, 40)) - 10.0) ** 2).sum(0) <= 9).sum())
    assert w[30, 30, 30] == 0 and w[30, 30, 32] == 0 and w[30, 30, 33] == 1
    assert (w[y == 1] == 1).all()
    assert int((w == 0).sum()) == int((((np.indices((40, 40, 40)) - 30.0) ** 2).sum(0) <= 4).sum())


def test_an_excluded_annotation_overlapping_a_nodule_leaves_the_nodule_in_the_loss():
    y, w = ball_target(np.array([[20.0, 20.0, 20.0, 4.0]]), np.zeros(3), (40, 40, 40),
                       ignore=np.array([[20.0, 20.0, 23.0, 3.0]]))
    assert (w[y == 1] > 0).all()
    assert w[20, 20, 25] == 0


class _Scan:
    class grid:
        spacing = (2.0, 2.0, 2.0)

    x = np.zeros((1, 8, 8, 8), np.float32)

    @staticmethod
    def to_grid(points):
        return np.asarray(points, float).reshape(-1, 3)[:, ::-1] / 2.0


def test_the_ignore_radius_is_the_setting_without_a_size_and_radius_plus_1_mm_with_one():
    s = TrainScan.of("u", _Scan(), [(2.0, 4.0, 6.0, 8.0)], [(0.0, 0.0, 0.0, -1.0), (2.0, 2.0, 2.0, 4.0)],
                     ignore_radius_mm=5.0)
    assert np.allclose(s.nodules, [[3.0, 2.0, 1.0, 2.0]])
    assert np.allclose(s.excluded[:, 3], [2.5, 1.5])  # 5 mm and 4 / 2 + 1 mm, on a 2 mm grid


def test_the_loss_does_not_see_the_ignored_voxels():
    hooks = DetectionHooks(val_scans=[], settings=DetectionInference(patch_size=[8, 8, 8]))
    net = torch.nn.Conv3d(1, 2, 1)
    x = torch.zeros(1, 1, 8, 8, 8)
    y = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    w_all = torch.ones(1, 1, 8, 8, 8)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([0.0, 0.0]))
        x[0, 0, 2:4, 2:4, 2:4] = 1.0
        net.weight[1, 0] = 10.0  # fires where x is 1: a false positive there
        w_none = w_all.clone()
        w_none[0, 0, 2:4, 2:4, 2:4] = 0.0  # ... unless those voxels are ignored
        seen = hooks.training_step(net, (x, y, w_all))
        ignored = hooks.training_step(net, (x, y, w_none))
        clean = hooks.training_step(net, (torch.zeros_like(x), y, w_all))  # no false positive at all
    assert float(seen) > float(clean) + 0.1  # 8 voxels at logit 10 over 512: +0.156 of cross-entropy
    assert abs(float(ignored) - float(clean)) < 1e-3


def test_patches_centre_on_excluded_annotations_too():
    x = np.zeros((64, 64, 64), np.float16)
    scan = TrainScan("u", x, np.zeros((0, 4)), np.array([[32.0, 32.0, 32.0, 3.0]]))
    ds = NodulePatches([scan], patch_size=(16, 16, 16), p_nodule=0.0, p_excluded=1.0, jitter=0, p_slab=0.0, length=4)
    _, y, w = ds[0]
    assert float(w.min()) == 0.0 and int(y.sum()) == 0


def test_the_weighted_dice_is_monais_batch_dice_when_voxels_weigh_0_or_1():
    from monai.losses import DiceLoss

    from medsight.tasks.detection.training import weighted_dice

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 2, 6, 6, 6, generator=g), 1)
    y = (torch.rand(2, 1, 6, 6, 6, generator=g) > 0.8).long()
    keep = ((torch.rand(2, 1, 6, 6, 6, generator=g) > 0.2) | (y == 1)).float()
    monai = DiceLoss(to_onehot_y=True, include_background=False, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
    assert torch.allclose(weighted_dice(probs[:, 1:], y, keep), monai(probs * keep, y), atol=1e-6)


def test_with_weights_a_small_missed_nodule_costs_as_much_dice_as_a_big_one():
    from medsight.tasks.detection.training import weighted_dice

    nodules = np.array([[10.0, 10.0, 10.0, 1.5], [30.0, 30.0, 30.0, 5.0]])  # a 3 mm and a 10 mm ball, 1 mm grid
    y, w = ball_target(nodules, np.zeros(3), (40, 40, 40), ref_voxels=524.0, max_weight=40.0)
    y_t, w_t = torch.from_numpy(y)[None, None], torch.from_numpy(w)[None, None]
    small, big = torch.zeros_like(y_t, dtype=torch.float32), torch.zeros_like(y_t, dtype=torch.float32)
    small[y_t == 1] = 1.0
    big[y_t == 1] = 1.0
    small[0, 0, 5:16, 5:16, 5:16] = 0.0   # the 3 mm nodule missed
    big[0, 0, 25:36, 25:36, 25:36] = 0.0  # the 10 mm nodule missed
    plain = weighted_dice(small, y_t, torch.ones_like(w_t)), weighted_dice(big, y_t, torch.ones_like(w_t))
    weighted = weighted_dice(small, y_t, w_t), weighted_dice(big, y_t, w_t)
    assert float(plain[0]) < 0.05 < 0.9 < float(plain[1])       # unweighted: missing the small one is free
    assert 0.5 < float(weighted[0]) / float(weighted[1]) < 2.0  # weighted: about alike (3 mm ball: 19 voxels)


def test_by_size_sampling_centres_on_small_nodules_more_often():
    x = np.zeros((64, 64, 64), np.float16)
    nodules = np.array([[16.0, 16.0, 16.0, 1.5], [48.0, 48.0, 48.0, 7.5]])  # 3 and 15 mm
    scan = TrainScan("u", x, nodules, np.zeros((0, 4)))
    counts = {}
    for how in ("uniform", "by_size"):
        ds = NodulePatches([scan], patch_size=(8, 8, 8), p_nodule=1.0, p_excluded=0.0, jitter=0, p_slab=0.0,
                           nodule_sampling=how, ref_radius=5.0)
        centres = [ds._centre()[1] for _ in range(600)]
        counts[how] = sum(float(c[0]) < 32 for c in centres) / 600
    assert 0.4 < counts["uniform"] < 0.6
    assert counts["by_size"] > 0.7  # odds 5/1.5 = 3.3 against 1: 0.77


def test_patches_centre_on_the_hard_negatives_they_are_given():
    x = np.zeros((64, 64, 64), np.float16)
    x[40, 20, 30] = 1.0  # marks the hard negative's voxel
    scan = TrainScan("u", x, np.zeros((0, 4)), np.zeros((0, 4)))
    ds = NodulePatches([scan], patch_size=(16, 16, 16), p_nodule=0.0, p_excluded=0.0, p_hard=1.0, jitter=0,
                       p_slab=0.0, length=4)
    assert ds[0][0].shape == (1, 16, 16, 16)  # none mined yet: a patch from anywhere
    ds.set_hard(0, np.array([[40.0, 20.0, 30.0]]))
    for _ in range(5):  # mirrored and turned, the marked voxel stays in the patch's central 2^3
        x_patch, y, _ = ds[0]
        assert float(x_patch[0, 7:9, 7:9, 7:9].max()) > 0.9 and int(y.sum()) == 0
    ds.set_hard(0, np.zeros((0, 3)))
    assert ds.hard == {}


class _Bright(torch.nn.Module):
    """A 'network' that scores a nodule wherever the input is bright."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 20.0 * (x - 0.5)], 1)


def test_mining_keeps_the_false_positives_and_not_the_nodules_or_excluded_ones():
    x = np.zeros((40, 40, 40), np.float16)
    x[8:12, 8:12, 8:12] = 1.0      # a nodule: the network finds it (a true positive)
    x[28:31, 28:31, 28:31] = 1.0   # nothing marked here: a false positive
    x[8:11, 28:31, 28:31] = 1.0    # an excluded annotation: neither
    scan = TrainScan("u", x, np.array([[9.5, 9.5, 9.5, 3.0]]), np.array([[9.0, 29.0, 29.0, 3.0]]))
    ds = NodulePatches([scan], patch_size=(16, 16, 16), p_nodule=0.5, p_excluded=0.0, p_hard=0.5, jitter=0,
                       p_slab=0.0, length=4)
    settings = DetectionInference(patch_size=[32, 32, 32], overlap=0.25)
    hooks = DetectionHooks(val_scans=[], settings=settings, patches=ds, mine_scans=1)
    assert hooks.mine(_Bright()) == 1
    np.testing.assert_allclose(ds.hard[0], [[28.0, 28.0, 28.0]], atol=2.0)
    held = ds.hard[0].copy()
    assert DetectionHooks(val_scans=[], settings=settings, patches=ds).mine(_Bright()) == 0  # off: mines nothing
    np.testing.assert_array_equal(ds.hard[0], held)


def test_known_non_nodules_go_on_the_grid_and_leave_the_excluded_annotations_alone():
    # (x, y, z) mm on a 2 mm grid; a negative on an excluded annotation does not take it out of its ball
    s = TrainScan.of("u", _Scan(), [], [(4.0, 4.0, 4.0, -1.0)], ignore_radius_mm=3.0,
                     negatives=[(4.5, 4.0, 4.0), (12.0, 10.0, 8.0)])
    assert np.allclose(s.negatives, [[2.0, 2.0, 2.25], [4.0, 5.0, 6.0]]) and len(s.excluded) == 1
    assert TrainScan.of("u", _Scan(), [], []).negatives.shape == (0, 3)


def test_patches_centre_on_the_known_non_nodules_and_teach_them_as_background():
    x = np.zeros((64, 64, 64), np.float16)
    x[40, 20, 30] = 1.0
    scan = TrainScan("u", x, np.zeros((0, 4)), np.zeros((0, 4)), np.array([[40.0, 20.0, 30.0]]))
    ds = NodulePatches([scan], patch_size=(16, 16, 16), p_nodule=0.0, p_excluded=0.0, p_negative=1.0, jitter=0,
                       p_slab=0.0, length=4)
    for _ in range(5):
        x_patch, y, w = ds[0]
        assert float(x_patch[0, 7:9, 7:9, 7:9].max()) > 0.9 and int(y.sum()) == 0 and bool((w == 1).all())


def test_the_patch_shares_cannot_add_up_to_more_than_one():
    import pytest
    from pydantic import ValidationError

    from medsight.tasks.detection.config import DetectionSection

    assert DetectionSection(p_nodule=0.5, p_excluded=0.2, p_hard=0.3).p_hard == 0.3
    with pytest.raises(ValidationError, match="at most 1"):
        DetectionSection(p_nodule=0.5, p_excluded=0.2, p_hard=0.4)
    with pytest.raises(ValidationError, match="p_negative"):
        DetectionSection(p_nodule=0.5, p_excluded=0.2, p_negative=0.4)
