"""The manifest's ``detection.tta_flips`` reaches the network: the nodule probability is then the
average over the mirrored copies (the engine's sliding window, as segmentation uses it)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from medsight.models.manifest import DetectionInference
from medsight.tasks.detection.detect import nodule_probability


def _forward(x: torch.Tensor) -> torch.Tensor:
    """Logits that are not mirror-symmetric: the nodule logit grows along the last axis."""
    ramp = torch.linspace(-3, 3, x.shape[-1]).view(1, 1, 1, 1, -1)
    return torch.cat([torch.zeros_like(x), 4 * x + ramp], dim=1)


def test_tta_flips_average_the_network_over_the_mirrored_axes():
    x = np.random.default_rng(0).random((1, 8, 8, 8), dtype=np.float32)
    scan = SimpleNamespace(x=x)
    plain = nodule_probability(_forward, scan, DetectionInference(patch_size=[8, 8, 8]))
    tta = nodule_probability(_forward, scan, DetectionInference(patch_size=[8, 8, 8], tta_flips=[2]))

    def prob(v: np.ndarray) -> np.ndarray:
        return torch.softmax(_forward(torch.from_numpy(v)[None]), dim=1)[0, 1].numpy()

    mirrored = prob(np.ascontiguousarray(x[..., ::-1]))[..., ::-1]
    np.testing.assert_allclose(plain, prob(x), atol=1e-5)
    np.testing.assert_allclose(tta, (prob(x) + mirrored) / 2, atol=1e-5)
    assert np.abs(tta - plain).max() > 0.1  # the ramp is undone: the mirror counts
