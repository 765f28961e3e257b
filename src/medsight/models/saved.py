"""The saved-model format: a folder with ``manifest.json``, ``weights.safetensors`` and
``MODEL_CARD.md``.

The manifest carries everything inference needs (architecture, preprocessing, label names,
operating threshold) and everything an auditor asks (training data fingerprint, metrics,
versions, weights checksum); its typed contract is :class:`medsight.models.manifest.Manifest`.
Weights are safetensors: loading never runs code. A path that is not such a folder, a pickle,
a manifest that breaks the contract, or a damaged file gives a :class:`ModelFileError` that
says so.

Inference goes through :meth:`SavedModel.run` (the model's
:class:`~medsight.models.backend.Backend`) and :attr:`SavedModel.preprocessor` (built once from
the manifest), so a task never calls ``model.network`` itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medsight.errors import ConfigError, ModelFileError, ModelNotFoundError
from medsight.models.backend import Backend, TorchBackend
from medsight.models.manifest import Architecture, Manifest, parse_manifest

if TYPE_CHECKING:  # pragma: no cover
    from medsight.transforms.preprocess import Preprocessor, SpacingPreprocessor

__all__ = ["SavedModel", "build_network", "load_model", "save_model", "resolve_model_path", "list_zoo",
           "FORMAT", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

FORMAT = "medsight-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
CARD = "MODEL_CARD.md"


_SCALARS = (str, int, float, bool, type(None))


def _shallow_key(manifest: dict[str, Any]) -> tuple[Any, ...]:
    """What :attr:`SavedModel.spec` compares to see the dict changed: top-level keys, scalar
    values, and the identity of each section (assigning a section anew is seen)."""
    return tuple((k, v if isinstance(v, _SCALARS) else id(v)) for k, v in manifest.items())


@dataclass
class SavedModel:
    """A network with its manifest.

    Args:
        network: the torch module, in eval mode after loading; None for a model that only has
            another ``backend``.
        manifest: the JSON manifest as a dict (see :class:`~medsight.models.manifest.Manifest`
            for its keys), validated here; a :class:`Manifest` is taken as its dict.
        path: the folder it was loaded from, if any.
        card: the model card (Markdown).
        backend: what :meth:`run` calls; default :class:`~medsight.models.backend.TorchBackend`
            around ``network``.

    Attributes:
        manifest: the dict, the source of truth that is saved (trainers and the service may
            assign keys in it; :attr:`spec` follows).
        spec: the typed, validated view of the manifest.

    Raises:
        ModelFileError: the manifest breaks the contract (one line naming the field).
        ConfigError: neither a network nor a backend.
    """

    network: torch.nn.Module | None
    manifest: dict[str, Any]
    path: Path | None = None
    card: str = field(default="", repr=False)
    backend: Backend | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.manifest, Manifest):
            self.manifest = self.manifest.to_dict()
        self._spec = parse_manifest(self.manifest, path=self.path)
        self._spec_key = _shallow_key(self.manifest)
        self._preprocessor: Any = None
        if self.backend is None:
            if self.network is None:
                raise ConfigError("a SavedModel needs a network or a backend; got neither")
            self.backend = TorchBackend(self.network)

    @property
    def spec(self) -> Manifest:
        """The manifest, typed (re-validated when a top-level key of :attr:`manifest` was
        assigned since; change a nested section by assigning the section anew)."""
        key = _shallow_key(self.manifest)
        if key != self._spec_key:
            spec = parse_manifest(self.manifest, path=self.path)
            if spec.preprocessing != self._spec.preprocessing or spec.architecture != self._spec.architecture:
                self._preprocessor = None
            self._spec, self._spec_key = spec, key
        return self._spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def spatial_dims(self) -> int:
        return self.spec.spatial_dims

    @property
    def preprocessor(self) -> Preprocessor | SpacingPreprocessor:
        """The model's preprocessor, built once from ``manifest["preprocessing"]``: an
        :class:`~medsight.io.Image` in, the network's input tensor out (``.apply`` also gives
        the network grid's geometry). Which class depends on the section's ``kind``."""
        spec = self.spec
        if self._preprocessor is None:
            from medsight.transforms.preprocess import build_preprocessor

            self._preprocessor = build_preprocessor(spec.preprocessing.model_dump(exclude_none=True),
                                                    spatial_dims=spec.spatial_dims)
        return self._preprocessor

    def run(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """The network's raw outputs for one batch ``(N, C, *spatial)`` (and the model's non-image
        ``inputs``, e.g. a response model's covariates): the one place inference calls the network
        (no autograd, eval mode; see :mod:`medsight.models.backend`)."""
        assert self.backend is not None  # set in __post_init__
        return self.backend.run(x, *inputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features of one batch ``(N, D)`` (the backend's ``features``), from
        which the distance to the training data is measured (``manifest.ood``).

        Raises:
            ConfigError: the backend gives no features.
        """
        get = getattr(self.backend, "features", None)
        if get is None:
            raise ConfigError(f"model {self.name}: its backend {self.backend!r} gives no features")
        with torch.inference_mode():
            return get(x)

    def save(self, path: str | Path) -> Path:
        return save_model(self, path)

    def accepting(self, modalities: Sequence[str]) -> SavedModel:
        """This model, also taking images of ``modalities`` (DICOM codes; ``"any"``: every
        modality, and no check that the image looks like the modality the model was trained on):
        what ``medsight predict --accept-modality`` forces for one call. The network, backend and
        files are shared; the saved manifest is not changed.

        Raises:
            ConfigError: no modality given, or one that is not a code of letters and digits.
        """
        codes = [str(m).strip().upper() for m in modalities]
        bad = [c for c in codes if not c.isalnum()]
        if not codes or bad:
            raise ConfigError(f"--accept-modality takes DICOM modality codes (CT, MR, PT, ...) or 'any'; got "
                              f"{', '.join(repr(b) for b in bad) or 'none'}")
        manifest = dict(self.manifest)
        manifest.setdefault("modalities_trained", self.spec.modalities)  # what "refer: modality" compares with
        manifest["modalities"] = None if "ANY" in codes else sorted(set(self.spec.modalities or []) | set(codes))
        return dataclasses.replace(self, manifest=manifest)


