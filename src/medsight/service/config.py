"""The service's typed configuration (``service.yaml``).

Every section refuses unknown keys, so a typo is an error naming the key's dotted path.
Secrets (tokens, PACS passwords) can be given through environment variables
(``token_env``, ``password_env``) instead of the file.

Example:
    >>> from medsight.service.config import load_service_config
    >>> cfg = load_service_config("configs/service.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from medsight.alerts.rules import AlertRule
from medsight.config import format_validation
from medsight.errors import ConfigError
from medsight.response.adjustment import DEFAULT_POLICY, list_policies
from medsight.response.criteria import CATEGORIES, DEFAULT_CRITERIA, PROGRESSIVE, list_criteria
from medsight.response.policy import PolicyRule, TreatmentPolicy  # noqa: F401  (PolicyRule: re-exported)

__all__ = [
    "ServiceConfig",
    "load_service_config",
    "service_config_from_dict",
    "DEFAULT_MODALITIES",
    "ROLES",
]

#: DICOM modality codes (PS3.3 C.7.3.1.1.1 defined terms for images) accepted by default.
DEFAULT_MODALITIES = ["CR", "DX", "CT", "MR", "US", "PT", "NM", "MG", "XA", "RF", "IO", "PX", "OT", "SC", "XC",
                      "ES", "OP", "SM", "GM", "RG", "BI", "DG", "TG"]

#: Token roles, from most to least powerful.
ROLES = ("admin", "reader", "sender")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _HttpLogin(_Strict):
    """HTTP basic-auth credentials for a PACS: the password in the file or in an environment variable."""

    username: str | None = None
    password: str | None = None
    password_env: str | None = None

    def secret(self) -> str | None:
        return self.password or (os.environ.get(self.password_env) if self.password_env else None)


class DatabaseConfig(_Strict):
    """Where the queue, results, alerts and audit live.

    ``url`` None means an SQLite file ``medsight.db`` in the storage folder; give a
    ``postgresql+psycopg://user@host:port/db`` URL for PostgreSQL (several workers, machines).
    """

    url: str | None = None
    url_env: str | None = None
    echo: bool = False

    def resolved_url(self, storage: Path) -> str:
        if self.url_env and os.environ.get(self.url_env):
            return os.environ[self.url_env]
        if self.url:
            return self.url
        return f"sqlite:///{(storage / 'medsight.db').resolve()}"


class StorageConfig(_Strict):
    """Received DICOM files and rendered overlays."""

    path: str = "./medsight-data"
    max_instance_mb: float = Field(64.0, gt=0)


class DicomConfig(_Strict):
    """The C-STORE / C-ECHO receiver."""

    enabled: bool = True
    ae_title: str = "MEDSIGHT"
    host: str = "127.0.0.1"
    port: int = Field(11112, ge=0, le=65535)
    allowed_calling_aets: list[str] = Field(default_factory=list)  # empty: any calling AE
    accept_modalities: list[str] = Field(default_factory=lambda: list(DEFAULT_MODALITIES))
    max_pdu: int = Field(65536, ge=4096, le=1 << 24)  # largest PDU received: what one read holds in memory
    network_timeout_s: float = Field(60.0, gt=0)
    acse_timeout_s: float = Field(5.0, gt=0)  # a connection that sends no A-ASSOCIATE-RQ is closed after this
    max_connections: int = Field(128, ge=1)  # TCP connections open at once, negotiating or not
    max_associations: int = Field(32, ge=1)  # associations (A-ASSOCIATE-RQ received) open at once
    max_associations_per_peer: int = Field(8, ge=1)  # of those, from one IP address

    @field_validator("ae_title")
    @classmethod
    def _aet(cls, v: str) -> str:
        if not (0 < len(v) <= 16) or not re.fullmatch(r"[ -~]+", v) or "\\" in v:
            raise ValueError(f"an AE title is 1-16 printable ASCII characters without backslash; got {v!r}")
        return v


class HttpConfig(_Strict):
    """The HTTP API and dashboard."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_upload_mb: float = Field(64.0, gt=0)  # a request body, counted as it arrives
    max_parts: int = Field(1000, ge=1)  # files (upload) or instances (STOW-RS) in one request
    public_url: str | None = None  # for links in webhooks


