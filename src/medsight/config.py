"""Typed configuration: loaded from YAML, overridable from the command line, saved into runs.

A config is a tree of pydantic models that refuse unknown keys, so a typo is an error with
the key's full dotted path, not a silently ignored setting.

Example:
    >>> from medsight.config import load_config
    >>> cfg = load_config("configs/pneumonia-xray.yaml", overrides=["train.epochs=3"])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medsight.errors import ConfigError

__all__ = [
    "DataConfig",
    "PreprocessConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "SegmentationConfig",
    "Config",
    "load_config",
    "config_from_dict",
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

    source: str
    format: Literal["auto", "medmnist", "folder", "csv", "decathlon"] = "auto"
    labels: list[str] | None = None
    positive_label: str | None = None
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: int = 0
    split_file: str | None = None
    cache: bool = True


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


class ModelConfig(_Strict):
    name: str = "resnet-small"
    params: dict[str, Any] = Field(default_factory=dict)


class EarlyStopConfig(_Strict):
    patience: int | None = Field(None, ge=1)
    min_delta: float = 0.0


class TrainConfig(_Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["none", "cosine", "onecycle", "plateau"] = "onecycle"
    warmup_fraction: float = Field(0.15, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "balanced"
    sampler: Literal["none", "balanced"] = "none"
    monitor: str = "val_auc"
    monitor_mode: Literal["max", "min"] = "max"
    checkpoint: Literal["best", "last"] = "best"  # which epoch's weights the model keeps
    save_dtype: Literal["float32", "float16"] = "float32"  # weights as saved; metrics use them as saved
    early_stopping: EarlyStopConfig = Field(default_factory=EarlyStopConfig)
    seed: int = 0
    deterministic: bool = True
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    max_minutes: float | None = Field(None, gt=0)
    ensemble: int = Field(1, ge=1, le=10)
    ema: float | None = Field(None, gt=0, lt=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: CPU autocast for forward and loss (AMX/AVX-512 CPUs)
    schedule_by: Literal["steps", "time"] = "steps"  # time: onecycle/cosine span max_minutes of wall time


class EvalConfig(_Strict):
    threshold_rule: str = "youden"
    bootstrap: int = Field(2000, ge=100)
    ci: float = Field(0.95, gt=0, lt=1)
    tta: bool = False  # average predictions over the image and its left-right mirror (not for chest X-rays)

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
    """A complete training run."""

    task: Literal["classification", "segmentation"] = "classification"
    name: str = "model"
    description: str = ""
    modalities: list[str] | None = None  # DICOM modalities the model accepts (None: any)
    data: DataConfig
    preprocessing: PreprocessConfig = Field(default_factory=PreprocessConfig)
    augmentation: str = "none"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)


def format_validation(exc: ValidationError) -> str:
    """pydantic's errors as one line: unknown and missing keys by name, others with the value given."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif err["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        elif loc:
            parts.append(f"'{loc}': {err['msg']} (got {err.get('input')!r})")
        else:  # a rule across keys (a model validator)
            parts.append(err["msg"])
    return "; ".join(parts)


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> Config:
    """Validate a plain dict as a :class:`Config`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level; got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation(exc)}") from None


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

    Relative data paths are resolved against the config file's folder when they exist there,
    else against the working directory.

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
    src = cfg.data.source
    if not src.startswith("medmnist:") and not Path(src).is_absolute():
        beside = (path.parent / src)
        if beside.exists() and not Path(src).exists():
            cfg.data.source = str(beside)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run really used)."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
