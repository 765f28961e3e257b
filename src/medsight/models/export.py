"""Export a saved model's network for other runtimes: ONNX (for ONNX Runtime) or TorchScript.

``medsight export --model M --format onnx --out DIR`` writes a complete saved-model folder to
``DIR`` (manifest, weights, card) with the exported file beside them (``model.onnx`` or
``model.torchscript.pt``). The manifest records it under ``exports.<format>`` (file, SHA-256,
opset, input and output names), so :func:`medsight.models.load_model` with ``backend=
"onnxruntime"`` finds and checks it; the ONNX file also carries the model's name, version,
labels, preprocessing, threshold and temperature in its metadata (``medsight.*`` keys), so a
runtime outside MedSight has what it needs to prepare an input and read the output.

A network with a linear head (a classifier's) has two outputs in its ONNX graph: ``logits``
and ``features``, the input of its last linear layer (what the training fingerprint's distance
is measured on), so "refer: input unlike training data" and drift monitoring work on the ONNX
backend too. The batch axis is
dynamic; so are the spatial axes of a network without a fixed input size (segmentation and
detection run it on sliding-window patches).

The export uses torch's TorchScript-based ONNX exporter (``dynamo=False``): the torch.export
based one needs the onnxscript package and gave no benefit for these networks.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from medsight.errors import ConfigError, ModelFileError

__all__ = ["export_model", "FORMATS", "ONNX_FILE", "TORCHSCRIPT_FILE", "OPSET"]

FORMATS = ("onnx", "torchscript")
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
OPSET = 17


class _WithFeatures(torch.nn.Module):
    """The network, also returning the input of its last linear layer (``(N, D)``)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.last = next((m for m in reversed(list(network.modules())) if isinstance(m, torch.nn.Linear)), None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        got: list[torch.Tensor] = []
        assert self.last is not None
        handle = self.last.register_forward_pre_hook(lambda _m, args: got.append(args[0].flatten(1)))
        try:
            logits = self.network(x)
        finally:
            handle.remove()
        return logits, got[-1]


def _example(model: Any) -> torch.Tensor:
    """A zero input of the shape the network takes: the classifier's input size, or a
    segmentation or detection model's sliding-window patch."""
    m = model.manifest
    channels = int(m["architecture"].get("in_channels", 1))
    size = ((m.get("preprocessing") or {}).get("spatial_size") or (m.get("inference") or {}).get("patch_size")
            or (m.get("detection") or {}).get("patch_size"))
    if not size:
        raise ConfigError(f"model {model.name}: no input size (preprocessing.spatial_size, inference.patch_size or "
                          "detection.patch_size) to export with")
    return torch.zeros((2, channels, *[int(s) for s in size]), dtype=torch.float32)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _metadata(model: Any) -> dict[str, str]:
    m = model.manifest
    keep = {k: m.get(k) for k in ("name", "version", "task", "labels", "positive_index", "threshold", "thresholds",
                                  "temperature", "multilabel", "tta", "preprocessing", "modalities", "label_values")
            if m.get(k) is not None}
    return {f"medsight.{k}": json.dumps(v) for k, v in keep.items()}


def export_model(model: Any, out_dir: str | Path, *, fmt: str = "onnx") -> Path:
    """Write ``model`` as a saved-model folder at ``out_dir`` with its network exported beside it.

    Args:
        model: a loaded :class:`~medsight.models.saved.SavedModel` (with its torch network).
        out_dir: the folder to write (created; an existing saved model there is replaced).
        fmt: ``onnx`` or ``torchscript``.

    Returns:
        The exported file's path.

    Raises:
        ConfigError: an unknown format, a model without a torch network or an input size.
        ModelFileError: the exporter failed on this network (e.g. a response model's, which
            takes covariates beside the image).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export --format takes {' or '.join(FORMATS)}; got {fmt!r}")
    if model.network is None:
        raise ConfigError(f"model {model.name}: export needs its torch network")
    from medsight.models.saved import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = model.network.eval()
    x = _example(model)
    with_features = any(isinstance(m, torch.nn.Linear) for m in net.modules())  # a classifier's head
    fixed = bool((model.manifest.get("preprocessing") or {}).get("spatial_size"))  # else sliding windows
    spatial = {} if fixed else {i + 2: f"s{i}" for i in range(x.ndim - 2)}
    if fmt == "onnx":
        path = out / ONNX_FILE
        module = _WithFeatures(net) if with_features else net
        outputs = ["logits", "features"] if with_features else ["logits"]
        axes: dict[str, dict[int, str]] = {"x": {0: "n", **spatial}, "logits": {0: "n", **spatial}}
        if with_features:
            axes["features"] = {0: "n"}
        try:
            with warnings.catch_warnings():  # the tracer's notes on shape checks and instance norm: not the user's
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"], output_names=outputs,
                                  dynamic_axes=axes, opset_version=OPSET)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; say which network failed
            raise ModelFileError(f"ONNX export of {model.name} failed: {type(exc).__name__}: {exc}") from exc
        import onnx

        proto = onnx.load(str(path))
        for k, v in _metadata(model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(path))
        record = {"file": ONNX_FILE, "opset": OPSET, "inputs": ["x"], "outputs": outputs}
    else:
        path = out / TORCHSCRIPT_FILE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.trace(net, x, check_trace=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"TorchScript export of {model.name} failed: {type(exc).__name__}: {exc}") from exc
        scripted.save(str(path))
        record = {"file": TORCHSCRIPT_FILE}
    record["sha256"] = _sha256(path)
    import dataclasses

    exports = dict(model.manifest.get("exports") or {})
    exports.update(_earlier_exports(out, model.manifest.get("weights_sha256")))
    exports[fmt] = record
    exported = dataclasses.replace(model, manifest={**model.manifest, "exports": exports}, path=None)
    save_model(exported, out)
    return path


def _earlier_exports(out: Path, weights_sha256: str | None) -> dict[str, Any]:
    """The exports already in ``out`` of the same weights (another format exported there before)."""
    try:
        old = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or not weights_sha256 or old.get("weights_sha256") != weights_sha256:
        return {}
    return {k: v for k, v in (old.get("exports") or {}).items()
            if isinstance(v, dict) and (out / str(v.get("file", ""))).is_file()}