class TokenConfig(_Strict):
    """One API token. Give exactly one of ``token``, ``token_sha256`` or ``token_env``."""

    name: str
    role: Literal["admin", "reader", "sender"]
    token: str | None = None
    token_sha256: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> TokenConfig:
        given = [k for k in ("token", "token_sha256", "token_env") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"token '{self.name}' needs exactly one of token, token_sha256, token_env; got {given}")
        return self

    def digest(self) -> str | None:
        """SHA-256 hex of the token, or None when its environment variable is unset."""
        if self.token_sha256:
            return self.token_sha256.lower()
        secret = self.token if self.token else os.environ.get(self.token_env or "")
        return hashlib.sha256(secret.encode()).hexdigest() if secret else None


class AuthConfig(_Strict):
    """API tokens, and how failed authentications are limited.

    A client address with ``max_failures`` failed authentications within ``failure_window_s``
    gets HTTP 429 for ``lockout_s``, whatever token it then sends.
    """

    tokens: list[TokenConfig] = Field(default_factory=list)
    max_failures: int = Field(10, ge=1)
    failure_window_s: float = Field(60.0, gt=0)
    lockout_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> AuthConfig:
        seen: dict[str, str] = {}
        for t in self.tokens:
            d = t.digest()
            if d is not None and d in seen:
                raise ValueError(f"tokens '{seen[d]}' and '{t.name}' are the same secret; give each its own "
                                 "(a request could not tell them apart)")
            if d is not None:
                seen[d] = t.name
        return self


