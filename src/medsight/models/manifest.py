"""The typed contract of a saved model's ``manifest.json``.

A :class:`Manifest` states what a model folder carries (like timm's pretrained config): its
name and task, the architecture to build, the preprocessing that turns an image into the
network's input, label names, the operating point(s), and what an auditor asks (training data,
metrics, versions, weights checksum).

* **Preprocessing is a discriminated union** on ``kind``: ``"resize"`` (classification: resize
  to a fixed ``spatial_size`` and map intensities to [0, 1], :class:`ResizePreprocessing`) or
  ``"spacing"`` (segmentation, and detection next: resample to a ``target_spacing`` in mm and
  normalise per channel, :class:`SpacingPreprocessing`). Manifests written before ``kind``
  existed are told apart by their keys: ``target_spacing`` or ``normalization`` means
  ``spacing``.
* **Nothing is lost**: every section allows keys it does not declare (kept as extras), and
  :meth:`Manifest.to_dict` gives back exactly the keys that were read, in the order they were
  read, with only those added or changed since. A shipped manifest read and dumped is the same
  JSON.
* **Bad manifests** raise :class:`~medsight.errors.ModelFileError` with one line naming the
  field, what was expected and what was found (:func:`parse_manifest`).

``SavedModel.manifest`` stays the plain JSON dict (what trainers build and what is written);
``SavedModel.spec`` is this typed view of it (see docs/design.md, "Saved models").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)

from medsight.errors import ModelFileError

__all__ = ["Manifest", "FailureMode", "DriftReference", "Architecture", "ResizePreprocessing", "SpacingPreprocessing",
           "ChannelNormalization", "SlidingWindowInference", "DetectionInference", "ResponseSpec", "CovariateSpec",
           "Preprocessing", "parse_manifest", "preprocessing_kind"]


class _Section(BaseModel):
    """A manifest section: undeclared keys are kept (extras)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: Any) -> Any:
        out = handler(data)
        if isinstance(data, dict):
            out._order = list(data)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON dict: the keys read (in their order) and those set since; defaults that
        were never written stay unwritten."""
        return _ordered(self, self.model_dump(mode="json", exclude_unset=True))


def _ordered(section: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """``dumped`` with each section's keys in the order they were read (new keys last)."""
    order = {k: i for i, k in enumerate(getattr(section, "_order", []))}
    out = {}
    for k in sorted(dumped, key=lambda k: order.get(k, len(order))):
        value, sub = dumped[k], getattr(section, k, None)
        if isinstance(sub, BaseModel) and isinstance(value, dict):
            value = _ordered(sub, value)
        elif isinstance(sub, list) and isinstance(value, list):
            value = [_ordered(s, v) if isinstance(s, BaseModel) and isinstance(v, dict) else v
                     for s, v in zip(sub, value)]
        out[k] = value
    return out


