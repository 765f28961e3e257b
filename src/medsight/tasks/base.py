"""What every task provides, and the task registry.

A task bundles what differs between classification, segmentation and later detection:
the loss, the metrics, post-processing, the result type and its report section. The engine
(trainer, predictor) calls these and knows nothing else about the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.config import Config
from medsight.errors import ConfigError
from medsight.io.image import Image
from medsight.models.saved import SavedModel
from medsight.tasks.results import PredictionError, Result

if TYPE_CHECKING:  # pragma: no cover
    from medsight.report import Section

__all__ = ["Task", "get_task", "list_tasks"]


class Task(ABC):
    """A kind of problem MedSight solves."""

    name: str = ""
    #: The split ``evaluate`` scores when none is named (None: every labelled case).
    default_split: str | None = "test"
    #: The type of the results ``infer`` returns (its CSV columns, its writers).
    result_type: type = Result

    @abstractmethod
    def train(self, cfg: Config, *, run_dir: Path, observers: Sequence[Any] = (), resume: bool = False) -> SavedModel:
        """Train a model from ``cfg``; write the run folder; return the saved model."""

    @abstractmethod
    def evaluate(self, model: SavedModel, data: str, *, split: str | None = "test", **options: Any) -> dict[str, Any]:
        """Metrics of ``model`` on ``data`` (a path in any layout the task reads)."""

    @abstractmethod
    def infer(self, model: SavedModel, images: Sequence[Image], *, inputs: Sequence[str] | None = None) -> list[Any]:
        """Results for already-read images (the hot path shared by CLI, API and service)."""

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

    def explains(self, model: SavedModel) -> bool:
        """Whether :func:`medsight.explain.heatmap` can explain this model's predictions
        (class-activation or occlusion maps need a network that scores classes)."""
        return False

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


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def _load() -> None:
    from medsight.tasks import classification  # noqa: F401

    try:
        from medsight.tasks import segmentation  # noqa: F401
    except ImportError:  # segmentation is optional until it lands
        pass


def get_task(name: str) -> Task:
    _load()
    try:
        return _TASKS[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(sorted(_TASKS))}") from None


def list_tasks() -> list[str]:
    _load()
    return sorted(_TASKS)