class WorkerConfig(_Strict):
    """The job workers."""

    processes: int = Field(1, ge=0, le=64)  # worker processes started by `medsight serve`
    threads: int = Field(1, ge=1, le=64)  # inference threads per process
    output_threads: int = Field(1, ge=1, le=16)  # threads per process sending results and webhooks
    batch_size: int = Field(16, ge=1, le=256)
    poll_interval_s: float = Field(0.05, gt=0)
    lease_s: float = Field(120.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    retry_backoff_s: float = Field(2.0, ge=0)
    torch_threads: int = Field(1, ge=1)


class SeriesConfig(_Strict):
    complete_after_s: float = Field(10.0, gt=0)  # a series is complete when no instance came for this long
    sweep_interval_s: float = Field(1.0, gt=0)


class ModelEntry(_Strict):
    """A model the service may run."""

    path: str  # shipped name or saved-model folder
    explain: Literal["gradcam", "gradcampp", "occlusion", "none"] = "gradcam"
    threshold: float | None = Field(None, ge=0, le=1)  # overrides the model's stored threshold
    backend: Literal["torch", "onnxruntime"] = "torch"  # onnxruntime: the folder's ONNX export (medsight export)


class RouteConfig(_Strict):
    """Which models run on which images. Every non-empty criterion must match."""

    name: str
    modalities: list[str] = Field(default_factory=list)
    body_parts: list[str] = Field(default_factory=list)
    series_description: str | None = None  # regular expression, case-insensitive
    models: list[str]

    @field_validator("series_description")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class DicomDestination(_Strict):
    name: str = "pacs"
    ae_title: str
    host: str = "127.0.0.1"
    port: int = Field(..., ge=1, le=65535)
    calling_ae_title: str | None = None  # default: dicom.ae_title
    timeout_s: float = Field(30.0, gt=0)


class StowDestination(_HttpLogin):
    name: str = "stow"
    url: str  # DICOMweb root, e.g. http://pacs/dicom-web
    timeout_s: float = Field(30.0, gt=0)
    health_url: str | None = None  # what the delivery check GETs (default: url, the DICOMweb root)


class OutputsConfig(_Strict):
    """Where results go, and how long delivery (to the PACS and the alert webhook) is retried.

    A send or webhook that fails is retried with exponential backoff (``workers.retry_backoff_s``
    doubling, at most ``max_backoff_s``) for ``retry_for_s``, then marked failed. While any is
    waiting, its destination is checked every ``probe_interval_s`` (C-ECHO, or an HTTP GET); when
    it answers again, its waiting sends are due at once and its failed ones are retried.
    """

    dicom: list[DicomDestination] = Field(default_factory=list)
    stow_rs: list[StowDestination] = Field(default_factory=list)
    send_sr: bool = True
    send_sc: bool = True
    send_seg: bool = True
    manufacturer: str = "MedSight"
    retry_for_s: float = Field(86400.0, gt=0)
    max_backoff_s: float = Field(600.0, gt=0)
    probe_interval_s: float = Field(30.0, gt=0)


class WebhookConfig(_Strict):
    url: str
    timeout_s: float = Field(5.0, gt=0)
    token_env: str | None = None  # sent as a Bearer token
    include_patient_id: bool = False


class AlertsConfig(_Strict):
    """The ``alerts`` section: where alerts are posted, and the rules (library code,
    :mod:`medsight.alerts.rules`)."""

    webhook: WebhookConfig | None = None
    rules: list[AlertRule] = Field(default_factory=list)


#: The ``treatment`` section: the monitoring policy (library code, :mod:`medsight.response.policy`).
TreatmentConfig = TreatmentPolicy


class ResponseConfig(_Strict):
    """The ``response`` section: response assessment of each patient's serial studies, by the
    code of ``medsight track`` (:func:`medsight.response.track_studies`).

    Off unless the section is given (``response: {}`` turns it on with these defaults).
    ``policy: reference`` chooses the reference design's wording ("Intensify treatment" /
    "Maintain or reduce treatment", from :class:`~medsight.response.TreatmentPolicy`); the
    default policy is ``default``.

    Attributes:
        enabled: assess at all.
        criteria: a criteria preset (:func:`~medsight.response.list_criteria`).
        policy: a suggestion policy preset (:func:`~medsight.response.list_policies`).
        mask_series: a regular expression on SeriesDescription naming a study's lesion mask
            series (None: ``medsight track``'s own, ``mask|segment|label``; a DICOM SEG always counts).
        segmentation_model: a name under ``models``: take each study's mask from that model's
            stored result instead of a mask series.
        settle_s: the assessment runs this long after the last of the patient's series completed
            (``series.complete_after_s`` after its last instance), so a study arriving series by
            series is assessed once.
        connectivity: 26 or 6, the neighbourhood of a lesion's voxels.
        alert_on: the categories of the latest time point that raise an alert.
        alert_priority: that alert's priority.
    """

    enabled: bool = True
    criteria: str = DEFAULT_CRITERIA
    policy: str = DEFAULT_POLICY
    mask_series: str | None = None
    segmentation_model: str | None = None
    settle_s: float = Field(30.0, ge=0)
    connectivity: Literal[6, 26] = 26
    alert_on: list[str] = Field(default_factory=lambda: [PROGRESSIVE])
    alert_priority: Literal["critical", "high", "medium", "low"] = "high"

    @field_validator("criteria", "policy")
    @classmethod
    def _preset(cls, v: str, info: ValidationInfo) -> str:
        names = list_criteria() if info.field_name == "criteria" else list_policies()
        if v not in names:
            raise ValueError(f"no response {info.field_name} preset {v!r}; the presets are {', '.join(names)}")
        return v

    @field_validator("mask_series")
    @classmethod
    def _mask_regex(cls, v: str | None) -> str | None:
        return RouteConfig._regex(v)

    @field_validator("alert_on")
    @classmethod
    def _categories(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"alert_on names {unknown}; the categories are {', '.join(CATEGORIES)}")
        return v


class CatchupConfig(_HttpLogin):
    """Reconciliation with the PACS at start and every ``interval_s``."""

    source: Literal["none", "orthanc", "dicomweb"] = "none"
    url: str | None = None
    interval_s: float = Field(30.0, gt=0)
    lookback_days: int = Field(2, ge=0)  # dicomweb: studies of the last N days are compared
    timeout_s: float = Field(60.0, gt=0)  # each HTTP request to the PACS

    @model_validator(mode="after")
    def _url(self) -> CatchupConfig:
        if self.source != "none" and not self.url:
            raise ValueError(f"catchup.source {self.source} needs catchup.url")
        return self


class ViewerConfig(_HttpLogin):
    """The DICOMweb source behind ``GET /dicom-web/...`` (the viewer's data, docs/service.md)."""

    dicomweb_url: str | None = None  # the PACS's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
    # the root the PACS writes into BulkDataURIs, when it is not dicomweb_url (Orthanc behind a
    # name of its own: http(s)://<DicomWeb.Host>/dicom-web); the proxy rewrites it to its own
    pacs_public_root: str | None = None
    ohif_dir: str | None = None  # OHIF's files (default: where scripts/install_viewer.sh puts them)
    timeout_s: float = Field(60.0, gt=0)  # connecting, and between two chunks of an answer


class DriftConfig(_Strict):
    """Drift monitoring (:mod:`medsight.service.drift`): after each result of a model that
    carries a drift reference, the last ``window`` results of that model from the same sender
    (the calling AE, or the HTTP user) are tested against the model's validation statistics
    (:func:`medsight.metrics.drift.check`).

    Attributes:
        enabled: monitor at all.
        window: how many recent results a check covers; none is made before the window is full.
        alpha: the family-wise chance that one check of an unchanged stream raises the alarm.
        alarm_on: the statistics whose shift raises the alarm (the others are reported).
        min_psi, min_rate_change: the smallest shift that counts (PSI; absolute change in a rate).
        priority: the drift alert's priority.
        snapshot_every: a snapshot of the statistics is stored every this many checks (and at
            each change of state), for the dashboard's trend.
    """

    enabled: bool = True
    window: int = Field(50, ge=10, le=5000)
    alpha: float = Field(0.001, gt=0, lt=1)
    alarm_on: list[Literal["distance", "score", "refer", "positive"]] = Field(
        default_factory=lambda: ["distance", "refer"], min_length=1)
    min_psi: float = Field(0.25, ge=0)
    min_rate_change: float = Field(0.10, ge=0, le=1)
    priority: Literal["critical", "high", "medium", "low"] = "high"
    snapshot_every: int = Field(10, ge=1)


class ServiceConfig(_Strict):
    """A complete ``service.yaml``."""

    roles: list[Literal["receiver", "api", "worker", "catchup"]] = Field(
        default_factory=lambda: ["receiver", "api", "worker", "catchup"])
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    dicom: DicomConfig = Field(default_factory=DicomConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    workers: WorkerConfig = Field(default_factory=WorkerConfig)
    series: SeriesConfig = Field(default_factory=SeriesConfig)
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    routing: list[RouteConfig] = Field(default_factory=list)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    treatment: TreatmentConfig = Field(default_factory=TreatmentConfig)
    catchup: CatchupConfig = Field(default_factory=CatchupConfig)
    response: ResponseConfig = Field(default_factory=lambda: ResponseConfig(enabled=False))
    drift: DriftConfig = Field(default_factory=DriftConfig)
    viewer: ViewerConfig = Field(default_factory=ViewerConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _routes_name_models(self) -> ServiceConfig:
        for route in self.routing:
            unknown = [m for m in route.models if m not in self.models]
            if unknown:
                raise ValueError(f"route '{route.name}' names models {unknown} that are not under 'models' "
                                 f"(configured: {sorted(self.models)})")
        model = self.response.segmentation_model
        if model is not None and model not in self.models:
            raise ValueError(f"response.segmentation_model names {model!r}, which is not under 'models' "
                             f"(configured: {sorted(self.models)})")
        return self

    @property
    def storage_path(self) -> Path:
        return Path(self.storage.path)

    @property
    def database_url(self) -> str:
        return self.database.resolved_url(self.storage_path)


def service_config_from_dict(data: Any, *, source: str = "service config") -> ServiceConfig:
    """Validate a mapping as a :class:`ServiceConfig`.

    Raises:
        ConfigError: not a mapping, unknown keys, wrong types or values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level; got {type(data).__name__}")
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation(exc)}") from None


def load_service_config(path: str | Path) -> ServiceConfig:
    """Load and validate a ``service.yaml``; relative storage paths are resolved against the
    file's folder.

    Raises:
        ConfigError: missing file, invalid YAML, unknown or invalid keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: service config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = service_config_from_dict(data, source=str(path))
    if not Path(cfg.storage.path).is_absolute():
        cfg.storage.path = str((path.parent / cfg.storage.path).resolve())
    return cfg
