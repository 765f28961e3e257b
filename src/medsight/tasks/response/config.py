"""The response run config (``task: response``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from medsight.config import Config, DataConfig, PreprocessConfig, TrainConfig

__all__ = ["ResponseDataConfig", "ResponseTrainConfig", "ResponseSection", "ResponseRunConfig"]


class ResponseDataConfig(DataConfig):
    """``source``: the CSV manifest (:mod:`medsight.tasks.response.data`); ``counterfactuals``:
    optionally, a simulated cohort's ``counterfactuals.csv`` (the outcome under every treatment),
    with which evaluation scores the recommendations exactly (policy value, regret)."""

    PATH_KEYS: ClassVar[tuple[str, ...]] = ("source", "split_file", "counterfactuals")

    format: Literal["auto", "csv"] = "auto"
    counterfactuals: str | None = None


class ResponseTrainConfig(TrainConfig):
    """The shared trainer's settings; ``ensemble`` networks (seeded apart) give the uncertainty."""

    monitor: Literal["val_loss", "val_auc"] = "val_auc"
    monitor_mode: Literal["max", "min"] = "max"
    batch_size: int = Field(64, ge=1)
    sampler: Literal["none"] = "none"
    ensemble: int = Field(5, ge=1, le=20)


class ResponseSection(BaseModel):
    """The response model and its recommendation rule.

    ``treatments``: the options in output order (default: those of the training rows, sorted);
    a row with another is an error. ``covariates``: the covariate columns (default: every
    column that is not reserved); ``categorical``: those read as categories though they look
    like numbers. ``propensity_weighting``: weight each training patient by the stabilised
    inverse probability of the treatment received, from a logistic regression on the
    covariates (clipped to ``weight_clip``), so that the heads are fitted as if the treatment
    had been assigned at random given the covariates. ``features``/``hidden``/``dropout``: the
    encoder's output width and the heads'. The refer rule: see
    :mod:`medsight.tasks.response.recommend`.
    """

    model_config = ConfigDict(extra="forbid")

    treatments: list[str] | None = Field(None, min_length=2)
    covariates: list[str] | None = None
    categorical: list[str] = Field(default_factory=list)
    propensity_weighting: bool = False
    weight_clip: float = Field(10.0, gt=1)
    features: int = Field(16, ge=1, le=512)
    hidden: int = Field(32, ge=1, le=1024)
    dropout: float = Field(0.1, ge=0, lt=1)
    margin_sd: float = Field(0.5, ge=0)
    min_margin: float = Field(0.02, ge=0, lt=1)
    max_sd: float = Field(0.15, gt=0, le=1)
    ood_quantile: float = Field(0.99, gt=0.5, lt=1)
    flips: bool = True  # training augmentation: random mirroring of each image axis
    noise: float = Field(0.03, ge=0, le=1)  # training augmentation: fresh Gaussian noise (input units) per step


class ResponseRunConfig(Config):
    """A response run: the image encoder is ``model`` (any registered backbone), the rest is
    ``response``."""

    task: Literal["response"] = "response"
    data: ResponseDataConfig
    preprocessing: PreprocessConfig = Field(default_factory=lambda: PreprocessConfig(spatial_size=[64, 64],
                                                                                     zscore=False))
    train: ResponseTrainConfig = Field(default_factory=ResponseTrainConfig)
    response: ResponseSection = Field(default_factory=ResponseSection)
