"""Classification: binary, multi-class and multi-label diagnosis from one image.

``task.py`` holds the task (inference, decisions at the stored threshold, evaluation, its
report and card sections) and its training.
"""

from medsight.tasks.classification.task import ClassificationTask, positive_index
from medsight.tasks.classification.training import round_to_float16

__all__ = ["ClassificationTask", "positive_index", "round_to_float16"]
