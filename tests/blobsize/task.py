"""The blob-size task: from an image, the diameter of the bright disc it shows, in mm.

Everything a task is lives here (docs/extending.md, step by step):

1. its run config (:class:`BlobSizeConfig`, ``task: blob-size``), one member of the config union;
2. its result type (:class:`BlobSizeResult`): ``to_dict``, ``findings`` (with units), CSV columns;
3. the task (:class:`BlobSizeTask`): ``prepare`` / ``build_network`` / ``finish`` for the run
   skeleton, :class:`BlobHooks` (training step and validation) for the trainer, ``infer`` and
   ``evaluate``, and its report and card sections (templates in ``templates/``).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from medsight.config import Config, DataConfig, TrainConfig
from medsight.engine.run import Finished, TrainingSetup
from medsight.engine.trainer import TrainingHooks
from medsight.errors import DataError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.report import Section
from medsight.tasks.base import Task, register_task
from medsight.tasks.results import Finding, Provenance, Result, array_sha256

TEMPLATES = Path(__file__).parent / "templates"


# -- 1. the config section ------------------------------------------------------------------
class BlobSection(BaseModel):
    """The task's own section: the side length images are resized to."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(32, ge=16, le=256)


class BlobTrainConfig(TrainConfig):
    """The shared training settings with this task's monitor (validation mean absolute error)."""

    monitor: Literal["val_mae", "val_loss"] = "val_mae"
    monitor_mode: Literal["max", "min"] = "min"
    batch_size: int = Field(16, ge=1)


class BlobSizeConfig(Config):
    """``data.source``: a CSV manifest ``path,diameter,split`` (paths relative to it)."""

    task: Literal["blob-size"] = "blob-size"
    data: DataConfig
    train: BlobTrainConfig = Field(default_factory=BlobTrainConfig)
    blob: BlobSection = Field(default_factory=BlobSection)


# -- 2. the result type -------------------------------------------------------------------------
@dataclass
class BlobSizeResult(Result):
    """The blob's diameter in mm (in the input's own pixel spacing)."""

    input: str
    diameter_mm: float
    provenance: Provenance
    task: str = "blob-size"

    def findings(self) -> list[Finding]:
        return [Finding("blob_diameter_mm", self.diameter_mm, "mm", title="Blob diameter")]

    @classmethod
    def csv_columns(cls, model: Any) -> list[str]:
        return ["diameter_mm"]

    def csv_row(self) -> dict[str, Any]:
        return {"input": self.input, "diameter_mm": self.diameter_mm}

    def summary(self) -> tuple[str, str]:
        return f"{self.diameter_mm:.1f} mm", ""


# -- 3. the task --------------------------------------------------------------------------------
def read_manifest(source: str | Path, split: str | None) -> list[tuple[str, float]]:
    """``(image path, diameter in pixels)`` of the rows of ``split`` (None: every row)."""
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: the blob-size task reads a CSV manifest (path,diameter,split); no such file")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "diameter", "split"} <= set(rows[0]):
        raise DataError(f"{path}: expected the columns path, diameter, split; got {', '.join(rows[0])}")
    return [(str(path.parent / r["path"]), float(r["diameter"])) for r in rows if split in (None, r["split"])]


def _spec(size: int) -> dict[str, Any]:
    return {"spatial_size": [size, size], "channels": 1, "intensity": "range", "a_min": 0.0, "a_max": 255.0,
            "zscore": False}


def _tensor(model_spec: dict[str, Any], images: Sequence[Image]) -> torch.Tensor:
    from medsight.transforms.preprocess import Preprocessor

    pre = Preprocessor(model_spec, spatial_dims=2)
    return torch.stack([pre(im) for im in images])