def build_network(arch: Architecture | dict[str, Any]) -> torch.nn.Module:
    """Instantiate the network described by a manifest's ``architecture`` section.

    Raises:
        ModelFileError: the section is malformed or lacks ``name``, ``in_channels`` or
            ``num_classes``.
        ConfigError: parameters the architecture does not accept.
    """
    from medsight.models.architectures import Ensemble
    from medsight.models.registry import create_model

    if not isinstance(arch, Architecture):
        arch = parse_manifest({"task": "?", "architecture": arch, "preprocessing": {"kind": "resize"}}
                              ).architecture
    missing = [k for k in ("name", "in_channels", "num_classes") if getattr(arch, k) is None]
    if missing:
        raise ModelFileError(f"manifest.json: architecture lacks {', '.join(missing)}, which building the network "
                             "needs")
    a = arch

    def one() -> torch.nn.Module:
        return create_model(str(a.name), spatial_dims=a.spatial_dims, in_channels=int(a.in_channels or 1),
                            num_classes=int(a.num_classes or 1), **a.params)

    if a.ensemble > 1:
        return Ensemble([one() for _ in range(a.ensemble)], multilabel=a.multilabel)
    return one()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_name() -> str:
    """This CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows), e.g. ``AMD EPYC``."""
    name = ""
    try:
        name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "")
    except OSError:  # not Linux
        pass
    return name or platform.processor() or platform.machine()


