"""Typed configuration: loaded from YAML, overridable from the command line, saved into runs.

A config is a tree of pydantic models that refuse unknown keys, so a typo is an error with
the key's full dotted path, not a silently ignored setting. Which tree is chosen by ``task``
(default ``classification``): :class:`ClassificationRunConfig` or
:class:`SegmentationRunConfig`, each holding only the sections and keys its task reads, so a
``segmentation:`` section in a classification config (or ``train.ensemble`` in a segmentation
one) is an error too.

Example:
    >>> from medsight.config import load_config
    >>> cfg = load_config("configs/pneumonia-xray.yaml", overrides=["train.epochs=3"])  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from medsight.errors import ConfigError

__all__ = [
    "DataConfig",
    "ClassificationDataConfig",
    "SegmentationDataConfig",
    "PreprocessConfig",
    "ModelConfig",
    "TrainConfig",
    "ClassificationTrainConfig",
    "SegmentationTrainConfig",
    "EvalConfig",
    "SegmentationConfig",
    "Config",
    "ClassificationRunConfig",
    "SegmentationRunConfig",
    "load_config",
    "config_from_dict",
    "register_run_config",
    "apply_overrides",
    "save_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the data is and how it is split.

    ``source`` is a MedMNIST ``.npz`` (or ``medmnist:NAME[_SIZE]`` to download the official
    file), a class folder (``root/<class>/*``), a CSV manifest (``path,label[,split]``) or a
    Decathlon folder (``dataset.json``).
    """

    #: The keys that hold paths: relative ones are resolved against the config file's folder.
    PATH_KEYS: ClassVar[tuple[str, ...]] = ("source", "split_file")

    source: str
    format: Literal["auto", "medmnist", "folder", "csv", "decathlon"] = "auto"
    labels: list[str] | None = None
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: int = 0
    split_file: str | None = None


class ClassificationDataConfig(DataConfig):
    """Classification's data section: :class:`DataConfig` plus the positive class of a binary
    problem; its splits come from the data (MedMNIST's, a CSV ``split`` column, ``train/val/test``
    folders) or the seeded split, not from ``split_file``."""

    positive_label: str | None = None

    @field_validator("split_file")
    @classmethod
    def _no_split_file(cls, v: str | None) -> str | None:
        if v is not None:
            raise ValueError("is read by segmentation only; classification splits come from the data "
                             "(MedMNIST's, a CSV split column, train/val/test folders) or data.split_seed")
        return v


class SegmentationDataConfig(DataConfig):
    """Segmentation's data section: :class:`DataConfig` plus where the preprocessed training and
    validation cases live while training (:mod:`medsight.data.streaming`): ``memory`` (all held
    in RAM), ``disk`` (prepared once into ``.npy`` files under ``cache_dir``, keyed by the
    preprocessing spec, and read on demand) or ``none`` (read and prepared at every use)."""

    cache: Literal["memory", "disk", "none"] = "memory"
    cache_dir: str | None = None


class PreprocessConfig(_Strict):
    """How every image is prepared before the network, stored in the saved model."""

    spatial_size: list[int] | None = None
    channels: int = Field(1, ge=1, le=4)
    intensity: Literal["range", "percentile", "minmax", "zscore", "ct_window", "none"] = "range"
    a_min: float = 0.0
    a_max: float = 255.0
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    ct_window: str | None = None
    zscore: bool = True  # z-score with the training set's mean and std after scaling
    normalize_mean: float | None = None
    normalize_std: float | None = None

    @model_validator(mode="after")
    def _window_named(self) -> PreprocessConfig:
        if self.intensity == "ct_window" and not self.ct_window:
            raise ValueError("intensity ct_window needs preprocessing.ct_window (lung, mediastinum, bone, brain, "
                             "abdomen)")
        return self


class ModelConfig(_Strict):
    name: str = "resnet-small"
    params: dict[str, Any] = Field(default_factory=dict)


class EarlyStopConfig(_Strict):
    patience: int | None = Field(None, ge=1)
    min_delta: float = 0.0


class TrainConfig(_Strict):
    """What the shared trainer (``engine/trainer.py``) reads, for every task.

    ``monitor`` is the validation metric that picks the best epoch; each task's subclass sets
    its default and the names its validation reports.
    """

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["none", "cosine", "onecycle", "plateau"] = "onecycle"
    warmup_fraction: float = Field(0.15, ge=0, lt=1)
    sampler: Literal["none", "balanced"] = "none"
    monitor: str = "val_auc"
    monitor_mode: Literal["max", "min"] = "max"
    checkpoint: Literal["best", "last"] = "best"  # which epoch's weights the model keeps
    early_stopping: EarlyStopConfig = Field(default_factory=EarlyStopConfig)
    seed: int = 0
    deterministic: bool = True
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    max_minutes: float | None = Field(None, gt=0)
    steps_per_epoch: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: CPU autocast for forward and loss (AMX/AVX-512 CPUs)
    # the network's weights in channels-last order while it trains (convolutions then take oneDNN's
    # faster path on CPU: a 3D U-Net step 1.5x faster here); the same arithmetic up to float rounding
    channels_last: bool = False
    schedule_by: Literal["steps", "time"] = "steps"  # time: onecycle/cosine span max_minutes of wall time


