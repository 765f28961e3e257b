"""Classification: binary, multi-class and multi-label diagnosis from one image.

Loss: cross-entropy (softmax) with optional balanced class weights and label smoothing, or
binary cross-entropy with positive weights for multi-label. The operating threshold of a
binary model is chosen on the validation split only and stored in the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsight.config import ClassificationRunConfig, Config, DataConfig
from medsight.errors import DataError, MedSightError
from medsight.io.image import Image
from medsight.models.backend import TorchBackend
from medsight.models.saved import SavedModel
from medsight.tasks.base import EvaluateOption, Task, register_task
from medsight.tasks.results import ClassificationResult, Provenance, array_sha256

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup
    from medsight.report import Section
    from medsight.transforms.preprocess import Preprocessor

__all__ = ["ClassificationTask", "positive_index"]

log = logging.getLogger(__name__)


def positive_index(labels: list[str], positive: str | None) -> int | None:
    """Index of the positive class of a binary problem (default: the second label)."""
    if len(labels) != 2:
        return None
    if positive is None:
        return 1
    if positive not in labels:
        raise DataError(f"positive_label {positive!r} is not one of the labels {labels}")
    return labels.index(positive)


def _probabilities(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multilabel: bool,
                   batch: int = 256, tta: bool = False, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of the logits divided by ``temperature`` (the model's calibration);
    with ``tta``, averaged over the image and its left-right mirror.

    Args:
        run: ``SavedModel.run`` at inference, or a bare network (put in eval mode here) during
            training validation.
    """
    if isinstance(run, torch.nn.Module):
        run.eval()
    out = []

    def probs(xb: torch.Tensor) -> torch.Tensor:
        logits = run(xb) / temperature if temperature != 1.0 else run(xb)
        return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)

    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            out.append((probs(xb) + probs(xb.flip(-1))) / 2 if tta else probs(xb))
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, 0))


def _views(model: SavedModel, x: torch.Tensor, batch: int = 256) -> tuple[list[np.ndarray], str]:
    """The predictions a model's probabilities average, each ``(N, K)``: one per ensemble member
    (each at the model's temperature) and per test-time flip; with the name of what they are.
    A single network without TTA has one view (``softmax``)."""
    m = model.spec
    members = list(getattr(model.network, "members", None) or [])
    runs = members if len(members) > 1 else [model.run]
    views = []
    for run in runs:
        if m.tta:
            for flip in (False, True):
                def one(xb: torch.Tensor, run: Any = run, flip: bool = flip) -> torch.Tensor:
                    return run(xb.flip(-1) if flip else xb)
                views.append(_probabilities(one, x, m.multilabel, batch=batch, temperature=m.temperature))
        else:
            views.append(_probabilities(run, x, m.multilabel, batch=batch, temperature=m.temperature))
    name = "+".join(n for n, on in ((f"ensemble of {len(runs)}", len(runs) > 1), ("tta", m.tta)) if on) or "softmax"
    return views, name


def _entropy(p: np.ndarray, multilabel: bool) -> np.ndarray:
    """Entropy in nats of each row of probabilities (multi-label: the sum over labels of the
    Bernoulli entropies)."""
    q = np.clip(p, 1e-12, 1.0)
    if multilabel:
        r = np.clip(1 - p, 1e-12, 1.0)
        return -(p * np.log(q) + (1 - p) * np.log(r)).sum(axis=1)
    return -(p * np.log(q)).sum(axis=1)


def uncertainty(model: SavedModel, x: torch.Tensor, probs: np.ndarray) -> list[dict[str, Any]]:
    """Predictive uncertainty of each input: the entropy of ``probs`` (the model's averaged
    probabilities), normalised by its largest value, and with several views (ensemble members,
    TTA flips) the mutual information (entropy of the views' mean minus their mean entropy: the
    part of the uncertainty that is their disagreement)."""
    m = model.spec
    k = probs.shape[1]
    top = k * np.log(2) if m.multilabel else np.log(max(k, 2))
    h = _entropy(probs, m.multilabel)
    views, method = _views(model, x) if (m.tta or len(getattr(model.network, "members", None) or []) > 1) \
        else ([], "softmax")
    mi = (_entropy(np.mean(views, axis=0), m.multilabel) - np.mean([_entropy(v, m.multilabel) for v in views], axis=0)
          if len(views) > 1 else None)
    out = []
    for i in range(len(h)):
        u = {"entropy": round(float(h[i]), 6), "entropy_normalised": round(float(h[i] / top), 6), "method": method}
        if mi is not None:
            u["mutual_information"] = round(float(max(mi[i], 0.0)), 6)
        out.append(u)
    return out


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """``fn`` over ``x`` in batches (no autograd), concatenated as float64 NumPy."""
    with torch.inference_mode():
        return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy().astype(np.float64)


