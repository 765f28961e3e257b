"""What a worker stores beside a result: its mask as a NIfTI file, a picture of the mask over
its image, a heatmap overlay for models that can be explained, a result's own overlay (a
detector's slice with its findings circled) and a crop picture per lesion.

Files live under ``storage/masks/<study>/`` and ``storage/overlays/<study>/``, named after
the result (a re-run writes the same files); the :class:`~medsight.service.outcome.Outcome`
records where they are.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from medsight.errors import MedSightError
from medsight.service.catalog import ModelCatalog
from medsight.service.config import ServiceConfig
from medsight.service.logs import safe_error
from medsight.service.outcome import Outcome
from medsight.tasks.writers import write

__all__ = ["Artifacts"]

log = logging.getLogger(__name__)


class Artifacts:
    """Builds and writes the artifacts of outcomes.

    Args:
        cfg: the service config (storage path, each model's ``explain`` method).
        catalog: the configured models (a heatmap needs the loaded model).
    """

    def __init__(self, cfg: ServiceConfig, catalog: ModelCatalog) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.overlays = cfg.storage_path / "overlays"
        self.masks = cfg.storage_path / "masks"

    def add(self, o: Outcome, image: Any, result: Any) -> None:
        """Store a result's artifacts: a mask as a NIfTI file with its picture over the image; an
        overlay as the result's PNG (with the SOPInstanceUID of the slice it shows, which its SC
        references); each lesion's crop as a PNG.

        Raises:
            WriteError: a file cannot be written.
        """
        for artifact in result.artifacts():
            if artifact.kind == "mask":
                o.mask = self._save_mask(o, result, artifact.value)
                self._mask_overlay(o, image, artifact.value)
            elif artifact.kind == "overlay":
                self._write_overlay(o, artifact.value)
                o.overlay_sop_uid = _slice_sop_uid(image, artifact.slice_index)
            elif artifact.kind == "crop":
                for lesion, label in artifact.labels.items():
                    o.crops[str(lesion)] = self._write_crop(o, artifact.value, label)

    def explain(self, o: Outcome, image: Any) -> None:
        """Store a heatmap overlay of a 2D image when the model's config asks for a method its task
        explains it by (:meth:`medsight.tasks.base.Task.explain_methods`: Grad-CAM or occlusion
        for a classifier), made by the task's own ``explain`` (what ``medsight explain`` runs). A
        heatmap that cannot be made is logged and skipped: the result stands without it."""
        method = self.cfg.models[o.model].explain
        if method == "none" or image.n_spatial != 2 or o.result is None:
            return
        from medsight.tasks.base import get_task

        model = self.catalog.load(o.model)
        task = get_task(model.task)
        if method not in task.explain_methods(model):
            return
        t0 = time.perf_counter()
        try:
            task.explain(model, image, o.result, method=method)
        except MedSightError as exc:
            log.warning("no heatmap for %s: %s", o.sop_uid, safe_error(exc))
            return
        rgb = next((a.value for a in o.result.artifacts() if a.kind == "overlay"), None)
        if rgb is None:
            return
        self._write_overlay(o, rgb)
        o.timings["explain_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        o.heatmap = method

    def _mask_overlay(self, o: Outcome, image: Any, mask: Any) -> None:
        """A picture of the mask over its image for the dashboard: the slice with the most
        labelled voxels, each label filled in its colour and outlined."""
        import numpy as np

        from medsight.explain.overlay import label_overlay

        try:
            rgb, shown = label_overlay(image, np.asarray(mask.array)[0])
        except MedSightError as exc:
            log.warning("no mask overlay for %s: %s", o.sop_uid or o.series_uid, safe_error(exc))
            return
        self._write_overlay(o, rgb)
        if o.mask is not None:
            o.mask["overlay_slice"] = shown

    def _write_overlay(self, o: Outcome, rgb: Any) -> None:
        """Store an overlay picture (heatmap or mask) as the result's PNG under ``storage/overlays/<study>/``."""
        from PIL import Image as PILImage

        path = self.overlays / o.study_uid / f"{o.sop_uid or o.series_uid}.{o.info.model_name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rgb).save(path)
        o.overlay_path = str(path)

    def _write_crop(self, o: Outcome, rgb: Any, label: str) -> str:
        """Store one lesion's crop as ``storage/overlays/<study>/<series>.<model>.<label>.png``."""
        from PIL import Image as PILImage

        from medsight.tasks.writers import crop_name

        path = self.overlays / o.study_uid / f"{o.sop_uid or o.series_uid}.{o.info.model_name}.{crop_name(label)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rgb).save(path)
        return str(path)

    def _save_mask(self, o: Outcome, result: Any, mask: Any) -> dict[str, Any]:
        """Write a result's label mask as NIfTI in the input's geometry (its ``nifti`` writer),
        under ``storage/masks/<study>/``, named after the result's key (a re-run writes the same file).

        Returns:
            What the result's outputs record: the path, the format, and the SOPInstanceUIDs of
            the source instances in mask slice order (what a SEG references).

        Raises:
            WriteError: the file cannot be written.
        """
        import hashlib

        name = hashlib.sha256(o.key.encode()).hexdigest()[:24]
        path = self.masks / o.study_uid / f"{o.series_uid}.{o.info.model_name}.{name}.nii.gz"
        write(result, "nifti", path)
        return {"path": str(path), "format": "nifti", "sop_uids": list(mask.sop_uids)}


def _slice_sop_uid(image: Any, index: int | None) -> str | None:
    """The SOPInstanceUID of slice ``index`` of a series read from DICOM (None: not one slice,
    or slices without their own instance, e.g. filled-in gaps)."""
    uids = list(getattr(image, "sop_uids", None) or [])
    if index is None or len(uids) != image.shape[0] or not 0 <= index < len(uids):
        return None
    return str(uids[index]) or None
