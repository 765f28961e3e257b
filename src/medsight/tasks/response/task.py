"""The response task: from an image, a treatment and clinical covariates, the probability of
response under every treatment, and a recommendation that says when it abstains
(docs/response-model.md).

* **Network** (``response-net``, :class:`medsight.models.architectures.ResponseNet`): any
  registered backbone encodes the image into ``features`` numbers; the encoded covariates join
  them; one small head per treatment gives that treatment's response logit (a T-learner over a
  shared representation, as TARNet). Each patient's loss is taken on the head of the treatment
  received only, so no head learns who got which treatment; with
  ``response.propensity_weighting`` each loss is also weighted by the stabilised inverse
  propensity of that treatment given the covariates.
* **Ensemble**: ``train.ensemble`` networks trained apart by the engine (seeded apart) become
  members of one module; their spread is the uncertainty.
* **Recommendation** (:mod:`~medsight.tasks.response.recommend`): each option's probability with
  an interval, and a recommendation only when the leader beats the runner-up by more than the
  uncertainty and the input is not unlike the training data.
* **Evaluation**: factual AUC with CI and calibration on the held-out split; with the cohort's
  counterfactuals, policy value against the oracle and the best single treatment, regret on
  accepted vs referred cases, coverage-risk, PEHE, and which features the model took as
  prognostic or predictive (:mod:`medsight.metrics.treatment`).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from medsight.data.case import Case
from medsight.errors import DataError, MedSightError
from medsight.io.image import Image
from medsight.metrics.ood import distances
from medsight.models.saved import SavedModel
from medsight.tasks.base import EvaluateOption, Task, register_task
from medsight.tasks.response.config import ResponseRunConfig
from medsight.tasks.response.data import CovariateCoder, ResponseRow, read_response_manifest
from medsight.tasks.response.recommend import Recommendation, recommend
from medsight.tasks.results import Finding, Provenance, Result, array_sha256

if TYPE_CHECKING:  # pragma: no cover
    from medsight.engine.run import Finished, TrainingSetup
    from medsight.report import Section

__all__ = ["ResponseTask", "ResponseResult"]

TEMPLATES = Path(__file__).parent / "templates"
BATCH = 128


# -- the result ---------------------------------------------------------------------------------
@dataclass
class ResponseResult(Result):
    """The predicted response under every treatment and what the rules made of it."""

    input: str
    options: list[dict[str, Any]]
    status: str
    recommended: str | None
    leading: str
    margin: float
    margin_sd: float
    distance: float | None
    reasons: list[str]
    provenance: Provenance
    received: str | None = None
    task: str = "response"
    members: list[list[float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("members", None)
        return out

    def findings(self) -> list[Finding]:
        out = [Finding(f"response_probability_{o['treatment']}", o["probability"], "1",
                       title=f"Predicted response to {o['treatment']}") for o in self.options]
        out.append(Finding("treatment_recommendation", text=self.recommended or self.status,
                           title="Treatment recommendation"))
        return out

    @classmethod
    def csv_columns(cls, model: Any) -> list[str]:
        names = model.manifest["response"]["treatments"] if model is not None else []
        return [*(f"p_{t}" for t in names), *(f"sd_{t}" for t in names), "status", "recommended", "margin",
                "distance"]

    def csv_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"input": self.input}
        for o in self.options:
            row[f"p_{o['treatment']}"], row[f"sd_{o['treatment']}"] = o["probability"], o["sd"]
        return {**row, "status": self.status, "recommended": self.recommended or "", "margin": self.margin,
                "distance": self.distance}

    def summary(self) -> tuple[str, str]:
        probs = ", ".join(f"{o['treatment']} {o['probability']:.2f}±{1.96 * o['sd']:.2f}" for o in self.options)
        return (self.recommended or self.status), probs


# -- training ---------------------------------------------------------------------------------
def _augment(x: torch.Tensor, dims: int, noise: float) -> torch.Tensor:
    """Random mirroring along each spatial axis, and fresh Gaussian noise of SD ``noise`` (in
    the network's input units) at every step, so that the encoder cannot memorise the pixels of
    each training image (it overfits a few thousand noisy binary outcomes within a few epochs
    otherwise)."""
    for axis in range(2, 2 + dims):
        mask = torch.rand(len(x)) < 0.5
        if mask.any():
            x[mask] = torch.flip(x[mask], dims=[axis - 1])
    return x + noise * torch.randn_like(x) if noise > 0 else x


class ResponseHooks:
    """The trainer's view: weighted binary cross-entropy on the received treatment's head; on
    validation, the same loss (unweighted) and the factual AUC."""

    collate = None

    def __init__(self, x_val: torch.Tensor, z_val: torch.Tensor, t_val: torch.Tensor, y_val: torch.Tensor,
                 treatments: int, *, dims: int, flips: bool, noise: float) -> None:
        self.val = (x_val, z_val, t_val, y_val)
        self.treatments, self.dims, self.flips, self.noise = treatments, dims, flips, noise

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def _factual_logit(self, network: torch.nn.Module, x: torch.Tensor, z: torch.Tensor,
                       t: torch.Tensor) -> torch.Tensor:
        logits = network(x, z)[:, :self.treatments]
        return logits.gather(1, t.long()[:, None])[:, 0]

    def training_step(self, network: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, z, t, y, w = batch
        if self.flips or self.noise:
            x = _augment(x.clone() if self.flips else x, self.dims if self.flips else 0, self.noise)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self._factual_logit(network, x, z, t),
                                                                    y.float(), reduction="none")
        return (loss * w).sum() / w.sum()

    def validate(self, network: torch.nn.Module) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        x, z, t, y = self.val
        network.eval()
        with torch.inference_mode():
            logit = torch.cat([self._factual_logit(network, x[i:i + BATCH], z[i:i + BATCH], t[i:i + BATCH])
                               for i in range(0, len(x), BATCH)])
        network.train()
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logit, y.float()))
        yy = y.numpy()
        auc = float(roc_auc_score(yy, logit.numpy())) if 0 < yy.sum() < len(yy) else 0.5
        return {"val_loss": loss, "val_auc": auc}


def _propensity_weights(z: np.ndarray, t: np.ndarray, n_treat: int, clip: float) -> tuple[np.ndarray, dict]:
    """Stabilised inverse-propensity weights ``P(t) / e(t | z)`` from a multinomial logistic
    regression on the covariates, clipped to [1/clip, clip] and scaled to mean 1."""
    from sklearn.linear_model import LogisticRegression

    if z.shape[1] == 0:
        return np.ones(len(t), np.float32), {"weighting": "none (the model has no covariates)"}
    lr = LogisticRegression(max_iter=2000).fit(z, t)
    e = lr.predict_proba(z)[np.arange(len(t)), np.searchsorted(lr.classes_, t)]
    marginal = np.bincount(t, minlength=n_treat)[t] / len(t)
    w = np.clip(marginal / np.maximum(e, 1e-6), 1.0 / clip, clip)
    w = w / w.mean()
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    return w.astype(np.float32), {"weighting": "stabilised inverse propensity (logistic regression on covariates)",
                                  "weight_min": round(float(w.min()), 3), "weight_max": round(float(w.max()), 3),
                                  "effective_sample_size": round(ess, 1), "n": len(t)}


# -- the task ---------------------------------------------------------------------------------
@register_task
class ResponseTask(Task):
    name = "response"
    config_type = ResponseRunConfig
    result_type = ResponseResult
    recommends = True
    evaluate_options: ClassVar[tuple[EvaluateOption, ...]] = (
        EvaluateOption("counterfactuals", Path, "a simulated cohort's counterfactuals.csv: score the recommendations "
                                                "exactly (policy value, regret)", without_model=False),
        EvaluateOption("n_boot", int, "bootstrap resamples for the confidence intervals", without_model=False),
    )

    # training ---------------------------------------------------------------------------------
    def prepare(self, cfg: ResponseRunConfig, *, run_dir: Path) -> TrainingSetup:
        from medsight.engine.run import TrainingSetup
        from medsight.io import read
        from medsight.models.registry import get_spec
        from medsight.transforms.preprocess import Preprocessor

        if cfg.model.name == "response-net" or "classification" not in get_spec(cfg.model.name).tasks:
            raise DataError(f"model.name is the image encoder of the response model: a classification backbone "
                            f"(resnet-small, resnet18, densenet121, classic-cnn); got {cfg.model.name!r}")
        rows = read_response_manifest(cfg.data.source, covariates=cfg.response.covariates, seed=cfg.data.split_seed)
        train_rows = [r for r in rows if r.split == "train"]
        if not train_rows or not any(r.split == "val" for r in rows):
            raise DataError(f"{cfg.data.source}: the response task needs train and val rows")
        treatments = cfg.response.treatments or sorted({r.treatment for r in train_rows})
        _check_treatments(rows, treatments)
        unlabelled = next((r for r in rows if r.outcome is None and r.split != "test"), None)
        if unlabelled is not None:
            raise DataError(f"{unlabelled.where}: no outcome (training and validation rows need one)")
        coder = CovariateCoder.fit([r.covariates for r in train_rows], list(train_rows[0].covariates),
                                   categorical=cfg.response.categorical)
        spec = cfg.preprocessing.model_dump()
        first = _read_row(train_rows[0], read)
        dims = first.n_spatial
        if spec["spatial_size"] is None:
            spec["spatial_size"] = [64] * dims
        pre = Preprocessor(spec, spatial_dims=dims)
        data = {s: _tensors([r for r in rows if r.split == s and r.outcome is not None], pre, coder, treatments, read)
                for s in ("train", "val")}
        x, z, t, y = data["train"]
        weights, weighting = (_propensity_weights(z.numpy(), t.numpy(), len(treatments), cfg.response.weight_clip)
                              if cfg.response.propensity_weighting else
                              (np.ones(len(t), np.float32), {"weighting": "none"}))
        hooks = ResponseHooks(*data["val"], len(treatments), dims=dims, flips=cfg.response.flips,
                              noise=cfg.response.noise)
        train = torch.utils.data.TensorDataset(x, z, t, y, torch.from_numpy(weights))
        params = {"encoder": cfg.model.name, "encoder_params": dict(cfg.model.params),
                  "features": cfg.response.features, "covariates": coder.width, "hidden": cfg.response.hidden,
                  "dropout": cfg.response.dropout}
        return TrainingSetup(train=train, hooks=hooks, config=cfg, members=cfg.train.ensemble,
                             splits=[s for s in ("val", "test") if any(r.split == s for r in rows)],
                             state={"spec": spec, "dims": dims, "coder": coder, "treatments": treatments,
                                    "params": params, "weighting": weighting, "data": data,
                                    "channels": spec["channels"]})

    def build_network(self, cfg: ResponseRunConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        from medsight.models.registry import create_model

        st = prepared.state
        return create_model("response-net", spatial_dims=st["dims"], in_channels=st["channels"],
                            num_classes=len(st["treatments"]), members=1, **st["params"])

    def finish(self, cfg: ResponseRunConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[Any]) -> Finished:
        """The members in one module; the training representation's statistics for the distance
        check (threshold from the validation split); the fallback (the treatment with the best
        mean predicted response over the training patients)."""
        from medsight.engine.run import Finished
        from medsight.metrics.ood import fit_fingerprint
        from medsight.models.registry import create_model

        st = prepared.state
        treatments, members = st["treatments"], len(networks)
        network = create_model("response-net", spatial_dims=st["dims"], in_channels=st["channels"],
                               num_classes=len(treatments), members=members, **st["params"])
        for i, net in enumerate(networks):
            network.members[i].load_state_dict(net.members[0].state_dict())
        network.eval()
        (x_tr, z_tr, _, _), (x_va, z_va, _, _) = st["data"]["train"], st["data"]["val"]
        probs_tr, rep_tr = _run(network, x_tr, z_tr, members, len(treatments))
        _, rep_va = _run(network, x_va, z_va, members, len(treatments))
        fp = fit_fingerprint(rep_tr, rep_va, quantile=cfg.response.ood_quantile)
        fallback = treatments[int(np.argmax(probs_tr.mean(axis=(0, 1))))]
        response = {"treatments": treatments, "covariates": st["coder"].to_manifest(), "members": members,
                    "features": cfg.response.features, "fallback": fallback, "margin_sd": cfg.response.margin_sd,
                    "min_margin": cfg.response.min_margin, "max_sd": cfg.response.max_sd,
                    "ood_mean": fp["mean"], "ood_precision": fp["precision"], "ood_threshold": fp["threshold"],
                    "ood_quantile": fp["quantile"]}
        manifest: dict[str, Any] = {
            "name": cfg.name, "version": cfg.version, "task": self.name, "description": cfg.description,
            "architecture": {"name": "response-net", "params": {**st["params"], "members": members},
                             "spatial_dims": st["dims"], "in_channels": st["channels"],
                             "num_classes": len(treatments)},
            "preprocessing": st["spec"], "modalities": cfg.modalities, "labels": treatments, "response": response,
            "training": {"data": str(cfg.data.source), "config": cfg.model_dump(mode="json"),
                         "best_epochs": [r.best_epoch for r in results], "propensity": st["weighting"],
                         "n_train": len(x_tr), "n_val": len(x_va)},
        }
        return Finished(model=SavedModel(network=network, manifest=manifest),
                        summary={"propensity": st["weighting"], "fallback": fallback})

    def evaluation_options(self, cfg: ResponseRunConfig, *, split: str, eval_dir: Path) -> dict[str, Any]:
        return {"counterfactuals": cfg.data.counterfactuals, "seed": cfg.train.seed,
                "covariates": cfg.response.covariates}

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        out = {k: evaluation[k] for k in ("n", "factual_auc", "ece", "coverage") if k in evaluation}
        pol = evaluation.get("policy")
        if pol:
            out.update({"fraction_of_oracle": pol["fraction_of_oracle"]["value"],
                        "policy_value": pol["policy"]["value"], "vs_best_single": pol["vs_best_single"]["difference"],
                        "model_regret_accepted": pol["model_regret"]["accepted"]["mean"],
                        "model_regret_referred": pol["model_regret"]["referred"]["mean"]})
        return out

    # inference --------------------------------------------------------------------------------
    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        """Images only: for a model without covariates (else use :meth:`infer_cases`)."""
        names = self.input_names(images, inputs)
        return self.infer_cases(model, [Case(n, {"image": im}) for n, im in zip(names, images)])

    def infer_cases(self, model: SavedModel, cases: Sequence[Case]) -> list[Any]:
        """One :class:`ResponseResult` per case: its ``image``, and its ``covariates`` (the
        model's covariates; a ``treatment`` covariate, the one received, is recorded, not used).

        Raises:
            MedSightError: an image the model cannot take, or a covariate missing or unlike the
                training data's (naming the case and the covariate).
        """
        spec = model.manifest["response"]
        coder = CovariateCoder.from_manifest(spec["covariates"])
        treatments = list(spec["treatments"])
        out: list[Any] = []
        for start in range(0, len(cases), BATCH):
            chunk = cases[start:start + BATCH]
            images, zs = [], []
            for c in chunk:
                received = c.covariates.get("treatment")
                if received is not None and str(received) not in treatments:
                    raise DataError(f"case {c.id}: unknown treatment {received!r}; the model's treatments are "
                                    f"{', '.join(treatments)}")
                im = c.image()
                self.validate_input(model, im)
                images.append(im)
                zs.append(coder.encode(c.covariates, f"case {c.id}"))
            t0 = time.perf_counter()
            x = torch.stack([model.preprocessor(im) for im in images])
            z = torch.from_numpy(np.stack(zs)) if coder.width else torch.zeros((len(x), 0))
            raw = model.run(x, z).float().numpy()
            seconds = (time.perf_counter() - t0) / len(chunk)
            probs, rep = _split(raw, spec["members"], len(treatments))
            dist = (distances(rep, {"mean": spec["ood_mean"], "precision": spec["ood_precision"]})
                    if spec.get("ood_mean") is not None else [None] * len(chunk))
            for i, (c, im) in enumerate(zip(chunk, images)):
                rec = recommend(probs[i], treatments, distance=dist[i], ood_threshold=spec.get("ood_threshold"),
                                margin_sd=spec["margin_sd"], min_margin=spec["min_margin"], max_sd=spec["max_sd"])
                out.append(_result(c, im, rec, probs[i], model, seconds))
        return out

    # evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: SavedModel, data: Any, *, split: str | None = "test", counterfactuals: Any = None,
                 n_boot: int = 1000, seed: int = 0, covariates: Sequence[str] | None = None,
                 csv_path: Path | None = None, **_: Any) -> dict[str, Any]:
        """Factual AUC (95% CI) and calibration of the received treatment's predicted response;
        uplift (Qini/AUUC, on factual outcomes); with ``counterfactuals``, the policy's value,
        regret on accepted and referred cases, PEHE and the features' roles (all synthetic)."""
        from sklearn.metrics import roc_auc_score as _auc

        from medsight.metrics.classification import bootstrap_auc_ci, calibration
        from medsight.metrics.treatment import feature_attribution, pehe, policy_report, uplift_report

        source = getattr(data, "source", data)
        names = covariates if covariates is not None else [c["name"] for c in model.manifest["response"]["covariates"]]
        rows = [r for r in read_response_manifest(source, covariates=names)
                if split in (None, "all") or r.split == split]
        if not rows:
            raise DataError(f"{source}: the {split} split is empty")
        treatments = list(model.manifest["response"]["treatments"])
        _check_treatments(rows, treatments)
        from medsight.io import read

        results = []
        for start in range(0, len(rows), BATCH):  # images read a batch at a time; a bad one names its row
            chunk = rows[start:start + BATCH]
            results += self.infer_cases(model, [dataclasses.replace(r.case(), images={"image": _read_row(r, read)})
                                                for r in chunk])
        p = np.array([[o["probability"] for o in res.options] for res in results])
        t = np.array([treatments.index(r.treatment) for r in rows])
        labelled = np.array([r.outcome is not None for r in rows])
        y = np.array([r.outcome if r.outcome is not None else -1 for r in rows])
        p_fact = p[np.arange(len(p)), t]
        out: dict[str, Any] = {"task": self.name, "model": model.name, "model_version": model.version,
                               "data": str(source), "split": split or "all", "n": len(rows),
                               "treatments": treatments, "synthetic": counterfactuals is not None,
                               "coverage": round(float(np.mean([res.status == "recommend" for res in results])), 4),
                               "status_counts": {s: sum(res.status == s for res in results)
                                                 for s in sorted({res.status for res in results})}}
        yl, pl = y[labelled], p_fact[labelled]
        if labelled.any() and 0 < yl.sum() < len(yl):
            out["factual_auc"] = round(_auc(yl, pl), 4)
            out["factual_auc_ci95"] = bootstrap_auc_ci(yl, pl, n_boot=n_boot, seed=seed)
            cal = calibration(yl, pl)
            out["ece"], out["brier"], out["calibration_bins"] = cal["ece"], cal["brier"], cal["bins"]
            out["uplift"] = uplift_report(p[labelled], t[labelled], yl, treatments=treatments)
        if counterfactuals is not None:
            truth, features = _read_counterfactuals(Path(counterfactuals), [r.patient for r in rows], treatments)
            accepted = np.array([res.status == "recommend" for res in results])
            choice = p.argmax(axis=1)
            confidence = np.array([res.margin - max(res.margin_sd, 1e-9) for res in results])
            fallback = model.manifest["response"].get("fallback")
            out["policy"] = policy_report(truth, choice, treatments=treatments, accepted=accepted,
                                          fallback=treatments.index(fallback) if fallback in treatments else None,
                                          confidence=confidence, n_boot=n_boot, seed=seed)
            out["pehe"] = round(pehe(p, truth), 4)
            for name in names:
                try:
                    features[name] = np.array([float(r.covariates[name]) for r in rows])
                except ValueError:
                    pass
            out["features"] = feature_attribution(p, truth, features)
            out["refer_reasons"] = {s: int(n) for s, n in out["status_counts"].items() if s != "recommend"}
        if csv_path is not None:
            _write_cases(csv_path, rows, results, treatments)
        return out

    # report and card --------------------------------------------------------------------------
    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None) -> Section:
        from medsight.report import Section

        provenance = [("model", evaluation["model"]), ("version", evaluation["model_version"]),
                      ("data", evaluation["data"]), ("split", evaluation["split"])]
        if model is not None:
            provenance.append(("weights sha256", model.manifest.get("weights_sha256")))
        return Section("response.html.j2", folder=TEMPLATES, context={
            "title": f"Treatment response evaluation: {evaluation['model']}", "ev": evaluation,
            "provenance": provenance})

    def card_section(self, manifest: dict[str, Any]) -> Section:
        from medsight.report import Section

        r = manifest.get("response") or {}
        statements = {
            "card_fingerprint": [f"Training data: {(manifest.get('training') or {}).get('data')}; treatments "
                                 f"{', '.join(r.get('treatments') or [])}; covariates "
                                 f"{', '.join(c.get('name', '?') for c in r.get('covariates') or []) or 'none'}",
                                 "Image features' distance from the training patients': refer above "
                                 f"{r.get('ood_threshold')} (the {r.get('ood_quantile')} quantile of validation "
                                 "patients)"],
            "card_calibration": ["None fitted: each treatment head's response probability is the ensemble's mean, "
                                 "with its SD across members as the uncertainty"],
            "card_refer": ["The recommendation is \"refer\" when the leading treatment's margin is within the "
                           "ensemble's uncertainty, its SD is too high, or the input is unlike the training data "
                           "(the Model section gives the thresholds)"],
        }
        return Section("response.md.j2", folder=TEMPLATES, context={"m": manifest, **statements})


# -- helpers ----------------------------------------------------------------------------------
def _check_treatments(rows: list[ResponseRow], treatments: list[str]) -> None:
    for r in rows:
        if r.treatment not in treatments:
            raise DataError(f"{r.where}: unknown treatment {r.treatment!r}; the treatments are {', '.join(treatments)}")


def _read_row(row: ResponseRow, read: Any) -> Image:
    try:
        return read(row.image)
    except MedSightError as exc:
        raise DataError(f"{row.where}: the image does not read: {exc}") from None


def _tensors(rows: list[ResponseRow], pre: Any, coder: CovariateCoder, treatments: list[str],
             read: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.stack([pre(_read_row(r, read)) for r in rows]) if rows else torch.zeros(0)
    z = torch.from_numpy(np.stack([coder.encode(r.covariates, r.where) for r in rows])) if rows and coder.width \
        else torch.zeros((len(rows), 0))
    t = torch.tensor([treatments.index(r.treatment) for r in rows], dtype=torch.long)
    y = torch.tensor([r.outcome for r in rows], dtype=torch.float32)
    return x, z, t, y


def _split(raw: np.ndarray, members: int, treatments: int) -> tuple[np.ndarray, np.ndarray]:
    """Member probabilities ``(N, members, treatments)`` and the representation ``(N, D)``."""
    k = members * treatments
    logits = raw[:, :k].reshape(len(raw), members, treatments)
    return 1.0 / (1.0 + np.exp(-logits)), raw[:, k:]


def _run(network: torch.nn.Module, x: torch.Tensor, z: torch.Tensor, members: int,
         treatments: int) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        raw = torch.cat([network(x[i:i + BATCH], z[i:i + BATCH]) for i in range(0, len(x), BATCH)]).numpy()
    return _split(raw, members, treatments)


def _result(case: Case, image: Image, rec: Recommendation, member_probs: np.ndarray, model: SavedModel,
            seconds: float) -> ResponseResult:
    prov = Provenance(model=model.name, model_version=model.version,
                      weights_sha256=model.manifest.get("weights_sha256"), input_sha256=array_sha256(image.array),
                      seconds=round(seconds, 4), series_uid=image.series_uid, sop_uids=list(image.sop_uids))
    received = case.covariates.get("treatment")
    return ResponseResult(input=case.id, options=rec.options, status=rec.status, recommended=rec.recommended,
                          leading=rec.leading, margin=rec.margin, margin_sd=rec.margin_sd, distance=rec.distance,
                          reasons=rec.reasons, provenance=prov, received=None if received is None else str(received),
                          members=member_probs.round(4).tolist())


def _read_counterfactuals(path: Path, patients: list[str], treatments: list[str]) -> tuple[np.ndarray, dict]:
    """The true response probability of each patient under each treatment (``p_<t>`` columns), and
    the true features (``feature_<name>``), in the order of ``patients``."""
    if not path.is_file():
        raise DataError(f"{path}: no counterfactuals file")
    with path.open(newline="") as f:
        rows = {r["patient"]: r for r in csv.DictReader(f)}
    missing = [p for p in patients if p not in rows]
    if missing:
        raise DataError(f"{path}: no counterfactuals for {len(missing)} patient(s), e.g. {missing[0]!r}")
    lacking = [t for t in treatments if f"p_{t}" not in next(iter(rows.values()))]
    if lacking:
        raise DataError(f"{path}: no p_<treatment> column for {', '.join(lacking)}")
    truth = np.array([[float(rows[p][f"p_{t}"]) for t in treatments] for p in patients])
    names = [k[len("feature_"):] for k in next(iter(rows.values())) if k.startswith("feature_")]
    features = {n: np.array([float(rows[p][f"feature_{n}"]) for p in patients]) for n in names}
    return truth, features


def _write_cases(path: Path, rows: list[ResponseRow], results: list[ResponseResult], treatments: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient", "treatment", "outcome", *(f"p_{t}" for t in treatments), "status", "recommended"])
        for r, res in zip(rows, results):
            w.writerow([r.patient, r.treatment, r.outcome, *(o["probability"] for o in res.options), res.status,
                        res.recommended or ""])
