"""The colour of each label value, one table for every place that shows a mask: the mask
pictures (:func:`medsight.explain.overlay.label_overlay`), the recommended display colours of
a DICOM SEG's segments (:func:`medsight.io.dicom_out.seg.display_colour`) and the dashboard's
swatches (``service/web/app.js``, the same colours in hex). A structure looks the same in
MedSight's pictures and in a DICOM viewer.

Okabe–Ito colours (told apart with the common colour-vision deficiencies), as RGB in [0, 1],
for labels 1, 2, ... (label ``v`` has ``LABEL_COLOURS[(v - 1) % 7]``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LABEL_COLOURS", "label_rgb"]

LABEL_COLOURS = np.array([(0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26),
                          (0.0, 0.45, 0.70), (0.84, 0.37, 0.0), (0.80, 0.47, 0.65)], np.float32)


def label_rgb(value: int) -> tuple[int, int, int]:
    """Label ``value``'s colour as 8-bit RGB."""
    r, g, b = (int(round(float(c) * 255)) for c in LABEL_COLOURS[(int(value) - 1) % len(LABEL_COLOURS)])
    return r, g, b
