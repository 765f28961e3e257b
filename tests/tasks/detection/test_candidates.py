"""Candidates from a nodule-probability map (synthetic maps painted here): centre, diameter in mm
within a voxel, score, order, and the solid / part-solid / ground-glass type from painted HU."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.tasks.detection.candidates import equivalent_diameter, extract_candidates

SHAPE = (40, 48, 48)


def _ball(centre, radius_mm, spacing, shape=SHAPE):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return d2 <= radius_mm ** 2


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.75, 0.75)])
def test_a_ball_of_probability_gives_its_centre_and_diameter_within_a_voxel(spacing):
    centre, diameter = (18.3, 20.6, 25.2), 10.0
    ball = _ball(centre, diameter / 2, spacing)
    prob = np.where(ball, 0.9, 0.02).astype(np.float32)
    hu = np.where(ball, 40.0, -850.0).astype(np.float32)
    (c,) = extract_candidates(prob, hu, spacing)
    assert c.score == pytest.approx(0.9)
    assert np.allclose(c.index, centre, atol=0.5)  # index units: half a voxel
    assert abs(c.diameter_mm - diameter) <= max(spacing)
    assert c.volume_mm3 == pytest.approx(ball.sum() * np.prod(spacing))
    assert c.diameter_mm == pytest.approx(equivalent_diameter(c.volume_mm3))
    assert all(abs(e - diameter) <= 2 * s for e, s in zip(c.extent_mm, spacing))
    assert c.type == "solid" and c.solid_diameter_mm == pytest.approx(round(c.diameter_mm, 2))


def test_the_type_follows_the_attenuation_inside_the_nodule():
    spacing = (1.0, 1.0, 1.0)
    hu = np.full(SHAPE, -850.0, np.float32)
    prob = np.zeros(SHAPE, np.float32)
    centres = {"solid": (10, 12, 12), "ground-glass": (10, 12, 34), "part-solid": (28, 24, 24)}
    for kind, c in centres.items():
        ball = _ball(c, 6.0, spacing)
        prob[ball] = {"solid": 0.9, "ground-glass": 0.8, "part-solid": 0.7}[kind]
        hu[ball] = 40.0 if kind == "solid" else -600.0
    hu[_ball(centres["part-solid"], 3.0, spacing)] = 40.0  # a solid core of half the diameter
    found = extract_candidates(prob, hu, spacing)
    assert [c.score for c in found] == pytest.approx([0.9, 0.8, 0.7])  # best first
    by_type = {c.type: c for c in found}
    assert set(by_type) == {"solid", "ground-glass", "part-solid"}
    for kind, c in by_type.items():
        assert np.allclose(c.index, centres[kind], atol=0.5), kind
        assert abs(c.diameter_mm - 12.0) <= 1.0
    assert by_type["ground-glass"].solid_diameter_mm == 0.0
    assert 4.5 <= by_type["part-solid"].solid_diameter_mm <= 7.0  # the 6 mm core, within a voxel


def test_thresholds_and_the_cap_decide_what_is_a_candidate():
    spacing = (1.0, 1.0, 1.0)
    hu = np.full(SHAPE, -850.0, np.float32)
    prob = np.zeros(SHAPE, np.float32)
    prob[_ball((10, 10, 10), 3.0, spacing)] = 0.6
    prob[_ball((30, 30, 30), 3.0, spacing)] = 0.3    # above the candidate threshold, below the size one
    prob[_ball((10, 36, 36), 3.0, spacing)] = 0.05   # below the candidate threshold: not a candidate
    found = extract_candidates(prob, hu, spacing, candidate_threshold=0.1, size_threshold=0.5)
    assert [round(c.score, 2) for c in found] == [0.6, 0.3]
    assert abs(found[1].diameter_mm - 6.0) <= 1.0  # sized on p >= half its score when nothing is above 0.5
    assert len(extract_candidates(prob, hu, spacing, max_candidates=1)) == 1
    assert extract_candidates(np.zeros(SHAPE, np.float32), hu, spacing) == []


def _blurred_ball(centre, diameter, inside_hu, spacing=(1.0, 1.0, 1.0), lung_hu=-850.0, sigma=0.8):
    """A ball in lung, blurred as a CT blurs an edge (half-way HU at the radius), with noise."""
    from scipy import ndimage

    ball = _ball(centre, diameter / 2, spacing).astype(np.float32)
    hu = lung_hu + (inside_hu - lung_hu) * ndimage.gaussian_filter(ball, sigma)
    return ball.astype(bool), hu + np.random.default_rng(0).normal(0, 15, SHAPE).astype(np.float32)


@pytest.mark.parametrize("inside_hu", [40.0, -600.0])  # solid and ground-glass
def test_attenuation_measures_a_nodule_the_network_only_partly_covers(inside_hu):
    centre, diameter = (20.0, 24.0, 24.0), 16.0
    ball, hu = _blurred_ball(centre, diameter, inside_hu)
    prob = np.where(_ball(centre, diameter / 2 - 3.0, (1, 1, 1)), 0.9, 0.0).astype(np.float32)  # a 10 mm core
    (by_p,) = extract_candidates(prob, hu, (1.0, 1.0, 1.0))
    (by_hu,) = extract_candidates(prob, hu, (1.0, 1.0, 1.0), measure="attenuation", grow_mm=4.0)
    assert by_p.diameter_mm < 0.7 * diameter  # the probability alone: the core
    assert abs(by_hu.diameter_mm - diameter) <= 1.0, by_hu.diameter_mm
    assert np.allclose(by_hu.index, by_p.index) and by_hu.score == by_p.score  # where and how sure: the network's
    assert by_hu.type == ("solid" if inside_hu > 0 else "ground-glass")


def test_attenuation_growth_into_the_chest_wall_is_bounded_by_grow_mm():
    centre, diameter = (20.0, 24.0, 14.0), 10.0
    _, hu = _blurred_ball(centre, diameter, 40.0)
    hu[:, :, :12] = 40.0  # a wall of soft tissue the nodule touches
    prob = np.where(_ball(centre, diameter / 2, (1, 1, 1)), 0.9, 0.0).astype(np.float32)
    sizes = [extract_candidates(prob, hu, (1.0, 1.0, 1.0), measure="attenuation", grow_mm=g)[0].volume_mm3
             for g in (0.0, 2.0, 4.0)]
    core = float(_ball(centre, diameter / 2, (1, 1, 1)).sum())
    assert sizes[0] == pytest.approx(core)  # no growth: the network's voxels
    assert core < sizes[1] < sizes[2]  # the wall adds, but only within the margin
    assert sizes[2] < 2.0 * core + 4.0 * 48 * 40  # far less than the wall (which is ~23,000 voxels)


def test_attenuation_without_contrast_keeps_the_networks_size():
    centre = (20.0, 24.0, 24.0)
    prob = np.where(_ball(centre, 5.0, (1, 1, 1)), 0.9, 0.0).astype(np.float32)
    hu = np.full(SHAPE, -850.0, np.float32)  # nothing denser than lung: no edge to find
    (a,) = extract_candidates(prob, hu, (1.0, 1.0, 1.0), measure="attenuation")
    (b,) = extract_candidates(prob, hu, (1.0, 1.0, 1.0))
    assert a.volume_mm3 == b.volume_mm3


def test_saturated_scores_rank_the_larger_candidate_first():
    """Scores equal to 5 decimals (a confident network gives 1.0 and 0.99999994) are ordered by
    size, not by the last float32 bit, which can differ from one CPU to another."""
    spacing = (1.0, 1.0, 1.0)
    prob = np.zeros(SHAPE, np.float32)
    prob[_ball((10, 12, 12), 2.0, spacing)] = 1.0               # small, the higher score by one ulp
    prob[_ball((26, 30, 30), 6.0, spacing)] = np.float32(0.99999994)
    prob[_ball((10, 36, 36), 8.0, spacing)] = 0.9               # larger still, but clearly less sure
    hu = np.full(SHAPE, -850.0, np.float32)
    found = extract_candidates(prob, hu, spacing)
    assert [round(c.diameter_mm) for c in found] == [12, 4, 16]
