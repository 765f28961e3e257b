"""Segmentation: 2D/3D label masks from images, in the same pipeline as classification.

data (Decathlon, folder pairs, CSV) → fingerprint → plan (spacing, patch, normalisation) →
MONAI network trained by the shared trainer (Dice + cross-entropy, foreground-oversampled
patches, augmentation) → sliding-window inference (Gaussian blending, optional flip TTA,
largest connected component) → mask in the input's geometry → Dice / HD95 / surface Dice /
volume error per case → NIfTI or DICOM SEG, structure volumes in mL.

Everything inference needs travels in the model's manifest: ``preprocessing`` (target spacing,
normalisation), ``inference`` (patch, overlap, TTA, post-processing), ``label_values`` and
``labels`` (names by class index), and ``plan`` (the fingerprint and the rules that chose them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsight.config import DataConfig, SegmentationRunConfig
from medsight.errors import DataError, MedSightError, ShapeError
from medsight.io.image import Image
from medsight.models.manifest import SlidingWindowInference
from medsight.models.saved import SavedModel
from medsight.tasks.base import Task, register_task
from medsight.tasks.results import Provenance, SegmentationResult, array_sha256

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup
    from medsight.report import Section

__all__ = ["SegmentationTask"]

log = logging.getLogger(__name__)

def _label_values(model: SavedModel) -> list[int]:
    values = model.spec.label_values
    if values is None:
        raise DataError(f"model {model.name} is a segmentation model without label_values in its manifest")
    return [int(v) for v in values]


def _inference(model: SavedModel) -> SlidingWindowInference:
    inf = model.spec.inference
    if inf is None:
        raise DataError(f"model {model.name} is a segmentation model without an inference section in its manifest")
    return inf


@register_task
class SegmentationTask(Task):
    """Segmentation of structures in 2D images or 3D volumes."""

    name = "segmentation"
    config_type = SegmentationRunConfig
    default_split: str | None = None  # evaluate every labelled case unless a split is named

    result_type = SegmentationResult

    def __init__(self) -> None:
        self._folders: dict[str, Any] = {}

    # -- inference ----------------------------------------------------------------------------
    def _network_input(self, model: SavedModel, image: Image) -> tuple[torch.Tensor, dict[str, Any]]:
        """The network's input for ``image`` and the sliding-window settings.

        Raises:
            ShapeError, ModalityError: the image does not fit the model.
        """
        from medsight.transforms.preprocess import SpacingPreprocessor

        self.validate_input(model, image)
        if image.n_spatial == 3 and min(image.shape) < 2:
            raise ShapeError(f"model {model.name} takes 3D volumes; got a single-slice image of shape "
                             f"{'x'.join(map(str, image.shape))}", path=image.source)
        inf = _inference(model)
        pre = model.preprocessor
        if not isinstance(pre, SpacingPreprocessor):
            raise DataError(f"model {model.name}: a segmentation model needs preprocessing with a target_spacing")
        kw = dict(patch_size=inf.patch_size, overlap=inf.overlap, sw_batch_size=inf.sw_batch_size,
                  tta_flips=inf.tta_flips or False, precision=inf.precision)
        return pre.image(image), kw

    def probabilities(self, model: SavedModel, image: Image) -> torch.Tensor | None:
        """Class probabilities on ``image``'s own grid ``(n_classes, *spatial)``, or None when the
        network input is larger than ``inference.max_voxels`` (inferred in slabs then, and only
        the class map is kept)."""
        from medsight.engine.sliding import predict_probabilities

        x, kw = self._network_input(model, image)
        if int(np.prod(x.shape[1:])) > _inference(model).max_voxels:
            return None
        probs = predict_probabilities(model.run, x, **kw)
        del x
        if tuple(probs.shape[1:]) != image.shape:
            probs = model.preprocessor.probabilities_back(probs, image.shape)
        return probs

    def segment(self, model: SavedModel, image: Image) -> np.ndarray:
        """Label values of ``image`` on its own grid, shape ``spatial``.

        Raises:
            ShapeError, ModalityError: the image does not fit the model.
        """
        from medsight.engine.sliding import keep_largest_component, predict_classes
        from medsight.tasks.segmentation.preprocess import classes_to_shape

        inf = _inference(model)
        n_classes = len(_label_values(model))
        probs = self.probabilities(model, image)  # whole volume; probabilities resampled before the argmax
        if probs is not None:
            classes = probs.argmax(0).to(torch.uint8).numpy()
            del probs
        else:  # slabs in bounded memory; the class map is resampled by nearest neighbour
            x, kw = self._network_input(model, image)
            classes = classes_to_shape(predict_classes(model.run, x, max_voxels=inf.max_voxels, **kw), image.shape)
            del x  # the network input is a float copy of the whole image: free it before post-processing
        keep = inf.largest_component or []
        if keep is True:
            keep = list(range(1, n_classes))
        if keep:
            keep_largest_component(classes, keep)
        values = np.asarray(_label_values(model))
        dtype = np.uint8 if values.max() <= 255 else np.uint16
        return values.astype(dtype)[classes]

    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        names = self.input_names(images, inputs)
        spec = model.spec
        out = []
        for name, image in zip(names, images):
            t0 = time.perf_counter()
            values = self.segment(model, image)
            seconds = time.perf_counter() - t0
            mask = image.with_array(values[None])
            mask.meta["derived_from"] = name
            voxel_ml = image.voxel_volume_mm3 / 1000.0
            counts = np.bincount(values.ravel(), minlength=int(max(_label_values(model))) + 1)
            labels = {int(v): n for v, n in zip(_label_values(model), model.labels) if int(v) != 0}
            volumes = {n: round(float(counts[v]) * voxel_ml, 6) for v, n in labels.items()}
            prov = Provenance(model=model.name, model_version=model.version, weights_sha256=spec.weights_sha256,
                              input_sha256=array_sha256(image.array), seconds=round(seconds, 4),
                              medsight_version=spec.versions.get("medsight"), series_uid=image.series_uid,
                              sop_uids=list(image.sop_uids))
            out.append(SegmentationResult(input=name, mask=mask, labels=labels, volumes_ml=volumes, provenance=prov))
        return out

    # -- explanation: the probability map ------------------------------------------------------
    def explain_methods(self, model: SavedModel) -> tuple[str, ...]:
        return ("probability",)

    def explain(self, model: SavedModel, image: Image, result: Any, *, method: str = "probability") -> Any:
        """Attach the foreground probability (1 - P(background)) drawn on the slice with the most
        labelled voxels of ``result``'s mask (the middle slice when it found nothing): where the
        network was sure and where it hesitated, around the outline it drew. ``result.heatmap``
        says which slice and the probability's range there; ``result.overlay`` is the picture.

        Raises:
            ConfigError: another method, or a volume too large to hold its probabilities
                (above ``inference.max_voxels``; its mask was inferred in slabs).
        """
        from medsight.errors import ConfigError
        from medsight.explain import overlay

        if method != "probability":
            raise ConfigError(f"segmentation models are explained by their probability map (probability); got "
                              f"{method!r}")
        probs = self.probabilities(model, image)
        if probs is None:
            raise ConfigError(f"{image.source or 'this image'} is too large for a probability map (above "
                              f"inference.max_voxels); its mask stands without one")
        fg = (1.0 - probs[0]).clamp(0, 1).numpy()
        labels = np.asarray(result.mask.array)[0]
        if image.n_spatial == 3:
            per_slice = (labels > 0).reshape(labels.shape[0], -1).sum(1)
            shown = int(np.argmax(per_slice)) if per_slice.any() else labels.shape[0] // 2
            heat, inside = fg[shown], labels[shown] > 0
        else:
            heat, inside, shown = fg, labels > 0, None
        result.overlay = overlay(image, heat, slice_index=shown)
        result.overlay_slice = shown
        files = image.meta.get("source_files") or []
        result.overlay_source = (files[shown] if shown is not None and len(files) == image.shape[0] and files[shown]
                                 else None)
        result.heatmap = {"method": "probability", "of": "foreground (1 - P(background))", "slice_index": shown,
                          "max": round(float(heat.max()), 4),
                          "mean_inside_mask": round(float(heat[inside].mean()), 4) if inside.any() else None}
        return result

    def write_output(self, result: SegmentationResult, out_dir: str | Path) -> Path:
        """Write the mask as NIfTI in the input's geometry (``<case>_seg.nii.gz``), plus a DICOM
        SEG (``<case>_seg.dcm``) when the input was DICOM, through the registered writers
        (:class:`~medsight.tasks.writers.OutputFolder`); returns the NIfTI path.

        Raises:
            WriteError: the file cannot be written.
        """
        from medsight.tasks.writers import OutputFolder

        folder = self._folders.setdefault(str(out_dir), OutputFolder(out_dir))
        return folder.write(result)  # type: ignore[return-value]

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model: SavedModel, data: str | DataConfig, *, split: str | None = None,
                 csv_path: str | Path | None = None, tolerance_mm: float | None = None, **_: Any) -> dict[str, Any]:
        """Dice, HD95, surface Dice and volume error of every labelled case (or one split).

        Args:
            model: a segmentation model.
            data: a Decathlon folder, folder pairs, a CSV manifest, or a DataConfig.
            split: ``None``/``"all"`` for every labelled case; ``train``/``val``/``test`` for
                the data's own split (split file or CSV column) or, failing that, the split
                the model recorded when it was trained.
            csv_path: also write one row per case here.
            tolerance_mm: surface Dice tolerance (default: the model's, else 1 mm).

        Returns:
            ``dice`` and ``hd95_mm`` (label name → mean over cases), ``surface_dice``,
            ``volume_error_ml``, ``summary`` (mean, sd, median, min, max per label and metric),
            ``n``, ``cases`` (per-case metrics), ``skipped`` (cases that could not be scored).

        Raises:
            DataError: unreadable data description, labels the model does not know, no case in
                the split, or no case could be scored.
        """
        from medsight.data.segmentation import open_segmentation_data, read_case
        from medsight.metrics.segmentation import case_metrics, summarize

        own_config = isinstance(data, DataConfig)
        cfg = data if own_config else DataConfig(source=str(data))
        model_labels = {int(v): n for v, n in zip(_label_values(model), model.labels)}
        ds = open_segmentation_data(cfg, labels=model_labels, assign_splits=own_config)
        unknown = sorted(set(ds.labels) - set(model_labels))
        if unknown:
            raise DataError(f"{ds.source}: declares label values {unknown} that model {model.name} does not predict "
                            f"(it predicts {model_labels})")
        labelled = [c for c in ds.cases if c.mask is not None]
        if split in (None, "all"):
            cases = labelled
        elif any(c.split for c in ds.cases):
            cases = [c for c in labelled if c.split == split]
        else:
            recorded = (model.spec.training.get("split") or {}).get(split)
            if recorded is None:
                raise DataError(f"{ds.source} has no {split} split and model {model.name} recorded none; use "
                                "--split all")
            wanted = set(recorded)
            cases = [c for c in labelled if c.id in wanted]
        if not cases:
            raise DataError(f"{ds.source}: no labelled case in split {split or 'all'}")
        inf = model.spec.inference
        tol = float(tolerance_mm or (inf.surface_tolerance_mm if inf is not None else 1.0))
        fg = ds.foreground
        names = list(fg.values())
        rows, skipped = [], []
        t_all = time.perf_counter()
        for case in cases:
            try:
                image, mask = read_case(case, ds.labels)
                t0 = time.perf_counter()
                pred = self.segment(model, image)
                seconds = time.perf_counter() - t0
            except MedSightError as exc:
                skipped.append({"input": case.id, "error": str(exc)})
                log.warning("skipped %s: %s", case.id, exc)
                continue
            per_label = case_metrics(pred, mask.array[0], fg, image.spacing, tolerance_mm=tol)
            row: dict[str, Any] = {"case": case.id, "image": case.path(), "label": case.mask_path,
                                   "seconds": round(seconds, 4)}
            for metric in next(iter(per_label.values())):
                row[metric] = {n: per_label[n][metric] for n in names}
            rows.append(row)
        if not rows:
            raise DataError(f"{ds.source}: none of the {len(cases)} case(s) could be scored; first error: "
                            f"{skipped[0]['error'] if skipped else '?'}")
        elapsed = time.perf_counter() - t_all
        summary = summarize(rows, names)
        ev: dict[str, Any] = {
            "task": "segmentation", "model": model.name, "model_version": model.version, "data": ds.source,
            "split": split or "all", "n": len(rows), "label_names": names,
            "labels": {str(v): n for v, n in fg.items()}, "tolerance_mm": tol,
        }
        for metric in ("dice", "hd95_mm", "surface_dice", "volume_error_ml", "abs_volume_error_ml"):
            ev[metric] = {n: summary[n][metric]["mean"] for n in names}
        ev.update({"summary": summary, "cases": rows, "skipped": skipped, "seconds": round(elapsed, 2),
                   "seconds_per_case": round(float(np.mean([r["seconds"] for r in rows])), 4)})
        if csv_path is not None:
            from medsight.report.segmentation import write_case_csv

            write_case_csv(ev, csv_path)
        return ev

    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None,
                       n_examples: int = 3) -> Section:
        """The report's summary, per-case table and overlays of the worst, median and best
        cases (re-segmented with ``model`` when given and the files are readable)."""
        from medsight.data.segmentation import SegCase, read_case
        from medsight.report.segmentation import overlay_png, segmentation_report_section

        overlays = []
        cases = [c for c in evaluation.get("cases", []) if c.get("image") and c.get("label")]
        if model is not None and cases:
            names = evaluation.get("label_names", [])
            score = [np.mean([c["dice"][n] for n in names]) for c in cases]
            order = np.argsort(score)
            picks = [order[0], order[len(order) // 2], order[-1]][:n_examples]
            fg = {int(v): n for v, n in evaluation.get("labels", {}).items()}
            for tag, i in zip(("worst", "median", "best"), dict.fromkeys(int(p) for p in picks)):
                c = cases[i]
                try:
                    image, mask = read_case(SegCase(c["case"], c["image"], c["label"]), {0: "background", **fg})
                    pred = self.segment(model, image)
                except MedSightError as exc:
                    log.warning("no overlay for %s: %s", c["case"], exc)
                    continue
                dice = ", ".join(f"{n} {c['dice'][n]:.3f}" for n in names)
                overlays.append({"case": c["case"], "caption": f"{tag}: {c['case']} (Dice {dice})",
                                 "png": overlay_png(image.array, image.spacing, pred, mask.array[0], fg,
                                                    title=c["case"])})
        return segmentation_report_section(evaluation, model.manifest if model else None, overlays=overlays)

    def card_section(self, manifest: dict[str, Any]) -> Section:
        from medsight.report.segmentation import segmentation_card_section

        return segmentation_card_section(manifest)

    # -- training: hooks of the run skeleton (engine/run.py), in fit.py ------------------------
    def prepare(self, cfg: SegmentationRunConfig, *, run_dir: Path) -> TrainingSetup:
        from medsight.tasks.segmentation.fit import prepare

        return prepare(cfg, run_dir=run_dir)

    def build_network(self, cfg: SegmentationRunConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        from medsight.tasks.segmentation.fit import build_network

        return build_network(cfg, prepared, member)

    def finish(self, cfg: SegmentationRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[Any]) -> Finished:
        from medsight.tasks.segmentation.fit import finish

        return finish(cfg, prepared, networks, results)

    def evaluation_options(self, cfg: SegmentationRunConfig, *, split: str, eval_dir: Path) -> dict[str, Any]:
        return {"csv_path": eval_dir / f"{split}_cases.csv"}

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        from medsight.tasks.segmentation.fit import headline

        return headline(evaluation)

    @property
    def front_door(self) -> type:  # type: ignore[override]
        from medsight.tasks.segmentation.front import Segmenter

        return Segmenter
