"""Segmentation: 2D/3D label masks from images.

``task.py``: the task (inference, evaluation, report and card sections); ``fit.py``: its
training run; ``preprocess.py``: to the network's grid and back; ``training.py``: patch
sampling and the trainer's hooks. Sliding-window inference is the engine's
(:mod:`medsight.engine.sliding`).
"""

from medsight.tasks.segmentation.task import SegmentationTask

__all__ = ["SegmentationTask"]
