"""``detect`` is the network step and then ``findings``: a probability map's candidates in patient
terms, best first, those outside the lungs dropped, at most ``limit`` (``max_findings`` unless a
caller, such as a benchmark ranking by its own scores, asks for more)."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.data.synthetic_ct import make_chest_ct
from medsight.models.manifest import DetectionInference
from medsight.tasks.detection import detect as detect_module
from medsight.tasks.detection.scan import prepare_scan, preprocessing_spec
from medsight.transforms.preprocess import SpacingPreprocessor

WINDOW = (-1000.0, 400.0)


@pytest.fixture(scope="module")
def scan():
    image, _, _ = make_chest_ct(11, shape_zyx=(40, 96, 96), n_nodules=0, noise_hu=5.0)
    return prepare_scan(image, SpacingPreprocessor(preprocessing_spec(1.0, WINDOW)), lung_margin_mm=10.0)


def _balls(scan, peaks: list[float], *, outside: bool = False) -> np.ndarray:
    """Balls of radius 2 voxels, one per peak, centred on lung voxels spread evenly through the
    grid; ``outside`` adds one at the grid's corner, which is outside the lungs (the crop has a
    10 mm margin)."""
    prob = np.zeros(scan.x.shape[1:], np.float32)
    z, y, x = np.ogrid[tuple(slice(0, n) for n in prob.shape)]
    lungs = scan.lungs.inside(scan.grid.index_to_world(np.argwhere(np.ones(prob.shape, bool)).astype(float)))
    inside = np.argwhere(lungs.reshape(prob.shape))
    centres = [inside[i] for i in np.linspace(0, len(inside) - 1, len(peaks) + 2).astype(int)[1:-1]]
    if outside:
        centres.append(np.array([2, 2, 2]))
        peaks = [*peaks, 0.99]
    for c, p in zip(centres, peaks):
        ball = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 4
        prob[ball] = p
    return prob


def test_findings_rank_by_score_and_keep_at_most_the_limit(scan):
    settings = DetectionInference(patch_size=[32, 32, 32], max_findings=2, drop_outside_lungs=True)
    prob = _balls(scan, [0.3, 0.9, 0.6])
    kept = detect_module.findings(prob, scan, settings)
    assert [d.score for d in kept] == pytest.approx([0.9, 0.6])  # max_findings by default
    more = detect_module.findings(prob, scan, settings, limit=8)
    assert [d.score for d in more] == pytest.approx([0.9, 0.6, 0.3])
    assert all(d.inside_lungs for d in more)
    assert all(d.diameter_mm > 2.0 for d in more)  # a 33-voxel ball on a 1 mm grid is about 4 mm


def test_findings_outside_the_lungs_are_dropped_only_when_the_settings_say_so(scan):
    prob = _balls(scan, [0.5], outside=True)
    dropping = detect_module.findings(prob, scan, DetectionInference(patch_size=[32] * 3, drop_outside_lungs=True),
                                      limit=8)
    keeping = detect_module.findings(prob, scan, DetectionInference(patch_size=[32] * 3, drop_outside_lungs=False),
                                     limit=8)
    assert [d.score for d in dropping] == pytest.approx([0.5])
    assert [d.score for d in keeping] == pytest.approx([0.99, 0.5])
    assert keeping[0].inside_lungs is False


def test_detect_is_the_network_step_then_findings(scan, monkeypatch):
    prob = _balls(scan, [0.8, 0.4])
    monkeypatch.setattr(detect_module, "nodule_probability", lambda forward, s, settings: prob)
    settings = DetectionInference(patch_size=[32, 32, 32])
    found, returned = detect_module.detect(None, scan, settings)  # type: ignore[arg-type]
    assert returned is prob
    assert found == detect_module.findings(prob, scan, settings)
    assert [d.score for d in found] == pytest.approx([0.8, 0.4])
