"""The detection run config (``task: detection``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medsight.config import Config, DataConfig, ModelConfig, TrainConfig

__all__ = ["DetectionDataConfig", "DetectionTrainConfig", "DetectionSection", "DetectionRunConfig"]


class DetectionDataConfig(DataConfig):
    """The scans' folder (``source``: ``.mhd``/``.mha``, ``.nii``/``.nii.gz`` named by series UID,
    or DICOM series folders, at any depth) and LUNA16's annotation files (see
    :mod:`medsight.tasks.detection.data`): ``annotations`` (default ``annotations.csv`` in the
    folder, or the one under it), ``excluded`` and ``seriesuids`` (default: the files of those
    names beside the annotations). Listed scans that are not on disk are left out and counted
    (``missing_scans: error`` refuses them). Splits are seeded over the scans unless
    ``split_file`` names them. ``max_cases`` reads only the first N scans (by series UID), for
    quick runs. ``negatives`` names a LUNA16 candidates file (``seriesuid,coordX,coordY,coordZ,
    class``) whose class-0 rows training teaches as background (``detection.p_negative``)."""

    PATH_KEYS: ClassVar[tuple[str, ...]] = ("source", "split_file", "annotations", "excluded", "seriesuids",
                                            "negatives")

    annotations: str | None = None
    excluded: str | None = None
    seriesuids: str | None = None
    negatives: str | None = None
    missing_scans: Literal["skip", "error"] = "skip"
    max_cases: int | None = Field(None, ge=1)


class DetectionTrainConfig(TrainConfig):
    """The shared trainer's settings; the best epoch by the validation CPM."""

    monitor: Literal["val_cpm", "val_loss"] = "val_cpm"
    monitor_mode: Literal["max", "min"] = "max"
    batch_size: int = Field(8, ge=1)
    steps_per_epoch: int | None = Field(100, ge=1)
    sampler: Literal["none"] = "none"


class DetectionSection(BaseModel):
    """How the detector sees a scan, how training patches are drawn and how candidates become
    findings. Sizes are mm unless named voxels."""

    model_config = ConfigDict(extra="forbid")
    spacing_mm: float = Field(1.0, gt=0.2, le=4.0)          # isotropic network grid
    patch_size: list[int] = Field(default_factory=lambda: [48, 48, 48], min_length=3, max_length=3)
    infer_patch_size: list[int] = Field(default_factory=lambda: [96, 96, 96], min_length=3, max_length=3)
    overlap: float = Field(0.25, ge=0, lt=1)
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    lung_margin_mm: float = Field(10.0, ge=0)
    # training patches: centred on a nodule, an excluded annotation, a known non-nodule, or anywhere in the lungs
    p_nodule: float = Field(0.5, ge=0, le=1)
    p_excluded: float = Field(0.2, ge=0, le=1)
    p_hard: float = Field(0.0, ge=0, le=1)                 # centred on a false positive the network makes (mined)
    p_negative: float = Field(0.0, ge=0, le=1)             # centred on a known non-nodule (data.negatives)
    mine_scans: int = Field(0, ge=0)                         # training scans mined for them after each validation
    mine_threshold: float = Field(0.5, gt=0, lt=1)          # a false positive: a component of p above this ...
    max_hard: int = Field(8, ge=1)                           # ... the highest this many per scan
    nodule_sampling: Literal["uniform", "by_size"] = "uniform"  # by_size: smaller nodules centred on more often
    jitter_voxels: int = Field(16, ge=0)
    ignore_radius_mm: float = Field(3.0, ge=0)  # excluded annotations without a size: out of the loss within this
    p_slab: float = Field(0.15, ge=0, le=1)                  # cut a patch to a thin slab (real slabs are 11-16 slices)
    weight_ref_mm: float = Field(10.0, gt=0)                # nodules smaller than this weigh as much as one this size
    max_voxel_weight: float = Field(1.0, ge=1)              # 1: every voxel alike (the shipped model)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    val_cases: int = Field(8, ge=1)                          # validation scans scored each epoch (CPM)
    # candidates → findings
    candidate_threshold: float = Field(0.1, gt=0, lt=1)     # a candidate is a component of p above this
    size_threshold: float = Field(0.5, gt=0, lt=1)          # its size: voxels of p above this
    measure: Literal["probability", "attenuation"] = "probability"  # attenuation: grown in HU (candidates.py)
    grow_mm: float = Field(3.0, ge=0, le=20)                # how far beyond its component a nodule may grow
    max_findings: int = Field(100, ge=1)
    drop_outside_lungs: bool = True
    operating_fp_per_scan: float = Field(1.0, gt=0)        # the threshold is chosen on val at this FP rate
    solid_hu: float = -300.0                                 # solid tissue is at least this
    lung_rads: dict[str, Any] | None = None                  # a site's LungRadsTable; None: Lung-RADS v2022

    @model_validator(mode="after")
    def _shares(self) -> DetectionSection:
        if self.p_nodule + self.p_excluded + self.p_hard + self.p_negative > 1.0 + 1e-9:
            raise ValueError(f"detection.p_nodule + p_excluded + p_hard + p_negative is the share of patches "
                             f"centred on something, at most 1; got {self.p_nodule} + {self.p_excluded} + "
                             f"{self.p_hard} + {self.p_negative}")
        return self


class DetectionRunConfig(Config):
    task: Literal["detection"] = "detection"
    data: DetectionDataConfig
    modalities: list[str] | None = Field(default_factory=lambda: ["CT"])
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(
        name="unet", params={"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}))
    train: DetectionTrainConfig = Field(default_factory=DetectionTrainConfig)
    detection: DetectionSection = Field(default_factory=DetectionSection)