def operating_points(y: np.ndarray, p: np.ndarray, *, multilabel: bool, pos: int | None, rule: str,
                     n_labels: int) -> dict[str, Any]:
    """The manifest's ``threshold`` (binary: on P(positive)) or ``thresholds`` (multi-label, 0.5 for
    a label the split holds only one value of), chosen on ``y``/``p`` by ``rule``; nothing for
    a multi-class model (its decision is the most probable class)."""
    from medsight.metrics import choose_threshold

    if pos is not None:
        return {"threshold": choose_threshold((y == pos).astype(int), p[:, pos], rule)}
    if multilabel:
        return {"thresholds": [choose_threshold(y[:, j], p[:, j], rule) if 0 < y[:, j].sum() < len(y) else 0.5
                               for j in range(n_labels)]}
    return {}


def fit_calibration(run: Any, x: torch.Tensor, y: np.ndarray, multilabel: bool, pos: int | None, *,
                    tta: bool = False) -> dict[str, Any]:
    """Temperature scaling fitted on ``x``/``y`` (the validation split): ``{"temperature": T,
    "calibration": {...}}`` for the manifest, with the split's ECE and NLL before and after."""
    from medsight.metrics.calibration import fit_temperature, nll
    from medsight.metrics.classification import calibration

    if isinstance(run, torch.nn.Module):
        run.eval()
    logits = _batched(run, x)
    target = y if multilabel else np.asarray(y).astype(int)
    t = fit_temperature(logits, target, multilabel=multilabel)
    info: dict[str, Any] = {"method": "temperature scaling", "fitted_on": "validation split", "n": len(y),
                            "nll_before": round(nll(logits, target, multilabel=multilabel), 4),
                            "nll_after": round(nll(logits, target, t, multilabel=multilabel), 4)}
    if pos is not None:
        before = _probabilities(run, x, multilabel, tta=tta)[:, pos]
        after = _probabilities(run, x, multilabel, tta=tta, temperature=t)[:, pos]
        yb = (np.asarray(y) == pos).astype(int)
        info.update({"ece_before": calibration(yb, before)["ece"], "ece_after": calibration(yb, after)["ece"]})
    return {"temperature": t, "calibration": info}