class ClassificationTrainConfig(TrainConfig):
    """Classification's training section: the shared settings plus its loss, sampler and ensemble."""

    monitor: Literal["val_auc", "val_loss", "val_accuracy"] = "val_auc"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "balanced"
    save_dtype: Literal["float32", "float16"] = "float32"  # weights as saved; metrics use them as saved
    ensemble: int = Field(1, ge=1, le=10)


class SegmentationTrainConfig(TrainConfig):
    """Segmentation's training section: the shared settings; the best epoch by ``val_dice`` (the
    mean over labels) or ``val_dice_<label>``. No class-balanced sampler (patches are drawn
    foreground-first by ``segmentation.foreground_ratio``)."""

    sampler: Literal["none"] = "none"
    monitor: str = "val_dice"

    @field_validator("monitor")
    @classmethod
    def _monitor(cls, v: str) -> str:
        if v != "val_dice" and not v.startswith("val_dice_"):
            raise ValueError(f"segmentation validates val_dice and val_dice_<label>; got {v!r}")
        return v


class EvalConfig(_Strict):
    threshold_rule: str = "youden"
    bootstrap: int = Field(2000, ge=100)
    tta: bool = False  # average predictions over the image and its left-right mirror (not for chest X-rays)
    calibration: Literal["temperature", "none"] = "temperature"  # fitted on the validation split, stored in the model
    ood: bool = True  # store the training features' fingerprint: inputs far from it are referred
    ood_quantile: float = Field(0.99, gt=0.5, lt=1)  # of validation distances: the refer threshold
    # refer as "uncertain" when the predictive entropy is above this quantile of the validation
    # split's (stored as manifest.uncertainty); None: entropy is reported, nothing is referred for it
    uncertain_quantile: float | None = Field(None, gt=0.5, lt=1)

    @field_validator("threshold_rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        from medsight.metrics.thresholds import parse_rule

        parse_rule(v)
        return v


class SegmentationConfig(_Strict):
    """Segmentation settings; ``auto`` values come from the dataset fingerprint."""

    target_spacing: list[float] | Literal["auto"] = "auto"
    patch_size: list[int] | Literal["auto"] = "auto"
    normalization: Literal["auto", "zscore", "ct", "percentile"] = "auto"
    foreground_ratio: float = Field(0.67, ge=0, le=1)
    samples_per_volume: int = Field(2, ge=1)
    sw_batch_size: int = Field(4, ge=1)
    sw_overlap: float = Field(0.5, ge=0, lt=1)
    tta_flips: bool = False  # average over mirrored copies along mirror_axes (all axes if none)
    mirror_axes: list[int] | Literal["all"] = Field(default_factory=list)  # training: random flips along these axes
    largest_component: bool = True
    deep_supervision: bool = False
    max_patch_voxels: int | None = Field(None, ge=64)  # patch budget for "auto" (None: 96^3 in 3D, 512^2 in 2D)
    max_voxels: int = Field(16_000_000, ge=1000)  # larger volumes are predicted in slabs (bounded memory)
    surface_tolerance_mm: float = Field(1.0, gt=0)  # surface Dice tolerance


class Config(_Strict):
    """A complete training run: what every task reads. A run's config is one of the subclasses,
    chosen by ``task`` (:func:`config_from_dict`)."""

    task: str
    name: str = "model"
    version: str = Field("1.0.0", pattern=r"^[0-9A-Za-z.+-]{1,32}$")  # the saved model's version
    description: str = ""
    modalities: list[str] | None = None  # DICOM modalities the model accepts (None: any)
    intended_use: list[str] | None = None  # the model card's intended use (None: the generic statement)
    out_of_scope: list[str] | None = None  # the model card's out-of-scope uses (None: the generic statement)
    data: DataConfig
    augmentation: str = "none"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    _loaded_from: tuple[str, tuple[str, ...]] | None = PrivateAttr(None)  # (file, --set overrides): load_config

    def train_command(self, out: str) -> str | None:
        """The ``medsight train`` command that loads this config again (its file, as given to
        :func:`load_config`, and its ``--set`` overrides); None for a config not loaded from a file."""
        if self._loaded_from is None:
            return None
        path, overrides = self._loaded_from
        return shlex.join(["medsight", "train", path, *(a for o in overrides for a in ("--set", o)), "--out", out])


class ClassificationRunConfig(Config):
    """A classification run: preprocessing and evaluation (threshold rule) sections, no segmentation."""

    task: Literal["classification"] = "classification"
    data: ClassificationDataConfig
    preprocessing: PreprocessConfig = Field(default_factory=PreprocessConfig)
    train: ClassificationTrainConfig = Field(default_factory=ClassificationTrainConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)


class SegmentationRunConfig(Config):
    """A segmentation run: a segmentation section; preprocessing and evaluation are planned from
    the data (``segmentation.*``), so those sections are refused."""

    task: Literal["segmentation"] = "segmentation"
    data: SegmentationDataConfig
    train: SegmentationTrainConfig = Field(default_factory=SegmentationTrainConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)


#: The run configs by task: the built-in ones; a task registered as a plug-in adds its own
#: (:func:`register_run_config`, called by ``tasks.base.register_task``).
RUN_CONFIGS: dict[str, type[Config]] = {"classification": ClassificationRunConfig,
                                        "segmentation": SegmentationRunConfig}


def register_run_config(task: str, cls: type[Config]) -> None:
    """Make ``cls`` the run config of ``task`` (its ``task`` field must be ``Literal[task]``)."""
    RUN_CONFIGS[task] = cls
    _run_config_adapter.cache_clear()


def _task_of(value: Any) -> Any:
    task = value.get("task", "classification") if isinstance(value, dict) else getattr(value, "task", None)
    return task if isinstance(task, str) else repr(task)


@functools.lru_cache(maxsize=1)
def _run_config_adapter() -> TypeAdapter[Config]:
    """The union of the registered run configs, discriminated by ``task``."""
    members = tuple(Annotated[cls, Tag(name)] for name, cls in RUN_CONFIGS.items())
    return TypeAdapter(Annotated[Union[members], Discriminator(_task_of)])  # noqa: UP007 - a runtime tuple


def _keys_of(model: type[BaseModel], path: list[str]) -> bool:
    """Whether the dotted ``path`` names a key of ``model``."""
    head, rest = path[0], path[1:]
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    sub = field.annotation
    return isinstance(sub, type) and issubclass(sub, BaseModel) and _keys_of(sub, rest)


def format_validation(exc: ValidationError, *, tagged: bool = False) -> str:
    """pydantic's errors as one line: unknown and missing keys by name, others with the value given.

    A key that another task's config has (a ``segmentation:`` section in a classification
    config) is named as a key this task does not read. ``tagged``: the errors come from the union
    of run configs, whose locations start with the task tag (not from another config, such as
    the service's, whose ``response:`` section is not the response task).
    """
    parts = []
    for err in exc.errors()[:5]:
        loc_parts = [str(x) for x in err["loc"]]
        task = None
        if tagged and loc_parts and loc_parts[0] in RUN_CONFIGS:  # a run config: the first element is the task tag
            task = loc_parts.pop(0)
        loc = ".".join(loc_parts)
        if err["type"] == "union_tag_invalid":
            given = err["input"].get("task") if isinstance(err.get("input"), dict) else err.get("input")
            parts.append(f"'task' must be one of {', '.join(repr(t) for t in RUN_CONFIGS)}; got {given!r}")
        elif err["type"] == "extra_forbidden":
            owners = [name for name, cls in RUN_CONFIGS.items() if name != task and _keys_of(cls, loc_parts)]
            if task and owners:
                parts.append(f"'{loc}' is not read by task '{task}': it belongs to {' and '.join(owners)} configs "
                             f"(remove it, or set task: {owners[0]})")
            else:
                parts.append(f"unknown key '{loc}'")
        elif err["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        elif loc:
            msg, given = err["msg"].removeprefix("Value error, "), err.get("input")
            parts.append(f"'{loc}': {msg}" + ("" if isinstance(given, dict) else f" (got {given!r})"))
        else:  # a rule across keys (a model validator)
            parts.append(err["msg"])
    return "; ".join(parts)


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> Config:
    """Validate a plain dict as the run config of its ``task`` (a :class:`Config` subclass)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level; got {type(data).__name__}")
    if _task_of(data) not in RUN_CONFIGS:  # a task package's own config (detection, a plug-in): import them
        from medsight import plugins

        plugins.load()
    try:
        return _run_config_adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation(exc, tagged=True)}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a config dict."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy with plain types
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config, apply ``--set`` overrides and validate it.

    Relative data paths (``data.source``, ``data.split_file``, and those a task's data section
    adds in ``PATH_KEYS``) are resolved against the config
    file's folder when they exist there, else taken as given (from the working directory, like
    any path on a command line).

    Raises:
        ConfigError: the file is missing, is not YAML, or has unknown or invalid keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level; got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    cfg = config_from_dict(data, source=str(path))
    for key in cfg.data.PATH_KEYS:
        given = getattr(cfg.data, key)
        if given is None or given.startswith("medmnist:") or Path(given).is_absolute():
            continue
        beside = path.parent / given
        if beside.exists() and not Path(given).exists():
            setattr(cfg.data, key, str(beside))
    cfg._loaded_from = (str(path), tuple(overrides or ()))
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run really used)."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