def cpu() -> str:
    """This CPU's model name and torch's kernel level, e.g. ``AMD EPYC (AVX2)``: a time-scheduled
    training's steps, and so its weights, depend on it (docs/detection.md, "On a slower machine")."""
    return f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()})"


def versions() -> dict[str, str]:
    """The packages and the CPU a model was made with (the manifest's ``versions``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("medsight", "monai"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    out["cpu"] = cpu()
    return out


def save_model(model: SavedModel, path: str | Path) -> Path:
    """Write ``model`` as a folder; returns the folder."""
    from medsight.models.weights import save_weights

    if model.network is None:
        raise ConfigError(f"model {model.name} has no torch network to save (backend {model.backend!r})")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    state = model.network.state_dict()
    if model.spec.weights_dtype == "float16":  # halves the file; loading casts back to float32
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_weights(state, weights, metadata={"format": FORMAT})
    parse_manifest(model.manifest)  # the dict is what is written: validate it as it is now
    manifest = dict(model.manifest)
    manifest.update({"format": FORMAT, "format_version": FORMAT_VERSION, "weights_sha256": _sha256(weights)})
    manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.setdefault("versions", versions())
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    if model.card:
        (folder / CARD).write_text(model.card)
    model.manifest, model.path = manifest, folder
    return folder


def _zoo_root() -> Path:
    return Path(str(resources.files("medsight") / "zoo"))


def list_zoo() -> list[dict[str, Any]]:
    """The shipped models: name, task, version, labels and headline metrics."""
    out = []
    root = _zoo_root()
    for d in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
        m = json.loads((d / MANIFEST).read_text())
        out.append({"name": m.get("name", d.name), "task": m.get("task"), "version": m.get("version"),
                    "labels": m.get("labels"), "description": m.get("description", ""), "path": str(d),
                    "metrics": m.get("metrics", {}).get("test", {})})
    return out


def _search_dirs() -> list[Path]:
    dirs = [_zoo_root()]
    extra = os.environ.get("MEDSIGHT_MODEL_PATH")
    if extra:
        dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


def _describe_foreign(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"cannot be read ({exc})"
    if head[:1] == b"\x80" and len(head) > 1 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "is a Python pickle, which MedSight refuses to load because unpickling can run arbitrary code"
    if head.startswith(b"PK\x03\x04"):
        return "is a zip archive (a torch.save checkpoint?), which MedSight refuses: it holds pickled code"
    if head.startswith(b"\x89HDF"):
        return "is an HDF5 file (a Keras .h5 model?), not a MedSight model"
    if not head:
        return "is empty"
    return "is not a MedSight model folder"


def resolve_model_path(name_or_path: str | Path) -> Path:
    """The model folder for a shipped name, a folder, or a path to its manifest.

    Raises:
        ModelNotFoundError: no such name or path.
        ModelFileError: the path exists but is not a MedSight model.
    """
    p = Path(name_or_path)
    if p.exists():
        if p.is_dir():
            if (p / MANIFEST).is_file():
                return p
            raise ModelFileError(f"folder has no {MANIFEST}; expected a MedSight model folder "
                                 f"({MANIFEST} + {WEIGHTS})", path=p)
        if p.name == MANIFEST:
            return p.parent
        if p.suffix == ".safetensors" and (p.parent / MANIFEST).is_file():
            return p.parent
        raise ModelFileError(f"this file {_describe_foreign(p)}; expected a model folder with {MANIFEST} and "
                             f"{WEIGHTS}, or a shipped model name", path=p)
    name = str(name_or_path)
    if "/" not in name and os.sep not in name:
        for d in _search_dirs():
            if (d / name / MANIFEST).is_file():
                return d / name
    shipped = ", ".join(m["name"] for m in list_zoo()) or "none"
    raise ModelNotFoundError(f"no model named or at {name!r} (shipped models: {shipped})")


#: The backends :func:`load_model` takes.
BACKENDS = ("torch", "onnxruntime")


def load_model(name_or_path: str | Path, *, backend: str = "torch") -> SavedModel:
    """Load a saved model folder or a shipped model by name.

    Args:
        backend: ``torch``, or ``onnxruntime``: run the network through the folder's ONNX export
            (``medsight export --format onnx``), checked against the SHA-256 the manifest
            records; the torch network is loaded too (explanations and calibration need it).

    Raises:
        ModelNotFoundError, ModelFileError: see :func:`resolve_model_path`; also a symbolic
            link in the folder, a manifest that is not valid JSON or not of this format, a
            missing or mismatched weights checksum, architecture parameters the architecture
            does not declare (or ``pretrained``, or a file path: see
            :func:`medsight.models.registry.check_params`), or weights that do not fit the
            architecture; for ``onnxruntime``, a folder without an ONNX export, or one whose
            file is missing, changed or not ONNX.
        ConfigError: an unknown backend.
    """
    from medsight.models.weights import load_weights

    if backend not in BACKENDS:
        raise ConfigError(f"backend takes {' or '.join(BACKENDS)}; got {backend!r}")
    folder = resolve_model_path(name_or_path)
    links = sorted(p.name for p in folder.iterdir() if p.is_symlink())
    if links:
        raise ModelFileError(f"expected a model folder of plain files; {', '.join(links)} is a symbolic link, which "
                             "could make loading read a file outside the folder", path=folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{MANIFEST} is not valid JSON ({exc})", path=folder) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise ModelFileError(f"{MANIFEST} is not a MedSight manifest (format {fmt!r})",
                             path=folder)
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"model format version {manifest['format_version']} is newer than this MedSight "
                             f"reads ({FORMAT_VERSION}); upgrade medsight", path=folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelFileError(f"{WEIGHTS} is missing", path=folder)
    expected = manifest.get("weights_sha256")
    if not expected:
        raise ModelFileError(f"{MANIFEST} lacks weights_sha256: expected the SHA-256 of {WEIGHTS}, which every "
                             "saved model records, so that replaced weights are detected", path=folder)
    if _sha256(weights) != expected:
        raise ModelFileError(f"{WEIGHTS} does not match the checksum in {MANIFEST}: the file is damaged or was "
                             "replaced", path=folder)
    spec = parse_manifest(manifest, path=folder)
    try:
        network = build_network(spec.architecture)
    except ModelFileError as exc:
        raise ModelFileError(str(exc), path=folder) from None
    except ConfigError as exc:  # parameters the architecture does not accept, pretrained, paths
        raise ModelFileError(f"{MANIFEST} architecture: {exc}", path=folder) from None
    state = load_weights(weights)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(f"weights do not fit the architecture in the manifest ({first})", path=folder) from None
    network.eval()
    card = (folder / CARD).read_text() if (folder / CARD).is_file() else ""
    runner = _onnx_backend(folder, manifest) if backend == "onnxruntime" else None
    return SavedModel(network=network, manifest=manifest, path=folder, card=card, backend=runner)


def _onnx_backend(folder: Path, manifest: dict[str, Any]) -> Backend:
    """The folder's ONNX export as a backend, its file checked against ``manifest.exports.onnx``."""
    from medsight.models.onnx_backend import OnnxRuntimeBackend

    record = (manifest.get("exports") or {}).get("onnx")
    if not record:
        raise ModelFileError("this model has no ONNX export: run `medsight export --model M --format onnx --out DIR` "
                             "and load DIR", path=folder)
    name = str(record.get("file", ""))
    path = folder / name
    if Path(name).name != name or not path.is_file():
        raise ModelFileError(f"the ONNX export {name!r} named in {MANIFEST} is missing", path=folder)
    if _sha256(path) != record.get("sha256"):
        raise ModelFileError(f"{name} does not match the checksum in {MANIFEST}: the file is damaged or was replaced",
                             path=folder)
    return OnnxRuntimeBackend(path)
