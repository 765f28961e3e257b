"""The predictor is handed a task: it expands, reads and infers through it, and a bad input
becomes the task's error result in its place (engine/ knows no task)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from medsight.engine.predictor import Predictor
from medsight.errors import ShapeError
from medsight.io.image import Image


@dataclass
class _Model:
    spatial_dims: int = 2


class _MeanTask:
    """A task that returns the mean of each image and refuses an all-zero one."""

    def expand_inputs(self, model, inputs):
        return [str(i) for i in inputs]

    def infer(self, model, images, *, inputs=None):
        if any(not im.array.any() for im in images):
            raise ShapeError("an all-zero image")
        return [(name, float(im.array.mean())) for name, im in zip(inputs, images)]

    def error_result(self, input, exc):
        return ("error", input, type(exc).__name__)


def test_a_failing_image_becomes_the_tasks_error_result_in_its_place():
    images = [Image(array=np.full((1, 4, 4), v, np.float32), spacing=(1, 1)) for v in (1.0, 0.0, 3.0)]
    out = Predictor(_Model(), _MeanTask()).predict_images(images, ["a", "b", "c"])
    assert out == [("a", 1.0), ("error", "b", "ShapeError"), ("c", 3.0)]


def test_an_unreadable_input_becomes_the_tasks_error_result_and_the_others_are_predicted(tmp_path):
    np.save(tmp_path / "ok.npy", np.full((4, 4), 2.0, np.float32))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    names = [str(tmp_path / "ok.npy"), str(tmp_path / "bad.npy"), str(tmp_path / "missing.npy")]
    out = Predictor(_Model(), _MeanTask(), chunk=2).predict(names)
    assert out[0] == (names[0], pytest.approx(2.0))
    assert [r[:2] for r in out[1:]] == [("error", names[1]), ("error", names[2])]
