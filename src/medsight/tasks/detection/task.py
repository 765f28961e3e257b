"""Lung nodule detection on CT: ``task: detection``.

CT (DICOM series, NIfTI, MetaImage) → checks (:func:`scan.check_ct`) → lung mask and crop →
isotropic network grid → 3D U-Net nodule probability by sliding window → candidates measured in
mm (:mod:`candidates`) → findings inside the lungs with a Lung-RADS size category → a
:class:`DetectionResult` at the model's operating threshold, chosen on the validation scans at
``operating_fp_per_scan``. Evaluation is LUNA16's FROC / CPM (:mod:`medsight.metrics.froc`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsight.config import DataConfig
from medsight.errors import DataError, MedSightError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.tasks.base import EvaluateOption, Task, register_task
from medsight.tasks.detection.config import DetectionRunConfig
from medsight.tasks.detection.result import DetectionResult, NoduleFinding
from medsight.tasks.results import Provenance, array_sha256

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup
    from medsight.models.manifest import DetectionInference
    from medsight.report import Section
    from medsight.tasks.detection.detect import Detected
    from medsight.tasks.detection.scan import PreparedScan

__all__ = ["DetectionTask"]

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"


def _settings(model: SavedModel) -> DetectionInference:
    det = model.spec.detection
    if det is None:
        raise DataError(f"model {model.name} is a detection model without a detection section in its manifest")
    return det


#: A CT in Hounsfield units has air (about -1000 HU) outside the body and in the lungs: a volume
#: whose lowest value is above this is not one (an MR, a PET, a CT stored without its rescale).
AIR_HU = -500.0


def check_hounsfield(model: SavedModel, image: Image) -> None:
    """Refuse a CT, or a volume of unknown modality (NIfTI carries none), that is not in HU
    (nothing below :data:`AIR_HU`), as an MR in NIfTI would be. Skipped for a model that takes
    every modality (``--accept-modality any``) and for an image of another modality the model
    was made to take (``--accept-modality NM``, :meth:`SavedModel.accepting`).

    Raises:
        ModalityError: naming the lowest value found.
    """
    from medsight.errors import ModalityError

    allowed = {m.upper() for m in (model.spec.modalities or [])}
    declared = (image.modality or "OT").upper()
    if "CT" not in allowed or declared not in ("CT", "OT", ""):  # any modality, or one accepted on purpose
        return
    lowest = float(np.min(image.array))
    if lowest > AIR_HU:
        raise ModalityError(f"model {model.name} takes CT in Hounsfield units; this volume has no air (lowest value "
                            f"{lowest:g}, air is -1000 HU): an MR, another modality or a CT without its rescale? "
                            "(medsight predict --accept-modality any runs it anyway)", path=image.source)


def _nodules(per_scan: dict[str, list[Sequence[float]]]) -> list[Any]:
    from medsight.metrics.luna16_csv import Nodule

    return [Nodule(u, tuple(n[:3]), float(n[3])) for u, ns in per_scan.items() for n in ns]  # type: ignore[arg-type]


def _analyses(nodules: list[Any], findings: list[Any], scans: list[str], excluded: list[Any], *,
              min_diameter_mm: float | None, threshold: float | None, n_boot: int, seed: int) -> dict[str, Any]:
    """The two FROC analyses of an evaluation: every nodule, and nodules >= ``min_diameter_mm``
    (default 6); an analysis with no nodule to find holds its ``error`` instead."""
    from medsight.metrics.froc import froc

    mind = 6.0 if min_diameter_mm is None else float(min_diameter_mm)
    out: dict[str, Any] = {}
    for name, size in (("all nodules", None), (f"nodules >= {mind:g} mm", mind)):
        try:
            out[name] = froc(nodules, findings, scans=scans, excluded=excluded, min_diameter_mm=size,
                             threshold=threshold, n_boot=n_boot, seed=seed).to_dict()
        except DataError as exc:
            out[name] = {"error": str(exc)}
    return out


def _write_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    import csv

    from medsight.errors import WriteError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["seriesuid"], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    except OSError as exc:
        raise WriteError(f"could not write the per-scan CSV: {exc}", path=path) from exc
    return path


@register_task
class DetectionTask(Task):
    """Lung nodules in chest CT."""

    name = "detection"
    config_type = DetectionRunConfig
    result_type = DetectionResult
    default_split: str | None = "test"

    # -- one scan -----------------------------------------------------------------------------
    def prepare_image(self, model: SavedModel, image: Image) -> PreparedScan:
        from medsight.errors import ModalityError
        from medsight.tasks.detection.scan import check_ct, prepare_scan

        try:
            check_ct(image, model=f"model {model.name}", modalities=model.spec.modalities)
        except ModalityError as exc:  # say how to force it
            raise ModalityError(f"{exc.args[0]} (medsight predict --accept-modality {image.modality} runs it anyway)",
                                path=exc.path) from None
        check_hounsfield(model, image)
        return prepare_scan(image, model.preprocessor, lung_margin_mm=_settings(model).lung_margin_mm)

    def detect(self, model: SavedModel, image: Image) -> tuple[list[Detected], PreparedScan, float]:
        """Every candidate of ``image`` (no threshold), its prepared scan and the seconds taken."""
        from medsight.tasks.detection.detect import detect

        t0 = time.perf_counter()
        scan = self.prepare_image(model, image)
        found, _ = detect(model.run, scan, _settings(model))
        return found, scan, time.perf_counter() - t0

    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        from medsight.tasks.detection.pictures import nodule_crop, overlay, slice_index

        threshold = float(model.spec.threshold)
        out = []
        for name, image in zip(self.input_names(images, inputs), images):
            found, scan, seconds = self.detect(model, image)
            kept = [d for d in found if d.score >= threshold]
            nodules = [NoduleFinding(lesion_id=str(i + 1), center_mm=d.center_mm, center_voxel=d.center_voxel,
                                     diameter_mm=d.diameter_mm, volume_ml=d.volume_ml, score=d.score, type=d.type,
                                     solid_diameter_mm=d.solid_diameter_mm, category=d.category, size_mm=d.size_mm,
                                     inside_lungs=d.inside_lungs, crop=nodule_crop(image, d))
                       for i, d in enumerate(kept)]
            spec = model.spec
            prov = Provenance(model=model.name, model_version=model.version, weights_sha256=spec.weights_sha256,
                              input_sha256=array_sha256(image.array), seconds=round(seconds, 3),
                              medsight_version=spec.versions.get("medsight"), series_uid=image.series_uid,
                              sop_uids=list(image.sop_uids))
            lungs = {"found": bool(scan.lungs.found), "volumes_ml": scan.lungs.volumes_ml, "reason": scan.lungs.reason}
            z = slice_index(image, kept[0].center_voxel) if kept else None
            files = image.meta.get("source_files") or []
            source = files[z] if z is not None and len(files) == image.shape[0] and files[z] else None
            if not scan.lungs.found:
                warnings = [f"no lungs found ({scan.lungs.reason}): the whole volume was searched"]
            else:
                warnings = []
            out.append(DetectionResult(input=name, nodules=nodules, threshold=threshold, n_candidates=len(found),
                                       lungs=lungs, provenance=prov, overlay=overlay(image, kept), overlay_slice=z,
                                       overlay_source=source,
                                       warnings=[str(w) for w in image.meta.get("warnings") or []] + warnings))
        return out

    # -- evaluation ---------------------------------------------------------------------------
    evaluate_options = (
        EvaluateOption("annotations", Path, "LUNA16 annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm); "
                                            "default: the data folder's"),
        EvaluateOption("excluded", Path, "annotations_excluded.csv: lesions that count neither way; default: beside "
                                         "the annotations"),
        EvaluateOption("seriesuids", Path, "seriesuids.csv: the scans scored; default: beside the annotations (scans "
                                           "not on disk are left out and counted)"),
        EvaluateOption("min_diameter_mm", float, "the size filter of the second analysis (default 6)"),
        EvaluateOption("threshold", float, "the operating threshold (default: the model's; without a model: none)"),
        EvaluateOption("n_boot", int, "bootstrap resamples of the scans for the CIs (default 1000)"),
        EvaluateOption("seed", int, "the bootstrap's seed (default 0)"),
        EvaluateOption("findings_csv", Path, "write the findings scored here (LUNA16 columns)", without_model=False),
        EvaluateOption("findings", Path, "score this findings CSV (seriesuid,coordX,coordY,coordZ[,diameter_mm],"
                                         "probability) instead of running a model", without_model=True),
    )
    scores_outputs = True

    def explain_methods(self, model: SavedModel) -> tuple[str, ...]:
        return ("findings",)

    def explain(self, model: SavedModel, image: Image, result: Any, *, method: str = "findings") -> Any:
        """A detector's explanation is its findings drawn on the scan: the axial slice through the
        top finding with every finding on it circled (``result.overlay``, made with the result);
        ``result.heatmap`` says so and names the slice."""
        from medsight.errors import ConfigError

        if method != "findings":
            raise ConfigError(f"detection models are explained by their findings (findings); got {method!r}")
        result.heatmap = {"method": "findings", "slice_index": result.overlay_slice,
                          "findings": len(result.nodules)}
        return result

    def evaluate(self, model: SavedModel, data: str | DataConfig, *, split: str | None = "test",
                 n_boot: int = 1000, seed: int = 0, threshold: float | None = None,
                 findings_csv: str | Path | None = None, min_diameter_mm: float | None = None,
                 annotations: str | Path | None = None, excluded: str | Path | None = None,
                 seriesuids: str | Path | None = None, csv_path: str | Path | None = None,
                 findings: str | Path | None = None, **_: Any) -> dict[str, Any]:
        """LUNA16 FROC of ``model`` on the scans of ``split`` (None/``all``: every scan).

        ``data`` is the scans' folder (or the run's data config); ``annotations``, ``excluded``
        and ``seriesuids`` are LUNA16's files when not in it (:mod:`.data`). Listed scans that are
        not on disk are left out and counted (``not_on_disk``); scans that cannot be read are
        skipped and listed (``skipped``). A data set none of whose scans the model's training
        split names is scored whole (``split`` becomes ``all``).

        Returns two analyses, ``all nodules`` and ``nodules >= 6 mm`` (``min_diameter_mm``), each
        :meth:`FROCResult.to_dict` (sensitivity at 1/8..8 FPs per scan, CPM, bootstrap CIs over
        scans, the operating point at ``threshold``, default the model's), the headline numbers,
        per-scan findings and timing, and the scans that could not be read. ``findings_csv``
        gets every finding scored (LUNA16 columns), ``csv_path`` one row per scan.

        Raises:
            DataError: unreadable data, no scan in the split, or none could be scored.
            ConfigError: ``findings`` given with a model (score a findings file without one).
        """
        from medsight.data.splits import assign_splits
        from medsight.errors import ConfigError
        from medsight.metrics.froc import size_agreement
        from medsight.metrics.luna16_csv import Finding as FrocFinding
        from medsight.metrics.luna16_csv import write_findings
        from medsight.tasks.detection.data import open_config_data

        if findings is not None:
            raise ConfigError("--findings scores a findings file without a model; drop --model (or drop --findings "
                              "to run the model)")
        own = isinstance(data, DataConfig)
        cfg = data if own else DataConfig(source=str(data))
        ds = open_config_data(cfg, annotations=annotations, excluded=excluded, seriesuids=seriesuids)
        if split not in (None, "all"):
            recorded = model.spec.training.get("split") or {}
            known = {u for ids in recorded.values() for u in ids}
            if own or not recorded:
                assign_splits(ds.cases, split_file=cfg.split_file, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, seed=cfg.split_seed, source=ds.source)
            elif not any(c.id in known for c in ds.cases):  # not the data the model was trained on: all of it
                log.info("%s: no scan of the model's training data; evaluating every scan", ds.source)
                split = None
            else:
                wanted = set(recorded.get(split) or [])
                for c in ds.cases:
                    c.split = split if c.id in wanted else None
        cases = ds.split(split)
        if not cases:
            raise DataError(f"{ds.source}: no scan in split {split or 'all'}")
        threshold = float(model.spec.threshold if threshold is None else threshold)
        detections, truth, excluded_, rows, skipped = {}, {}, {}, [], []
        for case in cases:
            try:
                found, _, seconds = self.detect(model, case.image())
            except MedSightError as exc:
                skipped.append({"input": case.id, "error": str(exc)})
                log.warning("skipped %s: %s", case.id, exc)
                continue
            detections[case.id] = found
            truth[case.id], excluded_[case.id] = case.covariates["nodules"], case.covariates["excluded"]
            rows.append({"seriesuid": case.id, "image": case.path(), "seconds": round(seconds, 3),
                         "n_candidates": len(found), "n_findings": sum(d.score >= threshold for d in found),
                         "n_nodules": len(truth[case.id])})
        if not detections:
            raise DataError(f"{ds.source}: none of the {len(cases)} scan(s) could be read; first error: "
                            f"{skipped[0]['error'] if skipped else '?'}")
        marks = [FrocFinding(u, tuple(d.center_mm), float(d.score), float(d.diameter_mm))
                 for u, ds_ in detections.items() for d in ds_]
        nodules, ignored = _nodules(truth), _nodules(excluded_)
        analyses = _analyses(nodules, marks, list(detections), ignored, min_diameter_mm=min_diameter_mm,
                             threshold=threshold, n_boot=n_boot, seed=seed)
        if findings_csv is not None:
            write_findings(findings_csv, marks)
        if csv_path is not None:
            _write_rows(csv_path, rows)
        ev: dict[str, Any] = {"task": self.name, "model": model.name, "model_version": model.version,
                              "data": ds.source, "split": split or "all", "n": len(rows), "threshold": threshold,
                              "analyses": analyses, "size": size_agreement(nodules, marks, threshold=threshold),
                              "scans": rows, "skipped": skipped,
                              "not_on_disk": len(ds.not_on_disk), "dataset": ds.summary(),
                              "seconds_per_scan": round(float(np.mean([r["seconds"] for r in rows])), 3)}
        ev.update(self.headline(ev))
        return ev

    def evaluate_outputs(self, *, data: str | None = None, findings: str | Path | None = None,
                         annotations: str | Path | None = None, excluded: str | Path | None = None,
                         seriesuids: str | Path | None = None, min_diameter_mm: float | None = None,
                         threshold: float | None = None, n_boot: int = 1000, seed: int = 0,
                         csv_path: str | Path | None = None, **_: Any) -> dict[str, Any]:
        """LUNA16 FROC of a findings CSV (``seriesuid,coordX,coordY,coordZ[,diameter_mm],probability``;
        rows without coordinates, as ``medsight predict --csv`` writes for a scan without a
        finding, are skipped), with no model: the same analyses as :meth:`evaluate`.

        The scans scored: with ``data`` (the scans' folder), the scans on disk there; else the
        ``seriesuids`` list; else every scan that is annotated or named in the findings file
        (with or without a finding). ``threshold`` adds
        the operating point; ``csv_path`` gets one row per scan.

        Raises:
            ConfigError: no ``findings`` or no annotations.
            DataError: a bad CSV, or no nodule to find on the scans scored.
        """
        from medsight.errors import ConfigError
        from medsight.metrics.froc import size_agreement
        from medsight.metrics.luna16_csv import (
            read_annotations,
            read_excluded,
            read_findings,
            read_findings_scans,
            read_seriesuids,
        )
        from medsight.tasks.detection.data import open_detection_data

        if findings is None:
            raise ConfigError("scoring without a model needs --findings FILE (seriesuid,coordX,coordY,coordZ,"
                              "probability) and --annotations FILE (or --data FOLDER holding annotations.csv)")
        if data is None and annotations is None:
            raise ConfigError("scoring a findings file needs the reference: --annotations FILE (LUNA16 "
                              "annotations.csv), or --data FOLDER holding it")
        marks = read_findings(findings)
        dataset = None
        if data is not None:
            ds = open_detection_data(data, annotations=annotations, excluded=excluded, seriesuids=seriesuids)
            scans, nodules, ignored = [c.id for c in ds.cases], ds.annotations, ds.excluded
            source, dataset = ds.source, ds.summary()
        else:
            nodules = read_annotations(annotations)
            ignored = read_excluded(excluded) if excluded is not None else []
            scans = read_seriesuids(seriesuids) if seriesuids is not None else list(dict.fromkeys(
                [n.seriesuid for n in nodules] + read_findings_scans(findings)))
            source = str(annotations)
        analyses = _analyses(nodules, marks, scans, ignored, min_diameter_mm=min_diameter_mm, threshold=threshold,
                             n_boot=n_boot, seed=seed)
        per_scan: dict[str, dict[str, Any]] = {u: {"seriesuid": u, "n_findings": 0, "n_nodules": 0} for u in scans}
        for f in marks:
            if f.seriesuid in per_scan:
                per_scan[f.seriesuid]["n_findings"] += 1
        for n in nodules:
            if n.seriesuid in per_scan:
                per_scan[n.seriesuid]["n_nodules"] += 1
        rows = list(per_scan.values())
        if csv_path is not None:
            _write_rows(csv_path, rows)
        ev: dict[str, Any] = {"task": self.name, "model": None, "model_version": None, "findings": str(findings),
                              "data": source, "split": "all", "n": len(scans), "threshold": threshold,
                              "analyses": analyses, "size": size_agreement(nodules, marks, threshold=threshold),
                              "scans": rows, "skipped": [],
                              "n_findings_read": len(marks), "dataset": dataset}
        ev.update(self.headline(ev))
        return ev

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"n": evaluation.get("n")}
        for key, name in (("", "all nodules"), ("_6mm", next((k for k in evaluation.get("analyses", {})
                                                               if k != "all nodules"), None))):
            r = evaluation.get("analyses", {}).get(name) if name else None
            if not r or "cpm" not in r:
                continue
            out[f"cpm{key}"] = r["cpm"]
            if r.get("ci"):
                out[f"cpm{key}_ci95"] = r["ci"]["cpm"]
            curve = r.get("curve") or {}
            if curve:
                out[f"sensitivity_at_1fp{key}"] = round(float(np.interp(1.0, curve["fps"], curve["sensitivity"])), 4)
            if r.get("operating_point"):
                op = r["operating_point"]
                out[f"operating_sensitivity{key}"] = op.get("sensitivity")
                out[f"operating_fps_per_scan{key}"] = op.get("fps_per_scan")
        size = evaluation.get("size") or {}
        if size.get("n_matched"):
            out["diameter_median_error"] = size["median"]
            out["diameter_within_30pct"] = size["within"]
        return out

    def evaluation_options(self, cfg: DetectionRunConfig, *, split: str, eval_dir: Path) -> dict[str, Any]:
        return {"seed": cfg.train.seed, "findings_csv": eval_dir / f"{split}_findings.csv"}

    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None) -> Section:
        from medsight.report.detection import detection_report_section

        analyses = evaluation.get("analyses", {})
        results = {k: v for k, v in analyses.items() if "cpm" in v}
        prov = {"weights sha256": model.spec.weights_sha256} if model is not None else {}
        if evaluation.get("findings"):
            prov["findings"] = evaluation["findings"]
        notes = [f"{k}: not scored ({v['error']})" for k, v in analyses.items() if "error" in v]
        dataset = evaluation.get("dataset") or {}
        prov.update({k: v for k, v in (dataset.get("files") or {}).items() if v})
        if dataset.get("not_on_disk"):
            notes.append(f"{dataset['not_on_disk']} scan(s) listed or annotated are not on disk and were left out "
                         f"({dataset.get('n_scans')} on disk).")
        if dataset.get("unlisted"):
            notes.append(f"{dataset['unlisted']} scan(s) on disk are not in the series list and were left out.")
        if evaluation.get("threshold") is None:
            notes.append("No operating threshold given: no operating point.")
        size = evaluation.get("size") or {}
        if size.get("n_matched"):
            notes.append(f"Diameter of the {size['n_matched']} nodules found at the operating threshold against the "
                         f"annotation: median error {100 * size['median']:+.0f} % (10th-90th percentile "
                         f"{100 * size['p10']:+.0f} to {100 * size['p90']:+.0f} %), {100 * size['within']:.0f} % "
                         f"within {100 * size['tolerance']:.0f} %.")
        return detection_report_section(results, model=evaluation.get("model"),
                                        version=evaluation.get("model_version"), data=evaluation.get("data"),
                                        provenance=prov, notes=notes, skipped=evaluation.get("skipped") or [])

    def card_section(self, manifest: dict[str, Any]) -> Section:
        from medsight.models.manifest import DetectionInference
        from medsight.report import Section

        m = dict(manifest)
        if isinstance(m.get("detection"), dict):  # the defaults a manifest leaves unwritten, for the card
            m["detection"] = DetectionInference.model_validate(m["detection"]).model_dump(mode="json")
        return Section("detection_card.md.j2", folder=TEMPLATES, context={"m": m, **_card_statements(m)})

    # -- training: hooks of the run skeleton (engine/run.py) -----------------------------------
    def prepare(self, cfg: DetectionRunConfig, *, run_dir: Path) -> TrainingSetup:
        from medsight.tasks.detection.fit import prepare

        return prepare(self, cfg, run_dir=run_dir)

    def build_network(self, cfg: DetectionRunConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        from medsight.models.registry import create_model

        return create_model(cfg.model.name, spatial_dims=3, in_channels=1, num_classes=2, **cfg.model.params)

    def finish(self, cfg: DetectionRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[Any]) -> Finished:
        from medsight.tasks.detection.fit import finish

        return finish(self, cfg, prepared, networks, results)


def _card_statements(m: dict[str, Any]) -> dict[str, list[str]]:
    """The detection card's training fingerprint, calibration and refer statements."""
    t, d = m.get("training") or {}, m.get("detection") or {}
    scans = t.get("scans") or {}
    from medsight.report import modality_fingerprint, modality_refusal

    fingerprint = [modality_fingerprint(m.get("modalities")),
                   f"Training data: {t.get('data')}: {scans.get('n_scans')} scans, {scans.get('n_nodules')} nodules"
                   f" (nodules per split {t.get('n_nodules')})",
                   f"Network input: the lung crop resampled to {m.get('preprocessing', {}).get('target_spacing')} mm, "
                   f"HU clipped to {d.get('hu_window')} and scaled to [0, 1]"]
    calibration = ["None: a finding's score is the network's nodule probability at its peak, not a calibrated "
                   "probability that it is a nodule; the operating threshold is set by false positives per scan "
                   f"on validation scans ({m.get('threshold_rule')})"]
    refer = ["None: every CT accepted is searched; a scan whose lungs are not found gives an error, not findings",
             *modality_refusal(m.get("modalities"), dicom="series", files="NIfTI or MetaImage")]
    return {"card_fingerprint": fingerprint, "card_calibration": calibration, "card_refer": refer}
