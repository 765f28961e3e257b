"""Explanations of model outputs: where in the image a classifier looked.

* :func:`heatmap` gives a map in ``[0, 1]`` in the source image's own geometry (rows, cols),
  made by MONAI's GradCAM on the network's last spatial layer (found generically), or by
  occlusion sensitivity when no such layer exists or GradCAM fails.
* :func:`overlay` blends such a map over the image as ``(rows, cols, 3)`` uint8 RGB, what a
  DICOM Secondary Capture and the dashboard show.

Maps and pictures are at most ``MAX_SIDE`` (2048) pixels along their longest side: a larger
image gets them shrunk by a whole factor (:func:`medsight.explain.overlay.display_shape`), so
explaining a huge image costs no more memory than explaining a 2048x2048 one.

Example:
    >>> from medsight.explain import heatmap, overlay
    >>> heat = heatmap(model, image)        # doctest: +SKIP
    >>> rgb = overlay(image, heat)          # doctest: +SKIP
"""

from medsight.explain.cam import Heatmap, find_target_layer, heatmap
from medsight.explain.overlay import overlay

__all__ = ["Heatmap", "heatmap", "find_target_layer", "overlay"]
