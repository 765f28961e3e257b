"""An example plug-in task: image-level regression of a synthetic blob's diameter.

It is what docs/extending.md walks through, added without any edit in MedSight's own package:
this folder is the whole task (its config section, data, network, training step, evaluation,
result type, report and card templates), registered when the module is imported. MedSight
imports it when ``$MEDSIGHT_PLUGINS`` names it (``MEDSIGHT_PLUGINS=blobsize``), and then
``medsight train / evaluate / predict``, ``medsight.load`` and the service run it through their
generic paths.
"""

from blobsize.task import BlobSizeConfig, BlobSizeResult, BlobSizeTask

__all__ = ["BlobSizeConfig", "BlobSizeResult", "BlobSizeTask"]
