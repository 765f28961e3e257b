"""What every task provides, and the task registry.

A task is the whole plug-in for one kind of problem (classification, segmentation,
detection): its config section (:attr:`Task.config_type`, one member of the config union
chosen by ``task``), how its data is read and its network planned and built, its training step
and validation (:class:`~medsight.engine.trainer.TrainingHooks`), inference and
post-processing, evaluation, its report and model-card sections, and its Python front door.
The engine (the run skeleton :func:`medsight.engine.run.train_run`, the trainer, the
predictor) calls these hooks and knows nothing else about the task.

Tasks register with :func:`register_task`. Built-in tasks are imported here; other packages
register theirs as plug-ins (:mod:`medsight.plugins`): a ``medsight.tasks`` entry point, or a
module named in ``$MEDSIGHT_PLUGINS``. docs/extending.md walks through adding one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from medsight.config import Config, register_run_config
from medsight.data.case import Case
from medsight.errors import ConfigError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.tasks.results import PredictionError, Result

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medsight.engine.run import Finished, TrainingSetup
    from medsight.engine.trainer import TrainResult
    from medsight.report import Section

__all__ = ["Task", "EvaluateOption", "get_task", "list_tasks", "register_task"]


@dataclass(frozen=True)
class EvaluateOption:
    """An option of a task's :meth:`Task.evaluate` (or :meth:`Task.evaluate_outputs`) that
    ``medsight evaluate`` takes as ``--NAME VALUE`` (``name`` with dashes for underscores).

    Attributes:
        name: the keyword argument, e.g. ``min_diameter_mm`` (``--min-diameter-mm``).
        type: ``str``, ``int``, ``float``, ``Path`` or ``bool`` (a flag, no value).
        help: one line for ``medsight evaluate --task-options``.
        without_model: ``True``: only when scoring outputs without a model
            (:meth:`Task.evaluate_outputs`); ``False``: only with a model; None: both.
    """

    name: str
    type: type
    help: str
    without_model: bool | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Task(ABC):
    """A kind of problem MedSight solves."""

    name: str = ""
    #: The run config of this task (a :class:`~medsight.config.Config` subclass whose ``task``
    #: is ``Literal[name]``); registering the task registers it in the config union.
    config_type: type[Config] = Config
    #: The split ``evaluate`` scores when none is named (None: every labelled case).
    default_split: str | None = "test"
    #: The type of the results ``infer`` returns (its CSV columns, its writers).
    result_type: type = Result
    #: The task's own options of ``evaluate`` / ``evaluate_outputs`` (``medsight evaluate --NAME VALUE``).
    evaluate_options: ClassVar[tuple[EvaluateOption, ...]] = ()
    #: Whether :meth:`evaluate_outputs` scores outputs written earlier (a findings file) without a model.
    scores_outputs: ClassVar[bool] = False
    #: Whether the task's results recommend among options from one case with covariates
    #: (``medsight recommend``, ``model.recommend``): :meth:`infer_cases` on one
    #: :class:`~medsight.data.case.Case` built from an image and ``key=value`` covariates.
    recommends: ClassVar[bool] = False

    # -- training: the run skeleton (engine/run.py) calls these -------------------------------
    def train(self, cfg: Config, *, run_dir: Path, observers: Sequence[Any] = (), resume: bool = False) -> SavedModel:
        """Train a model from ``cfg``; write the run folder; return the saved model."""
        from medsight.engine.run import train_run

        return train_run(self, cfg, run_dir=run_dir, observers=observers, resume=resume)

    def prepare(self, cfg: Any, *, run_dir: Path) -> TrainingSetup:
        """Read the data and plan: the training dataset, the trainer's hooks, the resolved config."""
        raise NotImplementedError(f"the {self.name} task cannot be trained")

    def build_network(self, cfg: Any, prepared: TrainingSetup, member: int) -> torch.nn.Module:
        """One untrained network (``member``: its index in an ensemble)."""
        raise NotImplementedError(f"the {self.name} task cannot be trained")

    def finish(self, cfg: Any, prepared: TrainingSetup, networks: list[torch.nn.Module],
               results: list[TrainResult]) -> Finished:
        """The trained model (weights as trained, manifest) from the trained networks."""
        raise NotImplementedError(f"the {self.name} task cannot be trained")

    def evaluation_options(self, cfg: Any, *, split: str, eval_dir: Path) -> dict[str, Any]:
        """Options for :meth:`evaluate` after training (e.g. bootstrap size, a per-case CSV)."""
        return {}

    def headline(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        """The metrics of ``evaluation`` stored in the manifest and the run's summary."""
        return {k: v for k, v in evaluation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def reproduce(self, cfg: Config) -> str | None:
        """The command that retrains ``cfg`` (the model card shows it): the config file it was
        loaded from with its overrides, else a placeholder for the run's saved config."""
        return cfg.train_command(f"runs/{cfg.name}") or (
            "medsight train CONFIG.yaml --out RUN   # CONFIG.yaml: this run's config.yaml")

    # -- inference and evaluation --------------------------------------------------------------
    @abstractmethod
    def evaluate(self, model: SavedModel, data: str, *, split: str | None = "test", **options: Any) -> dict[str, Any]:
        """Metrics of ``model`` on ``data`` (a path in any layout the task reads)."""

    def calibrate(self, model: SavedModel, data: str, *, split: str = "val") -> SavedModel:
        """The model with its probabilities recalibrated on held-out labelled ``data`` (``medsight
        calibrate``); tasks whose outputs are not class probabilities do not calibrate."""
        raise ConfigError(f"the {self.name} task has no calibration step (it calibrates class probabilities)")

    def evaluate_outputs(self, *, data: str | None = None, **options: Any) -> dict[str, Any]:
        """Metrics of outputs saved earlier (e.g. a findings CSV) against the reference, without a
        model (``medsight evaluate`` without ``--model``); only tasks with :attr:`scores_outputs`."""
        raise NotImplementedError(f"the {self.name} task cannot score outputs without a model")

    @abstractmethod
    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        """Results for already-read images (the hot path shared by CLI, API and service)."""

    @staticmethod
    def input_names(images: Sequence[Image], inputs: Sequence[str] | None) -> list[str]:
        """The names ``infer`` gives its results: ``inputs`` when given, else each image's source."""
        return list(inputs) if inputs is not None else [im.source or f"image{i}" for i, im in enumerate(images)]

    def infer_cases(self, model: SavedModel, cases: Sequence[Case]) -> list[Any]:
        """Results for :class:`~medsight.data.case.Case` inputs: the unit of input of tasks that
        need more than one image or more than pixels (a fusion model: image + treatment code +
        covariates; response tracking: the current and the ``prior`` study). The default runs
        :meth:`infer` on each case's primary ``image``, named by the case id; a task that reads
        other roles, covariates or the time overrides it."""
        return self.infer(model, [c.image() for c in cases], inputs=[c.id for c in cases])

    def validate_input(self, model: SavedModel, image: Image) -> None:
        """Refuse an image the model cannot take: wrong number of dimensions or wrong modality.

        A model lists the DICOM modalities it accepts in ``spec.modalities``; images of
        unknown modality ("OT", e.g. a PNG) are accepted, since nothing says they are wrong.
        """
        from medsight.errors import ModalityError, ShapeError

        if image.n_spatial != model.spatial_dims:
            raise ShapeError(f"model {model.name} takes {model.spatial_dims}D images; got a {image.n_spatial}D image "
                             f"of shape {image.shape}", path=image.source)
        allowed = model.spec.modalities
        if allowed and image.modality not in ("OT", "", None) and image.modality not in allowed:
            raise ModalityError(f"model {model.name} takes {'/'.join(allowed)} images; this one is {image.modality}",
                                path=image.source)

    def expand_inputs(self, model: SavedModel, inputs: Sequence[str | Path]) -> list[str]:
        """Turn folders into the inputs they hold (files for 2D models, series for 3D)."""
        from medsight.io.discovery import expand_inputs

        return expand_inputs(inputs, spatial_dims=model.spatial_dims)

    def explain(self, model: SavedModel, image: Image, result: Any, *, method: str = "gradcam") -> Any:
        """``result`` (of ``image``) with its explanation attached: an overlay artifact that the
        writers save as PNG and Secondary Capture (``medsight explain``, ``predict --explain``),
        and ``result.heatmap`` saying how it was made. ``method`` is one of
        :meth:`explain_methods`."""
        raise ConfigError(f"the {self.name} task has no explanations")

    def explain_methods(self, model: SavedModel) -> tuple[str, ...]:
        """How this model's predictions can be explained, the default first (none: the task
        has no explanation). A classifier: class-activation and occlusion maps (they need the
        torch network); a segmentation model: its probability map; a detector: its findings
        drawn on the scan."""
        return ()

    def explains(self, model: SavedModel) -> bool:
        """Whether the model's predictions can be explained (:meth:`explain_methods`)."""
        return bool(self.explain_methods(model))

    def report_section(self, evaluation: dict[str, Any], *, model: SavedModel | None = None) -> Section:
        """The task's section of the HTML report of ``evaluation`` (its template and values)."""
        raise NotImplementedError(f"{self.name} has no report yet")

    def card_section(self, manifest: dict[str, Any]) -> Section:
        """The task's section of the model card of a model with this ``manifest``."""
        raise NotImplementedError(f"{self.name} has no model card yet")

    def error_result(self, input: str, exc: Exception) -> PredictionError:
        """What an input that could not be read or predicted becomes in the output list."""
        return PredictionError(input=input, error=str(exc), error_type=type(exc).__name__)

    def write_report(self, evaluation: dict[str, Any], path: Path, *, model: SavedModel | None = None) -> Path:
        """Write the task's self-contained HTML report for ``evaluation``."""
        from medsight.report import write_report

        return write_report(self.report_section(evaluation, model=model), path)

    def model_card(self, manifest: dict[str, Any], *, reproduce: str | None = None) -> str:
        """The Markdown model card of a model with this ``manifest`` (``reproduce``: the command
        that retrains it, else ``manifest["reproduce"]``)."""
        from medsight.report import render_card

        return render_card(self.card_section(manifest), manifest, reproduce=reproduce)


    #: The class :func:`medsight.load` returns this task's models as (a
    #: :class:`medsight.tasks.front.FrontDoor` subclass: predict, evaluate, save, and the
    #: task's own methods); None: the generic front door.
    front_door: type | None = None


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register a task (and its run config) under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _TASKS[cls.name] = cls
    if cls.config_type is not Config:
        register_run_config(cls.name, cls.config_type)
    return cls


def _load() -> None:
    from medsight import plugins

    plugins.load()  # the built-in task packages (plugins.BUILTIN), then the plug-ins


def get_task(name: str) -> Task:
    _load()
    try:
        return _TASKS[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(sorted(_TASKS))}") from None


def list_tasks() -> list[str]:
    _load()
    return sorted(_TASKS)
