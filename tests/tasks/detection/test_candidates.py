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