def _distances(model: SavedModel, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Each input's Mahalanobis distance from the model's training fingerprint (``manifest.ood``)."""
    from medsight.metrics.ood import distances

    return distances(_batched(model.features, x, batch), model.spec.ood)


def fit_ood(run_features: Any, x_train: torch.Tensor, x_val: torch.Tensor, *, quantile: float = 0.99) -> dict:
    """The training fingerprint (penultimate features of ``x_train``; threshold from ``x_val``)."""
    from medsight.metrics.ood import fit_fingerprint

    fp = fit_fingerprint(_batched(run_features, x_train), _batched(run_features, x_val), quantile=quantile)
    fp["layer"] = "input of the last linear layer"
    fp["intensity"] = {"mean": round(float(x_train.mean()), 4), "std": round(float(x_train.std()), 4)}
    return fp


#: A validation split smaller than this gives no drift reference (its deciles would be noise).
MIN_DRIFT_REFERENCE = 20


def fit_drift(run_features: Any, x_val: torch.Tensor, p_val: np.ndarray, manifest: dict[str, Any]) -> dict | None:
    """The drift reference (:mod:`medsight.metrics.drift`) of the validation split: its
    distances from the fingerprint (``manifest.ood``), its scores (P(positive), or the top
    probability) and its refer and positive rates at the manifest's thresholds; None for a
    split of fewer than :data:`MIN_DRIFT_REFERENCE` images."""
    from medsight.metrics.drift import reference
    from medsight.metrics.ood import distances

    if len(p_val) < MIN_DRIFT_REFERENCE:
        log.info("no drift reference: the validation split has %d images (fewer than %d)", len(p_val),
                 MIN_DRIFT_REFERENCE)
        return None
    ood, pos = manifest.get("ood"), manifest.get("positive_index")
    dist = distances(_batched(run_features, x_val), ood) if ood else None
    score = p_val[:, pos] if pos is not None else p_val.max(axis=1)
    return reference(distance=dist, score=score, threshold=manifest.get("threshold") if pos is not None else None,
                     refer_threshold=float(ood["threshold"]) if ood else None)


#: The evaluation examples shown with their heatmaps: (outcome, which cases, most telling first).
_EXAMPLES = (("true positive", lambda y, called: (y == 1) & called, -1),
             ("false positive", lambda y, called: (y == 0) & called, -1),
             ("false negative", lambda y, called: (y == 1) & ~called, 1))


def _examples(model: SavedModel, cases: Sequence[Any], y: np.ndarray, score: np.ndarray, threshold: float,
              k: int) -> dict[str, Any]:
    """Up to ``k`` cases of each outcome with their Grad-CAM overlay as base64 PNG: the most
    confident true and false positives (highest score) and false negatives (lowest score)."""
    import base64
    import io

    from PIL import Image as PILImage

    from medsight.explain import heatmap, overlay

    called = score >= threshold
    out: list[dict[str, Any]] = []
    for outcome, which, order in _EXAMPLES:
        idx = np.flatnonzero(which(y, called))
        for i in idx[np.argsort(order * score[idx], kind="stable")][:k]:
            entry: dict[str, Any] = {"outcome": outcome, "input": cases[i].id, "score": round(float(score[i]), 6)}
            try:
                image = cases[i].image()
                h = heatmap(model, image, method="gradcam")
                buf = io.BytesIO()
                PILImage.fromarray(overlay(image, h.values)).save(buf, format="PNG")
                entry.update(method=h.method, overlay_png=base64.b64encode(buf.getvalue()).decode())
            except MedSightError as exc:  # shown without a picture, with the reason
                entry["error"] = str(exc)
            out.append(entry)
    note = (f"Up to {k} of each outcome at the operating threshold {threshold:.4g}: the highest-scoring true and "
            f"false positives and the lowest-scoring false negatives. The heatmap is where the model looked for "
            f"P({model.labels[model.spec.positive_index or 0]}); the middle slice of a volume is shown.")
    return {"examples": out, "examples_note": note}


def _sample(pre: Any, x: np.ndarray, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """Up to ``n`` of the prepared training images, normalised as the network takes them."""
    idx = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False)) if len(x) > n else np.arange(len(x))
    return pre.normalize(torch.from_numpy(np.ascontiguousarray(x[idx])))


def _preprocessor(model: SavedModel) -> Preprocessor:
    from medsight.transforms.preprocess import Preprocessor

    pre = model.preprocessor
    if not isinstance(pre, Preprocessor):
        raise DataError(f"model {model.name}: a classification model needs preprocessing with a spatial_size, "
                        f"not {type(pre).__name__}")
    return pre


@register_task
class ClassificationTask(Task):
    name = "classification"
    config_type = ClassificationRunConfig
    result_type = ClassificationResult

    # -- inference ----------------------------------------------------------------------------
    def _inputs(self, model: SavedModel, images: Sequence[Image]) -> torch.Tensor:
        pre = _preprocessor(model)
        for im in images:
            self.validate_input(model, im)
        return torch.stack([pre(im) for im in images])

    def probabilities(self, model: SavedModel, images: Sequence[Image]) -> np.ndarray:
        """Class probabilities, shape (N, n_classes)."""
        return _probabilities(model.run, self._inputs(model, images), model.spec.multilabel, tta=model.spec.tta,
                              temperature=model.spec.temperature)

    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        t0 = time.perf_counter()
        x = self._inputs(model, images)
        probs = _probabilities(model.run, x, model.spec.multilabel, tta=model.spec.tta,
                               temperature=model.spec.temperature)
        dist = _distances(model, x) if model.spec.ood else [None] * len(images)
        unc = uncertainty(model, x, probs)
        seconds = (time.perf_counter() - t0) / max(len(images), 1)
        names = self.input_names(images, inputs)
        return [self.decide(model, p, name, im, seconds, distance=d, uncertainty=u)
                for p, name, im, d, u in zip(probs, names, images, dist, unc)]

    def decide(self, model: SavedModel, p: np.ndarray, name: str, image: Image | None = None,
               seconds: float | None = None, distance: float | None = None,
               uncertainty: dict[str, Any] | None = None) -> ClassificationResult:
        """Turn one probability vector into a result at the model's threshold(s) and refer it when
        a rule says so, each with its reason: the input's ``distance`` from the training data
        beyond the stored threshold (a model with ``manifest.ood``); its predictive entropy above
        the stored one (a model with ``manifest.uncertainty``); a DICOM modality the model was not
        trained on (possible only when the call accepted it: ``--accept-modality``)."""
        m = model.spec
        labels = model.labels
        probs = {lab: round(float(v), 6) for lab, v in zip(labels, p)}
        score = threshold = positive = None
        if m.multilabel:
            ths = m.thresholds or [0.5] * len(labels)
            label = "|".join(lab for lab, v, t in zip(labels, p, ths) if v >= t) or "none"
        elif m.positive_index is not None:
            pos = m.positive_index
            score, threshold = float(p[pos]), float(m.threshold)
            positive = score >= threshold
            label = labels[pos] if positive else labels[1 - pos]
        else:
            label = labels[int(np.argmax(p))]
        prov = Provenance(model=model.name, model_version=model.version, weights_sha256=m.weights_sha256,
                          input_sha256=array_sha256(image.array) if image is not None else None, seconds=seconds,
                          medsight_version=m.versions.get("medsight"),
                          series_uid=image.series_uid if image is not None else None,
                          sop_uids=list(image.sop_uids) if image is not None else [])
        checks: list[tuple[bool, str]] = []  # (refer?, why): each rule the model has
        if m.ood and distance is not None:
            limit = float(m.ood["threshold"])
            far = bool(distance > limit)
            checks.append((far, f"input unlike training data: its distance from the training images' features is "
                                f"{distance:.1f}, beyond {limit:.1f} (what {m.ood['quantile']:.0%} of validation "
                                f"images stay under)" if far else
                                f"distance from the training data {distance:.1f} (refer above {limit:.1f})"))
        rule = model.manifest.get("uncertainty")
        if rule and uncertainty is not None:
            h, limit = float(uncertainty["entropy"]), float(rule["refer_above"])
            checks.append((h > limit, f"uncertain: predictive entropy {h:.3f} above {limit:.3f} (what "
                                      f"{rule['quantile']:.0%} of validation images stay under)" if h > limit else
                                      f"predictive entropy {h:.3f} (refer above {limit:.3f})"))
        trained = model.manifest.get("modalities_trained", m.modalities)
        modality = image.modality if image is not None else None
        if trained and modality not in (None, "", "OT") and modality not in trained:
            checks.append((True, f"modality not in training data: {modality} (trained on {', '.join(trained)})"))
        refer = reasons = None
        if checks:
            refer = any(r for r, _ in checks)
            reasons = [why for r, why in checks if r] if refer else [why for _, why in checks]
            if refer:
                label, positive = "refer", None
        return ClassificationResult(input=name, probabilities=probs, label=label,
                                    score=None if score is None else round(score, 6),
                                    threshold=threshold, positive=positive, provenance=prov, refer=refer,
                                    reasons=reasons, distance=None if distance is None else round(float(distance), 4),
                                    uncertainty=uncertainty)

    # -- evaluation ---------------------------------------------------------------------------
    evaluate_options = (
        EvaluateOption("examples", int, "true positives, false positives and false negatives shown each with their "
                                        "heatmap in the report (default 3; 0: none)", without_model=False),
        EvaluateOption("n_boot", int, "bootstrap resamples for the AUC intervals (default 2000)", without_model=False),
        EvaluateOption("seed", int, "the bootstrap's seed (default 0)", without_model=False),
    )

    def evaluate(self, model: SavedModel, data: str | DataConfig, *, split: str | None = "test",
                 n_boot: int = 2000, seed: int = 0, examples: int = 3, **_: Any) -> dict[str, Any]:
        """Metrics of ``model`` on ``split`` of ``data`` (see :func:`medsight.metrics.binary_report`).

        A binary model's evaluation also holds its PR curve, the threshold table, subgroup tables
        for the cases' metadata columns (``subgroups``; see :func:`medsight.metrics.subgroups`)
        and up to ``examples`` true positives, false positives and false negatives each with
        their heatmap (``examples``; 0: none).
        """
        from medsight.data.classification import open_classification_data
        from medsight.data.datasets import prepare_samples
        from medsight.metrics import binary_report, multiclass_report, multilabel_report
        from medsight.metrics.classification import subgroup_report, subgroups, threshold_table

        cfg = data if isinstance(data, DataConfig) else DataConfig(source=str(data), labels=model.labels)
        if cfg.labels is None:
            cfg = cfg.model_copy(update={"labels": model.labels})
        ds = open_classification_data(cfg, require=())  # the split asked for is checked below
        if ds.labels != model.labels:
            raise DataError(f"data labels {ds.labels} differ from the model's {model.labels}")
        samples = ds.samples if split in (None, "all") else ds.split(split)
        if not samples:
            raise DataError(f"{cfg.source}: the {split} split is empty")
        t0 = time.perf_counter()
        pre = _preprocessor(model)
        x, kept, errors = prepare_samples(samples, pre)
        if not kept:
            raise DataError(f"{cfg.source}: none of the {len(samples)} images could be read; first error: "
                            f"{errors[0]['error'] if errors else '?'}")
        xt = pre.normalize(torch.from_numpy(x))
        m = model.spec
        p = _probabilities(model.run, xt, m.multilabel, tta=m.tta, temperature=m.temperature)
        elapsed = time.perf_counter() - t0
        p_raw = (_probabilities(model.run, xt, m.multilabel, tta=m.tta)  # only where it is reported (binary)
                 if m.temperature != 1.0 and m.positive_index is not None else None)
        y = ds.targets([samples[i] for i in kept])
        if m.multilabel:
            report = multilabel_report(y, p, model.labels, m.thresholds or [0.5] * len(model.labels),
                                       n_boot=n_boot, seed=seed)
        elif m.positive_index is not None:
            pos = m.positive_index
            yb, score = (y == pos).astype(int), p[:, pos]
            report = binary_report(yb, score, float(m.threshold), n_boot=n_boot, seed=seed)
            report["positive_label"] = model.labels[pos]
            report["threshold_table"] = threshold_table(yb, score, float(m.threshold))
            groups, left_out = subgroups([samples[i].covariates for i in kept])
            if groups:
                report["subgroups"] = subgroup_report(yb, score, float(m.threshold), groups,
                                                      n_boot=min(n_boot, 500), seed=seed)
            if left_out:
                report["subgroups_left_out"] = left_out
            if examples and self.explain_methods(model):
                report.update(_examples(model, [samples[i] for i in kept], yb, score, float(m.threshold), examples))
        else:
            report = multiclass_report(y, p, model.labels, n_boot=n_boot, seed=seed)
        report["temperature"] = m.temperature
        if m.ood:  # how many of these (labelled, in-distribution) images the model would refer
            d = _distances(model, xt)
            report["refer_rate"] = round(float((d > float(m.ood["threshold"])).mean()), 4)
            report["refer_threshold"] = m.ood["threshold"]
        if p_raw is not None:  # the same scores before temperature scaling
            from medsight.metrics.classification import calibration

            raw = calibration((y == m.positive_index).astype(int), p_raw[:, m.positive_index])
            report.update({"ece_uncalibrated": raw["ece"], "brier_uncalibrated": raw["brier"],
                           "calibration_bins_uncalibrated": raw["bins"]})
        report.update({
            "task": "classification", "model": model.name, "model_version": model.version,
            "data": str(cfg.source), "split": split or "all", "labels": model.labels,
            "threshold_rule": m.threshold_rule, "skipped": errors,
            "seconds": round(elapsed, 3), "images_per_second": round(len(kept) / max(elapsed, 1e-9), 1),
        })
        return report

    def calibrate(self, model: SavedModel, data: str, *, split: str = "val") -> SavedModel:
        """The same network with a temperature fitted on ``split`` of ``data`` and the operating
        threshold(s) re-chosen on the calibrated scores by the model's own rule (what
        ``medsight calibrate`` runs; a model trained with ``evaluation.calibration: temperature``
        already has both, from its validation split).

        Raises:
            ConfigError: a model without its torch network (the logits are needed).
            DataError: the split is empty or unreadable, or its labels are not the model's.
        """
        import dataclasses

        from medsight.data.classification import open_classification_data
        from medsight.data.datasets import prepare_samples
        from medsight.errors import ConfigError

        if model.network is None:
            raise ConfigError(f"model {model.name}: calibration needs the torch network, not only a backend")
        ds = open_classification_data(DataConfig(source=str(data), labels=model.labels), require=(split,))
        samples = ds.split(split)
        if not samples:
            raise DataError(f"{data}: the {split} split is empty; calibration is fitted on held-out labelled data")
        pre = _preprocessor(model)
        x, kept, _ = prepare_samples(samples, pre)
        if not kept:
            raise DataError(f"{data}: none of the {split} images could be read")
        xt, y = pre.normalize(torch.from_numpy(x)), ds.targets([samples[i] for i in kept])
        m = model.spec
        fitted = fit_calibration(model.network, xt, y, m.multilabel, m.positive_index, tta=m.tta)
        fitted["calibration"]["fitted_on"] = f"{split} split of {Path(str(data)).name}"  # no machine paths
        train = ds.split("train")
        if train:  # the training fingerprint, its refer threshold from the held-out split
            x_tr, _, _ = prepare_samples(train, pre)
            fitted["ood"] = fit_ood(TorchBackend(model.network).features, _sample(pre, x_tr), xt)
        manifest = {**model.manifest, **fitted}
        p = _probabilities(model.network, xt, m.multilabel, tta=m.tta, temperature=fitted["temperature"])
        manifest.update(operating_points(y, p, multilabel=m.multilabel, pos=m.positive_index,
                                         rule=m.threshold_rule or "youden", n_labels=len(model.labels)))
        drift = fit_drift(TorchBackend(model.network).features, xt, p, manifest)
        if drift is not None:
            manifest["drift"] = drift
        out = dataclasses.replace(model, manifest=manifest, path=None)
        out.card = self.model_card(manifest)
        return out

    def explain(self, model: SavedModel, image: Image, result: Any, *, method: str = "gradcam") -> Any:
        """Attach the heatmap of the decided class (the positive class of a binary model) drawn
        on the image: ``result.heatmap`` (method, layer, class, peak) and ``result.overlay``."""
        from medsight.explain import heatmap, overlay

        self.validate_input(model, image)
        h = heatmap(model, image, method=method)
        peak = np.unravel_index(int(np.argmax(h.values)), h.values.shape)
        scale = [full / shown for full, shown in zip(image.shape[-h.values.ndim:], h.values.shape)]
        result.heatmap = {"method": h.method, "layer": h.layer, "class": model.labels[h.class_index],
                          "peak_index": [int(round((i + 0.5) * f - 0.5)) for i, f in zip(peak, scale)]}
        result.overlay = overlay(image, h.values)
        files = image.meta.get("source_files") or []
        result.overlay_source = files[len(files) // 2] if files else None
        return result

    def explain_methods(self, model: SavedModel) -> tuple[str, ...]:
        from medsight.engine.predictor import EXPLAIN_METHODS

        return EXPLAIN_METHODS if model.network is not None else ()  # they need the torch module

    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None) -> Section:
        from medsight.report.classification import classification_report_section

        return classification_report_section(evaluation, model.manifest if model else None)

    def card_section(self, manifest: dict[str, Any]) -> Section:
        from medsight.report.classification import classification_card_section

        return classification_card_section(manifest)

    # -- training: hooks of the run skeleton (engine/run.py) -----------------------------------
    def train(self, cfg: Config, *, run_dir: Path, observers: Sequence[Any] = (), resume: bool = False) -> SavedModel:
        from monai.data import set_track_meta

        set_track_meta(False)  # plain tensors through augmentation: 3x faster per sample on CPU
        try:
            return super().train(cfg, run_dir=run_dir, observers=observers, resume=resume)
        finally:
            set_track_meta(True)

    def prepare(self, cfg: ClassificationRunConfig, *, run_dir: Path) -> TrainingSetup:
        """Read and preprocess the splits (images that cannot be read are listed, not fatal),
        fix the input size, channels and the training set's intensity statistics, and build the
        loss, the augmentation and the validation hooks."""
        from medsight.data.classification import open_classification_data
        from medsight.data.datasets import ArrayDataset, prepare_samples
        from medsight.engine.run import TrainingSetup
        from medsight.models.registry import get_spec
        from medsight.tasks.classification.training import ClassificationHooks, build_loss
        from medsight.transforms.augment import build_augmentation
        from medsight.transforms.preprocess import Preprocessor

        if "classification" not in get_spec(cfg.model.name).tasks:
            raise DataError(f"model {cfg.model.name!r} is not a classification model")
        data = open_classification_data(cfg.data)
        labels, multilabel, dims = data.labels, data.multilabel, data.spatial_dims
        pos = None if multilabel else positive_index(labels, cfg.data.positive_label)
        spec = cfg.preprocessing.model_dump()
        first = data.split("train")[0].image()
        if spec["spatial_size"] is None:
            spec["spatial_size"] = list(first.shape) if data.fingerprint.get("format") == "medmnist" else (
                [224, 224] if dims == 2 else [96, 96, 96])
        if "channels" not in cfg.preprocessing.model_fields_set:
            spec["channels"] = first.channels if first.channels in (1, 3) else 1
        pre = Preprocessor(spec, spatial_dims=dims)
        splits = {}
        for name in ("train", "val", "test"):
            samples = data.split(name)
            x, kept, errors = prepare_samples(samples, pre) if samples else (np.zeros(0), [], [])
            splits[name] = (x, data.targets([samples[i] for i in kept]) if kept else np.zeros(0), errors)
            if name != "test" and not kept:
                raise DataError(f"{cfg.data.source}: no readable images in the {name} split")
        x_tr, y_tr, _ = splits["train"]
        if spec.get("zscore", True):
            spec["normalize_mean"], spec["normalize_std"] = float(x_tr.mean()), float(x_tr.std() + 1e-8)
        pre = Preprocessor(spec, spatial_dims=dims)
        aug = build_augmentation(cfg.augmentation, spatial_dims=dims, spatial_size=spec["spatial_size"],
                                 seed=cfg.train.seed)
        x_va, y_va, _ = splits["val"]
        x_va_t = pre.normalize(torch.from_numpy(x_va))
        hooks = ClassificationHooks(build_loss(cfg, y_tr, len(labels), multilabel), x_va_t, y_va, multilabel, pos,
                                    _probabilities)
        params = dict(cfg.model.params)
        if cfg.model.name == "classic-cnn":
            params.setdefault("input_size", list(spec["spatial_size"]))
        return TrainingSetup(
            train=ArrayDataset(x_tr, y_tr, pre, aug), hooks=hooks, config=cfg, members=cfg.train.ensemble,
            splits=[s for s in ("val", "test") if data.split(s)],
            state={"data": data, "labels": labels, "multilabel": multilabel, "pos": pos, "dims": dims,
                   "spec": spec, "params": params, "x_val": x_va_t, "y_val": y_va, "x_train": x_tr, "pre": pre,
                   "skipped": {k: v[2][:50] for k, v in splits.items() if v[2]}})

    def build_network(self, cfg: ClassificationRunConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        from medsight.models.registry import create_model
        from medsight.tasks.classification.training import check_fits

        st = prepared.state
        net = create_model(cfg.model.name, spatial_dims=st["dims"], in_channels=st["spec"]["channels"],
                           num_classes=len(st["labels"]), **st["params"])
        if member == 0:
            check_fits(net, cfg.model.name, st["spec"]["channels"], st["spec"]["spatial_size"])
        return net

    def finish(self, cfg: ClassificationRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[Any]) -> Finished:
        """The model: one network or the ensemble's mean, the operating threshold(s) chosen on the
        validation split only, with the weights as they will be stored."""
        from medsight.engine.run import Finished
        from medsight.models.architectures import Ensemble
        from medsight.tasks.classification.training import round_to_float16

        st = prepared.state
        labels, multilabel, pos, spec = st["labels"], st["multilabel"], st["pos"], st["spec"]
        network = networks[0] if len(networks) == 1 else Ensemble(networks, multilabel=multilabel)
        network.eval()
        if cfg.train.save_dtype == "float16":  # threshold and metrics from the weights as they will be stored
            round_to_float16(network)
        arch = {"name": cfg.model.name, "params": st["params"], "spatial_dims": st["dims"],
                "in_channels": spec["channels"], "num_classes": len(labels), "ensemble": cfg.train.ensemble,
                "multilabel": multilabel}
        manifest: dict[str, Any] = {
            "name": cfg.name, "version": cfg.version, "task": "classification", "description": cfg.description,
            "architecture": arch, "preprocessing": spec, "modalities": cfg.modalities,
            "augmentation": cfg.augmentation, "labels": labels,
            "multilabel": multilabel, "positive_index": pos, "tta": cfg.evaluation.tta,
            "weights_dtype": cfg.train.save_dtype,
            "positive_label": labels[pos] if pos is not None else None,
            "threshold_rule": cfg.evaluation.threshold_rule,
            "training": {
                "data": st["data"].fingerprint, "config": cfg.model_dump(mode="json"),
                "best_epochs": [r.best_epoch for r in results], "epochs_run": [len(r.history) for r in results],
                "skipped_inputs": st["skipped"],
            },
        }
        y_va = st["y_val"]
        if cfg.evaluation.calibration == "temperature":
            manifest.update(fit_calibration(network, st["x_val"], y_va, multilabel, pos, tta=cfg.evaluation.tta))
        if cfg.evaluation.ood:
            manifest["ood"] = fit_ood(TorchBackend(network).features, _sample(st["pre"], st["x_train"]),
                                      st["x_val"], quantile=cfg.evaluation.ood_quantile)
        p_va = _probabilities(network, st["x_val"], multilabel, tta=cfg.evaluation.tta,
                              temperature=manifest.get("temperature", 1.0))  # validation split only
        manifest.update(operating_points(y_va, p_va, multilabel=multilabel, pos=pos,
                                         rule=cfg.evaluation.threshold_rule, n_labels=len(labels)))
        drift = fit_drift(TorchBackend(network).features, st["x_val"], p_va, manifest)
        if drift is not None:
            manifest["drift"] = drift
        q = cfg.evaluation.uncertain_quantile
        if q is not None:  # refer "uncertain" above this quantile of the validation entropies
            h = _entropy(p_va, multilabel)
            manifest["uncertainty"] = {"refer_above": round(float(np.quantile(h, q)), 6), "quantile": q,
                                       "fitted_on": "validation split", "n": len(h),
                                       "refer_rate_validation": round(float((h > np.quantile(h, q)).mean()), 4)}
        return Finished(model=SavedModel(network=network, manifest=manifest))

    def evaluation_options(self, cfg: ClassificationRunConfig, *, split: str, eval_dir: Path) -> dict[str, Any]:
        return {"n_boot": cfg.evaluation.bootstrap, "seed": cfg.train.seed}

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        from medsight.tasks.classification.training import headline

        return headline(evaluation)

    def reproduce(self, cfg: ClassificationRunConfig) -> str | None:
        return None  # the card shows manifest["reproduce"] (the shipped models') or none

    @property
    def front_door(self) -> type:  # type: ignore[override]
        from medsight.tasks.classification.front import Classifier

        return Classifier