def _predict(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """Diameters in pixels of the network grid (the network answers a fraction of its side).

    ``run``: ``SavedModel.run`` at inference, or the bare network (put in eval mode here) while
    it trains."""
    if isinstance(run, torch.nn.Module):
        run.eval()
    with torch.inference_mode():
        return run(x)[:, 0].numpy().astype(np.float64) * x.shape[-1] if len(x) else np.zeros(0)


class BlobHooks(TrainingHooks):
    """The trainer's view: mean squared error on a batch; validation MAE and MSE (pixels)."""

    def __init__(self, x_val: torch.Tensor, y_val: np.ndarray) -> None:
        self.x_val, self.y_val = x_val, y_val

    def training_step(self, network: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(network(x)[:, 0], y.float() / x.shape[-1])

    def validate(self, network: torch.nn.Module) -> dict[str, float]:
        err = _predict(network, self.x_val) - self.y_val
        network.train()
        return {"val_mae": float(np.abs(err).mean()), "val_loss": float((err ** 2).mean())}


@register_task
class BlobSizeTask(Task):
    name = "blob-size"
    config_type = BlobSizeConfig
    result_type = BlobSizeResult

    # the run skeleton's hooks
    def prepare(self, cfg: BlobSizeConfig, *, run_dir: Path) -> TrainingSetup:
        from medsight.io import read

        spec = _spec(cfg.blob.size)
        split = {}
        for name in ("train", "val", "test"):
            rows = read_manifest(cfg.data.source, name)
            x = _tensor(spec, [read(p) for p, _ in rows]) if rows else torch.zeros(0, 1, cfg.blob.size, cfg.blob.size)
            split[name] = (x, np.array([d for _, d in rows], np.float32))
        if not len(split["train"][0]) or not len(split["val"][0]):
            raise DataError(f"{cfg.data.source}: the blob-size task needs train and val rows")
        train = torch.utils.data.TensorDataset(split["train"][0], torch.from_numpy(split["train"][1]))
        return TrainingSetup(train=train, hooks=BlobHooks(*split["val"]), config=cfg,
                        splits=[s for s in ("val", "test") if len(split[s][0])], state={"spec": spec})

    def build_network(self, cfg: BlobSizeConfig, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        from medsight.models.registry import create_model

        return create_model(cfg.model.name, spatial_dims=2, in_channels=1, num_classes=1, **cfg.model.params)

    def finish(self, cfg: BlobSizeConfig, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[Any]) -> Finished:
        manifest = {
            "name": cfg.name, "version": cfg.version, "task": self.name, "description": cfg.description,
            "architecture": {"name": cfg.model.name, "params": dict(cfg.model.params), "spatial_dims": 2,
                             "in_channels": 1, "num_classes": 1},
            "preprocessing": prepared.state["spec"], "modalities": cfg.modalities, "labels": ["diameter"],
            "training": {"data": str(cfg.data.source), "config": cfg.model_dump(mode="json"),
                         "best_epochs": [r.best_epoch for r in results]},
        }
        return Finished(model=SavedModel(network=networks[0], manifest=manifest))

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        return {k: evaluation[k] for k in ("n", "mae_mm", "mae_mm_ci95", "r")}

    # inference and evaluation
    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        for im in images:
            self.validate_input(model, im)
        t0 = time.perf_counter()
        grid = _predict(model.run, torch.stack([model.preprocessor(im) for im in images]))
        seconds = (time.perf_counter() - t0) / max(len(images), 1)
        size = model.manifest["preprocessing"]["spatial_size"][-1]
        names = self.input_names(images, inputs)
        out = []
        for d, name, im in zip(grid, names, images):  # network-grid pixels → input pixels → mm
            mm = float(d) * im.shape[-1] / size * float(im.spacing[-1])
            prov = Provenance(model=model.name, model_version=model.version,
                              weights_sha256=model.manifest.get("weights_sha256"),
                              input_sha256=array_sha256(im.array), seconds=seconds,
                              series_uid=im.series_uid, sop_uids=list(im.sop_uids))
            out.append(BlobSizeResult(input=name, diameter_mm=round(mm, 3), provenance=prov))
        return out

    def evaluate(self, model: SavedModel, data: str | DataConfig, *, split: str | None = "test",
                 n_boot: int = 1000, seed: int = 0, **_: Any) -> dict[str, Any]:
        """Mean absolute error in mm (with a bootstrap 95% interval), RMSE and Pearson's r."""
        from medsight.io import read

        source = data.source if isinstance(data, DataConfig) else data
        rows = read_manifest(source, None if split in (None, "all") else split)
        if not rows:
            raise DataError(f"{source}: the {split} split is empty")
        images = [read(p) for p, _ in rows]
        pred = np.array([r.diameter_mm for r in self.infer(model, images)])
        truth = np.array([d * float(im.spacing[-1]) for (_, d), im in zip(rows, images)])
        err = pred - truth
        rng = np.random.default_rng(seed)
        boot = [np.abs(err[rng.integers(0, len(err), len(err))]).mean() for _ in range(n_boot)]
        r = float(np.corrcoef(pred, truth)[0, 1]) if len(err) > 2 and pred.std() > 0 else 0.0
        return {"task": self.name, "model": model.name, "model_version": model.version, "data": str(source),
                "split": split or "all", "n": len(err), "mae_mm": round(float(np.abs(err).mean()), 4),
                "mae_mm_ci95": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)],
                "rmse_mm": round(float(np.sqrt((err ** 2).mean())), 4), "r": round(r, 4),
                "cases": [{"input": p, "truth_mm": float(t), "predicted_mm": float(q)}
                          for (p, _), t, q in zip(rows, truth, pred)]}

    def evaluation_options(self, cfg: BlobSizeConfig, *, split: str, eval_dir: Path) -> dict[str, Any]:
        return {"seed": cfg.train.seed}

    # report and card
    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None) -> Section:
        provenance = [("model", evaluation["model"]), ("version", evaluation["model_version"]),
                      ("data", evaluation["data"])]
        if model is not None:
            provenance.append(("weights sha256", model.manifest.get("weights_sha256")))
        return Section("blobsize.html.j2", folder=TEMPLATES, context={
            "title": f"Blob size evaluation: {evaluation['model']}", "ev": evaluation, "provenance": provenance})

    def card_section(self, manifest: dict[str, Any]) -> Section:
        statements = {  # what every card states (report/render.py CARD_STATEMENTS)
            "card_fingerprint": [f"Training data: {manifest.get('training', {}).get('data')} (synthetic discs)"],
            "card_calibration": ["Not applicable: the output is a diameter in mm, not a probability"],
            "card_refer": ["None: every image the model accepts gets a diameter"]}
        return Section("blobsize.md.j2", folder=TEMPLATES, context={"m": manifest, **statements})