class Architecture(_Section):
    """What network to build (``models.registry.create_model`` arguments).

    ``name``, ``in_channels`` and ``num_classes`` are needed to load weights; an in-memory
    model wrapping a network it was handed may leave them out.
    """

    name: str | None = None
    spatial_dims: Literal[2, 3]
    in_channels: int | None = Field(default=None, ge=1)
    num_classes: int | None = Field(default=None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    ensemble: int = Field(default=1, ge=1)
    multilabel: bool = False


class ResizePreprocessing(_Section):
    """Classification: channels, intensity to [0, 1], resize to ``spatial_size``, z-score
    (:class:`medsight.transforms.preprocess.Preprocessor`)."""

    kind: Literal["resize"] = "resize"
    spatial_size: list[Annotated[int, Field(ge=1)]] | None = None
    channels: int = Field(default=1, ge=1)
    intensity: Literal["range", "percentile", "minmax", "ct_window", "zscore", "none"] = "range"
    a_min: float = 0.0
    a_max: float = 255.0
    lower_percentile: float = Field(default=0.5, ge=0, le=100)
    upper_percentile: float = Field(default=99.5, ge=0, le=100)
    ct_window: str | None = None
    zscore: bool = True
    normalize_mean: float | None = None
    normalize_std: float | None = Field(default=None, gt=0)


class ChannelNormalization(_Section):
    """How one channel's intensities are normalised (``zscore``, ``percentile`` then z-score,
    or ``ct``: clip to ``lower``..``upper`` HU, subtract ``mean``, divide by ``sd``)."""

    scheme: Literal["zscore", "percentile", "ct"] = "zscore"
    lower: float | None = None
    upper: float | None = None
    mean: float | None = None
    sd: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ct_needs_statistics(self) -> ChannelNormalization:
        if self.scheme == "ct":
            missing = [k for k in ("lower", "upper", "mean", "sd") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"scheme 'ct' needs {', '.join(missing)}")
        return self


class SpacingPreprocessing(_Section):
    """Segmentation (and anything on a physical grid): resample to ``target_spacing`` (mm,
    array axis order), normalise each channel
    (:class:`medsight.transforms.preprocess.SpacingPreprocessor`)."""

    kind: Literal["spacing"] = "spacing"
    target_spacing: list[Annotated[float, Field(gt=0)]] = Field(min_length=2, max_length=3)
    normalization: list[ChannelNormalization] = Field(min_length=1)
    channels: int | None = Field(default=None, ge=1)

    @property
    def n_channels(self) -> int:
        return self.channels if self.channels is not None else len(self.normalization)


_KINDS = ("resize", "spacing")


def preprocessing_kind(section: Any) -> str:
    """The ``kind`` of a preprocessing section: as written, else (manifests from before
    ``kind``) ``spacing`` when it has a ``target_spacing`` or a ``normalization``, else
    ``resize``."""
    if isinstance(section, BaseModel):
        return str(getattr(section, "kind", "resize"))
    if isinstance(section, dict):
        if section.get("kind"):
            return str(section["kind"])
        return "spacing" if "target_spacing" in section or "normalization" in section else "resize"
    return "resize"


Preprocessing = Annotated[
    Annotated[ResizePreprocessing, Tag("resize")] | Annotated[SpacingPreprocessing, Tag("spacing")],
    Discriminator(preprocessing_kind),
]


class SlidingWindowInference(_Section):
    """Segmentation inference: window, overlap, flip TTA, precision and post-processing."""

    patch_size: list[Annotated[int, Field(ge=1)]]
    overlap: float = Field(default=0.5, ge=0, lt=1)
    sw_batch_size: int = Field(default=4, ge=1)
    tta_flips: bool | list[int] = False
    precision: Literal["fp32", "bf16"] = "fp32"
    largest_component: bool | list[int] = Field(default_factory=list)
    max_voxels: int = Field(default=16_000_000, ge=1)
    surface_tolerance_mm: float = Field(default=1.0, gt=0)


class DetectionInference(_Section):
    """Detection inference (``medsight.tasks.detection``): sliding window over the lung crop,
    candidates from the nodule probability, how they are measured and filtered."""

    patch_size: list[Annotated[int, Field(ge=1)]] = Field(min_length=3, max_length=3)
    overlap: float = Field(default=0.25, ge=0, lt=1)
    sw_batch_size: int = Field(default=2, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    tta_flips: bool | list[Annotated[int, Field(ge=0, le=2)]] = False  # average over mirrorings (engine.sliding)
    hu_window: list[float] = Field(default_factory=lambda: [-1000.0, 400.0], min_length=2, max_length=2)
    lung_margin_mm: float = Field(default=10.0, ge=0)
    candidate_threshold: float = Field(default=0.1, gt=0, lt=1)
    size_threshold: float = Field(default=0.5, gt=0, lt=1)
    measure: Literal["probability", "attenuation"] = "probability"
    grow_mm: float = Field(default=3.0, ge=0, le=20)
    max_findings: int = Field(default=100, ge=1)
    drop_outside_lungs: bool = True
    solid_hu: float = -300.0
    lung_rads: dict[str, Any] | None = None


class CovariateSpec(_Section):
    """One clinical covariate of a response model and how it is encoded: a ``number`` is
    z-scored with the training set's ``mean`` and ``std``; a ``category`` is one-hot over ``levels``."""

    name: str
    kind: Literal["number", "category"]
    mean: float | None = None
    std: float | None = Field(default=None, gt=0)
    levels: list[str] | None = None

    @model_validator(mode="after")
    def _complete(self) -> CovariateSpec:
        if self.kind == "number" and (self.mean is None or self.std is None):
            raise ValueError(f"covariate {self.name!r}: a number needs mean and std")
        if self.kind == "category" and not self.levels:
            raise ValueError(f"covariate {self.name!r}: a category needs levels")
        return self


class ResponseSpec(_Section):
    """A response model (``medsight.tasks.response``): the treatments in output order, the
    covariates, the ensemble's size, the refer rule and the training data's representation
    statistics (for "refer: input unlike training data")."""

    treatments: list[str] = Field(min_length=2)
    covariates: list[CovariateSpec] = Field(default_factory=list)
    members: int = Field(default=1, ge=1)
    features: int = Field(ge=1)
    fallback: str | None = None
    margin_sd: float = Field(default=0.5, ge=0)
    min_margin: float = Field(default=0.02, ge=0, lt=1)
    max_sd: float = Field(default=0.15, gt=0, le=1)
    ood_mean: list[float] | None = None
    ood_precision: list[list[float]] | None = None
    ood_threshold: float | None = Field(default=None, gt=0)
    ood_quantile: float | None = None


class DriftBins(_Section):
    """A distribution of the validation split: inner bin ``edges`` and the share in each bin."""

    edges: list[float]
    shares: list[float]

    @model_validator(mode="after")
    def _sizes(self) -> DriftBins:
        if len(self.shares) != len(self.edges) + 1 or self.edges != sorted(self.edges):
            raise ValueError(f"{len(self.edges)} sorted edges need {len(self.edges) + 1} shares; got "
                             f"{len(self.shares)}")
        return self


class DriftReference(_Section):
    """What the service's drift monitor compares recent predictions with
    (:mod:`medsight.metrics.drift`): the validation split's distributions and rates."""

    n: int = Field(ge=1)
    bins: int = Field(default=10, ge=2)
    split: str = "validation"
    distributions: dict[Literal["distance", "score"], DriftBins] = Field(default_factory=dict)
    rates: dict[Literal["refer", "positive"], float] = Field(default_factory=dict)


class FailureMode(_Section):
    """A known failure mode measured on this machine, for the model card (``scripts/model_cards.py``).

    Attributes:
        check: what was given to the model (e.g. "BreastMNIST ultrasound test images as PNG").
        result: what it did, with the number (e.g. "referred 156 of 156 (100 %)").
        data: ``real`` or ``synthetic``: which the inputs were.
        measured: the date it was measured (ISO 8601).
        command: the command that measures it again.
    """

    check: str
    result: str
    data: Literal["real", "synthetic"]
    measured: str | None = None
    command: str | None = None


class Manifest(_Section):
    """A saved model's manifest, typed. See the module docstring.

    Classification keys: ``multilabel``, ``positive_index`` (binary), ``threshold`` (binary
    operating point on P(positive)), ``thresholds`` (multi-label), ``tta``, ``temperature``
    (logits are divided by it before softmax/sigmoid) and ``calibration`` (how it was fitted). Segmentation keys:
    ``inference``, ``label_values`` (label value of each class index), ``plan``. Detection: ``detection``
    (:class:`DetectionInference`) and ``threshold`` (the operating point on the nodule score).
    """

    format: str | None = None
    format_version: int | None = None
    name: str = "model"
    version: str = "0"
    task: str
    description: str = ""
    architecture: Architecture
    preprocessing: Preprocessing
    modalities: list[str] | None = None
    labels: list[str] = Field(default_factory=list)
    augmentation: str | None = None
    weights_dtype: Literal["float32", "float16"] = "float32"
    # classification
    multilabel: bool = False
    positive_index: int | None = Field(default=None, ge=0)
    positive_label: str | None = None
    threshold: float = 0.5
    thresholds: list[float] | None = None
    threshold_rule: str | None = None
    tta: bool = False
    temperature: float = Field(default=1.0, gt=0)  # logits are divided by it (temperature scaling; 1: none)
    calibration: dict[str, Any] | None = None  # how the temperature was fitted, and the ECE before and after
    ood: dict[str, Any] | None = None  # the training features' fingerprint and refer threshold (metrics/ood.py)
    drift: DriftReference | None = None  # the validation statistics the service's drift monitor tests against
    # segmentation
    inference: SlidingWindowInference | None = None
    label_values: list[int] | None = None
    plan: dict[str, Any] | None = None
    # detection
    detection: DetectionInference | None = None
    # response
    response: ResponseSpec | None = None
    # provenance
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    weights_sha256: str | None = None
    created: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    reproduce: str | None = None
    # the model card's statements (config ``intended_use`` / ``out_of_scope``; failure modes measured)
    intended_use: list[str] | None = None
    out_of_scope: list[str] | None = None
    failure_modes: list[FailureMode] | None = None
    notes: list[str] | None = None
    exports: dict[str, dict[str, Any]] | None = None  # the exported graphs beside the weights (models/export.py)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        n = len(self.labels)
        if self.positive_index is not None and n and self.positive_index >= n:
            raise ValueError(f"positive_index {self.positive_index} is not an index into the {n} labels")
        if self.label_values is not None and n and len(self.label_values) != n:
            raise ValueError(f"label_values has {len(self.label_values)} values for {n} labels")
        if self.thresholds is not None and n and len(self.thresholds) != n:
            raise ValueError(f"thresholds has {len(self.thresholds)} values for {n} labels")
        return self

    @property
    def spatial_dims(self) -> int:
        return int(self.architecture.spatial_dims)



def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "preprocessing" and p in _KINDS)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def parse_manifest(data: Any, *, path: object | None = None) -> Manifest:
    """Validate a manifest dict.

    Raises:
        ModelFileError: not a mapping, or a section that is missing or malformed; the message
            names the first bad field, e.g. ``manifest.json: preprocessing.target_spacing:
            Field required``.
    """
    if not isinstance(data, dict):
        raise ModelFileError(f"manifest.json must hold a JSON object; got {type(data).__name__}", path=path)
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        value = err.get("input")
        scalar = value is None or isinstance(value, (str, int, float, bool))
        got = f"; got {value!r}"[:120] if scalar and err["type"] != "missing" else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = _where(err["loc"])
        raise ModelFileError(f"manifest.json: {where + ': ' if where else ''}{msg}{got}{more}", path=path) from None
